"""Classification metrics against hand-computed cases and brute-force references."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfganaug.errors import InputError
from tfganaug.metrics.classification import (
    bootstrap_ci,
    confusion_matrix,
    per_class_metrics,
    roc_auc_binary,
    roc_auc_ovr,
    roc_auc_per_class,
)

Y_TRUE = [0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0, 2]


@st.composite
def label_pairs(draw, max_classes=5, max_n=60):
    k = draw(st.integers(2, max_classes))
    n = draw(st.integers(1, max_n))
    labels = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels)), k


def test_confusion_matrix_hand_example():
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), expected)


@settings(max_examples=60, deadline=None)
@given(label_pairs())
def test_confusion_matrix_matches_loop_count_and_sums_to_n(pair):
    y_true, y_pred, k = pair
    expected = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    cm = confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == len(y_true)


def test_per_class_metrics_hand_example():
    r = per_class_metrics(Y_TRUE, Y_PRED, 3, class_names=["cyst", "metastasis", "haemangioma"])
    cyst, met, hem = (r["per_class"][c] for c in ("cyst", "metastasis", "haemangioma"))
    # cyst: TP 1, FN 1, FP 1, TN 4; metastasis: TP 2, FN 0, FP 1, TN 4; haemangioma: TP 2, FN 1, FP 0, TN 4
    assert (cyst["sensitivity"], cyst["specificity"], cyst["precision"], cyst["f1"]) == pytest.approx((0.5, 0.8, 0.5, 0.5))
    assert (met["sensitivity"], met["specificity"], met["precision"], met["f1"]) == pytest.approx((1, 0.8, 2 / 3, 0.8))
    assert (hem["sensitivity"], hem["specificity"], hem["precision"], hem["f1"]) == pytest.approx((2 / 3, 1, 1, 0.8))
    assert [cyst["support"], met["support"], hem["support"]] == [2, 2, 3]
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["macro_sensitivity"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert r["balanced_accuracy"] == pytest.approx(r["macro_sensitivity"])
    assert r["macro_specificity"] == pytest.approx((0.8 + 0.8 + 1) / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert r["n"] == 7


def test_undefined_ratios_are_nan_and_skipped_by_macro_averages():
    r = per_class_metrics([0, 0, 1, 1], [0, 1, 1, 1], 3)
    absent = r["per_class"]["2"]
    assert math.isnan(absent["sensitivity"]) and math.isnan(absent["precision"]) and math.isnan(absent["f1"])
    assert absent["specificity"] == 1.0 and absent["support"] == 0
    assert r["macro_sensitivity"] == pytest.approx((0.5 + 1.0) / 2)
    never_predicted = per_class_metrics([0, 1], [0, 0], 2)["per_class"]["1"]
    assert math.isnan(never_predicted["precision"]) and never_predicted["f1"] == 0.0


@settings(max_examples=60, deadline=None)
@given(label_pairs())
def test_per_class_ratios_lie_in_unit_interval_and_support_sums_to_n(pair):
    y_true, y_pred, k = pair
    r = per_class_metrics(y_true, y_pred, k)
    for m in r["per_class"].values():
        for key in ("sensitivity", "specificity", "precision", "f1"):
            assert math.isnan(m[key]) or 0.0 <= m[key] <= 1.0
    assert sum(m["support"] for m in r["per_class"].values()) == len(y_true)
    assert r["accuracy"] == pytest.approx(np.mean(y_true == y_pred))


@settings(max_examples=40, deadline=None)
@given(label_pairs(max_classes=2))
def test_binary_sensitivity_of_one_class_is_specificity_of_the_other(pair):
    y_true, y_pred, _ = pair
    r = per_class_metrics(y_true, y_pred, 2)["per_class"]
    np.testing.assert_equal(r["1"]["sensitivity"], r["0"]["specificity"])


@pytest.mark.parametrize("y_true, y_pred, k",
                         [([0, 3], [0, 1], 3), ([0.0, 1.0], [0, 1], 2), ([[0, 1]], [[0, 1]], 2)])
def test_bad_labels_raise_input_error(y_true, y_pred, k):
    with pytest.raises(InputError):
        per_class_metrics(y_true, y_pred, k)


def test_wrong_number_of_class_names_raises():
    with pytest.raises(InputError, match="class_names"):
        per_class_metrics([0, 1], [0, 1], 2, class_names=["a"])


def auc_by_pairs(is_positive, scores):
    pos, neg = scores[is_positive], scores[~is_positive]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=2, max_size=40))
def test_binary_auc_matches_pair_counting_with_ties(rows):
    is_positive = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows], dtype=float)
    if is_positive.all() or not is_positive.any():
        assert math.isnan(roc_auc_binary(is_positive, scores))
    else:
        assert roc_auc_binary(is_positive, scores) == pytest.approx(auc_by_pairs(is_positive, scores))


def test_binary_auc_hand_cases():
    labels = np.array([0, 0, 1, 1], dtype=bool)
    assert roc_auc_binary(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc_binary(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc_binary(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc_binary(labels, [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_ovr_auc_is_macro_mean_of_pairwise_counts():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=50)
    probs = rng.dirichlet(np.ones(3), size=50)
    probs[np.arange(50), y] += 0.3
    expected = [auc_by_pairs(y == c, probs[:, c]) for c in range(3)]
    np.testing.assert_allclose(roc_auc_per_class(y, probs), expected)
    assert roc_auc_ovr(y, probs) == pytest.approx(np.mean(expected))


def test_ovr_auc_skips_absent_class():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.45, 0.55, 0]])
    per_class = roc_auc_per_class(y, probs)
    assert math.isnan(per_class[2])
    assert roc_auc_ovr(y, probs) == pytest.approx(1.0)


def test_ovr_auc_rejects_mismatched_shapes():
    with pytest.raises(InputError):
        roc_auc_ovr([0, 1, 1], np.ones((2, 2)))


def accuracy(y_true, y_pred):
    return float(np.mean(y_true == y_pred))


def test_bootstrap_ci_width_matches_binomial_normal_approximation():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=400)
    y_pred = np.where(np.arange(400) < 280, y_true, 1 - y_true)  # accuracy exactly 0.7
    r = bootstrap_ci(y_true, y_pred, accuracy, n_boot=1000, seed=3)
    expected_half_width = 1.96 * np.sqrt(0.7 * 0.3 / 400)
    assert r["estimate"] == pytest.approx(0.7)
    assert r["ci_low"] < 0.7 < r["ci_high"]
    assert (r["ci_high"] - r["ci_low"]) / 2 == pytest.approx(expected_half_width, rel=0.15)
    assert r == bootstrap_ci(y_true, y_pred, accuracy, n_boot=1000, seed=3)


def test_bootstrap_ci_drops_nan_resamples_and_resamples_score_rows():
    y = np.array([0, 1] + [0] * 8)
    probs = np.stack([1 - np.linspace(0, 1, 10), np.linspace(0, 1, 10)], axis=1)
    r = bootstrap_ci(y, probs, roc_auc_ovr, n_boot=200, seed=0)
    assert 0 < r["n_valid"] < 200
    assert 0.0 <= r["ci_low"] <= r["ci_high"] <= 1.0


def test_conditional_fidelity_counts_intended_classes_by_hand():
    from tfganaug.metrics.classification import conditional_fidelity
    # synthetic: 6 samples, intended 0,0,1,1,2,2; the classifier gets 0,1 | 1,1 | 0,2 -> 4/6
    # real: 4 samples 0,1,2,2, predicted 0,1,2,0 -> 3/4
    out = conditional_fidelity([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2], [0, 1, 2, 2], [0, 1, 2, 0], 3)
    assert out["synthetic_accuracy"] == pytest.approx(4 / 6)
    assert out["real_accuracy"] == pytest.approx(3 / 4)
    assert out["ratio"] == pytest.approx((4 / 6) / (3 / 4))
    assert out["per_class_synthetic"] == pytest.approx([0.5, 1.0, 0.5])
    assert out["per_class_real"] == pytest.approx([1.0, 1.0, 0.5])
    assert out["n_synthetic"] == 6 and out["n_real"] == 4


def test_conditional_fidelity_chance_level_generator_scores_about_a_third():
    from tfganaug.metrics.classification import conditional_fidelity
    rng = np.random.default_rng(0)
    intended = np.arange(3000) % 3
    out = conditional_fidelity(intended, rng.integers(0, 3, 3000), intended, intended, 3)
    assert 0.3 < out["ratio"] < 0.37
    with pytest.raises(ValueError):
        conditional_fidelity([0, 1], [0], [0], [0], 2)
