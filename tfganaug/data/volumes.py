"""Volumes for the 3-D U-Net: whole cases from a `SegSet`, windows of slices for training,
Sandfort et al.'s standard augmentation in 3-D, and sliding-window prediction.

The 3-D path reuses the 2-D preprocessing (window or z-score onto [0, 1], pad to square,
resize in-plane to ``image_size``) with *every* slice of a case kept, so a case's slices form
one contiguous volume (``load_segsets(cfg, all_slices=True)``). Where a data set has fewer
than three patients and is split along z (`segsets.Z_BLOCK`), each block is its own volume.

Training samples are windows of ``patch_depth`` consecutive slices at full in-plane size
(``(D, S, S, C)`` images, ``(D, S, S)`` labels); cases shorter than a window are padded at
the end with air / background. All windows of all training volumes are candidates
(stride 1), which the one tf.data chain (`pipeline.training_batches(window=...)`) walks in
a random order like 2-D slices.

Augmentation (Sandfort et al.: "flipping, random crop, 3D rotation (up to 30°), and elastic
3D deformation (b-spline transformation, 10 control points, deformation Gaussian σ = 8)"):
flips along each axis, rotation about the z axis by U(-30°, 30°) (our choice: out-of-plane
turns of a window of a few slices would mostly show mirrored borders), a random crop of
U(crop_fraction, 1) of the in-plane area resized back, and a cubic b-spline field with 10
control points per axis; sigma 8 voxels at the paper's 192-voxel volumes, scaled with the
window's size per axis. Composed into one sampling map and applied once (linear for the
image, nearest for labels) with SciPy inside ``tf.numpy_function``; the random numbers come
from a NumPy generator keyed by the sample's stateless seed, so a resumed run sees the same
samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage

from tfganaug.data.elastic import CONTROL_POINTS, SIGMA_PX
from tfganaug.errors import InputError

PAPER_VOLUME_SIDE = 192
"""Sandfort et al. trained on volumes of up to 192 voxels per side; sigma 8 belongs to those."""


@dataclass
class Volume:
    patient_id: str
    images: np.ndarray      # (Z, S, S, C) float32 in [0, 1]
    masks: np.ndarray       # (Z, S, S) uint8
    spacing_mm: np.ndarray  # (3,) z, y, x
    slice_index: np.ndarray  # (Z,) the slices' positions in the source case


def volumes_of(segset) -> list[Volume]:
    """The cases of a `SegSet` loaded with all slices, as volumes sorted along z."""
    out = []
    for pid in segset.patients():
        sel = np.flatnonzero(segset.patient_ids == pid)
        sel = sel[np.argsort(segset.slice_index[sel], kind="stable")]
        index = segset.slice_index[sel]
        if len(index) > 1 and not np.all(np.diff(index) == 1):
            raise InputError("volume", f"consecutive slices for case {pid} (load with all_slices=True)",
                             f"slice indices {index[:6].tolist()}...", segset.source)
        out.append(Volume(str(pid), segset.images[sel], segset.masks[sel], np.asarray(segset.spacing_mm[sel[0]]),
                          index))
    return out


def window_stack(volumes: list[Volume], depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (T,S,S,C), masks (T,S,S), starts (n,)): the volumes one after another, each padded
    at the end to at least `depth` slices, and the first slice of every window that stays
    inside one volume."""
    if depth < 1:
        raise InputError("patch depth", "at least 1 slice", str(depth))
    images, masks, starts, offset = [], [], [], 0
    for v in volumes:
        pad = max(0, depth - len(v.masks))
        img = np.pad(v.images, [(0, pad), (0, 0), (0, 0), (0, 0)]) if pad else v.images
        msk = np.pad(v.masks, [(0, pad), (0, 0), (0, 0)]) if pad else v.masks
        images.append(img)
        masks.append(msk)
        starts.append(offset + np.arange(len(msk) - depth + 1))
        offset += len(msk)
    if not images:
        raise InputError("volumes", "at least one case", "none")
    return (np.concatenate(images).astype(np.float32), np.concatenate(masks).astype(np.int32),
            np.concatenate(starts).astype(np.int64))


