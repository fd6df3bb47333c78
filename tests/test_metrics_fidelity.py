"""FID/KID/precision-recall, feature extractors and the memorisation check.

References are closed forms (Gaussians), eigenvalue formulas, pair loops and
scipy.spatial.distance.cdist, all written independently of the code under test.
"""
import hashlib
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from tfganaug.errors import ConfigError, InputError, TfganaugError
from tfganaug.metrics import fidelity
from tfganaug.metrics.fidelity import (
    available_extractors,
    fid_from_features,
    fidelity_report,
    frechet_distance,
    get_extractor,
    kid_from_features,
    precision_recall_knn,
    register_extractor,
)
from tfganaug.metrics.privacy import leave_one_out_distances, memorisation_report, nearest_real_distances


def fid_by_eigenvalues(mu1, s1, mu2, s2):
    """Tr (S1 S2)^(1/2) = sum of sqrt eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric PSD)."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum()


@pytest.mark.parametrize("d, s1, s2", [(1, 1.0, 1.0), (5, 1.5, 0.5), (32, 0.2, 3.0)])
def test_frechet_distance_isotropic_gaussians_closed_form(d, s1, s2):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + d * (s1 - s2) ** 2
    got = frechet_distance(mu1, s1**2 * np.eye(d), mu2, s2**2 * np.eye(d))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_matches_eigenvalue_formula_on_random_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 12, 12))
    s1, s2 = a @ a.T + 0.1 * np.eye(12), b @ b.T
    mu1, mu2 = rng.normal(size=(2, 12))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(fid_by_eigenvalues(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_from_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    d, mu_shift = 4, np.array([1.0, -0.5, 0.0, 2.0])
    f1 = rng.normal(0.0, 1.0, size=(20000, d))
    f2 = rng.normal(mu_shift, 2.0, size=(20000, d))
    assert fid_from_features(f1, f2) == pytest.approx(np.sum(mu_shift**2) + d * (1.0 - 2.0) ** 2, abs=0.15)


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(2).normal(size=(300, 16))
    assert abs(fid_from_features(f, f)) < 1e-8


def test_fid_with_singular_covariances_is_regularised_without_warnings():
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(5, 20)), rng.normal(0.3, 1.0, size=(5, 20))  # rank 4 covariances in 20-D
    expected = fid_by_eigenvalues(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-5)


def test_fid_rejects_mismatched_features():
    with pytest.raises(InputError, match="features"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(InputError, match="n_samples >= 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


def mmd2_by_loops(x, y):
    def k(a, b):
        return (a @ b / len(a) + 1.0) ** 3
    m = len(x)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m**2


def test_kid_matches_brute_force_mmd_when_subsets_are_whole_sets():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.5, 1.0, size=(6, 3))
    mean, std = kid_from_features(x, y, num_subsets=4, subset_size=1000)  # capped at 6: every subset is the set
    assert mean == pytest.approx(mmd2_by_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_near_zero_for_identical_sets_and_large_for_shifted_ones():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 16))
    same, _ = kid_from_features(x, x, subset_size=200)
    shifted, shifted_std = kid_from_features(x, x + 1.0, subset_size=200)
    assert abs(same) < 0.01 * shifted
    assert shifted_std > 0  # subsets of 200 from 400 differ
    assert kid_from_features(x, x + 1.0, subset_size=200, seed=9) != (shifted, shifted_std)


def precision_recall_by_loops(real, fake, k):
    def radius(points, i):
        return np.sort([np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i])[k - 1]

    def covered(queries, support):
        radii = [radius(support, j) for j in range(len(support))]
        return np.mean([any(np.linalg.norm(q - s) <= r for s, r in zip(support, radii)) for q in queries])
    return covered(fake, real), covered(real, fake)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_precision_recall_matches_loop_reference(seed, k):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(25, 3)), rng.normal(0.7, 1.3, size=(18, 3))
    got = precision_recall_knn(real, fake, k=k, batch_size=7)
    assert got == pytest.approx(precision_recall_by_loops(real, fake, k))


def test_precision_recall_extremes():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(50, 4))
    assert precision_recall_knn(real, real) == (1.0, 1.0)
    assert precision_recall_knn(real, real + 100.0) == (0.0, 0.0)
    collapsed = np.repeat(real[:1], 20, axis=0)  # mode collapse onto one real sample
    precision, recall = precision_recall_knn(real, collapsed)
    assert precision == 1.0 and recall < 0.1


def test_extractor_registry():
    assert {"inception_v3", "random_conv", "pixels"} <= set(available_extractors())
    assert {"radiomics", "domain"} <= set(available_extractors())
    with pytest.raises(ConfigError, match="known: .*random_conv"):
        get_extractor("no_such_net")
    with pytest.raises(ConfigError, match="already registered"):
        register_extractor("pixels")(lambda: None)


def test_registered_extractor_gets_unit_range_batches(monkeypatch):
    monkeypatch.setattr(fidelity, "EXTRACTORS", fidelity.Registry("feature extractor", dict(fidelity.EXTRACTORS._entries)))
    seen = []

    @register_extractor("channel_means")
    def _channel_means():
        def fn(x):
            seen.append((x.shape[0], float(x.min()), float(x.max())))
            return x.mean(axis=(1, 2))
        return fn

    images = np.linspace(-1, 1, 5 * 4 * 4).reshape(5, 4, 4, 1)
    features = get_extractor("channel_means", batch_size=2)(images)
    assert features.shape == (5, 1) and features.dtype == np.float64
    assert [s[0] for s in seen] == [2, 2, 1]
    assert min(s[1] for s in seen) == 0.0 and max(s[2] for s in seen) == 1.0


def test_images_out_of_range_or_wrong_rank_are_rejected():
    extractor = get_extractor("pixels")
    with pytest.raises(InputError, match="values in"):
        extractor(np.full((2, 8, 8, 1), 400.0, np.float32))  # Hounsfield units, not normalised
    with pytest.raises(InputError, match="N, H, W, C"):
        extractor(np.zeros((8, 8, 1), np.float32))


def test_pixels_extractor_is_block_average():
    images = np.random.default_rng(7).random((3, 32, 32, 2)).astype(np.float32)
    expected = images.reshape(3, 16, 2, 16, 2, 2).mean(axis=(2, 4)).reshape(3, -1)
    np.testing.assert_allclose(get_extractor("pixels", size=16)(images), expected, rtol=1e-5)


def test_random_conv_is_seeded_and_range_independent():
    images = np.random.default_rng(8).random((6, 32, 32, 1)).astype(np.float32)
    first = get_extractor("random_conv", seed=1)(images)
    np.random.seed(123)  # global NumPy/TF state must not matter
    import tensorflow as tf
    tf.random.set_seed(123)
    again = get_extractor("random_conv", seed=1)(images)
    other = get_extractor("random_conv", seed=2)(images)
    assert first.shape == (6, 256)
    np.testing.assert_allclose(again, first, rtol=1e-6, atol=1e-7)
    assert not np.allclose(other, first, rtol=1e-2)
    np.testing.assert_allclose(get_extractor("random_conv", seed=1)(images * 2 - 1), first, rtol=1e-4, atol=1e-6)
    assert get_extractor("random_conv", seed=1)(np.repeat(images, 3, axis=-1)).shape == (6, 256)


def test_fidelity_report_carries_extractor_and_separates_shifted_sets():
    rng = np.random.default_rng(9)
    real = rng.random((300, 16, 16, 1)).astype(np.float32) * 0.5  # more images than random_conv's 256 features
    bright = real + 0.5
    same = fidelity_report(real, real, seed=4, kid_subset_size=20)
    shifted = fidelity_report(real, bright, seed=4, kid_subset_size=20)
    assert same["extractor"] == "random_conv" and same["extractor_options"] == {"seed": 4}
    assert same["extractor_version"] == "1" and len(same["extractor_sha256"]) == 64
    assert fidelity_report(real, real, seed=5, kid_subset_size=20)["extractor_sha256"] != same["extractor_sha256"]
    assert (same["n_real"], same["n_fake"], same["n_features"]) == (300, 300, 256)
    assert set(same) == {"fid", "kid_mean", "kid_std", "precision", "recall", "extractor", "extractor_version",
                         "extractor_sha256", "extractor_options", "n_real", "n_fake", "n_features"}
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0
    assert shifted["fid"] > 100 * max(abs(same["fid"]), 1e-6) and shifted["kid_mean"] > same["kid_mean"]


def test_inception_without_weights_explains_how_to_supply_them(monkeypatch):
    monkeypatch.delenv(fidelity.INCEPTION_WEIGHTS_ENV, raising=False)
    with pytest.raises(TfganaugError, match="TFGANAUG_INCEPTION_WEIGHTS.*random_conv"):
        get_extractor("inception_v3")
    with pytest.raises(InputError, match="no such file"):
        get_extractor("inception_v3", weights_path="/nonexistent/inception.h5")


@pytest.mark.slow  # builds InceptionV3 twice (~10 s on 2 idle cores)
def test_inception_from_local_weights_file(tmp_path, monkeypatch):
    import keras

    weights = tmp_path / "inception_notop.weights.h5"
    keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                   input_shape=(299, 299, 3)).save_weights(weights)
    monkeypatch.setenv(fidelity.INCEPTION_WEIGHTS_ENV, str(weights))
    grey = np.random.default_rng(10).random((2, 28, 28, 1)).astype(np.float32)
    extractor = get_extractor("inception_v3")
    features = extractor(grey)
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    assert extractor.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()


# ---------------------------------------------------------------- memorisation (privacy.py)


def test_nearest_real_distances_match_cdist():
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(37, 4, 4)), rng.normal(size=(23, 4, 4))
    dist, index = nearest_real_distances(real, fake, batch_size=5)
    full = cdist(fake.reshape(23, -1), real.reshape(37, -1))
    np.testing.assert_array_equal(index, full.argmin(axis=1))
    np.testing.assert_allclose(dist, full.min(axis=1))


def test_leave_one_out_distances_match_cdist():
    real = np.random.default_rng(12).normal(size=(30, 5))
    full = cdist(real, real)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(leave_one_out_distances(real, batch_size=4), full.min(axis=1))


def test_memorisation_report_flags_copies():
    rng = np.random.default_rng(13)
    real = rng.random((60, 8, 8))
    copies = real[[5, 17, 42]]
    novel = rng.random((17, 8, 8)) + 1.0  # outside the real images' [0, 1] range: far from every one
    r = memorisation_report(real, np.concatenate([copies, novel]), threshold_quantile=0.01, num_pairs=3)
    assert (r["n_below"], r["n_fake"], r["n_real"]) == (3, 20, 60)
    assert r["fraction_below"] == pytest.approx(3 / 20)
    assert sorted(p["real_index"] for p in r["closest_pairs"]) == [5, 17, 42]
    assert all(p["distance"] == 0.0 and p["fake_index"] < 3 for p in r["closest_pairs"])
    assert r["median_fake_nn"] > 0 and r["threshold"] > 0


def test_memorisation_report_rejects_mismatched_sizes():
    with pytest.raises(InputError, match="values per sample"):
        memorisation_report(np.zeros((4, 8, 8)), np.zeros((4, 8, 9)))


def test_mean_pairwise_distance_by_hand_and_intra_class_diversity():
    from tfganaug.metrics.privacy import intra_class_diversity, mean_pairwise_distance
    # three 1x2 "images": pairwise distances 1, 2, sqrt(5) -> mean (3 + sqrt 5) / 3
    x = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]]])[..., None]
    assert mean_pairwise_distance(x) == pytest.approx((3 + np.sqrt(5)) / 3)
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 1, (40, 8, 8, 1))
    labels = np.arange(40) % 2
    same = intra_class_diversity(real, labels, real, labels, 2)
    assert same["per_class"] == pytest.approx([1.0, 1.0])
    collapsed = np.tile(real[:2], (20, 1, 1, 1))  # one image per class: images and labels alternate 0, 1
    out = intra_class_diversity(collapsed, np.tile([0, 1], 20), real, labels, 2)
    assert out["mean"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(intra_class_diversity(real[:1], [0], real, labels, 2)["per_class"][0])


def _smooth_images(rng, n, size=16):
    """Blurred-noise images: structured like anatomy, so nearest-neighbour distances spread."""
    from scipy import ndimage
    return ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 2, 2))


def test_memorisation_audit_flags_copies_and_not_fresh_real_images():
    from tfganaug.metrics.privacy import memorisation_audit
    rng = np.random.default_rng(14)
    train, heldout, fresh = _smooth_images(rng, 80), _smooth_images(rng, 80), _smooth_images(rng, 80)
    copies = np.concatenate([train[:20], train[20:40] + rng.normal(0, 0.005, (20, 16, 16))])
    copied = memorisation_audit(train, heldout, copies, quantile=0.05, num_pairs=5)
    assert copied["flagged"] and copied["fraction_below"] == 1.0 and copied["p_value"] < 1e-10
    assert [p["distance"] for p in copied["closest_pairs"]] == [0.0] * 5
    assert {p["train_index"] for p in copied["closest_pairs"]} <= set(range(20))
    assert copied["median_synthetic_nn"] < copied["median_heldout_nn"]
    new = memorisation_audit(train, heldout, fresh, quantile=0.05)
    assert not new["flagged"] and new["fraction_below"] < 0.15 and new["p_value"] > 0.01
    assert (new["n_train"], new["n_heldout"], new["n_synthetic"]) == (80, 80, 80)
    # threshold: the held-out set's own 5th percentile of nearest-training distances
    held_nn = cdist(heldout.reshape(80, -1), train.reshape(80, -1)).min(axis=1)
    assert new["threshold"] == pytest.approx(np.quantile(held_nn, 0.05))
    with pytest.raises(InputError, match="quantile"):
        memorisation_audit(train, heldout, fresh, quantile=1.5)


@pytest.mark.parametrize("n_real, n_fake", [(8, 50), (50, 8), (8, 8)])
def test_fid_is_undefined_with_no_more_images_than_features(n_real, n_fake):
    """With n <= d a set's covariance is singular and eps*I would set the FID: None and the reason,
    while KID and precision / recall (no covariance) are still given."""
    from tfganaug.metrics.fidelity import fidelity_from_features
    rng = np.random.default_rng(3)
    r = fidelity_from_features(rng.normal(size=(n_real, 8)), rng.normal(size=(n_fake, 8)), "test")
    assert r["fid"] is None and "8 images in the smaller set for 8 features" in r["fid_undefined"]
    assert np.isfinite(r["kid_mean"]) and 0.0 <= r["precision"] <= 1.0 and r["n_features"] == 8
    defined = fidelity_from_features(rng.normal(size=(9, 8)), rng.normal(size=(50, 8)), "test")
    assert np.isfinite(defined["fid"]) and "fid_undefined" not in defined
