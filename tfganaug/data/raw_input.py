"""Raw intensities -> what a run's network sees, inside a TF graph, so a servable takes what a
client has: CT in Hounsfield units, MR as stored, at any slice size.

The graph functions here repeat the training preprocessing of `data.segsets` (module
docstring there) with TF ops and the run's own `DataConfig`; `tests/test_raw_inputs.py`
holds them against that NumPy path (`segsets.network_slices`) on real shared slices. By the
units of the run's data (`source_units`):

* ``HU``: padded to square with air (-1024 HU), then the window `window_width` /
  `window_level` onto [0, 1];
* ``grey8`` (already windowed 8-bit slices, e.g. the KiTS19 PNGs): padded with 0, / 255;
* ``zscore`` (MR, as stored or z-scored: both give the same result): the brain is every voxel
  nonzero in some contrast; ``mr_norm="percentile"`` clips each contrast's brain at its
  `mr_percentiles` and maps that range onto [0, 1], background 0; ``mr_norm="zscore"`` z-scores
  each contrast inside the brain, clips at +-`zscore_clip` onto [0, 1] (background 0.5). The
  statistics are taken per volume in training, so here over one request of 2-D slices (send
  the slices of one volume together, ideally all of them) or per volume of a 3-D request;
* ``unit`` (an .npz of slices already in [0, 1]): padded with 0 only (training resized the
  .npz's own slices without padding: square slices give exactly the training input).

Then slices are resized to `image_size` (bilinear, antialiased when shrinking) and clipped to
[0, 1]. `to_input_grid_tf` takes a network output back onto the input's pixel grid (resize to
the padded square, crop), as `stages.synthesize.translate_volumes` does for whole volumes.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfganaug.data.ct import window_hu
from tfganaug.errors import InputError

UNITS = ("HU", "grey8", "zscore", "unit")
AIR_HU = -1024.0


def source_units(data_cfg) -> str:
    """The units of the run's training images: an .npz of prepared slices is "unit", a named
    source's are in `data.sources.UNITS`; a folder is read (its first case) as training read it."""
    from tfganaug.data.segsets import source_cases
    from tfganaug.data.sources import UNITS as SOURCE_UNITS
    if str(data_cfg.name).endswith(".npz"):
        return "unit"
    if data_cfg.name in SOURCE_UNITS:
        return SOURCE_UNITS[data_cfg.name]
    cases, _ = source_cases(data_cfg.name, data_cfg)
    with_images = [c for c in cases if c.image is not None]
    if not with_images:
        raise InputError("data", "cases with images (their units decide the served preprocessing)", "none",
                         data_cfg.name)
    return with_images[0].units


def raw_description(units: str, data_cfg) -> str:
    """What a raw-input signature expects and does, in words for tfganaug_export.json."""
    intensity = {
        "HU": (f"CT in Hounsfield units; window WW {data_cfg.window_width:g} / WL {data_cfg.window_level:g} "
               "HU onto [0, 1], padding with air (-1024 HU)"),
        "grey8": "8-bit windowed CT as stored (0..255); / 255",
        "zscore": ("MR as stored (raw or z-scored), brain = nonzero in some contrast; "
                   + (f"brain clipped at its {data_cfg.mr_percentiles[0]:g} / {data_cfg.mr_percentiles[1]:g} "
                      "percentiles per contrast onto [0, 1], background 0"
                      if data_cfg.mr_norm == "percentile" else
                      f"z-scored inside the brain, clipped to +-{data_cfg.zscore_clip:g} onto [0, 1]")
                   + "; statistics over the whole request (2-D: send one volume's slices together) or per "
                     "volume (3-D)"),
        "unit": "slices already in [0, 1] (the run trained on a prepared .npz); padding with 0",
    }[units]
    return (f"{intensity}; any slice size: padded to square (centred), resized to {data_cfg.image_size} px "
            "(bilinear, antialiased when shrinking), outputs mapped back onto the input's pixel grid")


def _background(units: str) -> float:
    return AIR_HU if units == "HU" else 0.0


