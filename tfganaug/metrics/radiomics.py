"""Hand-crafted radiomics features inside the foreground, weights-free (NumPy only).

The ``radiomics`` feature extractor of :mod:`tfganaug.metrics.fidelity`, after the Fréchet
Radiomics Distance of Konz et al. 2024 ("Fréchet Radiomic Distance: a versatile metric for
comparing medical imaging datasets"), which fits Gaussians to PyRadiomics features instead of
Inception features. Our features follow PyRadiomics' definitions (van Griethuysen et al.
2017, docs "Radiomic Features"), computed on 2-D slices, vectorised over a batch:

* first order (on intensities in [0, 1]): mean, standard deviation, skewness, kurtosis
  (not excess), minimum, 10th/25th/50th/75th/90th percentiles, maximum, interquartile range,
  range, mean absolute deviation, robust mean absolute deviation (10-90 %), root mean square,
  entropy and uniformity of the grey-level histogram, and the foreground's share of the image;
* GLCM (Haralick et al. 1973): symmetric co-occurrence of quantised grey levels at distance 1
  along 0, 45, 90 and 135 degrees, each matrix normalised, features averaged over the angles
  as PyRadiomics does: contrast, dissimilarity (difference average), inverse difference
  moment (homogeneity), joint energy, joint entropy, correlation, joint average, maximum
  probability, cluster shade;
* GLRLM (Galloway 1975): runs of one grey level along the same four directions: short-run
  emphasis, long-run emphasis, grey-level non-uniformity (normalised), run-length
  non-uniformity (normalised), run percentage, low and high grey-level run emphasis, run
  entropy, averaged over the directions.

Grey levels are ``levels`` equal bins of [0, 1] (a fixed bin width, so one scale for every
image), numbered 1..levels in the formulas. The foreground is every pixel above
``foreground`` (windowed CT: the body, air is 0; skull-stripped MR: the brain); an image with
fewer than 2 such pixels is taken whole. Pairs and runs count only inside the foreground.
Logarithms are base 2. Matrices are returned as counts (tests compare them with hand counts);
the features normalise them.
"""
from __future__ import annotations

import numpy as np

from tfganaug.errors import InputError

RADIOMICS_VERSION = "1"
"""Bumped whenever a feature's definition changes: numbers of two versions are not comparable."""

FIRST_ORDER = ("mean", "std", "skewness", "kurtosis", "minimum", "p10", "p25", "median", "p75", "p90", "maximum",
               "iqr", "range", "mad", "robust_mad", "rms", "entropy", "uniformity", "foreground_share")
GLCM_FEATURES = ("contrast", "dissimilarity", "idm", "joint_energy", "joint_entropy", "correlation",
                 "joint_average", "max_probability", "cluster_shade")
GLRLM_FEATURES = ("sre", "lre", "gln", "rln", "run_percentage", "lglre", "hglre", "run_entropy")
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))
"""(dy, dx) of the 0, 45 (down-right), 90 and 135 degree neighbours (PyRadiomics' 2-D angles)."""

_EPS = np.finfo(np.float64).eps


def feature_names() -> list[str]:
    """Names of the columns of :func:`radiomics_features`, in order."""
    return ([f"firstorder_{n}" for n in FIRST_ORDER] + [f"glcm_{n}" for n in GLCM_FEATURES]
            + [f"glrlm_{n}" for n in GLRLM_FEATURES])


def quantise(images, levels: int) -> np.ndarray:
    """Grey levels 0..levels-1 of intensities in [0, 1]: equal bins, 1.0 in the top one."""
    x = np.asarray(images, np.float64)
    return np.clip(np.floor(x * levels), 0, levels - 1).astype(np.int64)


def foreground_masks(images, threshold: float) -> np.ndarray:
    """Pixels above ``threshold``; an image with fewer than 2 of them is taken whole."""
    x = np.asarray(images)
    mask = x > threshold
    few = mask.reshape(len(x), -1).sum(axis=1) < 2
    mask[few] = True
    return mask


def _check(images, masks) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(images, np.float64)
    if x.ndim != 3 or x.shape[0] == 0:
        raise InputError("images", "a non-empty (N, H, W) array", f"shape {x.shape}")
    m = np.ones(x.shape, bool) if masks is None else np.asarray(masks, bool)
    if m.shape != x.shape:
        raise InputError("foreground masks", f"shape {x.shape} like the images", f"{m.shape}")
    return x, m


# ---------------------------------------------------------------- first order

