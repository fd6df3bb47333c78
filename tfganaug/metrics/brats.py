"""BraTS tumour-region Dice (Menze et al. 2015; Bakas et al. 2018, arXiv:1811.02629).

BraTS scores three nested regions rather than the labels themselves; with the label scheme of
:mod:`tfganaug.data.brats` (0 background, 1 necrotic / non-enhancing core, 2 oedema,
3 enhancing tumour):

* whole tumour ``WT`` = labels {1, 2, 3},
* tumour core ``TC`` = {1, 3},
* enhancing tumour ``ET`` = {3}.

Son et al. report Dice on these regions for the U-Net trained on real and/or synthetic data.

Empty regions: when a region is absent from both the reference and the prediction, Dice is
**1.0 by default**, the convention of the BraTS evaluation (a case without enhancing tumour,
e.g. many lower-grade gliomas, whose prediction has none either is scored as correct; with
reference empty and prediction not, Dice is 0). Results therefore compare with published BraTS
tables. Pass ``empty_value=np.nan`` for the nnU-Net convention used by
:func:`tfganaug.metrics.segmentation.dice_per_class` (undefined, skipped by ``np.nanmean``).
"""
from __future__ import annotations

import numpy as np

from tfganaug.errors import InputError
from tfganaug.metrics.classification import as_label_array

BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
"""Region name -> labels it contains."""

BRATS_LABELS: dict[str, int] = {"necrosis": 1, "edema": 2, "enhancing": 3}
"""Per-label scores: name -> label (names as ``tfganaug.data.brats.CLASS_NAMES``)."""


def _dice(truth: np.ndarray, pred: np.ndarray, empty_value: float) -> float:
    size = int(truth.sum()) + int(pred.sum())
    if size == 0:
        return float(empty_value)
    return 2.0 * int(np.logical_and(truth, pred).sum()) / size


def brats_regions_dice(y_true, y_pred, empty_value: float = 1.0) -> dict[str, float]:
    """Dice 2|A∩B| / (|A| + |B|) for WT, TC, ET and for labels 1, 2, 3 of two label maps.

    ``y_true`` and ``y_pred`` are integer label maps (any equal shape: a slice, a volume or a
    batch) with values 0-3. Returns ``{"WT", "TC", "ET", "necrosis", "edema", "enhancing"}``
    -> float; a region empty in both maps scores ``empty_value`` (1.0, the BraTS convention).
    """
    y_true = as_label_array(y_true, "y_true label map (BraTS labels)", 4)
    y_pred = as_label_array(y_pred, "y_pred label map (BraTS labels)", 4)
    if y_true.shape != y_pred.shape:
        raise InputError("y_pred", f"a label map with y_true's shape {y_true.shape}", f"shape {y_pred.shape}")
    scores = {name: _dice(np.isin(y_true, labels), np.isin(y_pred, labels), empty_value)
              for name, labels in BRATS_REGIONS.items()}
    scores.update({name: _dice(y_true == label, y_pred == label, empty_value)
                   for name, label in BRATS_LABELS.items()})
    return scores
