"""Radiomics features (metrics/radiomics.py) against hand counts and scipy.stats, and the
`radiomics` extractor's identity and behaviour in fidelity.py."""
import numpy as np
import pytest
from scipy import stats

from tfganaug.errors import ConfigError, InputError
from tfganaug.metrics import radiomics
from tfganaug.metrics.fidelity import fidelity_report, get_extractor

# The 4-level 4x4 image of scikit-image's graycomatrix docstring (Haralick's example).
IMAGE = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [0, 2, 2, 2],
                  [2, 2, 3, 3]])


def test_glcm_counts_by_hand():
    right = radiomics.glcm(IMAGE[None], offset=(0, 1), levels=4, symmetric=False)[0]
    np.testing.assert_array_equal(right, [[2, 2, 1, 0], [0, 2, 0, 0], [0, 0, 3, 1], [0, 0, 0, 1]])
    down = radiomics.glcm(IMAGE[None], offset=(1, 0), levels=4, symmetric=False)[0]
    np.testing.assert_array_equal(down, [[3, 0, 2, 0], [0, 2, 2, 0], [0, 0, 1, 2], [0, 0, 0, 0]])
    # down-left neighbours (135 degrees): (0,1)-(1,0): 0,0  (0,2)-(1,1): 1,0  (0,3)-(1,2): 1,1
    # (1,1)-(2,0): 0,0  (1,2)-(2,1): 1,2  (1,3)-(2,2): 1,2  (2,1)-(3,0): 2,2  (2,2)-(3,1): 2,2  (2,3)-(3,2): 2,3
    diag = radiomics.glcm(IMAGE[None], offset=(1, -1), levels=4, symmetric=False)[0]
    np.testing.assert_array_equal(diag, [[2, 0, 0, 0], [1, 1, 2, 0], [0, 0, 2, 1], [0, 0, 0, 0]])
    symmetric = radiomics.glcm(IMAGE[None], offset=(0, 1), levels=4)[0]
    np.testing.assert_array_equal(symmetric, right + right.T)


def test_glcm_counts_only_pairs_inside_the_foreground():
    mask = np.ones((4, 4), bool)
    mask[:, 3] = False  # drop the last column: the pairs ending there go
    got = radiomics.glcm(IMAGE[None], mask[None], offset=(0, 1), levels=4, symmetric=False)[0]
    # remaining pairs: rows 0-1: (0,0),(0,1); row 2: (0,2),(2,2); row 3: (2,2),(2,3)
    np.testing.assert_array_equal(got, [[2, 2, 1, 0], [0, 0, 0, 0], [0, 0, 2, 1], [0, 0, 0, 0]])


def test_glcm_features_by_hand():
    # A 2-level stripe: every horizontal pair is (1, 2) or (2, 1): p = [[0, .5], [.5, 0]]
    counts = radiomics.glcm(np.array([[[0, 1], [0, 1]]]), offset=(0, 1), levels=2)
    f = dict(zip(radiomics.GLCM_FEATURES, radiomics.glcm_features(counts)[0]))
    assert f["contrast"] == pytest.approx(1.0) and f["dissimilarity"] == pytest.approx(1.0)
    assert f["idm"] == pytest.approx(0.5) and f["joint_energy"] == pytest.approx(0.5)
    assert f["joint_entropy"] == pytest.approx(1.0) and f["correlation"] == pytest.approx(-1.0)
    assert f["joint_average"] == pytest.approx(1.5) and f["max_probability"] == pytest.approx(0.5)
    assert f["cluster_shade"] == pytest.approx(0.0, abs=1e-12)
    flat = dict(zip(radiomics.GLCM_FEATURES, radiomics.glcm_features(
        radiomics.glcm(np.ones((1, 3, 3), int), offset=(0, 1), levels=2))[0]))
    assert flat["correlation"] == 1.0 and flat["contrast"] == 0.0 and flat["joint_energy"] == pytest.approx(1.0)


def test_glrlm_counts_by_hand_in_all_four_directions():
    # rows: 0 0 | 1 1 ; 0 0 | 1 1 ; 0 | 2 2 2 ; 2 2 | 3 3   (runs per level by length 1..4)
    expected = {
        (0, 1): [[1, 2, 0, 0], [0, 2, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0]],
        # columns: 0 0 0 | 2 ; 0 0 | 2 2 ; 1 1 | 2 | 3 ; 1 1 | 2 | 3
        (1, 0): [[0, 1, 1, 0], [0, 2, 0, 0], [3, 1, 0, 0], [2, 0, 0, 0]],
        # down-right diagonals from (0,0): 0 0|2|3; (0,1): 0|1|2; (0,2): 1 1; (0,3): 1;
        # (1,0): 0|2|3; (2,0): 0|2; (3,0): 2
        (1, 1): [[3, 1, 0, 0], [2, 1, 0, 0], [5, 0, 0, 0], [2, 0, 0, 0]],
        # down-left diagonals from (0,0): 0; (0,1): 0 0; (0,2): 1|0 0; (0,3): 1 1|2 2;
        # (1,3): 1|2 2; (2,3): 2|3; (3,3): 3
        (1, -1): [[1, 2, 0, 0], [2, 1, 0, 0], [1, 2, 0, 0], [2, 0, 0, 0]],
    }
    for direction, want in expected.items():
        np.testing.assert_array_equal(radiomics.glrlm(IMAGE[None], direction=direction, levels=4)[0], want,
                                      err_msg=str(direction))


