"""Classification metrics as pure NumPy functions of label and score arrays.

Frid-Adar et al. 2018 ("GAN-based synthetic medical image augmentation for increased CNN
performance in liver lesion classification") report sensitivity and specificity for a
3-class problem (cyst, metastasis, haemangioma). With more than two classes those are
macro averages of the one-vs-rest values, which is what :func:`per_class_metrics` returns
as ``macro_sensitivity`` and ``macro_specificity``.

Convention: a ratio whose denominator is zero (0/0, e.g. the sensitivity of a class that
never occurs) is NaN, not 0, so that an undefined value cannot pass for a poor one. Macro
averages skip NaN entries and are NaN only when every entry is.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats

from tfganaug.errors import InputError
from tfganaug.metrics.stats import check_confidence, nan_mean


def as_label_array(y, what: str, num_classes: int) -> np.ndarray:
    """``y`` as an integer array whose values lie in ``[0, num_classes)``; InputError otherwise."""
    y = np.asarray(y)
    if y.dtype.kind not in "biu":
        raise InputError(what, "integer class labels", f"dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(what, f"labels in [0, {num_classes - 1}]",
                         f"values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _check_pair(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = as_label_array(y_true, "y_true", num_classes)
    y_pred = as_label_array(y_pred, "y_pred", num_classes)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise InputError("y_true and y_pred", "1-D arrays of equal length",
                         f"shapes {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def safe_ratio(num, den) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den == 0``."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of samples with true class ``i`` predicted as ``j`` (int64, K x K)."""
    y_true, y_pred = _check_pair(y_true, y_pred, num_classes)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _one_vs_rest_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn}


def per_class_metrics(y_true, y_pred, num_classes: int,
                      class_names: Sequence[str] | None = None) -> dict:
    """One-vs-rest metrics per class plus overall and macro summaries.

    Per class (keyed by name in ``result["per_class"]``): ``sensitivity`` (recall,
    TP/(TP+FN)), ``specificity`` (TN/(TN+FP)), ``precision`` (TP/(TP+FP)), ``f1``
    (van Rijsbergen 1979: 2TP/(2TP+FP+FN), which is 0 rather than NaN when a present class is never predicted)
    and ``support`` (number of true samples).

    Overall: ``accuracy``; ``balanced_accuracy`` (mean per-class recall, Brodersen et al.
    2010, which equals ``macro_sensitivity``); ``macro_sensitivity`` and
    ``macro_specificity`` (the figures Frid-Adar et al. 2018 report for their 3 classes);
    ``confusion_matrix`` as nested lists (rows true, columns predicted); ``class_names``
    and ``n``. Undefined ratios are NaN and skipped by the macro averages.
    """
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise InputError("class_names", f"{num_classes} names", f"{len(names)}: {names}")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    c = _one_vs_rest_counts(cm)
    sens = safe_ratio(c["tp"], c["tp"] + c["fn"])
    spec = safe_ratio(c["tn"], c["tn"] + c["fp"])
    prec = safe_ratio(c["tp"], c["tp"] + c["fp"])
    f1 = safe_ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    per_class = {
        name: {"sensitivity": float(sens[i]), "specificity": float(spec[i]),
               "precision": float(prec[i]), "f1": float(f1[i]), "support": int(c["tp"][i] + c["fn"][i])}
        for i, name in enumerate(names)
    }
    n = int(cm.sum())
    return {
        "per_class": per_class,
        "accuracy": float(safe_ratio(np.trace(cm), n)),
        "balanced_accuracy": nan_mean(sens),
        "macro_sensitivity": nan_mean(sens),
        "macro_specificity": nan_mean(spec),
        "confusion_matrix": cm.tolist(),
        "class_names": names,
        "n": n,
    }


