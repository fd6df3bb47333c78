"""Segmentation metrics against hand examples and brute-force set/geometry references."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from tfganaug.errors import InputError
from tfganaug.metrics.segmentation import dice_per_class, hausdorff95, iou_per_class, volume_error

TRUE_MAP = np.array([[0, 1, 1],
                     [0, 2, 2],
                     [0, 0, 2]])
PRED_MAP = np.array([[0, 1, 0],
                     [0, 2, 2],
                     [2, 0, 2]])


@st.composite
def label_maps(draw):
    k = draw(st.integers(2, 4))
    shape = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, size=shape), rng.integers(0, k, size=shape), k


def test_dice_and_iou_hand_example():
    # class 1: |A| = 2, |B| = 1, |A∩B| = 1; class 2: |A| = 3, |B| = 4, |A∩B| = 3
    np.testing.assert_allclose(dice_per_class(TRUE_MAP, PRED_MAP, 3), [2 / 3, 6 / 7])
    np.testing.assert_allclose(iou_per_class(TRUE_MAP, PRED_MAP, 3), [1 / 2, 3 / 4])
    # background: |A| = 4, |B| = 4, |A∩B| = 3
    np.testing.assert_allclose(dice_per_class(TRUE_MAP, PRED_MAP, 3, ignore_background=False), [3 / 4, 2 / 3, 6 / 7])


def test_dice_matches_set_formula_on_random_masks():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, size=(2, 8, 16, 16))
    for c, dice in zip(range(1, 4), dice_per_class(y_true, y_pred, 4)):
        a, b = y_true == c, y_pred == c
        assert dice == pytest.approx(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


@settings(max_examples=60, deadline=None)
@given(label_maps())
def test_dice_is_symmetric_bounded_and_tied_to_iou(maps):
    y_true, y_pred, k = maps
    dice = dice_per_class(y_true, y_pred, k, ignore_background=False)
    iou = iou_per_class(y_true, y_pred, k, ignore_background=False)
    np.testing.assert_array_equal(dice, dice_per_class(y_pred, y_true, k, ignore_background=False))
    defined = ~np.isnan(dice)
    assert ((dice[defined] >= 0) & (dice[defined] <= 1)).all()
    np.testing.assert_allclose(iou[defined], dice[defined] / (2 - dice[defined]))
    np.testing.assert_array_equal(np.isnan(iou), ~defined)


def test_empty_classes():
    y_true = np.array([[0, 1], [0, 0]])
    y_pred = np.array([[0, 1], [0, 3]])
    dice = dice_per_class(y_true, y_pred, 4)
    assert dice[0] == 1.0 and math.isnan(dice[1]) and dice[2] == 0.0
    np.testing.assert_array_equal(dice_per_class(y_true, y_pred, 4, empty_value=1.0), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(iou_per_class(y_true, y_pred, 4, empty_value=1.0), [1.0, 1.0, 0.0])


def test_mismatched_or_out_of_range_maps_raise():
    with pytest.raises(InputError, match="shape"):
        dice_per_class(np.zeros((4, 4), int), np.zeros((4, 5), int), 2)
    with pytest.raises(InputError, match="labels in"):
        iou_per_class(np.full((2, 2), 2), np.zeros((2, 2), int), 2)


def test_volume_error_hand_example():
    y_true = np.zeros((4, 5, 5), int)
    y_pred = np.zeros((4, 5, 5), int)
    y_true.flat[:10] = 1
    y_pred.flat[:12] = 1
    y_pred.flat[50:53] = 2  # class 2 absent from the reference
    r = volume_error(y_true, y_pred, spacing_mm=(2.5, 0.8, 0.8), num_classes=3)  # 1.6 mm^3 per voxel
    assert r["classes"] == [1, 2]
    np.testing.assert_allclose(r["volume_true_ml"], [0.016, 0.0])
    np.testing.assert_allclose(r["volume_pred_ml"], [0.0192, 0.0048])
    np.testing.assert_allclose(r["difference_ml"], [0.0032, 0.0048])
    np.testing.assert_allclose(r["abs_difference_ml"], [0.0032, 0.0048])
    assert r["relative_difference_percent"][0] == pytest.approx(20.0)
    assert math.isnan(r["relative_difference_percent"][1])


def test_volume_error_rejects_2d_maps_and_bad_spacing():
    with pytest.raises(InputError, match="3-D"):
        volume_error(np.zeros((4, 4), int), np.zeros((4, 4), int), (1, 1), 2)
    with pytest.raises(InputError, match="spacing_mm"):
        volume_error(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int), (1, 1), 2)


def surface_by_neighbours(mask):
    """Foreground voxels with a face neighbour that is background or outside the array."""
    padded = np.pad(mask, 1)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    surface = np.zeros_like(mask)
    for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
        surface |= mask & ~np.roll(padded, step, axis=axis)[inner]
    return surface


def hd95_brute_force(a, b, spacing):
    pa = np.argwhere(surface_by_neighbours(a)) * spacing
    pb = np.argwhere(surface_by_neighbours(b)) * spacing
    d = cdist(pa, pb)
    return np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95)


def test_hausdorff95_of_single_points_is_their_distance():
    a = np.zeros((8, 8), bool)
    b = np.zeros((8, 8), bool)
    a[0, 0] = True
    b[3, 4] = True
    assert hausdorff95(a, b, (1.0, 1.0)) == pytest.approx(5.0)
    assert hausdorff95(a, b, (2.0, 1.0)) == pytest.approx(math.hypot(6.0, 4.0))


@pytest.mark.parametrize("shift, spacing", [(3, (1.0, 1.0)), (5, (0.7, 1.3)), (12, (1.0, 1.0))])
def test_hausdorff95_on_shifted_squares(shift, spacing):
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.roll(a, shift, axis=1)
    hd = hausdorff95(a, b, spacing)
    assert hd == pytest.approx(hd95_brute_force(a, b, np.array(spacing)))
    assert 0 < hd <= shift * spacing[1] + 1e-9  # never above the plain Hausdorff distance


def test_hausdorff95_pools_both_directions_like_medpy():
    a = np.zeros((40, 40), bool)
    a[5:35, 5:35] = True
    b = np.zeros_like(a)
    b[12:18, 20:26] = True  # far inside a: the two directed distance sets differ
    hd = hausdorff95(a, b, (1.0, 1.0))
    assert hd == pytest.approx(hd95_brute_force(a, b, np.ones(2)))
    assert hd == hausdorff95(b, a, (1.0, 1.0))


def test_hausdorff95_on_shifted_cubes_and_identical_masks():
    a = np.zeros((12, 14, 16), bool)
    a[2:8, 3:9, 4:10] = True
    b = np.roll(np.roll(a, 2, axis=0), -1, axis=2)
    spacing = np.array([2.5, 0.8, 0.8])
    assert hausdorff95(a, b, spacing) == pytest.approx(hd95_brute_force(a, b, spacing))
    assert hausdorff95(a, a, spacing) == 0.0


def test_hausdorff95_empty_masks_and_bad_input():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert math.isnan(hausdorff95(empty, empty, (1, 1)))
    assert hausdorff95(empty, full, (1, 1)) == math.inf
    with pytest.raises(InputError, match="binary mask"):
        hausdorff95(np.full((5, 5), 2), full, (1, 1))
    with pytest.raises(InputError, match="spacing_mm"):
        hausdorff95(full, full, (1, 1, 1))