def _square(x, fill: float):
    """[..., H, W, C] padded centred to [..., S, S, C], S = max(H, W); returns it and (top, left)."""
    h, w = tf.shape(x)[-3], tf.shape(x)[-2]
    side = tf.maximum(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    rank = len(x.shape)
    pad = [[0, 0]] * (rank - 3) + [[top, side - h - top], [left, side - w - left], [0, 0]]
    return tf.pad(x, pad, constant_values=fill), top, left


def _resize(x, size: int):
    """[M, S, S, C] -> [M, size, size, C] as training resizes (antialiased only when shrinking)."""
    side = tf.shape(x)[1]
    return tf.cond(side > size,
                   lambda: tf.image.resize(x, (size, size), "bilinear", antialias=True),
                   lambda: tf.image.resize(x, (size, size), "bilinear"))


def _brain_window(group, brain, data_cfg):
    """Per contrast (low, high) float64 of one volume's brain voxels: the percentiles
    (NumPy's linear interpolation) or mean -+ 1 std for z-scoring."""
    channels = group.shape[-1]
    lows, highs = [], []
    for c in range(channels):
        values = tf.cast(tf.boolean_mask(group[..., c], brain), tf.float64)
        n = tf.size(values)
        check = tf.debugging.assert_greater(n, 0, message="expected brain voxels (nonzero in some contrast)")
        with tf.control_dependencies([check]):
            values = tf.identity(values)
        if data_cfg.mr_norm == "percentile":
            ordered = tf.sort(values)
            bounds = []
            for p in data_cfg.mr_percentiles:
                pos = float(p) / 100.0 * tf.cast(n - 1, tf.float64)
                lo = tf.cast(tf.floor(pos), tf.int32)
                hi = tf.minimum(lo + 1, n - 1)
                frac = pos - tf.cast(lo, tf.float64)
                a, b = tf.gather(ordered, lo), tf.gather(ordered, hi)
                bounds.append(a + (b - a) * frac)
            lows.append(bounds[0])
            highs.append(bounds[1])
        else:
            mean, std = tf.reduce_mean(values), tf.math.reduce_std(values)
            check = tf.debugging.assert_greater(std, tf.constant(0.0, tf.float64),
                                                message="expected varying intensities inside the brain")
            with tf.control_dependencies([check]):
                lows.append(tf.identity(mean))
            highs.append(std)
    return tf.stack(lows), tf.stack(highs)


def _mr_to_unit(group, data_cfg):
    """One volume [Z, H, W, C] of MR -> [0, 1] by `mr_norm` (module docstring)."""
    brain = tf.reduce_any(tf.not_equal(group, 0.0), axis=-1)
    a, b = _brain_window(group, brain, data_cfg)
    x = tf.cast(group, tf.float64)
    if data_cfg.mr_norm == "percentile":
        span = b - a
        flat = span <= 0
        unit = tf.where(flat, tf.cast(x > a, tf.float64), (x - a) / tf.where(flat, tf.ones_like(span), span))
        unit = tf.where(brain[..., None], tf.clip_by_value(unit, 0.0, 1.0), 0.0)
    else:
        # the reader's z-scores are float32 before the clip (data.brats._zscore_in_brain)
        z = tf.cast(tf.cast(tf.where(brain[..., None], (x - a) / b, 0.0), tf.float32), tf.float64)
        clip = float(data_cfg.zscore_clip)
        unit = (tf.clip_by_value(z, -clip, clip) + clip) / (2 * clip)
    return tf.cast(unit, tf.float32)


def to_unit_tf(raw, units: str, data_cfg, volumes: bool = False):
    """Raw [N, H, W, C] slices (or [N, Z, H, W, C] volumes) -> [N(, Z), S, S, C] in [0, 1], S the
    run's image_size; also (top, left): where the input sits in the padded square."""
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    x = tf.cast(raw, tf.float32)
    if units == "zscore":
        # statistics per volume: each of a 3-D request's volumes, or a 2-D request's slices together
        x = tf.map_fn(lambda v: _mr_to_unit(v, data_cfg), x) if volumes else _mr_to_unit(x, data_cfg)
    elif units == "HU":
        x = window_hu(x, data_cfg.window_width, data_cfg.window_level)
    elif units == "grey8":
        x = tf.clip_by_value(x / 255.0, 0.0, 1.0)
    # pointwise maps commute with padding: pad with the background already mapped
    fill = {"HU": float(window_hu(AIR_HU, data_cfg.window_width, data_cfg.window_level)),
            "zscore": 0.5 if data_cfg.mr_norm == "zscore" else 0.0}.get(units, 0.0)
    x, top, left = _square(x, fill)
    shape = tf.shape(x)
    size = int(data_cfg.image_size)
    slices = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))
    out = tf.clip_by_value(_resize(slices, size), 0.0, 1.0)
    out = tf.reshape(out, tf.concat([shape[:-3], [size, size, shape[-1]]], 0))
    return out, top, left