def volume_chunks(volumes: list[Volume], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of `depth` slices covering every volume (the last one padded):
    (images (n, depth, S, S, C), labels (n, depth, S, S)), e.g. for validation during training."""
    images, masks = [], []
    for v in volumes:
        pad = (-len(v.masks)) % depth
        img = np.pad(v.images, [(0, pad), (0, 0), (0, 0), (0, 0)])
        msk = np.pad(v.masks, [(0, pad), (0, 0), (0, 0)])
        images.append(img.reshape(-1, depth, *img.shape[1:]))
        masks.append(msk.reshape(-1, depth, *msk.shape[1:]))
    return np.concatenate(images).astype(np.float32), np.concatenate(masks).astype(np.int32)


# ---------------------------------------------------------------------------- augmentation

def _rng_from_seed(seed) -> np.random.Generator:
    return np.random.default_rng([int(s) & 0xFFFFFFFF for s in np.asarray(seed).ravel()])


def standard_augment_3d_np(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                           rotation_deg: float = 30.0, crop_fraction: float = 0.9, elastic: bool = True,
                           control_points: int = CONTROL_POINTS, sigma_px=None, flip: bool = True):
    """Sandfort et al.'s standard augmentation of a (D, H, W, C) window and its (D, H, W) labels.

    `sigma_px` is the elastic displacement SD per axis in voxels (a number or (z, y, x));
    None scales the paper's 8 voxels at 192 voxels per side to the window's size per axis.
    Returns (image float32, labels of the input's dtype, no new labels).
    """
    shape = mask.shape
    if image.shape[:3] != shape or image.ndim != 4:
        raise InputError("3-D augmentation input", f"image (D, H, W, C) over labels {shape}", f"{image.shape}")
    if sigma_px is None:
        sigma_px = [SIGMA_PX * n / PAPER_VOLUME_SIDE for n in shape]
    sigma = np.broadcast_to(np.asarray(sigma_px, np.float64), (3,))
    coords = np.indices(shape, dtype=np.float64)
    if elastic and sigma.max() > 0:
        grid = rng.normal(0.0, 1.0, (3,) + (control_points,) * 3) * sigma[:, None, None, None]
        zoom = [n / control_points for n in shape]
        coords += np.stack([ndimage.zoom(g, zoom, order=3, mode="nearest", grid_mode=True) for g in grid])
    z, y, x = coords
    height, width = shape[1], shape[2]
    if crop_fraction < 1.0:
        u = rng.random(3)
        side = math.sqrt(crop_fraction + (1.0 - crop_fraction) * u[0])
        y = u[1] * (1.0 - side) * height + (y + 0.5) * side - 0.5
        x = u[2] * (1.0 - side) * width + (x + 0.5) * side - 0.5
    if rotation_deg > 0:
        theta = math.radians(rng.uniform(-rotation_deg, rotation_deg))
        cy, cx = (height - 1.0) / 2.0, (width - 1.0) / 2.0
        c, s = math.cos(theta), math.sin(theta)
        y, x = cy + c * (y - cy) + s * (x - cx), cx - s * (y - cy) + c * (x - cx)
    if flip:
        flips = rng.random(3) < 0.5
        if flips[0]:
            z = shape[0] - 1.0 - z
        if flips[1]:
            y = height - 1.0 - y
        if flips[2]:
            x = width - 1.0 - x
    coords = np.stack([z, y, x])
    out = np.stack([ndimage.map_coordinates(image[..., ch].astype(np.float32), coords, order=1, mode="reflect")
                    for ch in range(image.shape[-1])], axis=-1)
    labels = ndimage.map_coordinates(mask, coords, order=0, mode="reflect")
    return out.astype(np.float32), labels.astype(mask.dtype)


def standard_augment_3d_tf(image, mask, seed, **kwargs):
    """:func:`standard_augment_3d_np` inside tf.data, a pure function of the shape-[2] `seed`."""
    def run(img, msk, s):
        return standard_augment_3d_np(img, msk, _rng_from_seed(s), **kwargs)
    out_image, out_mask = tf.numpy_function(run, [image, mask, seed], [tf.float32, mask.dtype], stateful=False)
    return tf.ensure_shape(out_image, image.shape), tf.ensure_shape(out_mask, mask.shape)


def flip_3d_tf(image, mask, seed):
    """Left-right flip of a window and its labels with p = 0.5 (the "flip" augmentation in 3-D)."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.where(flip, tf.reverse(image, [2]), image), tf.where(flip, tf.reverse(mask, [2]), mask)


# ---------------------------------------------------------------------------- inference

def predict_volume(model, images: np.ndarray, depth: int, overlap: float = 0.5) -> np.ndarray:
    """Probabilities (Z, S, S, k) of a (Z, S, S, C) volume from windows of `depth` slices.

    Windows overlap by `overlap` of their depth and their probabilities are averaged; the
    last window ends at the last slice. A volume shorter than a window goes through at once.
    """
    return np.concatenate([p for _, p in sliding_window_probabilities(
        model, lambda a, b: images[a:b], len(images), depth, overlap)])


def sliding_window_probabilities(model, read, z: int, depth: int, overlap: float = 0.5):
    """:func:`predict_volume` streamed: yields (first slice, probabilities) of consecutive blocks
    of slices, each as soon as no later window covers it; `read(a, b)` gives slices [a, b) for
    ranges that never move back. Only the windows in flight are held: the sums and counts of
    the slices from the current window's start on. The sums run in the same order as over the
    whole volume, so the probabilities are the same, bit for bit."""
    def run(a, b):
        return np.asarray(model(np.asarray(read(a, b), np.float32)[None], training=False), np.float32)[0]

    if z <= depth:
        yield 0, run(0, z)
        return
    stride = max(1, int(round(depth * (1.0 - overlap))))
    starts = sorted(set(list(range(0, z - depth + 1, stride)) + [z - depth]))
    lo, total, count = 0, None, np.zeros((0, 1, 1, 1), np.float32)
    for s in starts:
        if total is not None and s > lo:  # no window from here on reaches slices before s
            yield lo, total[:s - lo] / count[:s - lo]
            total, count, lo = total[s - lo:], count[s - lo:], s
        p = run(s, s + depth)
        if total is None:
            total = np.zeros((0,) + p.shape[1:], np.float32)
        grow = s + depth - lo - len(total)
        if grow > 0:
            total = np.concatenate([total, np.zeros((grow,) + p.shape[1:], np.float32)])
            count = np.concatenate([count, np.zeros((grow, 1, 1, 1), np.float32)])
        total[s - lo:s - lo + depth] += p
        count[s - lo:s - lo + depth] += 1
    yield lo, total / count