def first_order_features(images, masks=None, levels: int = 16) -> np.ndarray:
    """(N, len(FIRST_ORDER)) first-order statistics of the foreground intensities."""
    x, m = _check(images, masks)
    n = len(x)
    flat = np.where(m, x, np.nan).reshape(n, -1)
    count = m.reshape(n, -1).sum(axis=1)
    mean = np.nanmean(flat, axis=1)
    dev = flat - mean[:, None]
    var = np.nanmean(dev ** 2, axis=1)
    std = np.sqrt(var)
    flat_var = var <= _EPS
    safe_var = np.where(flat_var, 1.0, var)
    skew = np.where(flat_var, 0.0, np.nanmean(dev ** 3, axis=1) / safe_var ** 1.5)
    kurt = np.where(flat_var, 0.0, np.nanmean(dev ** 4, axis=1) / safe_var ** 2)
    p = np.nanpercentile(flat, [0, 10, 25, 50, 75, 90, 100], axis=1)
    p10, p90 = p[1], p[5]
    robust = np.where((flat >= p10[:, None]) & (flat <= p90[:, None]), flat, np.nan)
    # A foreground of a few pixels can have none between its 10th and 90th percentiles (two
    # pixels: p10 and p90 fall strictly between them): no spread there, 0 rather than NaN.
    inside = np.isfinite(robust).any(axis=1)
    robust = np.where(inside[:, None], robust, 0.0)
    robust_mad = np.nanmean(np.abs(robust - np.nanmean(robust, axis=1)[:, None]), axis=1)
    q = quantise(x, levels)
    image = np.broadcast_to(np.arange(n)[:, None, None], q.shape)
    hist = np.bincount((image * levels + q)[m], minlength=n * levels).reshape(n, levels).astype(np.float64)
    prob = hist / count[:, None]
    entropy = -(prob * np.log2(prob + _EPS)).sum(axis=1)
    return np.stack([mean, std, skew, kurt, p[0], p10, p[2], p[3], p[4], p90, p[6], p[4] - p[2], p[6] - p[0],
                     np.nanmean(np.abs(dev), axis=1), robust_mad, np.sqrt(np.nanmean(flat ** 2, axis=1)),
                     entropy, (prob ** 2).sum(axis=1), count / m[0].size], axis=1)


# ---------------------------------------------------------------- GLCM

def _shifted_pairs(q: np.ndarray, m: np.ndarray, dy: int, dx: int):
    """(grey level at p, grey level at p + (dy, dx), both inside the foreground) for every p."""
    h, w = q.shape[1:]
    ys, yd = slice(0, h - dy), slice(dy, h)
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    return q[:, ys, xs], q[:, yd, xd], m[:, ys, xs] & m[:, yd, xd]


def glcm(quantised, masks=None, offset=(0, 1), levels: int = 16, symmetric: bool = True) -> np.ndarray:
    """(N, levels, levels) co-occurrence counts P[i, j] of level i at p and j at p + offset.

    ``offset`` = (dy, dx) with dy >= 0; ``symmetric`` adds the transpose (the pair counted
    both ways, as PyRadiomics and scikit-image's ``symmetric=True`` do).
    """
    q = np.asarray(quantised, np.int64)
    _, m = _check(q, masks)
    dy, dx = offset
    if dy < 0:
        raise InputError("GLCM offset", "(dy, dx) with dy >= 0", f"{offset}")
    a, b, valid = _shifted_pairs(q, m, dy, dx)
    n = len(q)
    image = np.broadcast_to(np.arange(n)[:, None, None], a.shape)
    index = (image * levels + a) * levels + b
    counts = np.bincount(index[valid], minlength=n * levels * levels).reshape(n, levels, levels)
    return counts + counts.transpose(0, 2, 1) if symmetric else counts


def glcm_features(counts) -> np.ndarray:
    """(N, len(GLCM_FEATURES)) features of (N, L, L) co-occurrence counts (zeros for an empty matrix)."""
    c = np.asarray(counts, np.float64)
    total = c.sum(axis=(1, 2))
    p = c / np.where(total > 0, total, 1.0)[:, None, None]
    levels = c.shape[1]
    i = np.arange(1, levels + 1, dtype=np.float64)[None, :, None]
    j = np.arange(1, levels + 1, dtype=np.float64)[None, None, :]
    mu_x, mu_y = (p * i).sum(axis=(1, 2)), (p * j).sum(axis=(1, 2))
    sd_x = np.sqrt((p * (i - mu_x[:, None, None]) ** 2).sum(axis=(1, 2)))
    sd_y = np.sqrt((p * (j - mu_y[:, None, None]) ** 2).sum(axis=(1, 2)))
    cov = (p * i * j).sum(axis=(1, 2)) - mu_x * mu_y
    # A single grey level has no spread: PyRadiomics sets the correlation to 1 there.
    flat = sd_x * sd_y < 1e-12
    correlation = np.where(flat, 1.0, cov / np.where(flat, 1.0, sd_x * sd_y))
    features = np.stack([
        (p * (i - j) ** 2).sum(axis=(1, 2)),
        (p * np.abs(i - j)).sum(axis=(1, 2)),
        (p / (1.0 + (i - j) ** 2)).sum(axis=(1, 2)),
        (p ** 2).sum(axis=(1, 2)),
        -(p * np.log2(p + _EPS)).sum(axis=(1, 2)),
        correlation,
        mu_x,
        p.max(axis=(1, 2)),
        (p * (i + j - mu_x[:, None, None] - mu_y[:, None, None]) ** 3).sum(axis=(1, 2)),
    ], axis=1)
    features[total == 0] = 0.0
    return features


