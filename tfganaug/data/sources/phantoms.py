"""Built-in phantoms: simulated patients that need no files (the default data on a fresh
machine). Kidney (KiTS capstone), abdomen with and without contrast (Sandfort et al.: the two
domains are different simulated patients, as real unpaired data are), brain MR (Son et al.)."""
from __future__ import annotations

LICENCE = "built-in (tfganaug)"
TEST_PATIENTS = "other simulated patients than the training ones (split by patient), drawn from the same simulator"


def kidney(cfg, lazy: bool = False):
    from tfganaug.data.kits import kidney_phantom_cases
    return kidney_phantom_cases(n_patients=cfg.n_phantom_patients, image_size=cfg.phantom_size, seed=1234,
                                lazy=lazy), None


def _abdomen(cfg, native: bool, lazy: bool):
    from tfganaug.data.abdomen import abdomen_phantom_cases
    return abdomen_phantom_cases(n_patients=cfg.n_phantom_patients, image_size=cfg.phantom_size,
                                 contrast=not native, seed=1234 + native, lazy=lazy), None


def abdomen(cfg, lazy: bool = False):
    return _abdomen(cfg, native=False, lazy=lazy)


def abdomen_native(cfg, lazy: bool = False):
    return _abdomen(cfg, native=True, lazy=lazy)


def brain(cfg):
    from tfganaug.data.brats import brain_phantom_cases
    return brain_phantom_cases(n_patients=cfg.n_phantom_patients, image_size=cfg.phantom_size,
                               contrasts=tuple(cfg.contrasts or ("t1", "t1ce", "t2", "flair")), seed=1234), None