def to_input_grid_tf(y, height, width, top, left):
    """[..., S, S, K] network output -> [..., height, width, K]: resized (bilinear) to the
    padded square, then cropped where the input sat in it."""
    shape = tf.shape(y)
    side = tf.maximum(height, width)
    flat = tf.reshape(y, tf.concat([[-1], shape[-3:]], 0))
    flat = tf.image.resize(flat, tf.stack([side, side]), "bilinear")
    flat = flat[:, top:top + height, left:left + width, :]
    return tf.reshape(flat, tf.concat([shape[:-3], [height, width, shape[-1]]], 0))


def from_unit(unit, units: str, data_cfg):
    """[0, 1] -> the input's units where that is defined (HU: the window's range; grey8: 0..255);
    tensors or arrays."""
    if units == "HU":
        return unit * data_cfg.window_width + (data_cfg.window_level - data_cfg.window_width / 2)
    if units == "grey8":
        return unit * 255.0
    return unit


# ------------------------------------------------------------------ the NumPy path (training's own code)

def request_to_unit(raw, units: str, data_cfg, volumes: bool = False) -> np.ndarray:
    """What `to_unit_tf` computes, by the training preprocessing: each volume of the request
    (2-D: all its slices together) as a `Case` through `segsets.network_slices`."""
    from tfganaug.data.brats import _zscore_in_brain, brain_of
    from tfganaug.data.cases import Case
    from tfganaug.data.segsets import network_slices, square_pad
    raw = np.asarray(raw, np.float32)
    out = []
    for volume in (raw if volumes else raw[None]):
        if units == "unit":  # prepared slices: nothing to map, only padding and resizing
            square, size = square_pad(volume, 0.0), data_cfg.image_size
            resized = tf.image.resize(square, (size, size), "bilinear", antialias=square.shape[1] > size).numpy()
            out.append(np.clip(resized, 0, 1).astype(np.float32))
            continue
        if units == "zscore" and data_cfg.mr_norm == "zscore":  # as the reader z-scores MR as stored
            brain = brain_of(volume)
            volume = np.stack([_zscore_in_brain(volume[..., c], brain, "MR request", "request")[0]
                               for c in range(volume.shape[-1])], axis=-1)
        channels = tuple(f"c{c}" for c in range(volume.shape[-1]))
        case = Case("request", volume, None, (1.0, 1.0, 1.0), ("background",), channels, units=units)
        out.append(network_slices(case, np.arange(len(volume)), data_cfg))
    return np.stack(out) if volumes else out[0]


def to_input_grid(y: np.ndarray, height: int, width: int) -> np.ndarray:
    """What `to_input_grid_tf` computes: (..., S, S, K) -> (..., height, width, K)."""
    y = np.asarray(y, np.float32)
    side = max(height, width)
    flat = y.reshape((-1,) + y.shape[-3:])
    if flat.shape[1] != side:
        flat = tf.image.resize(flat, (side, side), "bilinear").numpy()
    top, left = (side - height) // 2, (side - width) // 2
    return flat[:, top:top + height, left:left + width].reshape(y.shape[:-3] + (height, width, y.shape[-1]))