# ---------------------------------------------------------------- GLRLM

def _lines(q: np.ndarray, m: np.ndarray, direction) -> tuple[np.ndarray, np.ndarray]:
    """The image's lines along ``direction`` as rows: (N, lines, length), padding outside the mask."""
    dy, dx = direction
    if (dy, dx) == (0, 1):
        return q, m
    if (dy, dx) == (1, 0):
        return q.transpose(0, 2, 1), m.transpose(0, 2, 1)
    if (dy, dx) == (1, 1):  # down-right diagonals are down-left ones of the mirrored image
        q, m = q[:, :, ::-1], m[:, :, ::-1]
    elif (dy, dx) != (1, -1):
        raise InputError("GLRLM direction", f"one of {DIRECTIONS}", f"{direction}")
    n, h, w = q.shape
    # Shear: (y, x) -> (y, x + y) puts each down-left diagonal (y + 1, x - 1) in one column.
    sq, sm = np.zeros((n, h, h + w - 1), np.int64), np.zeros((n, h, h + w - 1), bool)
    cols = np.arange(w)[None, :] + np.arange(h)[:, None]
    rows = np.broadcast_to(np.arange(h)[:, None], cols.shape)
    sq[:, rows, cols], sm[:, rows, cols] = q, m
    return sq.transpose(0, 2, 1), sm.transpose(0, 2, 1)


def glrlm(quantised, masks=None, direction=(0, 1), levels: int = 16) -> np.ndarray:
    """(N, levels, max run) run-length counts R[i, r-1]: runs of level i of length r along ``direction``."""
    q = np.asarray(quantised, np.int64)
    _, m = _check(q, masks)
    lines_q, lines_m = _lines(q, m, direction)
    n, rows, length = lines_q.shape
    # One background cell after every line, so no run crosses from one line into the next.
    v = np.full((n, rows, length + 1), -1, np.int64)
    v[:, :, :length] = np.where(lines_m, lines_q, -1)
    v = v.ravel()
    prev = np.concatenate([[-1], v[:-1]])
    nxt = np.concatenate([v[1:], [-1]])
    starts = np.flatnonzero((v >= 0) & (v != prev))
    ends = np.flatnonzero((v >= 0) & (v != nxt))
    run = ends - starts + 1
    max_run = max(q.shape[1:])
    image = starts // (rows * (length + 1))
    index = (image * levels + v[starts]) * max_run + run - 1
    return np.bincount(index, minlength=n * levels * max_run).reshape(n, levels, max_run)


def glrlm_features(counts, n_pixels) -> np.ndarray:
    """(N, len(GLRLM_FEATURES)) features of (N, L, R) run-length counts; ``n_pixels`` per image
    (the foreground size, for the run percentage)."""
    c = np.asarray(counts, np.float64)
    runs = c.sum(axis=(1, 2))
    safe = np.where(runs > 0, runs, 1.0)
    i = np.arange(1, c.shape[1] + 1, dtype=np.float64)[None, :, None]
    r = np.arange(1, c.shape[2] + 1, dtype=np.float64)[None, None, :]
    p = c / safe[:, None, None]
    features = np.stack([
        (c / r ** 2).sum(axis=(1, 2)) / safe,
        (c * r ** 2).sum(axis=(1, 2)) / safe,
        (c.sum(axis=2) ** 2).sum(axis=1) / safe ** 2,
        (c.sum(axis=1) ** 2).sum(axis=1) / safe ** 2,
        runs / np.maximum(np.asarray(n_pixels, np.float64), 1.0),
        (c / i ** 2).sum(axis=(1, 2)) / safe,
        (c * i ** 2).sum(axis=(1, 2)) / safe,
        -(p * np.log2(p + _EPS)).sum(axis=(1, 2)),
    ], axis=1)
    features[runs == 0] = 0.0
    return features


# ---------------------------------------------------------------- all of them

def radiomics_features(images, levels: int = 16, foreground: float = 0.02) -> np.ndarray:
    """(N, 36) features (:func:`feature_names`) of grey images (N, H, W) in [0, 1]."""
    x, _ = _check(images, None)
    m = foreground_masks(x, foreground)
    q = quantise(x, levels)
    texture = np.mean([glcm_features(glcm(q, m, d, levels)) for d in DIRECTIONS], axis=0)
    n_pixels = m.reshape(len(x), -1).sum(axis=1)
    runs = np.mean([glrlm_features(glrlm(q, m, d, levels), n_pixels) for d in DIRECTIONS], axis=0)
    return np.concatenate([first_order_features(x, m, levels), texture, runs], axis=1)
