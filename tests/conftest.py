"""Shared fixtures: where the read-only real data of ../shared/data lives."""
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (env TFGANAUG_DATA, else ../shared/data next to the repository).

    Missing data skips the test on a workstation but fails it in CI, where a skip would hide
    that the reader tests never ran.
    """
    root = Path(os.environ.get("TFGANAUG_DATA")
                or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (root / "INDEX.md").is_file():
        message = f"shared test data not found at {root}; set TFGANAUG_DATA to its folder"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root
