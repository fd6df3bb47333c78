"""Standard augmentation of Sandfort et al. 2019: flips, rotation, crop, elastic b-spline field.

Sandfort et al. (Sci. Rep. 9, 16884, Methods, "Standard data augmentation") use "a typical
3D data augmentation pipeline ... including flipping, random crop, 3D rotation (up to 30°),
and elastic 3D deformation (b-spline transformation, 10 control points, deformation
Gaussian σ = 8)". The elastic part follows the usual construction (e.g. the
``elasticdeform`` package): a coarse grid of ``control_points`` per axis holds displacement
vectors drawn from N(0, sigma_px²) pixels per component; a cubic spline interpolates them to
a dense field; the image is resampled at ``x + d(x)``.

* :func:`elastic_deform`: NumPy reference for 2-D and 3-D volumes (SciPy cubic-spline zoom
  of the grid, linear resampling of the image, nearest neighbour for the label map).
* :func:`standard_augment_tf`: the TensorFlow graph version for one 2-D slice inside
  ``tf.data``: flips, rotation, random crop resized back and the elastic field, all drawn
  from *stateless* random ops keyed by a shape-[2] seed, so the output is a pure function
  of (image, mask, seed) and a resumed run sees the same samples. The geometric steps are
  composed into one sampling grid and the slice is resampled once (bilinear for the image,
  nearest for the mask): no blur compounds over steps and the mask keeps exactly the
  labels it had.

Geometry shared by both: control points sit at the centres of a ``control_points``-per-axis
tiling of the image (the half-pixel convention of ``tf.image.resize``); samples beyond the
border are mirrored (half-sample symmetric, SciPy's ``"reflect"``, TF's ``REFLECT``).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from scipy import ndimage

from tfganaug.errors import InputError

CONTROL_POINTS = 10
"""Control points per axis of the b-spline grid (Sandfort et al.)."""
SIGMA_PX = 8.0
"""Standard deviation of the control-point displacements in pixels (Sandfort et al.)."""


# --- NumPy reference --------------------------------------------------------------------------

def elastic_displacement_np(shape, rng: np.random.Generator, control_points: int = CONTROL_POINTS,
                            sigma_px: float = SIGMA_PX) -> np.ndarray:
    """Dense displacement field, float64 ``(ndim, *shape)`` in pixels (axis order of ``shape``).

    Grid values N(0, sigma_px²) per component at ``control_points`` per axis, interpolated by
    a cubic B-spline (``scipy.ndimage.zoom(order=3, grid_mode=True)``).
    """
    shape = tuple(int(n) for n in shape)
    _check_grid(control_points, sigma_px)
    grid = rng.normal(0.0, sigma_px, (len(shape),) + (control_points,) * len(shape))
    zoom = [n / control_points for n in shape]
    field = np.stack([ndimage.zoom(g, zoom, order=3, mode="nearest", grid_mode=True) for g in grid])
    if field.shape[1:] != shape:  # zoom rounds the output shape; never off for these zooms
        raise AssertionError(f"zoomed field {field.shape[1:]} != {shape}")
    return field


def elastic_deform(image, mask, rng: np.random.Generator, control_points: int = CONTROL_POINTS,
                   sigma_px: float = SIGMA_PX):
    """Deform a 2-D or 3-D image and its label map with one random b-spline field.

    ``mask`` (``(H, W)`` or ``(D, H, W)``, integer) fixes the spatial shape; ``image`` has that
    shape, optionally with a trailing channel axis. With ``mask=None`` the image is all
    spatial. The image is resampled linearly (float32 unless it was float64), the mask by
    nearest neighbour (same dtype, labels a subset of the input's). Returns
    ``(image, mask)``; ``(image, None)`` without a mask.
    """
    image = np.asarray(image)
    spatial = image.shape if mask is None else np.asarray(mask).shape
    if len(spatial) not in (2, 3) or image.shape[:len(spatial)] != spatial or \
            image.ndim not in (len(spatial), len(spatial) + 1):
        raise InputError("elastic image", "(H, W[, C]) or (D, H, W[, C]) matching the mask "
                         f"{tuple(spatial)}", f"shape {image.shape}")
    field = elastic_displacement_np(spatial, rng, control_points, sigma_px)
    coords = np.indices(spatial, dtype=np.float64) + field
    dtype = image.dtype if image.dtype in (np.float32, np.float64) else np.float32
    work = image.astype(dtype, copy=False)
    if image.ndim == len(spatial):
        out = ndimage.map_coordinates(work, coords, order=1, mode="reflect")
    else:
        out = np.stack([ndimage.map_coordinates(work[..., c], coords, order=1, mode="reflect")
                        for c in range(image.shape[-1])], axis=-1)
    if mask is None:
        return out, None
    return out, ndimage.map_coordinates(np.asarray(mask), coords, order=0, mode="reflect")


# --- TensorFlow --------------------------------------------------------------------------------

def elastic_displacement_tf(shape_hw, seed, control_points: int = CONTROL_POINTS,
                            sigma_px: float = SIGMA_PX) -> tf.Tensor:
    """Dense 2-D displacement field float32 ``(H, W, 2)`` as ``(dy, dx)`` pixels.

    Grid values from ``tf.random.stateless_normal`` (N(0, sigma_px²)), upsampled by bicubic
    ``tf.image.resize`` (Keys' cubic convolution, the graph counterpart of the spline).
    """
    _check_grid(control_points, sigma_px)
    grid = tf.random.stateless_normal([1, control_points, control_points, 2],
                                      seed=tf.cast(seed, tf.int64), stddev=sigma_px)
    return tf.image.resize(grid, shape_hw, method="bicubic")[0]


def standard_augment_tf(image, mask, seed, rotation_deg: float = 30.0, crop_fraction: float = 0.9,
                        elastic: bool = True, control_points: int = CONTROL_POINTS,
                        sigma_px: float = SIGMA_PX, flip: bool = True):
    """Sandfort et al.'s standard augmentation of one 2-D slice; a pure function of ``seed``.

    ``image`` float ``(H, W, C)``, ``mask`` integer ``(H, W)``, ``seed`` a shape-[2] integer
    tensor (e.g. ``(run seed, sample position)``). In order: flips up-down and left-right
    (each p = 0.5, if ``flip``), rotation about the centre by U(-rotation_deg, rotation_deg),
    a random crop of U(crop_fraction, 1) of the area (same aspect, random position) resized
    back to (H, W), and the elastic field of :func:`elastic_displacement_tf`. All four are
    composed into one sampling grid; the image is sampled bilinearly and the mask by nearest
    neighbour (dtype kept, no new labels). ``rotation_deg=0, crop_fraction=1, elastic=False,
    flip=False`` is the identity. Graph-safe (``tf.data.Dataset.map``, ``tf.function``).
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise InputError("crop fraction", "an area fraction in (0, 1]", repr(crop_fraction))
    if rotation_deg < 0:
        raise InputError("rotation", "a maximum angle >= 0 degrees", repr(rotation_deg))
    image = tf.convert_to_tensor(image)
    mask = tf.convert_to_tensor(mask)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    y, x = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")

    # Elastic field, in output coordinates (the last step applied is the first undone).
    if elastic and sigma_px > 0:
        field = elastic_displacement_tf(shape[:2], seeds[3], control_points, sigma_px)
        y, x = y + field[..., 0], x + field[..., 1]
    # Crop of side fraction s at offset (oy, ox), resized back: pixel centres scale by s.
    if crop_fraction < 1.0:
        crop = tf.random.stateless_uniform([3], seeds[2])
        side = tf.sqrt(crop_fraction + (1.0 - crop_fraction) * crop[0])
        y = crop[1] * (1.0 - side) * height + (y + 0.5) * side - 0.5
        x = crop[2] * (1.0 - side) * width + (x + 0.5) * side - 0.5
    # Rotation about the slice centre.
    if rotation_deg > 0:
        theta = tf.random.stateless_uniform([], seeds[1], -rotation_deg, rotation_deg) * (math.pi / 180.0)
        cy, cx = (height - 1.0) / 2.0, (width - 1.0) / 2.0
        cos, sin = tf.cos(theta), tf.sin(theta)
        y, x = cy + cos * (y - cy) + sin * (x - cx), cx - sin * (y - cy) + cos * (x - cx)
    # Flips.
    if flip:
        flips = tf.random.stateless_uniform([2], seeds[0]) < 0.5
        y = tf.where(flips[0], height - 1.0 - y, y)
        x = tf.where(flips[1], width - 1.0 - x, x)
    out_image = _bilinear(image, _reflect(y, height), _reflect(x, width))
    out_mask = _nearest(mask, _reflect(y, height), _reflect(x, width))
    return tf.ensure_shape(out_image, image.shape), tf.ensure_shape(out_mask, mask.shape)


def _reflect(coord, size):
    """Mirror coordinates into [0, size - 1] (half-sample symmetric: ... c b a | a b c ...)."""
    period = 2.0 * size
    t = tf.math.floormod(coord + 0.5, period)
    t = tf.where(t >= size, period - t, t) - 0.5
    return tf.clip_by_value(t, 0.0, size - 1.0)


def _bilinear(image, y, x):
    """Sample ``image`` (H, W, C) at float pixel coordinates (H', W') with tf.gather_nd."""
    dtype = image.dtype
    limit_y, limit_x = tf.shape(image)[0] - 1, tf.shape(image)[1] - 1
    y0, x0 = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, limit_y), tf.minimum(x0 + 1, limit_x)
    work = tf.cast(image, tf.float32)

    def at(yy, xx):
        return tf.gather_nd(work, tf.stack([yy, xx], axis=-1))

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return tf.cast(top * (1.0 - wy) + bottom * wy, dtype)


def _nearest(mask, y, x):
    yy = tf.cast(tf.round(y), tf.int32)
    xx = tf.cast(tf.round(x), tf.int32)
    return tf.gather_nd(mask, tf.stack([yy, xx], axis=-1))


def _check_grid(control_points, sigma_px) -> None:
    if int(control_points) < 2:
        raise InputError("control points", "at least 2 per axis", repr(control_points))
    if not sigma_px >= 0:
        raise InputError("elastic sigma", "a displacement standard deviation >= 0 pixels", repr(sigma_px))
