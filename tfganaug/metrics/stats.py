"""Statistics shared by every study and report: NaN-aware means and Student-t intervals over runs.

* :func:`nan_mean`: the mean of the defined values. Undefined scores are NaN throughout
  tfganaug (a Dice of a class absent from both maps, a sensitivity of a class that never
  occurs), so a mean skips them instead of counting them as 0.
* :func:`mean_ci`: mean and Student-t confidence interval over independent runs (seeds or
  folds): ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)``.
* :func:`format_ci`: one :func:`mean_ci` result as the ``mean [low, high]`` cell of a table.

Pure NumPy / SciPy; no TensorFlow.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from tfganaug.errors import InputError


def nan_mean(values) -> float:
    """Mean of the non-NaN entries; NaN (without a RuntimeWarning) if there are none."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def check_confidence(confidence: float) -> None:
    """InputError unless ``0 < confidence < 1``."""
    if not 0 < confidence < 1:
        raise InputError("confidence", "a number in (0, 1)", repr(confidence))


def mean_ci(values, confidence: float = 0.95) -> dict:
    """Mean and Student-t confidence interval over independent runs (seeds or folds).

    ``mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof=1). NaN values are dropped and counted in ``n_nan``; with fewer than two
    remaining values ``std`` and the bounds are NaN. Returns ``dict(mean, std, ci_low,
    ci_high, n, n_nan, confidence)``.
    """
    check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64).ravel()
    kept = values[~np.isnan(values)]
    n = kept.size
    mean = float(kept.mean()) if n else float("nan")
    std = float(kept.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half,
            "n": int(n), "n_nan": int(values.size - n), "confidence": confidence}


def format_ci(stat: dict | None, scale: float = 1.0, digits: int = 3, clip: tuple | None = None) -> str:
    """A :func:`mean_ci` result as "mean [low, high]" ("mean" for one run, "n/a" for none).

    `clip` bounds the t-interval where the quantity lives (e.g. (0, 1) for Dice or accuracy);
    `scale` multiplies everything (100 for percent)."""
    if not stat or stat["n"] == 0 or not np.isfinite(stat["mean"]):
        return "n/a"
    if stat["n"] < 2:
        return f"{scale * stat['mean']:.{digits}f}"
    low, high = stat["ci_low"], stat["ci_high"]
    if clip is not None:
        low, high = max(clip[0], low), min(clip[1], high)
    return f"{scale * stat['mean']:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
