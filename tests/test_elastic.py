"""Standard augmentation of Sandfort et al. 2019: the NumPy b-spline reference (2-D, 3-D) and
the stateless TF version (flips, rotation, crop, elastic) used inside tf.data."""
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.data.elastic import (elastic_deform, elastic_displacement_np, elastic_displacement_tf,
                                   standard_augment_tf)
from tfganaug.errors import InputError

SIZE = 64


def _slice(seed=0):
    """A float slice (H, W, 1) and an int32 label map with labels {0, 2, 5}."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image = (np.sin(yy / 5.0) + np.cos(xx / 7.0) + rng.normal(0, 0.1, (SIZE, SIZE)))[..., None]
    mask = np.zeros((SIZE, SIZE), np.int32)
    mask[(yy - 20) ** 2 + (xx - 24) ** 2 < 100] = 2
    mask[(yy - 44) ** 2 + (xx - 40) ** 2 < 64] = 5
    return image.astype(np.float32), mask


def _seed(i, j=0):
    return tf.constant([i, j], tf.int64)


# --- NumPy reference --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(SIZE, SIZE), (12, 32, 40)])
def test_numpy_zero_sigma_is_identity(shape):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32)
    mask = rng.integers(0, 3, shape).astype(np.uint8)
    out, out_mask = elastic_deform(image, mask, rng, sigma_px=0.0)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (12, 32, 40)])
def test_numpy_deformation_moves_pixels_by_its_field(shape):
    """A ramp along each axis, resampled linearly, returns coordinate + displacement."""
    field = elastic_displacement_np(shape, np.random.default_rng(1), sigma_px=2.0)
    assert field.shape == (len(shape),) + shape
    for axis in range(len(shape)):
        ramp = np.indices(shape, dtype=np.float64)[axis]
        out, _ = elastic_deform(ramp, None, np.random.default_rng(1), sigma_px=2.0)
        target = ramp + field[axis]
        inside = (target >= 0) & (target <= shape[axis] - 1)
        np.testing.assert_allclose(out[inside], target[inside], atol=1e-9)


def test_numpy_mask_keeps_dtype_and_labels_and_channels():
    image, mask = _slice()
    mask = mask.astype(np.uint8)
    two = np.concatenate([image, -image], axis=-1)
    out, out_mask = elastic_deform(two, mask, np.random.default_rng(2))
    assert out.shape == two.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 1], -out[..., 0])  # one field for every channel
    assert out_mask.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 2, 5}
    again, again_mask = elastic_deform(two, mask, np.random.default_rng(2))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(again_mask, out_mask)
    with pytest.raises(InputError, match="matching the mask"):
        elastic_deform(image[:10], mask, np.random.default_rng(0))


# --- TensorFlow ---------------------------------------------------------------------------------

def test_tf_without_flip_rotation_crop_or_field_is_identity():
    image, mask = _slice()
    out, out_mask = standard_augment_tf(image, mask, _seed(3), rotation_deg=0.0, crop_fraction=1.0,
                                        sigma_px=0.0, flip=False)
    np.testing.assert_array_equal(out.numpy(), image)
    np.testing.assert_array_equal(out_mask.numpy(), mask)
    out, _ = standard_augment_tf(image, mask, _seed(3), rotation_deg=0.0, crop_fraction=1.0,
                                 elastic=False, flip=False)
    np.testing.assert_array_equal(out.numpy(), image)


def test_tf_flips_alone_are_exact_flips():
    image, mask = _slice()
    flips = {(False, False): image, (True, False): image[::-1], (False, True): image[:, ::-1],
             (True, True): image[::-1, ::-1]}
    seen = set()
    for i in range(12):
        out, out_mask = standard_augment_tf(image, mask, _seed(i), rotation_deg=0.0, crop_fraction=1.0,
                                            elastic=False)
        match = [k for k, v in flips.items() if np.array_equal(out.numpy(), v)]
        assert len(match) == 1
        np.testing.assert_array_equal(out_mask.numpy(), {(False, False): mask, (True, False): mask[::-1],
                                                         (False, True): mask[:, ::-1],
                                                         (True, True): mask[::-1, ::-1]}[match[0]])
        seen.add(match[0])
    assert len(seen) >= 3


def test_tf_same_seed_same_output_other_seed_other_output():
    image, mask = _slice()
    a = standard_augment_tf(image, mask, _seed(7, 1))
    b = standard_augment_tf(image, mask, _seed(7, 1))
    c = standard_augment_tf(image, mask, _seed(7, 2))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    assert not np.array_equal(a[1].numpy(), c[1].numpy())


@pytest.mark.parametrize("dtype", [tf.int32, tf.uint8, tf.int64])
def test_tf_mask_stays_integer_with_its_own_labels(dtype):
    image, mask = _slice()
    for i in range(4):
        out, out_mask = standard_augment_tf(image, tf.constant(mask, dtype), _seed(11, i))
        assert out_mask.dtype == dtype and out_mask.shape == mask.shape and out.shape == image.shape
        assert set(np.unique(out_mask.numpy()).tolist()) <= {0, 2, 5}
        assert np.isfinite(out.numpy()).all()
        assert image.min() - 1e-5 <= out.numpy().min() and out.numpy().max() <= image.max() + 1e-5


def test_tf_crop_enlarges_structures_by_at_most_the_inverse_area():
    image, mask = _slice()
    area = np.count_nonzero(mask == 2)
    for i in range(4):
        _, out_mask = standard_augment_tf(image, mask, _seed(13, i), rotation_deg=0.0, crop_fraction=0.5,
                                          elastic=False, flip=False)
        ratio = np.count_nonzero(out_mask.numpy() == 2) / area
        assert ratio == 0 or 0.9 < ratio < 2.0 + 0.2  # an object may leave the crop


def test_tf_warp_moves_pixels_by_the_tf_field():
    """Elastic only: a ramp image comes back as coordinate + (dy, dx) away from the border."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    ramps = np.stack([yy, xx], axis=-1)
    seed = _seed(17)
    out, _ = standard_augment_tf(ramps, np.zeros((SIZE, SIZE), np.int32), seed, rotation_deg=0.0,
                                 crop_fraction=1.0, flip=False, sigma_px=2.0)
    field_seed = tf.random.experimental.stateless_split(seed, num=4)[3]
    field = elastic_displacement_tf([SIZE, SIZE], field_seed, sigma_px=2.0).numpy()
    target = ramps + field
    inside = np.all((target >= 0) & (target <= SIZE - 1), axis=-1)
    np.testing.assert_allclose(out.numpy()[inside], target[inside], atol=1e-3)


