"""Classic augmentation of lesion ROIs (Frid-Adar et al. 2018, section III-A), stateless.

The paper rotates by a random angle in [0, 180] degrees, flips up-down / left-right,
translates by up to p = min(4, 0.1 d) pixels (d the lesion diameter) and rescales. Here all
four are composed into one affine warp per image, drawn from *stateless* random ops keyed
by a per-sample seed, so that the augmented stream is a pure function of (run seed, epoch,
sample index): a resumed run sees exactly the images the crashed one would have seen.
Without per-lesion diameters, the translation bound is 4 px at 64 px (scaled with size).
"""
from __future__ import annotations

import math

import tensorflow as tf


def classic_augment(image, seed, max_rotation_deg: float = 180.0, max_shift_px64: float = 4.0,
                    scale_range=(0.9, 1.1)):
    """Rotate, flip, translate and scale one (H, W, C) image; `seed` is a shape-[2] int tensor."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    theta = tf.random.stateless_uniform([], seeds[0], 0.0, max_rotation_deg) * (math.pi / 180.0)
    flips = tf.where(tf.random.stateless_uniform([2], seeds[1]) < 0.5, -1.0, 1.0)
    shift = tf.random.stateless_uniform([2], seeds[2], -1.0, 1.0) * max_shift_px64 * size / 64.0
    scale = tf.random.stateless_uniform([], seeds[3], *scale_range)
    c = (size - 1.0) / 2.0
    # Output pixel (x, y) samples input at A^-1 ((x, y) - c - t) + c, A = R(theta) S F.
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    a0, a1 = cos * flips[0], sin * flips[0]
    b0, b1 = -sin * flips[1], cos * flips[1]
    tx, ty = c + shift[0], c + shift[1]
    transform = tf.stack([a0, a1, c - a0 * tx - a1 * ty,
                          b0, b1, c - b0 * tx - b1 * ty, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return tf.ensure_shape(out[0], image.shape)
