"""KiTS19 (Heller et al. 2019; CC BY-NC-SA 4.0), the KiTS capstone's data, in ../shared/data/kits19:
paired CT-slice / label PNGs of three patients, and the label volumes of twelve cases (label
maps for Pix2Pix synthesis). Splits are the shared folder's MANIFEST.md suggestion."""
from __future__ import annotations

from tfganaug.data.sources import shared

LICENCE = "CC BY-NC-SA 4.0"
TEST_PATIENTS = ("other KiTS19 patients than the training ones (the shared MANIFEST's split by case), "
                 "from the same hospital and challenge")


def png_slices(cfg):
    """train = case 10036, val = 10037 + 10038."""
    from tfganaug.data.kits import load_png_pairs
    return load_png_pairs(shared("kits19", "png_slices")), {"train": ["10036"], "val": ["10037", "10038"]}


def label_volumes(cfg):
    """train = case_00000-00009, val = case_00010-00011 (label maps only; no CT)."""
    from tfganaug.data.kits import load_kits_cases
    return load_kits_cases(shared("kits19")), {"train": [f"case_{i:05d}" for i in range(10)],
                                               "val": ["case_00010", "case_00011"]}