def roc_auc_binary(is_positive, scores) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (Hanley & McNeil 1982).

    AUC = (R+ - n+(n+ + 1)/2) / (n+ n-), with R+ the sum of the positives' ranks among all
    scores; ties get average ranks (``scipy.stats.rankdata``), so a tied positive-negative
    pair counts 1/2. NaN when either class is absent.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if is_positive.shape != scores.shape or scores.ndim != 1:
        raise InputError("labels and scores", "1-D arrays of equal length",
                         f"shapes {is_positive.shape} and {scores.shape}")
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = stats.rankdata(scores)[is_positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _check_probs(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InputError("probs", "a (n_samples, n_classes >= 2) array of scores", f"shape {probs.shape}")
    y_true = as_label_array(y_true, "y_true", probs.shape[1])
    if y_true.shape != probs.shape[:1]:
        raise InputError("y_true", f"{probs.shape[0]} labels, one per row of probs", f"shape {y_true.shape}")
    return y_true, probs


def roc_auc_per_class(y_true, probs) -> np.ndarray:
    """One-vs-rest AUC of each class (column ``c`` of ``probs`` scores class ``c``); NaN if absent."""
    y_true, probs = _check_probs(y_true, probs)
    return np.array([roc_auc_binary(y_true == c, probs[:, c]) for c in range(probs.shape[1])])


def roc_auc_ovr(y_true, probs) -> float:
    """One-vs-rest macro AUC (Provost & Domingos 2000): mean of :func:`roc_auc_per_class`.

    Classes with no positive or no negative sample are skipped (their AUC is undefined).
    """
    return nan_mean(roc_auc_per_class(y_true, probs))


def bootstrap_ci(y_true, y_pred, metric_fn: Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile bootstrap interval of ``metric_fn(y_true, y_pred)`` over samples.

    Efron & Tibshirani 1993, ch. 13: resample the n (label, prediction) pairs with
    replacement ``n_boot`` times and take the (1-confidence)/2 and (1+confidence)/2
    quantiles of the metric. ``y_pred`` may be labels or a (n, K) score array; rows are
    resampled together. Resamples where the metric is NaN (e.g. AUC with a class missing)
    are dropped and ``n_valid`` says how many remained. Returns ``dict(estimate, ci_low,
    ci_high, n_boot, n_valid, confidence)``.
    """
    check_confidence(confidence)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise InputError("y_true and y_pred", "non-empty arrays with one row per sample",
                         f"lengths {len(y_true)} and {len(y_pred)}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))
    boot = np.array([metric_fn(y_true[i], y_pred[i]) for i in idx], dtype=np.float64)
    boot = boot[~np.isnan(boot)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan)
    return {"estimate": float(metric_fn(y_true, y_pred)), "ci_low": float(low), "ci_high": float(high),
            "n_boot": int(n_boot), "n_valid": int(boot.size), "confidence": confidence}


def conditional_fidelity(intended, predicted_synthetic, true_real, predicted_real, num_classes: int) -> dict:
    """How often a classifier trained on real data gives synthetic samples their intended class,
    against how often it gives held-out real samples theirs (issue 13's yardstick for class-
    conditional generators: DCGAN per class, ACGAN).

    Returns ``synthetic_accuracy`` and ``real_accuracy`` (overall), ``ratio`` = synthetic /
    real (NaN when the real accuracy is 0), and the same per class (``per_class_synthetic``,
    ``per_class_real``; NaN for a class with no samples).
    """
    intended, predicted_synthetic = np.asarray(intended), np.asarray(predicted_synthetic)
    true_real, predicted_real = np.asarray(true_real), np.asarray(predicted_real)
    if intended.shape != predicted_synthetic.shape or true_real.shape != predicted_real.shape:
        raise ValueError("expected labels and predictions of the same length")
    if intended.size == 0 or true_real.size == 0:
        raise ValueError("expected at least one synthetic and one real sample")

    def per_class(y, p):
        return [float((p[y == c] == c).mean()) if (y == c).any() else float("nan") for c in range(num_classes)]

    synthetic, real = float((intended == predicted_synthetic).mean()), float((true_real == predicted_real).mean())
    return {"synthetic_accuracy": synthetic, "real_accuracy": real,
            "ratio": synthetic / real if real > 0 else float("nan"),
            "per_class_synthetic": per_class(intended, predicted_synthetic),
            "per_class_real": per_class(true_real, predicted_real),
            "n_synthetic": int(intended.size), "n_real": int(true_real.size)}
