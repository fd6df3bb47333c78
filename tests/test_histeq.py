"""Histogram-equalisation augmentation (Sandfort et al. 2019, MATLAB histeq(I, hgram)):
exact expectations on synthetic images, then a contrast CT moved toward a native one."""
import numpy as np
import pytest

from tfganaug.data.abdomen import load_totalseg_example
from tfganaug.data.histeq import (histeq_augment, histogram_mapping, match_histogram, random_histeq_tf,
                                  reference_histogram)
from tfganaug.errors import InputError

RANGE = (-200.0, 200.0)


def _continuous(seed=0, shape=(128, 128)):
    return np.random.default_rng(seed).normal(20.0, 40.0, shape)


def test_two_levels_onto_a_uniform_target_land_on_their_quantiles():
    """Levels 0 and 1, half each: mid-quantiles 0.25 and 0.75 of a uniform [0, 1] target."""
    image = np.array([[0.0, 0.0], [1.0, 1.0]])
    out = match_histogram(image, np.array([1.0, 1.0]), value_range=(0.0, 1.0))
    np.testing.assert_allclose(out, [[0.25, 0.25], [0.75, 0.75]])
    # All target mass in the bin [0.5, 0.75): both levels inside it, order kept.
    out = match_histogram(image, np.array([0.0, 0.0, 3.0, 0.0]), value_range=(0.0, 1.0))
    np.testing.assert_allclose(out, [[0.5625, 0.5625], [0.6875, 0.6875]])


def test_matching_an_image_onto_its_own_histogram_is_nearly_identity():
    image = _continuous()
    bins = 200
    ref = reference_histogram(image, bins=bins, value_range=RANGE)
    out = match_histogram(image, ref, value_range=RANGE)
    inside = (image > RANGE[0]) & (image < RANGE[1])
    width = (RANGE[1] - RANGE[0]) / bins
    assert np.abs(out - image)[inside].max() <= width
    assert np.abs(out - image)[inside].mean() < 0.1 * width


def test_output_histogram_equals_the_target_for_a_continuous_input():
    image = _continuous(seed=1)
    target = reference_histogram(np.random.default_rng(2).gamma(2.0, 30.0, 50_000) - 150.0,
                                 bins=64, value_range=RANGE)
    out = match_histogram(image, target, value_range=RANGE)
    got = np.histogram(out, bins=64, range=RANGE)[0] / out.size
    assert np.abs(got - target).max() <= 2.0 / out.size  # one pixel either side of a bin edge
    assert np.abs(np.cumsum(got) - np.cumsum(target)).max() <= 2.0 / out.size


def test_mapping_is_monotone_and_a_function_of_the_value():
    rng = np.random.default_rng(3)
    image = rng.integers(-150, 150, (64, 64)).astype(np.float32)  # integer HU: many ties
    target = rng.random(50) ** 3
    out = match_histogram(image, target, value_range=RANGE)
    order = np.argsort(image, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)
    for value in np.unique(image)[:20]:
        assert np.ptp(out[image == value]) == 0
    levels, mapped = histogram_mapping(image, target, value_range=RANGE)
    assert np.all(np.diff(levels) > 0) and np.all(np.diff(mapped) >= 0)
    np.testing.assert_array_equal(np.interp(image, levels, mapped).astype(np.float32), out)
    assert out.dtype == np.float32 and RANGE[0] <= out.min() and out.max() <= RANGE[1]


def test_only_masked_pixels_define_the_mapping():
    image = _continuous(seed=4)
    mask = np.zeros(image.shape, bool)
    mask[20:90, 10:100] = True
    target = reference_histogram(_continuous(seed=5) * 0.5 - 30, bins=100, value_range=RANGE)
    out = match_histogram(image, target, value_range=RANGE, mask=mask)
    alone = match_histogram(image[mask], target, value_range=RANGE)
    np.testing.assert_allclose(out[mask], alone)
    wild = image.copy()
    wild[~mask] = np.random.default_rng(6).uniform(-1000, 1000, (~mask).sum())
    np.testing.assert_array_equal(match_histogram(wild, target, value_range=RANGE, mask=mask)[mask], out[mask])
    # Unmasked values are mapped by the same monotone function (clamped beyond the masked range).
    order = np.argsort(wild, axis=None)
    assert np.all(np.diff(match_histogram(wild, target, RANGE, mask=mask).ravel()[order]) >= 0)


