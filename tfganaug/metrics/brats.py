"""BraTS tumour-region Dice (Menze et al. 2015; Bakas et al. 2018, arXiv:1811.02629).

BraTS scores three nested regions rather than the labels themselves; with the label scheme of
:mod:`tfganaug.data.brats` (0 background, 1 necrotic / non-enhancing core, 2 oedema,
3 enhancing tumour):

* whole tumour ``WT`` = labels {1, 2, 3},
* tumour core ``TC`` = {1, 3},
* enhancing tumour ``ET`` = {3}.

Son et al. report Dice on these regions for the U-Net trained on real and/or synthetic data.

Empty regions, one convention: when a region is absent from both the reference and the
prediction, its Dice is **1.0**, the convention of the BraTS evaluation (a case without
enhancing tumour, e.g. many lower-grade gliomas, whose prediction has none either is scored as
correct); with the reference empty and the prediction not, Dice is 0. Results therefore compare
with published BraTS tables. ``tfganaug evaluate`` and the Son et al. report use this function
with that default (``brats_regions`` in ``evaluation.json``).

Means over cases: the per-case mean of the report keeps the cases whose reference lacks the
region, as the BraTS ranking does; each such case counts 1 (nothing predicted) or 0 (anything
predicted). That is debatable: it rewards predicting nothing there, and the mean then depends on
how many such cases the test set holds. So ``evaluation.json`` records per region how many cases
lacked it in the reference (``brats_regions_absent``), and the report prints that count.

The per-label scores (``necrosis``, ``edema``, ``enhancing``) follow the same 1.0 default here;
the per-label Dice tables of the reports come from
:func:`tfganaug.metrics.segmentation.dice_per_class` instead, whose convention (NaN: undefined,
left out of means) all studies share. Pass ``empty_value=np.nan`` for that convention here.
"""
from __future__ import annotations

import numpy as np

from tfganaug.errors import InputError
from tfganaug.metrics.classification import as_label_array

BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
"""Region name -> labels it contains."""

BRATS_LABELS: dict[str, int] = {"necrosis": 1, "edema": 2, "enhancing": 3}
"""Per-label scores: name -> label (names as ``tfganaug.data.brats.CLASS_NAMES``)."""

BRATS_REGION_KEYS: dict[str, str] = {"WT": "whole_tumour", "TC": "tumour_core", "ET": "enhancing_tumour"}
"""Region name -> its key in ``evaluation.json`` (``brats_regions``) and in the reports."""


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
