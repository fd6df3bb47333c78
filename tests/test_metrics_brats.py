"""BraTS region Dice (WT / TC / ET and per label) against hand-computed values."""
import numpy as np
import pytest

from tfganaug.errors import InputError
from tfganaug.metrics.brats import brats_regions_dice
from tfganaug.metrics.segmentation import dice_per_class

# 0 background, 1 necrosis, 2 oedema, 3 enhancing
TRUE = np.array([[0, 2, 2, 0],
                 [2, 1, 3, 2],
                 [2, 3, 3, 0],
                 [0, 0, 0, 0]])
PRED = np.array([[0, 2, 0, 0],
                 [2, 3, 3, 2],
                 [2, 1, 2, 2],
                 [0, 0, 0, 0]])


def test_regions_and_labels_hand_example():
    d = brats_regions_dice(TRUE, PRED)
    # WT: true {1,2,3} = 9 voxels, pred 9 voxels, overlap 8 (pixel (0,2) missed, (2,3) extra)
    assert d["WT"] == pytest.approx(2 * 8 / 18)
    # TC: true {1,3} at (1,1) (1,2) (2,1) (2,2) = 4; pred at (1,1) (1,2) (2,1) = 3; overlap 3
    assert d["TC"] == pytest.approx(2 * 3 / 7)
    # ET: true (1,2) (2,1) (2,2); pred (1,1) (1,2); overlap (1,2) = 1
    assert d["ET"] == pytest.approx(2 * 1 / 5)
    # necrosis: true (1,1), pred (2,1): no overlap
    assert d["necrosis"] == 0.0
    # oedema: true (0,1) (0,2) (1,0) (1,3) (2,0) = 5; pred (0,1) (1,0) (1,3) (2,0) (2,2) (2,3) = 6; overlap 4
    assert d["edema"] == pytest.approx(2 * 4 / 11)
    assert d["enhancing"] == pytest.approx(d["ET"])
    assert set(d) == {"WT", "TC", "ET", "necrosis", "edema", "enhancing"}


def test_per_label_scores_agree_with_dice_per_class():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, (3, 7, 9)), rng.integers(0, 4, (3, 7, 9))
    d = brats_regions_dice(y_true, y_pred)
    np.testing.assert_allclose([d["necrosis"], d["edema"], d["enhancing"]], dice_per_class(y_true, y_pred, 4))
    # A region is the union of its labels: relabel and compare with a binary Dice.
    wt = dice_per_class((y_true > 0).astype(int), (y_pred > 0).astype(int), 2)[0]
    assert d["WT"] == pytest.approx(wt)


def test_empty_regions_follow_the_brats_convention():
    oedema_only = np.array([[0, 2], [2, 0]])
    d = brats_regions_dice(oedema_only, oedema_only)
    assert d == {"WT": 1.0, "TC": 1.0, "ET": 1.0, "necrosis": 1.0, "edema": 1.0, "enhancing": 1.0}
    # Enhancing tumour predicted where there is none: 0, not 1.
    d = brats_regions_dice(oedema_only, np.array([[0, 2], [3, 0]]))
    assert d["ET"] == 0.0 and d["TC"] == 0.0 and d["WT"] == 1.0
    # Everything background on both sides, and the NaN convention on request.
    d = brats_regions_dice(np.zeros((3, 3), int), np.zeros((3, 3), int), empty_value=np.nan)
    assert all(np.isnan(v) for v in d.values())


def test_bad_inputs():
    with pytest.raises(InputError, match="labels in"):
        brats_regions_dice(np.array([0, 4]), np.array([0, 1]))       # raw BraTS label 4: map it to 3 first
    with pytest.raises(InputError, match="shape"):
        brats_regions_dice(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(InputError, match="integer"):
        brats_regions_dice(np.zeros(3), np.zeros(3, int))
