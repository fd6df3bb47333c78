"""Reading the files of a synthetic set (``tfganaug synthesize``): manifest.json, images.npz.

A synthetic set comes back from the user as a folder, so its files are input like any other:
the manifest must be a JSON object of a sane size, and images.npz goes through
:func:`~tfganaug.data.npz.read_npz` with the arrays each kind of set holds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tfganaug.data.npz import INTEGER, NUMERIC, TEXT, Member, read_npz
from tfganaug.errors import InputError

MAX_MANIFEST_BYTES = 16 * 2**20
"""Largest manifest.json read (one lists a few hundred volumes in a few kB)."""

CLASSIFICATION_ARRAYS = {"images": Member(NUMERIC, (3, 4)), "labels": Member(INTEGER, (1,)),
                         "class_names": Member(TEXT, (1,), required=False, per_item=False)}
"""images float32 (N, H, W, 1) in [0, 1], labels (N,), class names."""

SEGMENTATION_ARRAYS = {"images": Member(NUMERIC, (4,)), "masks": Member(INTEGER, (3,)),
                       "patient_ids": Member(TEXT, (1,), required=False),
                       "slice_index": Member(INTEGER, (1,), required=False),
                       "class_names": Member(TEXT, (1,), required=False, per_item=False),
                       "channel_names": Member(TEXT, (1,), required=False, per_item=False)}
"""images float32 (N, H, W, C) in [0, 1], label maps (N, H, W), the source slice of each."""


def read_manifest_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; anything else (cut, not JSON, a list) is an InputError."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise InputError("a manifest", f"a JSON file of at most {MAX_MANIFEST_BYTES} bytes", f"{size} bytes", path)
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise InputError("a manifest", "a readable JSON object", reason, path) from exc
    if not isinstance(manifest, dict):
        raise InputError("a manifest", "a JSON object", f"a JSON {type(manifest).__name__}", path)
    return manifest


def read_synthetic_rois(folder) -> tuple[np.ndarray, np.ndarray]:
    """(images float32, labels int32) of a classification set's images.npz."""
    arrays = read_npz(Path(folder) / "images.npz", CLASSIFICATION_ARRAYS, "a synthetic ROI set")
    return arrays["images"].astype(np.float32), arrays["labels"].astype(np.int32)


def read_synthetic_pairs(folder) -> dict[str, np.ndarray]:
    """The arrays of a segmentation set's images.npz (see :data:`SEGMENTATION_ARRAYS`)."""
    path = Path(folder) / "images.npz"
    arrays = read_npz(path, SEGMENTATION_ARRAYS, "a synthetic segmentation set")
    if arrays["images"].shape[:3] != arrays["masks"].shape:
        raise InputError("a synthetic segmentation set", "images (N, H, W, C) and masks (N, H, W) of one size",
                         f"{arrays['images'].shape} and {arrays['masks'].shape}", path)
    if ("patient_ids" in arrays) != ("slice_index" in arrays):
        raise InputError("a synthetic segmentation set", "patient_ids and slice_index together",
                         f"only {'patient_ids' if 'patient_ids' in arrays else 'slice_index'}", path)
    return arrays
