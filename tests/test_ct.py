"""CT preprocessing against hand-computed values and independent references (TF, NumPy)."""
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.data.ct import (crop_roi, hu_presets, normalize_minmax, normalize_zscore,
                              resample_spacing, resize_bicubic, window_hu)
from tfganaug.errors import ConfigError, InputError

HU = [-1000, -300, -200, -100, 0, 100, 200, 300, 3000]
WINDOWED = [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_window_hu_by_hand_on_numpy():
    out = window_hu(np.array(HU, np.int16), width=400, level=0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, WINDOWED)


def test_window_hu_on_tensors_and_in_tf_data():
    np.testing.assert_allclose(window_hu(tf.constant(HU), 400, 0).numpy(), WINDOWED)
    batches = tf.data.Dataset.from_tensor_slices(np.array([HU, HU], np.int16)).map(
        lambda x: window_hu(x, *hu_presets["kits"]))
    for row in batches:
        assert row.dtype == tf.float32
        np.testing.assert_allclose(row.numpy(), WINDOWED)


def test_liver_preset_is_width_then_level():
    width, level = hu_presets["liver"]
    np.testing.assert_allclose(window_hu(np.array([-45.0, 30.0, 105.0]), width, level), [0, 0.5, 1])


def test_window_width_must_be_positive():
    with pytest.raises(ConfigError, match="width"):
        window_hu(np.zeros(3), width=0)


def test_normalize_minmax_by_hand_and_on_constant_input():
    np.testing.assert_allclose(normalize_minmax(np.array([-10, 0, 30])), [0, 0.25, 1], atol=1e-6)
    np.testing.assert_array_equal(normalize_minmax(np.full((3, 3), 7.0)), 0)
    np.testing.assert_allclose(normalize_minmax(tf.constant([2.0, 4.0])).numpy(), [0, 1], atol=1e-6)


def test_normalize_zscore_inside_mask_matches_numpy_statistics():
    rng = np.random.default_rng(0)
    image = rng.normal(300, 50, (6, 7, 8)).astype(np.float32)
    mask = rng.random(image.shape) > 0.5
    expected = (image - image[mask].mean()) / image[mask].std()
    np.testing.assert_allclose(normalize_zscore(image, mask), expected, rtol=1e-4, atol=1e-4)
    on_tensors = normalize_zscore(tf.constant(image), tf.constant(mask)).numpy()
    np.testing.assert_allclose(on_tensors, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="empty mask"):
        normalize_zscore(image, np.zeros_like(mask))


@pytest.mark.parametrize("shape, size", [((28, 28), (64, 64)), ((64, 64), (28, 28)), ((30, 17), (64, 40))])
def test_resize_bicubic_matches_tf_antialiased_bicubic(shape, size):
    roi = np.random.default_rng(1).normal(0, 100, shape).astype(np.float32)
    reference = tf.image.resize(roi[..., None], size, method="bicubic", antialias=True).numpy()[..., 0]
    out = resize_bicubic(roi, size)
    assert out.shape == size and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, atol=1e-5 * np.abs(roi).max())  # float32 rounding


def test_resize_bicubic_keeps_a_constant_roi_constant_and_refuses_3d():
    np.testing.assert_allclose(resize_bicubic(np.full((28, 28), -57.5), 64), -57.5, rtol=1e-6)
    with pytest.raises(InputError, match="2-D"):
        resize_bicubic(np.zeros((4, 4, 3)), 8)


def test_crop_roi_inside_equals_a_slice():
    image = np.arange(100).reshape(10, 10)
    np.testing.assert_array_equal(crop_roi(image, (5, 5), 4), image[3:7, 3:7])


def test_crop_roi_pads_with_zeros_or_the_edge_at_a_corner():
    image = np.arange(1, 17).reshape(4, 4)
    np.testing.assert_array_equal(crop_roi(image, (0, 0), 3), [[0, 0, 0], [0, 1, 2], [0, 5, 6]])
    np.testing.assert_array_equal(crop_roi(image, (0, 0), 3, pad_mode="edge"),
                                  [[1, 1, 2], [1, 1, 2], [5, 5, 6]])
    np.testing.assert_array_equal(crop_roi(image, (3, 3), (2, 4)),
                                  [[10, 11, 12, 0], [14, 15, 16, 0]])


def test_crop_roi_keeps_channels_and_refuses_a_box_outside():
    rgb = np.ones((6, 6, 3))
    assert crop_roi(rgb, (1, 1), 4).shape == (4, 4, 3)
    with pytest.raises(InputError, match="overlapping"):
        crop_roi(rgb, (20, 20), 4)


def test_resample_spacing_halves_the_shape_and_reports_spacing():
    volume, spacing = resample_spacing(np.ones((8, 8, 8), np.float32), (1.0, 1.0, 1.0), 2.0)
    assert volume.shape == (4, 4, 4) and spacing == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(volume, 1.0)


def test_resample_spacing_interpolates_a_ramp_at_the_new_voxel_centres():
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[:, None, None], (16, 3, 3))
    volume, _ = resample_spacing(ramp, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    # new voxel i covers old voxels 2i and 2i+1, so its centre sits at old index 2i + 0.5
    np.testing.assert_allclose(volume[:, 1, 1], 2 * np.arange(8) + 0.5, atol=1e-5)


def test_resample_spacing_reports_the_achieved_spacing_and_keeps_labels():
    labels = np.random.default_rng(2).integers(0, 3, (9, 10, 10)).astype(np.uint8)
    volume, spacing = resample_spacing(labels, (3.0, 0.8, 0.8), (2.0, 1.0, 1.0), order=0)
    assert volume.shape == (14, 8, 8) and volume.dtype == np.uint8
    assert spacing == pytest.approx((27 / 14, 1.0, 1.0))
    assert set(np.unique(volume)) <= {0, 1, 2}
