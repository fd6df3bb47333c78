"""Shared statistics (tfganaug.metrics.stats) against hand-computed values and scipy.stats.t."""
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from tfganaug.errors import InputError
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean


def test_nan_mean_skips_nan_and_is_nan_without_a_warning_when_nothing_is_left():
    assert nan_mean([1.0, np.nan, 3.0]) == 2.0
    assert nan_mean([0.25]) == 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(nan_mean([np.nan, np.nan])) and math.isnan(nan_mean([]))


def test_mean_ci_hand_computed_t_interval():
    # 1, 2, 3: mean 2, s = 1, n = 3, t_{0.975, 2} = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    r = mean_ci([1.0, 2.0, 3.0])
    assert (r["mean"], r["std"], r["n"], r["n_nan"], r["confidence"]) == (2.0, 1.0, 3, 0, 0.95)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)
    # 90 %: t_{0.95, 2} = 2.919986 -> half-width 1.685855
    r = mean_ci([1.0, 2.0, 3.0], 0.90)
    assert r["ci_high"] - r["mean"] == pytest.approx(1.685855, abs=1e-6)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_matches_scipy_t_interval(confidence):
    values = np.array([0.81, 0.84, 0.79, 0.88, 0.83])
    low, high = stats.t.interval(confidence, df=4, loc=values.mean(), scale=stats.sem(values))
    r = mean_ci(values, confidence)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    assert r["std"] == pytest.approx(values.std(ddof=1))


def test_mean_ci_drops_and_counts_nan_and_one_value_has_nan_bounds():
    r = mean_ci([0.7, np.nan, 0.9, np.nan])
    assert (r["n"], r["n_nan"], r["mean"]) == (2, 2, pytest.approx(0.8))
    single = mean_ci([0.75])
    assert single["mean"] == 0.75 and single["n"] == 1
    assert math.isnan(single["std"]) and math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
    assert mean_ci([])["n"] == 0 and math.isnan(mean_ci([])["mean"])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(InputError, match="confidence"):
            mean_ci([1.0, 2.0], bad)


def test_format_ci_cells():
    stat = {"mean": 0.5, "ci_low": -0.1, "ci_high": 1.2, "n": 3}
    assert format_ci(stat) == "0.500 [-0.100, 1.200]"
    assert format_ci(stat, clip=(0.0, 1.0)) == "0.500 [0.000, 1.000]"
    assert format_ci(stat, scale=100.0, digits=1, clip=(0.0, 1.0)) == "50.0 [0.0, 100.0]"
    assert format_ci({**stat, "n": 1}) == "0.500"  # one run: no interval
    assert format_ci(None) == format_ci({**stat, "n": 0}) == format_ci({**stat, "mean": float("nan")}) == "n/a"
    assert format_ci(mean_ci([1.0, 2.0, 3.0]), digits=2) == "2.00 [-0.48, 4.48]"
