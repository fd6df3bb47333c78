"""3D-IRCADb-01 (IRCAD; CC BY-NC-ND 4.0: no derivatives may be redistributed), Sandfort et
al.'s contrast domain: DICOM zips of contrast CT with liver, kidney and spleen masks, one
folder per patient under ../shared/data/ircadb. No fixed split (one patient: split along z)."""
from __future__ import annotations

from tfganaug.data.sources import shared

LICENCE = "CC BY-NC-ND 4.0"
TEST_PATIENTS = "slices of the training patient itself (one patient, split along z in blocks)"


def cases(cfg):
    from tfganaug.data.abdomen import load_ircadb_patient
    root = shared("ircadb")
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and any(p.glob("*.zip"))] or [root]
    return [case for folder in folders for case in load_ircadb_patient(folder)], None
