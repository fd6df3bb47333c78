"""Memorisation checks: are generated images copies of training images?

:func:`memorisation_audit` (what `tfganaug evaluate --fidelity` reports) measures synthetic
samples against held-out real ones; :func:`memorisation_report` against the spread of the
training set itself.

Both are distance-to-closest-record tests in the spirit of Meehan et al. 2020 ("A
non-parametric test to detect data-copying in generative models"): each fake's L2 distance
to its nearest training image is compared with held-out real images' distances (audit) or
with how close training images are to each other (leave-one-out nearest-neighbour
distances, report). Both work on pixels or on features (e.g. from
:func:`tfganaug.metrics.fidelity.get_extractor`); distances are computed in row blocks so
5000 x 5000 comparisons never hold the full distance matrix.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tfganaug.errors import InputError


def as_flat_samples(x, what: str) -> np.ndarray:
    """``x`` (n, ...) as a float64 (n, d) array, one flattened sample per row."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(what, "a non-empty (n_samples, ...) array", f"shape {x.shape}")
    return x.reshape(x.shape[0], -1)


def distance_blocks(a: np.ndarray, b: np.ndarray, batch_size: int = 512) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D)`` with ``D[i, j] = ||a[start + i] - b[j]||_2`` for row blocks of ``a``.

    ``a`` and ``b`` are (n, d) float arrays; each block is ``batch_size`` x len(b).
    """
    a_sq, b_sq = (a * a).sum(axis=1), (b * b).sum(axis=1)
    for start in range(0, a.shape[0], batch_size):
        block = a[start:start + batch_size]
        sq = a_sq[start:start + batch_size, None] + b_sq[None, :] - 2.0 * block @ b.T
        yield start, np.sqrt(np.maximum(sq, 0.0))


def _exact_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ||a_i - b_i||, free of the cancellation in the block formula (exact copies give 0)."""
    return np.linalg.norm(a - b, axis=1)


def _check_pair(real, fake) -> tuple[np.ndarray, np.ndarray]:
    real, fake = as_flat_samples(real, "real samples"), as_flat_samples(fake, "fake samples")
    if real.shape[1] != fake.shape[1]:
        raise InputError("fake samples", f"{real.shape[1]} values per sample like the real ones",
                         f"{fake.shape[1]}")
    return real, fake


