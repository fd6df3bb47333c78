"""CT preprocessing: HU windowing, intensity normalisation, ROI crops, resizing, resampling.

``window_hu``, ``normalize_minmax`` and ``normalize_zscore`` take NumPy arrays (and return
NumPy) or TensorFlow tensors (and return tensors, graph-safe inside ``tf.data.map``): they
are written once against the NumPy API and run on ``tf.experimental.numpy`` for tensors.
The geometric functions (``crop_roi``, ``resize_bicubic``, ``resample_spacing``) are NumPy
only; they run once per case while preparing data, not per training step.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.ndimage
from PIL import Image

from tfganaug.errors import ConfigError, InputError

hu_presets: dict[str, tuple[float, float]] = {
    "abdomen": (400.0, 40.0),
    "liver": (150.0, 30.0),
    "kits": (400.0, 0.0),
    "soft_tissue": (350.0, 50.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
}
"""Display windows as ``(width, level)`` in HU, the argument order of :func:`window_hu`.

Standard radiology windows; ``"kits"`` is this project's default for the KiTS Pix2Pix study.
"""


def _xp(x):
    """NumPy for arrays and Python numbers, TF's NumPy API for tensors (imported only then)."""
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np
    import tensorflow.experimental.numpy as tnp

    return tnp


def window_hu(image, width: float = 400.0, level: float = 0.0):
    """Map HU in ``[level - width/2, level + width/2]`` linearly onto [0, 1] as float32.

    Values outside the window are clipped, so air, bone and contrast saturate instead of
    stretching the range a GAN has to learn.
    """
    if width <= 0:
        raise ConfigError(f"window width must be > 0 HU, got {width}")
    xp = _xp(image)
    x = xp.asarray(image, dtype=xp.float32)
    return xp.clip((x - (level - width / 2)) / width, 0.0, 1.0)


def normalize_minmax(x, eps: float = 1e-8):
    """Scale to [0, 1] by the array's own min and max; a constant array becomes 0."""
    xp = _xp(x)
    x = xp.asarray(x, dtype=xp.float32)
    low, high = xp.min(x), xp.max(x)
    return (x - low) / (high - low + eps)


def normalize_zscore(x, mask=None, eps: float = 1e-8):
    """Subtract the mean and divide by the standard deviation, both taken inside ``mask``.

    MR intensities have no absolute unit, so each scan is standardised; statistics come from
    the brain/body mask (BraTS convention) so the background does not dominate them.
    Sums are accumulated in float64; the result is float32.
    """
    xp = _xp(x)
    x = xp.asarray(x, dtype=xp.float64)
    weight = xp.ones_like(x) if mask is None else xp.asarray(mask, dtype=xp.float64)
    count = xp.sum(weight)
    if xp is np and count == 0:
        raise InputError("mask", "at least one foreground voxel", "an empty mask")
    mean = xp.sum(x * weight) / count
    std = xp.sqrt(xp.sum(weight * (x - mean) ** 2) / count)
    return xp.asarray((x - mean) / (std + eps), dtype=xp.float32)


def resize_bicubic(image, size: int | Sequence[int]) -> np.ndarray:
    """Resize a 2-D ROI to ``size`` (height, width) with Pillow's bicubic filter on float32.

    Frid-Adar et al. resized lesion ROIs to 64x64 with bicubic interpolation. Pillow's
    ``BICUBIC`` (Keys kernel, a = -0.5, widened when shrinking so it antialiases like MATLAB's
    ``imresize``) is applied in 'F' mode, so intensities are not quantised to 8 bits; it
    equals ``tf.image.resize(..., "bicubic", antialias=True)`` to about 1e-5 of the
    intensity range.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    roi = np.ascontiguousarray(image, dtype=np.float32)
    if roi.ndim != 2:
        raise InputError("ROI", "a 2-D array", f"shape {roi.shape}")
    resized = Image.fromarray(roi).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def crop_roi(image, center_yx: Sequence[int], size: Sequence[int] | int,
             pad_mode: str = "constant") -> np.ndarray:
    """Crop a box of ``size`` centred on ``center_yx``; pad where the box leaves the image.

    The box starts at ``center - size // 2`` on the leading ``len(center_yx)`` axes ((y, x) or
    (z, y, x)); trailing axes such as channels are kept whole. ``pad_mode`` is ``"constant"``
    (zeros) or ``"edge"`` (repeat the border), as in :func:`numpy.pad`. Lesions near the
    body outline still yield full-size ROIs this way.
    """
    image = np.asarray(image)
    size = (size,) * len(center_yx) if isinstance(size, int) else tuple(size)
    starts = [int(c) - s // 2 for c, s in zip(center_yx, size)]
    inside = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(starts, size, image.shape))
    region = image[inside]
    if 0 in region.shape[:len(size)]:
        raise InputError("ROI centre", f"a box of size {size} overlapping the image {image.shape}",
                         f"centre {tuple(center_yx)}")
    pads = [(max(0, -a), max(0, a + s - n)) for a, s, n in zip(starts, size, image.shape)]
    return np.pad(region, pads + [(0, 0)] * (image.ndim - len(size)), mode=pad_mode)


def resample_spacing(volume, spacing_mm: Sequence[float], new_spacing_mm: Sequence[float] | float,
                     order: int = 1) -> tuple[np.ndarray, tuple[float, ...]]:
    """Resample to ``new_spacing_mm`` with ``scipy.ndimage.zoom``; returns (volume, spacing).

    The field of view is preserved (``grid_mode=True``): the output has
    ``round(n * spacing / new_spacing)`` voxels per axis, and the spacing returned is the one
    actually achieved, ``spacing * n / n_new``, which differs from the request when the
    extent is not a multiple of it. Use ``order=0`` for label maps. The dtype is kept.
    """
    volume = np.asarray(volume)
    old = np.asarray(spacing_mm, dtype=float)
    new = np.broadcast_to(np.asarray(new_spacing_mm, dtype=float), old.shape)
    if old.shape != (volume.ndim,) or np.any(old <= 0) or np.any(new <= 0):
        raise InputError("spacing", f"{volume.ndim} positive values in mm",
                         f"{tuple(old)} -> {tuple(new)}")
    shape = [max(1, round(n * s / t)) for n, s, t in zip(volume.shape, old, new)]
    zoom = [m / n for m, n in zip(shape, volume.shape)]
    out = scipy.ndimage.zoom(volume, zoom, order=order, mode="nearest", grid_mode=True)
    return out, tuple(float(s * n / m) for s, n, m in zip(old, volume.shape, out.shape))
