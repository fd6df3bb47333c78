"""TotalSegmentator examples (Wasserthal et al. 2023; Apache-2.0): one non-contrast and one
contrast CT with model-made organ masks, Sandfort et al.'s second domain and test data."""
from __future__ import annotations

LICENCE = "Apache-2.0"
TEST_PATIENTS = "one example patient per contrast; no split (domain examples)"


def _cases(kind: str):
    from tfganaug.data.abdomen import load_abdomen_sources
    from tfganaug.data.datasets import data_root
    return [c for c in load_abdomen_sources(data_root())[kind] if c.patient_id.startswith("totalseg")], None


def contrast(cfg):
    return _cases("contrast")


def native(cfg):
    return _cases("non-contrast")