def test_reference_histogram_masks_thresholds_and_many_images():
    a, b = _continuous(7), _continuous(8)
    both = reference_histogram([a, b], bins=40, value_range=RANGE)
    np.testing.assert_allclose(both, reference_histogram(np.stack([a, b]), bins=40, value_range=RANGE))
    assert both.shape == (40,) and both.sum() == pytest.approx(1.0)
    masked = reference_histogram(a, bins=40, value_range=RANGE, mask=a > 0)
    assert masked[:20].sum() == 0 and masked.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(masked, reference_histogram(a, 40, RANGE, body_threshold_hu=0.0))
    clipped = reference_histogram(np.array([-5000.0, 5000.0]), bins=4, value_range=RANGE)
    np.testing.assert_allclose(clipped, [0.5, 0, 0, 0.5])  # outside values count in the end bins


def test_histeq_augment_blends_and_keeps_air():
    image = _continuous(9).astype(np.float32)
    image[:, :10] = -1000.0  # air around the patient
    target = reference_histogram(_continuous(10) - 50, bins=100, value_range=RANGE)
    full = histeq_augment(image, target, 1.0, value_range=RANGE, body_threshold_hu=-500)
    half = histeq_augment(image, target, 0.5, value_range=RANGE, body_threshold_hu=-500)
    body = image > -500
    np.testing.assert_array_equal(histeq_augment(image, target, 0.0, RANGE), image)
    np.testing.assert_allclose(full[body], match_histogram(image, target, RANGE, mask=body)[body], rtol=1e-6)
    np.testing.assert_allclose(half, 0.5 * (image + full), rtol=1e-5, atol=1e-3)
    assert np.all(full[:, :10] == -1000.0)
    assert full[body].mean() == pytest.approx(image[body].mean() - 50, abs=3)


def test_random_histeq_tf_is_histeq_augment_on_half_the_seeds():
    """The function train-seg --augment histeq runs: per stateless seed, either the image
    unchanged or exactly histeq_augment(image, strength 1), also in graph mode (tf.data map)."""
    import tensorflow as tf
    image = np.random.default_rng(11).random((8, 8, 1)).astype(np.float32)
    ref = reference_histogram(np.random.default_rng(12).random(500) ** 2, bins=16, value_range=(0.0, 1.0))
    want = histeq_augment(image, ref, 1.0, (0.0, 1.0))
    assert not np.array_equal(want, image)
    seeds = tf.constant([[s, 3] for s in range(32)], tf.int64)
    eager = [random_histeq_tf(tf.constant(image), s, ref).numpy() for s in seeds]
    used = [np.array_equal(o, want) for o in eager]
    assert all(u or np.array_equal(o, image) for u, o in zip(used, eager))
    assert 8 <= sum(used) <= 24  # p = 0.5
    for s, u in zip(seeds, used):  # the choice is the seed's: fold_in(seed, 7) < 0.5
        assert u == (tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(s, 7)) < 0.5)
    graph = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: random_histeq_tf(tf.constant(image), s, ref))
    np.testing.assert_array_equal(np.stack(list(graph.as_numpy_iterator())), np.stack(eager))


@pytest.mark.parametrize("call, message", [
    (lambda: histeq_augment(np.zeros((4, 4)), np.ones(8), 1.5), "strength"),
    (lambda: match_histogram(np.zeros((4, 4)), np.array([1.0, -1.0]), RANGE), "non-negative"),
    (lambda: match_histogram(np.zeros((4, 4)), np.ones(1), RANGE), ">= 2"),
    (lambda: match_histogram(np.zeros((4, 4)), np.ones(4), (1.0, 1.0)), "low < high"),
    (lambda: match_histogram(np.zeros((4, 4)), np.ones(4), RANGE, mask=np.zeros((4, 4), bool)), "inside the mask"),
    (lambda: reference_histogram(np.zeros((4, 4)), 8, RANGE, mask=np.ones((3, 3), bool)), "shape"),
])
def test_bad_arguments(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_contrast_ct_moves_toward_the_native_reference(shared_data):
    """TotalSegmentator contrast DICOM (liver ~89 HU) matched slice by slice onto the native
    NIfTI's histogram (liver 45.3 HU): the contrast liver lands near the native value."""
    folder = shared_data / "totalseg-examples"
    native = load_totalseg_example(folder / "example_ct_sm.nii.gz", folder / "example_seg.nii.gz",
                                   "non-contrast")[0]
    enhanced = load_totalseg_example(folder / "example_ct_dicom", folder / "example_seg_dicom.nii.gz",
                                     "contrast")[0]
    ref = reference_histogram(native.image[..., 0], bins=256)
    slices = enhanced.image[::4, ..., 0]
    out = np.stack([histeq_augment(s, ref, 1.0) for s in slices])
    liver = enhanced.mask[::4] == 1
    before, after = slices[liver].mean(), out[liver].mean()
    native_liver = native.image[..., 0][native.mask == 1].mean()
    assert before > 80 and abs(after - native_liver) < 15 and after < before - 25
    half = np.stack([histeq_augment(s, ref, 0.5) for s in slices])
    assert after < half[liver].mean() < before