def nearest_real_distances(real, fake, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each fake sample, the L2 distance to its nearest real sample and that sample's index."""
    real, fake = _check_pair(real, fake)
    index = np.empty(fake.shape[0], dtype=np.int64)
    for start, block in distance_blocks(fake, real, batch_size):
        index[start:start + block.shape[0]] = block.argmin(axis=1)
    return _exact_distances(fake, real[index]), index


def leave_one_out_distances(real, batch_size: int = 512) -> np.ndarray:
    """For each real sample, the L2 distance to its nearest *other* real sample."""
    real = as_flat_samples(real, "real samples")
    if real.shape[0] < 2:
        raise InputError("real samples", "at least 2 samples", f"{real.shape[0]}")
    index = np.empty(real.shape[0], dtype=np.int64)
    for start, block in distance_blocks(real, real, batch_size):
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = np.inf
        index[start:start + block.shape[0]] = block.argmin(axis=1)
    return _exact_distances(real, real[index])


def memorisation_report(real, fake, threshold_quantile: float = 0.01, num_pairs: int = 10,
                        batch_size: int = 512) -> dict:
    """Fraction of fakes closer to a training sample than real samples usually are to each other.

    The threshold is the ``threshold_quantile`` quantile of the real-to-real leave-one-out
    nearest-neighbour distances; a fake at or below it is flagged (``<=`` so that exact
    copies count even when the training set holds duplicates). Returns ``dict(threshold,
    threshold_quantile, fraction_below, n_below, n_real, n_fake, median_real_nn,
    median_fake_nn, closest_pairs)``, ``closest_pairs`` listing the ``num_pairs`` nearest
    (fake_index, real_index, distance) records, nearest first, for visual inspection.
    """
    if not 0 <= threshold_quantile <= 1:
        raise InputError("threshold_quantile", "a number in [0, 1]", repr(threshold_quantile))
    real, fake = _check_pair(real, fake)
    real_nn = leave_one_out_distances(real, batch_size)
    fake_nn, nearest = nearest_real_distances(real, fake, batch_size)
    threshold = float(np.quantile(real_nn, threshold_quantile))
    below = fake_nn <= threshold
    order = np.argsort(fake_nn, kind="stable")[:num_pairs]
    return {
        "threshold": threshold,
        "threshold_quantile": threshold_quantile,
        "fraction_below": float(below.mean()),
        "n_below": int(below.sum()),
        "n_real": int(real.shape[0]),
        "n_fake": int(fake.shape[0]),
        "median_real_nn": float(np.median(real_nn)),
        "median_fake_nn": float(np.median(fake_nn)),
        "closest_pairs": [{"fake_index": int(i), "real_index": int(nearest[i]), "distance": float(fake_nn[i])}
                          for i in order],
    }


def memorisation_audit(train, heldout, synthetic, quantile: float = 0.05, num_pairs: int = 8,
                       alpha: float = 0.01, batch_size: int = 512) -> dict:
    """Are synthetic samples closer to the training set than new real samples are?

    Each synthetic sample's nearest-neighbour distance to the training set is compared with
    the same distance for held-out real samples (real data the generator never saw, the
    reference for "as close as an unseen patient is"; Yoon et al. 2020's distance-to-closest-
    record test, Meehan et al. 2020's data-copying idea). The threshold is the ``quantile``
    quantile of the held-out distances, so about ``quantile`` of new real samples fall at or
    below it. A set is ``flagged`` when its share below the threshold exceeds ``quantile``
    beyond chance: a one-sided binomial test at level ``alpha`` (``p_value``). Samples are
    flattened: pixels or features (e.g. of the domain encoder). Returns ``dict(threshold,
    quantile, fraction_below, n_below, p_value, flagged, n_train, n_heldout, n_synthetic,
    median_heldout_nn, median_synthetic_nn, closest_pairs)``, ``closest_pairs`` the
    ``num_pairs`` (synthetic_index, train_index, distance) records nearest first.
    """
    from scipy.stats import binomtest

    if not 0 < quantile < 1:
        raise InputError("quantile", "a number in (0, 1)", repr(quantile))
    train, synthetic = _check_pair(train, synthetic)
    _, heldout = _check_pair(train, heldout)
    heldout_nn, _ = nearest_real_distances(train, heldout, batch_size)
    synthetic_nn, nearest = nearest_real_distances(train, synthetic, batch_size)
    threshold = float(np.quantile(heldout_nn, quantile))
    below = synthetic_nn <= threshold
    p_value = float(binomtest(int(below.sum()), len(below), quantile, alternative="greater").pvalue)
    order = np.argsort(synthetic_nn, kind="stable")[:num_pairs]
    return {
        "threshold": threshold, "quantile": quantile,
        "fraction_below": float(below.mean()), "n_below": int(below.sum()),
        "p_value": p_value, "alpha": alpha, "flagged": bool(p_value < alpha),
        "n_train": int(len(train)), "n_heldout": int(len(heldout)), "n_synthetic": int(len(synthetic)),
        "median_heldout_nn": float(np.median(heldout_nn)), "median_synthetic_nn": float(np.median(synthetic_nn)),
        "closest_pairs": [{"synthetic_index": int(i), "train_index": int(nearest[i]), "distance": float(synthetic_nn[i])}
                          for i in order],
    }


def mean_pairwise_distance(images, blur_sigma: float = 0.0, max_samples: int = 500, seed: int = 0) -> float:
    """Mean L2 distance over all distinct pairs of (at most `max_samples`) images, after an
    optional Gaussian blur of `blur_sigma` pixels (so that independent pixel noise, which
    makes any two images differ, counts less than differences of shape)."""
    from scipy import ndimage
    x = np.asarray(images, np.float64)
    if len(x) < 2:
        raise InputError("images", "at least two images", f"{len(x)}")
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    if blur_sigma > 0:
        sigma = (0, blur_sigma, blur_sigma) + (0,) * (x.ndim - 3)
        x = ndimage.gaussian_filter(x, sigma)
    from scipy.spatial.distance import pdist
    return float(pdist(x.reshape(len(x), -1)).mean())


def intra_class_diversity(synthetic, synthetic_labels, real, real_labels, num_classes: int,
                          blur_sigma: float = 1.0) -> dict:
    """Per class, the synthetic images' mean pairwise distance divided by the real images'
    (:func:`mean_pairwise_distance`): about 1 when a generator varies as much as the data, near 0
    when it draws one image per class (mode collapse, which a classifier-based check misses).
    Returns ``per_class`` (NaN for a class with fewer than two images on either side) and
    their ``mean``."""
    synthetic, real = np.asarray(synthetic), np.asarray(real)
    synthetic_labels, real_labels = np.asarray(synthetic_labels), np.asarray(real_labels)
    ratios = []
    for c in range(num_classes):
        s, r = synthetic[synthetic_labels == c], real[real_labels == c]
        if len(s) < 2 or len(r) < 2:
            ratios.append(float("nan"))
            continue
        ratios.append(mean_pairwise_distance(s, blur_sigma) / max(mean_pairwise_distance(r, blur_sigma), 1e-12))
    kept = [v for v in ratios if np.isfinite(v)]
    return {"per_class": ratios, "mean": float(np.mean(kept)) if kept else float("nan"), "blur_sigma": blur_sigma}
