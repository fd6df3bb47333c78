"""Histogram-equalisation augmentation of Sandfort et al. 2019 (MATLAB ``histeq(I, hgram)``).

Sandfort et al. (Sci. Rep. 9, 16884, Methods, "Histogram equalization augmentation") shift
the histogram of contrast CTs toward a non-contrast CT histogram "using a Python
implementation of the MATLAB function histeq", as a cheap baseline to the CycleGAN. With a
target histogram ``hgram``, MATLAB's ``histeq`` picks the monotone grey-level transform
that maps the image's cumulative histogram onto the target's.

Here the same idea on HU without 8-bit quantisation:

* :func:`reference_histogram`: the target histogram of one or many (non-contrast) images,
  ``bins`` equal bins over ``value_range`` (values outside are clipped into the end bins),
  normalised to sum 1; optionally only voxels inside a mask count.
* :func:`match_histogram`: each value ``v`` gets its quantile ``q(v)`` in the image's own
  empirical distribution (tied values share the mid-quantile of their tie, so equal inputs
  give equal outputs) and is sent to ``C_ref^-1(q)``, the inverse of the target's
  cumulative histogram, linear within a bin. The mapping is a non-decreasing function of
  the value; for a continuous input the output's histogram equals the target up to bin
  quantisation, and matching an image onto its own histogram returns it to within a bin.
  With a mask, only masked voxels define ``q``; the mapping is then applied to every voxel
  (values between the masked ones interpolated, beyond them clamped).
* :func:`histeq_augment`: ``(1 - strength) * image + strength * matched``: a contrast slice
  moved part or all of the way to the non-contrast reference.
* :func:`random_histeq_tf`: the training augmentation (``train-seg --augment histeq``): with
  probability 0.5, drawn from the sample's stateless seed, :func:`histeq_augment` inside
  ``tf.numpy_function``; otherwise the image unchanged.

Pure NumPy (TensorFlow only inside :func:`random_histeq_tf`).
"""
from __future__ import annotations

import numpy as np

from tfganaug.errors import InputError

HU_RANGE = (-1024.0, 1024.0)
"""Default value range: air to dense contrast / bone (IRCADb saturates at 1023 HU)."""


def reference_histogram(images, bins: int = 256, value_range=HU_RANGE, mask=None,
                        body_threshold_hu: float | None = None) -> np.ndarray:
    """Target histogram (float64, shape ``(bins,)``, sums to 1) of one array or many.

    ``images`` is an array (a slice or a volume) or an iterable of arrays, e.g. the
    non-contrast CTs; ``mask`` is a boolean array of the same shape (or one per image):
    only voxels inside count. ``body_threshold_hu`` additionally keeps only voxels above
    it (e.g. -500 to leave out the air around the patient); pass the same threshold to
    :func:`histeq_augment`.
    """
    lo, hi = _check_range(value_range)
    if int(bins) < 2:
        raise InputError("histogram bins", "an integer >= 2", repr(bins))
    arrays = [np.asarray(images)] if isinstance(images, np.ndarray) else [np.asarray(a) for a in images]
    if mask is None:
        masks = [None] * len(arrays)
    elif isinstance(mask, np.ndarray):
        masks = [mask] * len(arrays) if len(arrays) == 1 else None
        if masks is None:
            raise InputError("reference mask", "one mask per image", "a single array for "
                             f"{len(arrays)} images")
    else:
        masks = list(mask)
    if not arrays or len(masks) != len(arrays):
        raise InputError("reference images", "at least one image (and one mask per image)",
                         f"{len(arrays)} images, {len(masks)} masks")
    counts = np.zeros(int(bins), np.float64)
    for array, m in zip(arrays, masks):
        values = _select(array, m, body_threshold_hu)
        counts += np.histogram(np.clip(values, lo, hi), bins=int(bins), range=(lo, hi))[0]
    if counts.sum() <= 0:
        raise InputError("reference images", "at least one voxel inside the mask", "none")
    return counts / counts.sum()


def match_histogram(image, ref_hist, value_range=HU_RANGE, mask=None) -> np.ndarray:
    """Map ``image`` monotonically so that its histogram becomes ``ref_hist`` (MATLAB histeq).

    ``ref_hist`` holds bin weights over ``value_range`` (any non-negative scale, e.g. from
    :func:`reference_histogram`); ``mask`` (boolean, image shape) selects the voxels that
    define the image's cumulative histogram. Returns float32 (float64 for float64 input) of
    the image's shape with values in ``value_range``.
    """
    image = np.asarray(image)
    levels, quantiles = _source_quantiles(image, mask)
    mapped = _inverse_cdf(np.interp(image, levels, quantiles), ref_hist, value_range)
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    return mapped.astype(dtype)


def histogram_mapping(image, ref_hist, value_range=HU_RANGE, mask=None):
    """The transform :func:`match_histogram` applies: ``(levels, mapped_levels)``.

    ``levels`` are the distinct (masked) input values, ascending; ``mapped_levels`` their
    outputs, non-decreasing: the monotone look-up table of MATLAB's ``histeq``.
    """
    levels, quantiles = _source_quantiles(np.asarray(image), mask)
    return levels, _inverse_cdf(quantiles, ref_hist, value_range)