def test_numpy_and_tf_fields_move_points_by_comparable_amounts():
    """Mean displacement magnitude of the dense fields (10 control points, sigma 8 px) over 16
    draws each: the spline (NumPy) and bicubic (TF) upsampling agree within 30 %."""
    size = 128
    np_mean = np.mean([np.linalg.norm(elastic_displacement_np((size, size), np.random.default_rng(i)), axis=0).mean()
                       for i in range(16)])
    tf_mean = np.mean([np.linalg.norm(elastic_displacement_tf([size, size], _seed(i)).numpy(), axis=-1).mean()
                       for i in range(16)])
    assert abs(np_mean - tf_mean) < 0.3 * np_mean
    assert 0.6 * 8.0 < np_mean < 8.0 * np.sqrt(np.pi / 2) * 1.1  # below the N(0, 8²)² mean at the nodes


def test_runs_inside_tf_data_map_and_is_a_pure_function_of_the_seed():
    images = np.stack([_slice(i)[0] for i in range(3)])
    masks = np.stack([_slice(i)[1] for i in range(3)]).astype(np.uint8)

    def augment(index, image, mask):
        return standard_augment_tf(image, mask, tf.stack([tf.constant(5, tf.int64), index]))

    def stream():
        data = tf.data.Dataset.from_tensor_slices((tf.range(3, dtype=tf.int64), images, masks))
        return list(data.map(augment, num_parallel_calls=2, deterministic=True).as_numpy_iterator())

    first, second = stream(), stream()
    for (a_img, a_mask), (b_img, b_mask), i in zip(first, second, range(3)):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_mask, b_mask)
        eager_img, eager_mask = standard_augment_tf(images[i], masks[i], _seed(5, i))
        np.testing.assert_allclose(a_img, eager_img.numpy(), atol=1e-5)
        np.testing.assert_array_equal(a_mask, eager_mask.numpy())
        assert a_img.shape == (SIZE, SIZE, 1) and a_mask.dtype == np.uint8


def test_bad_arguments():
    image, mask = _slice()
    with pytest.raises(InputError, match="crop fraction"):
        standard_augment_tf(image, mask, _seed(0), crop_fraction=0.0)
    with pytest.raises(InputError, match="control points"):
        elastic_displacement_np((8, 8), np.random.default_rng(0), control_points=1)
