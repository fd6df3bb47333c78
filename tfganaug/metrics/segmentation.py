"""Segmentation metrics as pure NumPy functions of integer label maps and binary masks.

Conventions follow nnU-Net v2's evaluation (Isensee et al. 2021): a class absent from both
the reference and the prediction has an undefined overlap score (NaN, not 1), so averages
over cases can skip it with ``np.nanmean``. Pass ``empty_value=1.0`` to score such a case
as perfect agreement instead.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from tfganaug.errors import InputError
from tfganaug.metrics.classification import as_label_array, safe_ratio


def _check_maps(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = as_label_array(y_true, "y_true label map", num_classes)
    y_pred = as_label_array(y_pred, "y_pred label map", num_classes)
    if y_true.shape != y_pred.shape:
        raise InputError("y_pred", f"a label map with y_true's shape {y_true.shape}", f"shape {y_pred.shape}")
    return y_true, y_pred


def _overlap_counts(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: voxels in both, in the reference, in the prediction."""
    y_true, y_pred = _check_maps(y_true, y_pred, num_classes)
    both = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    return both, np.bincount(y_true.ravel(), minlength=num_classes), np.bincount(y_pred.ravel(), minlength=num_classes)


def _fill_empty(scores: np.ndarray, empty: np.ndarray, empty_value: float, ignore_background: bool) -> np.ndarray:
    scores[empty] = empty_value
    return scores[1:] if ignore_background else scores


def dice_per_class(y_true, y_pred, num_classes: int, ignore_background: bool = True,
                   empty_value: float = np.nan) -> np.ndarray:
    """Dice coefficient 2|A∩B| / (|A| + |B|) per class (Dice 1945; Sørensen 1948).

    ``y_true`` and ``y_pred`` are integer label maps of equal shape. Returns a float array
    for classes ``1..num_classes-1`` (``ignore_background=True``) or ``0..num_classes-1``.
    A class empty in both maps gets ``empty_value`` (NaN by default); a class present in
    only one of them scores 0.
    """
    both, n_true, n_pred = _overlap_counts(y_true, y_pred, num_classes)
    dice = safe_ratio(2 * both, n_true + n_pred)
    return _fill_empty(dice, n_true + n_pred == 0, empty_value, ignore_background)


def iou_per_class(y_true, y_pred, num_classes: int, ignore_background: bool = True,
                  empty_value: float = np.nan) -> np.ndarray:
    """Intersection over union |A∩B| / |A∪B| per class (Jaccard 1912).

    Same arguments, class order and empty-class convention as :func:`dice_per_class`.
    """
    both, n_true, n_pred = _overlap_counts(y_true, y_pred, num_classes)
    union = n_true + n_pred - both
    return _fill_empty(safe_ratio(both, union), union == 0, empty_value, ignore_background)


def _check_spacing(spacing_mm, ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing_mm, dtype=np.float64).ravel()
    if spacing.size != ndim or not (spacing > 0).all():
        raise InputError("spacing_mm", f"{ndim} positive voxel sizes in mm, one per axis", repr(spacing_mm))
    return spacing


def volume_error(y_true, y_pred, spacing_mm: Sequence[float], num_classes: int,
                 ignore_background: bool = True) -> dict:
    """Per-class volumes and their differences, in millilitres and percent.

    ``y_true`` and ``y_pred`` are 3-D label maps with voxel size ``spacing_mm`` (one value
    per axis, in the arrays' axis order). Returns a dict of float arrays over the same
    classes as :func:`dice_per_class`: ``volume_true_ml``, ``volume_pred_ml``,
    ``difference_ml`` (pred - true), ``abs_difference_ml`` and
    ``relative_difference_percent`` = 100 (V_pred - V_true) / V_true, the relative volume
    difference of Heimann et al. 2009 (SLIVER07), NaN where the reference volume is 0;
    plus ``classes`` (the class indices).
    """
    y_true, y_pred = _check_maps(y_true, y_pred, num_classes)
    if y_true.ndim != 3:
        raise InputError("label maps", "3-D arrays (z, y, x)", f"shape {y_true.shape}")
    voxel_ml = np.prod(_check_spacing(spacing_mm, 3)) / 1000.0
    start = 1 if ignore_background else 0
    v_true = np.bincount(y_true.ravel(), minlength=num_classes)[start:] * voxel_ml
    v_pred = np.bincount(y_pred.ravel(), minlength=num_classes)[start:] * voxel_ml
    return {
        "classes": list(range(start, num_classes)),
        "volume_true_ml": v_true,
        "volume_pred_ml": v_pred,
        "difference_ml": v_pred - v_true,
        "abs_difference_ml": np.abs(v_pred - v_true),
        "relative_difference_percent": 100.0 * safe_ratio(v_pred - v_true, v_true),
    }


def _as_mask(mask, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool and not ((mask == 0) | (mask == 1)).all():
        raise InputError(what, "a binary mask (bool or 0/1)", f"values {np.unique(mask)[:5]}...")
    return mask.astype(bool)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a face-neighbour outside the mask (or on the array border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure)


def hausdorff95(mask_a, mask_b, spacing_mm: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance between two masks' surfaces, in mm.

    Follows MedPy's ``hd95``: surface voxels are mask voxels removed by one erosion with
    face connectivity; the distances from each surface voxel of A to the nearest surface
    voxel of B (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing_mm``) and
    from B to A are pooled, and their 95th percentile is returned (Huttenlocher et al.
    1993 for the Hausdorff distance). NaN if both masks are empty, inf if exactly one is.
    """
    a, b = _as_mask(mask_a, "mask_a"), _as_mask(mask_b, "mask_b")
    if a.shape != b.shape:
        raise InputError("mask_b", f"a mask with mask_a's shape {a.shape}", f"shape {b.shape}")
    spacing = _check_spacing(spacing_mm, a.ndim)
    if not a.any() or not b.any():
        return float("nan") if not (a.any() or b.any()) else float("inf")
    surf_a, surf_b = _surface(a), _surface(b)
    a_to_b = ndimage.distance_transform_edt(~surf_b, sampling=spacing)[surf_a]
    b_to_a = ndimage.distance_transform_edt(~surf_a, sampling=spacing)[surf_b]
    return float(np.percentile(np.concatenate([a_to_b, b_to_a]), 95))
