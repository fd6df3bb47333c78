"""One tf.data chain: read -> preprocess -> (mix synthetic) -> augment -> batch -> prefetch.

Training streams are a pure function of (seed, epoch): each epoch draws its own order of
the ROIs, its real/synthetic coin flips and every sample's augmentation from *stateless*
random ops keyed by (seed, epoch, position). Restarting the chain at epoch k therefore
yields exactly the batches a run that never stopped would see at epoch k, which is what
exact resume needs (`fit()` gives no handle on its iterator), and the stream is the same
whatever the number of devices.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfganaug.data.augment import classic_augment


def _cycled_permutation(n: int, count: int, seed):
    """`count` indices into range(n): back-to-back random permutations, cut to length."""
    reps = max(1, math.ceil(count / n))
    keys = tf.random.stateless_uniform([reps, n], seed=seed)
    return tf.reshape(tf.argsort(keys, axis=1, stable=True), [-1])[:count]


def mix_real_synthetic(n_real: int, n_synthetic: int, count: int, ratio: float, seed):
    """Per-position (is_synthetic, index) for `count` samples, a share `ratio` synthetic.

    Each position is synthetic with probability `ratio` (a stateless coin flip), so a batch
    of 64 at ratio 0.5 holds 32 synthetic ROIs on average; the index points into the real
    or the synthetic array accordingly, each walked in its own random order.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    real = _cycled_permutation(n_real, count, seeds[0])
    if ratio <= 0.0 or n_synthetic == 0:
        return tf.zeros([count], tf.bool), real
    is_synthetic = tf.random.stateless_uniform([count], seed=seeds[1]) < ratio
    fake = _cycled_permutation(n_synthetic, count, seeds[2])
    return is_synthetic, tf.where(is_synthetic, fake, real)


def training_batches(images: np.ndarray, labels: np.ndarray, *, batch_size: int, steps_per_epoch: int,
                     epochs: int, start_epoch: int = 0, seed: int = 0, augment: str = "none",
                     synthetic: tuple | None = None, synthetic_ratio: float = 0.0,
                     scale: str = "unit", window: int | None = None, starts: np.ndarray | None = None
                     ) -> tf.data.Dataset:
    """Batches (image, label) for epochs [start_epoch, epochs), `steps_per_epoch` batches each.

    Augmentation applies to real and synthetic samples alike (after mixing): "classic" (ROIs,
    image only), "flip" (left-right, image and label map together, Son et al.), or a callable
    `(image, label, seed) -> (image, label)` given a per-sample stateless seed.
    `scale="tanh"` maps [0, 1] images to [-1, 1] for GAN discriminators.

    3-D windows (`data.volumes`): with `window`, `images`/`labels` are volumes stacked along
    axis 0 and a sample is `window` consecutive slices from one of `starts`; `synthetic` is
    then `(images, labels, starts)` as well.

    Streamed slices (`DataConfig.stream`): `images`/`labels` (or the synthetic pair) may be
    `slicestore.DiskRows`; each element is then read from disk when the chain reaches it (a
    NumPy function in the same map), instead of gathered from a constant. The order, the
    real/synthetic mixing and the augmentation are the same stateless functions of (seed,
    epoch, position), so the two give the same batches, and memory holds only the elements in
    flight (the map's parallel calls and the prefetched batches).
    """
    take_real, n_real = _source(images, labels, window, starts)
    if synthetic is not None and synthetic_ratio > 0:
        take_fake, n_fake = _source(synthetic[0], synthetic[1], window, synthetic[2] if window else None)
    else:
        take_fake, n_fake, synthetic_ratio = None, 0, 0.0
    count = steps_per_epoch * batch_size

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        is_fake, index = mix_real_synthetic(n_real, n_fake, count, synthetic_ratio, epoch_seed)
        positions = tf.range(count, dtype=tf.int64) + epoch * count
        return tf.data.Dataset.from_tensor_slices((is_fake, index, positions))

    def gather(is_fake, index, position):
        if n_fake:
            fake = take_fake(tf.minimum(index, n_fake - 1))
            real = take_real(tf.minimum(index, n_real - 1))
            image, label = tf.where(is_fake, fake[0], real[0]), tf.where(is_fake, fake[1], real[1])
        else:
            image, label = take_real(index)
        sample_seed = tf.stack([tf.constant(seed + 1, tf.int64), position])
        if callable(augment):
            image, label = augment(image, label, sample_seed)
        elif augment == "classic":
            image = classic_augment(image, sample_seed)
        elif augment == "flip":
            image, label = paired_flip(image, label, sample_seed)
        if scale == "tanh":
            image = image * 2.0 - 1.0
        return image, label

    options = tf.data.Options()
    options.deterministic = True
    return (tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))


def _source(images, labels, window=None, starts=None):
    """(take(index) -> (image, label), number of samples) of one source of the chain: arrays
    held as constants (`window`: `starts` of windows of that many slices), or `DiskRows` read
    one row per element."""
    from tfganaug.data.slicestore import DiskRows
    if isinstance(images, DiskRows):
        if window:
            raise ValueError("streamed slices feed 2-D samples only")

        def read(index):
            return images.rows([index])[0], np.asarray(labels[int(index)], np.int32)

        def take_row(index):
            image, label = tf.numpy_function(read, [index], [tf.float32, tf.int32], stateful=False)
            return tf.ensure_shape(image, images.shape[1:]), tf.ensure_shape(label, labels.shape[1:])
        return take_row, len(labels)
    x, y = tf.constant(np.asarray(images, np.float32)), tf.constant(np.asarray(labels, np.int32))
    if not window:
        return (lambda index: (tf.gather(x, index), tf.gather(y, index))), int(y.shape[0])
    s = tf.constant(np.asarray(starts, np.int64))

    def take_window(index):
        rows = tf.gather(s, index) + tf.range(window, dtype=tf.int64)
        return tf.gather(x, rows), tf.gather(y, rows)
    return take_window, int(s.shape[0])


def paired_flip(image, label, seed):
    """Left-right flip of an (H, W, C) image and, when it is a map, its (H, W) label, with p = 0.5."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    image = tf.where(flip, tf.reverse(image, [1]), image)
    if label.shape.rank == 2:
        label = tf.where(flip, tf.reverse(label, [1]), label)
    return image, label


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> tf.data.Dataset:
    """Unshuffled, unaugmented batches for evaluation and prediction (streamed `DiskRows` read
    one row per element, as in training)."""
    from tfganaug.data.slicestore import DiskRows
    if isinstance(images, DiskRows):
        take, n = _source(images, labels)
        return tf.data.Dataset.range(n).map(take).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return (tf.data.Dataset.from_tensor_slices((np.asarray(images, np.float32), np.asarray(labels, np.int32)))
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))