def test_glrlm_runs_stop_at_the_mask_and_features_by_hand():
    mask = np.ones((4, 4), bool)
    mask[0, 1] = False  # row 0's run of two zeros becomes one run of one
    got = radiomics.glrlm(IMAGE[None], mask[None], (0, 1), 4)[0]
    np.testing.assert_array_equal(got[0], [2, 1, 0, 0])
    counts = radiomics.glrlm(IMAGE[None], direction=(0, 1), levels=4)
    f = dict(zip(radiomics.GLRLM_FEATURES, radiomics.glrlm_features(counts, [16])[0]))
    n_runs = 8
    assert f["sre"] == pytest.approx((1 + 2 / 4 + 2 / 4 + 1 / 4 + 1 / 9 + 1 / 4) / n_runs)
    assert f["lre"] == pytest.approx((1 + 2 * 4 + 2 * 4 + 4 + 9 + 4) / n_runs)
    assert f["gln"] == pytest.approx((3**2 + 2**2 + 2**2 + 1**2) / n_runs**2)
    assert f["rln"] == pytest.approx((1**2 + 6**2 + 1**2) / n_runs**2)
    assert f["run_percentage"] == pytest.approx(n_runs / 16)
    assert f["lglre"] == pytest.approx((3 / 1 + 2 / 4 + 2 / 9 + 1 / 16) / n_runs)
    assert f["hglre"] == pytest.approx((3 * 1 + 2 * 4 + 2 * 9 + 1 * 16) / n_runs)


def test_first_order_matches_scipy_inside_the_foreground():
    rng = np.random.default_rng(0)
    x = rng.random((3, 8, 8))
    mask = x > 0.3
    got = radiomics.first_order_features(x, mask, levels=8)
    for image, m, row in zip(x, mask, got):
        v = image[m]
        f = dict(zip(radiomics.FIRST_ORDER, row))
        assert f["mean"] == pytest.approx(v.mean()) and f["std"] == pytest.approx(v.std())
        assert f["skewness"] == pytest.approx(stats.skew(v))
        assert f["kurtosis"] == pytest.approx(stats.kurtosis(v, fisher=False))
        assert f["median"] == pytest.approx(np.median(v)) and f["p90"] == pytest.approx(np.percentile(v, 90))
        assert f["iqr"] == pytest.approx(stats.iqr(v)) and f["range"] == pytest.approx(np.ptp(v))
        assert f["mad"] == pytest.approx(np.mean(np.abs(v - v.mean())))
        hist = np.bincount(np.minimum((v * 8).astype(int), 7), minlength=8) / v.size
        assert f["entropy"] == pytest.approx(stats.entropy(hist, base=2), abs=1e-9)
        assert f["uniformity"] == pytest.approx((hist**2).sum())
        assert f["foreground_share"] == pytest.approx(m.mean())


def test_quantise_and_foreground():
    np.testing.assert_array_equal(radiomics.quantise([0.0, 0.249, 0.25, 0.999, 1.0], 4), [0, 0, 1, 3, 3])
    x = np.zeros((2, 4, 4))
    x[0, 1:3, 1:3] = 0.5
    m = radiomics.foreground_masks(x, 0.02)
    assert m[0].sum() == 4 and m[1].all()  # an empty image is taken whole
    with pytest.raises(InputError, match="N, H, W"):
        radiomics.radiomics_features(np.zeros((4, 4)))


def test_radiomics_extractor_identity_channels_and_separation():
    rng = np.random.default_rng(1)
    # 80 each: each set of the FIDs below needs more images than the 36 features (metrics/fidelity.py)
    smooth = np.clip(0.5 + 0.05 * rng.standard_normal((80, 16, 16, 1)), 0, 1).astype(np.float32)
    noisy = np.clip(0.5 + 0.3 * rng.standard_normal((80, 16, 16, 1)), 0, 1).astype(np.float32)
    extractor = get_extractor("radiomics")
    assert extractor.standardize and extractor.version == radiomics.RADIOMICS_VERSION
    assert len(extractor.sha256) == 64 and get_extractor("radiomics", levels=8).sha256 != extractor.sha256
    n = len(radiomics.feature_names())
    assert extractor(smooth).shape == (80, n)
    assert extractor(np.concatenate([smooth, noisy], -1)).shape == (80, 2 * n)
    same = fidelity_report(smooth[:40], smooth[40:], "radiomics", kid_subset_size=20)
    apart = fidelity_report(smooth[:40], noisy[40:], "radiomics", kid_subset_size=20)
    assert apart["fid"] > 10 * same["fid"] and apart["precision"] < same["precision"]
    assert same["extractor"] == "radiomics" and same["extractor_sha256"] == extractor.sha256
    with pytest.raises(ConfigError, match="levels"):
        get_extractor("radiomics", levels=1)