def histeq_augment(image_hu, ref_hist, strength: float = 1.0, value_range=HU_RANGE, mask=None,
                   body_threshold_hu: float | None = None) -> np.ndarray:
    """Shift a contrast CT slice's histogram toward a non-contrast reference.

    ``strength`` in [0, 1] blends the original (0) and the fully matched image (1); drawing
    it per sample gives a continuum of pseudo-non-contrast images. Voxels inside ``mask``
    (default: all, or those above ``body_threshold_hu``) define the mapping and are changed;
    the others keep their values, so with a body threshold the air stays air. Returns float32.
    """
    if not 0.0 <= float(strength) <= 1.0:
        raise InputError("histeq strength", "a number in [0, 1]", repr(strength))
    image = np.asarray(image_hu, np.float32)
    if mask is None:
        mask = np.ones(image.shape, bool) if body_threshold_hu is None else image > body_threshold_hu
    else:
        mask = np.asarray(mask, bool)
        if body_threshold_hu is not None:
            mask = mask & (image > body_threshold_hu)
    if mask.shape != image.shape:
        raise InputError("histeq mask", f"the image's shape {image.shape}", f"shape {mask.shape}")
    if not mask.any():
        return image.copy()
    matched = match_histogram(image, ref_hist, value_range, mask=mask)
    out = image.copy()
    out[mask] = (1.0 - strength) * image[mask] + strength * matched[mask]
    return out


def random_histeq_tf(image, seed, ref_hist, value_range=(0.0, 1.0), probability: float = 0.5,
                     strength: float = 1.0):
    """:func:`histeq_augment` on a random share of the training samples, inside a ``tf.data`` map.

    ``image`` is a float32 tensor of static shape (a slice (H, W, C) or a window (D, H, W, C),
    in ``value_range``: the windowed [0, 1] images ``train-seg`` trains on), ``seed`` the
    sample's stateless seed (shape (2,)): the image is matched when
    ``stateless_uniform([], fold_in(seed, 7)) < probability``, so one seed always makes the
    same choice and the geometric augmentation that follows can use ``seed`` itself. The whole
    image defines the mapping (no mask), as MATLAB's ``histeq`` on a slice. Returns float32.
    """
    import tensorflow as tf

    def numpy_histeq(x):
        return histeq_augment(x, ref_hist, strength, value_range)

    image = tf.convert_to_tensor(image, tf.float32)

    def matched():
        out = tf.numpy_function(numpy_histeq, [image], tf.float32, stateful=False)
        return tf.ensure_shape(out, image.shape)

    use = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(seed, 7)) < probability
    return tf.cond(use, matched, lambda: image)


# --- internals ------------------------------------------------------------------------------

def _check_range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise InputError("histogram value range", "(low, high) with low < high", repr(tuple(value_range)))
    return lo, hi


def _select(array: np.ndarray, mask, threshold) -> np.ndarray:
    keep = np.ones(array.shape, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != array.shape:
        raise InputError("histogram mask", f"the image's shape {array.shape}", f"shape {keep.shape}")
    if threshold is not None:
        keep = keep & (array > threshold)
    values = array[keep].astype(np.float64)
    if values.size and not np.all(np.isfinite(values)):
        raise InputError("histogram image", "finite values", "NaN or Inf")
    return values


def _source_quantiles(image: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of the (masked) image and their mid-quantiles in (0, 1)."""
    values = _select(image, mask, None)
    if values.size == 0:
        raise InputError("histogram matching", "at least one voxel inside the mask", "none")
    levels, counts = np.unique(values, return_counts=True)
    below = np.cumsum(counts) - counts
    return levels, (below + 0.5 * counts) / values.size


def _inverse_cdf(q: np.ndarray, ref_hist, value_range) -> np.ndarray:
    """Values whose position in the target's cumulative histogram is ``q`` (linear in a bin)."""
    lo, hi = _check_range(value_range)
    weights = np.asarray(ref_hist, np.float64)
    if weights.ndim != 1 or weights.size < 2 or not np.all(np.isfinite(weights)) \
            or weights.min() < 0 or weights.sum() <= 0:
        raise InputError("target histogram", "a 1-D array of >= 2 non-negative finite bin weights "
                         "with a positive sum", f"shape {weights.shape}, sum {weights.sum()}")
    cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    edges = np.linspace(lo, hi, weights.size + 1)
    q = np.clip(np.asarray(q, np.float64), 0.0, 1.0)
    # Bin k holds the quantiles (cdf[k], cdf[k+1]]; empty bins are never chosen.
    k = np.clip(np.searchsorted(cdf, q, side="left") - 1, 0, weights.size - 1)
    k = np.where(weights[k] > 0, k, np.searchsorted(cdf, q, side="right") - 1)  # q == 0 at an empty start
    k = np.clip(k, 0, weights.size - 1)
    width = np.where(weights[k] > 0, cdf[k + 1] - cdf[k], 1.0)
    frac = np.clip((q - cdf[k]) / width, 0.0, 1.0)
    return edges[k] + frac * (edges[k + 1] - edges[k])
