"""Pix2Pix: label map -> CT slice, after Isola et al. 2017, "Image-to-Image Translation with
Conditional Adversarial Networks" (CVPR 2017, arXiv:1611.07004), as used by the KiTS19
capstone to synthesise kidney/tumour CT slices from (perturbed) segmentation maps.

Generator (paper section 3.2.1 and appendix 6.1.1): a U-Net. The encoder is a stack of 4x4
stride-2 convolutions C64-C128-C256-C512-C512-... (widths capped at 8x `base_filters`) down to
a 1x1 bottleneck, so its depth is log2(image_size) (8 blocks at 256 px, as in the paper);
normalisation on every block except the first (as in the paper) and the bottleneck (a 1x1
map has nothing to normalise: instance normalisation would zero it), LeakyReLU 0.2. The
decoder mirrors it with 4x4 stride-2 transposed convolutions, normalisation, ReLU, dropout 0.5
in its first three blocks (the paper's only source of noise: "we provide noise only in the
form of dropout") and skip connections that concatenate encoder block i with decoder block
n - i; a last transposed convolution to `out_channels` and tanh give the image in [-1, 1].
The input is the one-hot label map (`num_labels` channels, float32).

Discriminator (section 3.2.2, appendix 6.1.2): the 70x70 PatchGAN C64-C128-C256-C512, 4x4
kernels, strides 2, 2, 2, 1, then a 1-channel 4x4 convolution giving one logit per patch, on
concat(label map, image); no normalisation on C64, LeakyReLU 0.2. Padding is "same", so the
patch grid is image_size/8 per side (32x32 at 256 px; the reference code's 1-pixel padding gives
30x30 there but fails below 32 px); every logit still sees a 70x70-pixel receptive field.

Objective (eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G) with lambda = 100; the
discriminator's loss is per-patch sigmoid cross-entropy on real and fake pairs, halved "to
slow down the rate at which D learns relative to G"; G uses the non-saturating form
-log D(x, G(x)). Weights ~ N(0, 0.02), Adam lr 2e-4, beta_1 0.5, batch 1-10 in the paper.
`norm="instance"` (the paper's batch size 1 setting; GroupNormalization(groups=-1), since
tensorflow-addons is gone) or `"batch"` (synchronized across replicas).

Training follows the reference implementation's order: one generator forward pass per step,
D updated on the detached fake, then G's loss through the *updated* D.

Inference: :meth:`Pix2Pix.generate` is deterministic by default (dropout off). The paper keeps
dropout on at test time; ``generate(..., training=True)`` does that (with ``norm="batch"`` it
also normalises with the test batch's statistics, as the paper does, and updates the moving
averages).

Training tricks for small data sets (not in the paper; all off by default, so the paper preset
stays the paper's; the cpu_* presets may switch them on and say so):

* ``augment`` (a :class:`~tfganaug.gans.augment.DiscriminatorAugment` built with
  ``image_channels=out_channels``): DiffAugment policies and/or ADA on everything D sees. D
  sees (label map, image) pairs, so each pair is augmented *jointly*: ``concat(image,
  label map)`` goes through the augmenter (geometric ops move both, intensity ops and cutout
  touch the image only, so the label map stays one-hot) and is split again for D; the real
  pair and the fake pair in D's step and the fake pair in G's step each get their own draw.
  ADA's r_t comes from D's patch logits on the augmented real pairs. The L1 term compares
  G's output with the real image *un-augmented*: augmentation is for D only.
* ``ema_beta`` > 0: an exponential moving average of G's weights (``self.ema["generator"]``,
  updated after every step), used by :meth:`Pix2Pix.generate`, synthesis and export.
* ``upsample="resize"``: every decoder block (and the output layer) is a nearest-neighbour 2x
  ``UpSampling2D`` followed by a 4x4 stride-1 convolution ("same" padding) instead of the 4x4
  stride-2 transposed convolution (Odena et al. 2016: no checkerboard artefacts). The paper
  keeps the transposed convolution (``upsample="transpose"``, the default).
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfganaug.errors import ConfigError, InputError
from tfganaug.gans.base import LabelMapGAN, global_mean, non_saturating_d, non_saturating_g, seed_generator_states

NORMS = ("instance", "batch")


def _init(mean: float = 0.0):
    """N(mean, 0.02), a new initializer per layer. One shared unseeded Keras 3 initializer
    draws its integer seed once (from Python's `random`, when it is created) and then returns
    the same values on every call of the same shape: layers of equal shape (the C512 blocks)
    would start identical, and not reproducibly under `keras.utils.set_random_seed`."""
    return keras.initializers.RandomNormal(mean=mean, stddev=0.02)


def label_to_onehot(mask, num_labels: int):
    """One-hot label map: integer labels of any shape -> float32 with a last axis of `num_labels`.

    NumPy in, NumPy out (labels outside 0..num_labels-1 raise InputError); a tf.Tensor gives a
    tf.Tensor (``tf.one_hot``: an out-of-range label becomes an all-zero vector).
    A trailing channel axis of size 1 on a batch of maps, ``(B, H, W, 1)``, is dropped first.
    """
    num_labels = int(num_labels)
    if isinstance(mask, (tf.Tensor, tf.Variable)):
        if mask.shape.rank == 4 and mask.shape[-1] == 1:
            mask = tf.squeeze(mask, -1)
        return tf.one_hot(tf.cast(mask, tf.int32), num_labels, dtype=tf.float32)
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.size and (not np.all(mask == np.round(mask)) or mask.min() < 0 or mask.max() >= num_labels):
        bad = np.unique(mask[(mask < 0) | (mask >= num_labels) | (mask != np.round(mask))])
        raise InputError("label map", f"integer labels 0..{num_labels - 1}",
                         f"values {[float(v) if v % 1 else int(v) for v in bad[:10]]}")
    return np.eye(num_labels, dtype=np.float32)[mask.astype(np.int64)]


def _norm(kind: str):
    if kind == "instance":
        # Instance normalisation = group normalisation with one group per channel.
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, gamma_initializer=_init(1.0))
    # synchronized=True: statistics over the global batch under tf.distribute.
    return keras.layers.BatchNormalization(synchronized=True, momentum=0.9, epsilon=1e-5,
                                           gamma_initializer=_init(1.0))


def _check(image_size: int, norm: str) -> int:
    depth = int(round(math.log2(image_size))) if image_size > 0 else 0
    if image_size < 16 or 2 ** depth != image_size:
        raise ConfigError(f"Pix2Pix image_size must be a power of two >= 16, got {image_size}")
    if norm not in NORMS:
        raise ConfigError(f"Pix2Pix norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return depth


def encoder_widths(image_size: int, base_filters: int = 64) -> list[int]:
    """Encoder widths C64-C128-C256-C512-C512-...: one block per halving down to 1x1."""
    depth = _check(image_size, "instance")
    return [min(base_filters * 2 ** i, 8 * base_filters) for i in range(depth)]


UPSAMPLING = ("transpose", "resize")


def _up(filters: int, upsample: str, name: str, **kwargs):
    """A 2x up-sampling 4x4 convolution: stride-2 transposed (the paper) or nearest 2x resize +
    stride-1 convolution; the convolution carries `name` either way."""
    if upsample == "transpose":
        return lambda h: keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", kernel_initializer=_init(),
                                                      name=name, **kwargs)(h)
    return lambda h: keras.layers.Conv2D(filters, 4, padding="same", kernel_initializer=_init(), name=name, **kwargs)(
        keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_resize")(h))


def build_generator(image_size: int = 256, num_labels: int = 3, out_channels: int = 1,
                    base_filters: int = 64, dropout: float = 0.5, norm: str = "instance", seed: int = 0,
                    name: str = "generator", upsample: str = "transpose") -> keras.Model:
    """U-Net G(one-hot label map [B, H, W, num_labels]) -> image [B, H, W, out_channels] in [-1, 1]."""
    _check(image_size, norm)
    if upsample not in UPSAMPLING:
        raise ConfigError(f"Pix2Pix upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
    widths = encoder_widths(image_size, base_filters)
    labels = keras.Input((image_size, image_size, num_labels), name="label_onehot")
    h, skips = labels, []
    for i, filters in enumerate(widths):
        normalised = 0 < i < len(widths) - 1  # not the first block, not the 1x1 bottleneck
        h = keras.layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=not normalised,
                                kernel_initializer=_init(), name=f"down{i}")(h)
        if normalised:
            h = _norm(norm)(h)
        h = keras.layers.LeakyReLU(0.2)(h)
        skips.append(h)
    for j, filters in enumerate(reversed(widths[:-1])):
        h = _up(filters, upsample, f"up{j}", use_bias=False)(h)
        h = _norm(norm)(h)
        if j < 3 and dropout:
            h = keras.layers.Dropout(dropout, seed=seed + j)(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Concatenate()([h, skips[len(widths) - 2 - j]])
    h = _up(out_channels, upsample, "up_out", dtype="float32")(h)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(h)
    return keras.Model(labels, image, name=name)


def build_discriminator(image_size: int = 256, num_labels: int = 3, channels: int = 1,
                        base_filters: int = 64, norm: str = "instance",
                        name: str = "discriminator") -> keras.Model:
    """70x70 PatchGAN D([label map, image]) -> logits [B, image_size/8, image_size/8, 1]."""
    _check(image_size, norm)
    labels = keras.Input((image_size, image_size, num_labels), name="label_onehot")
    image = keras.Input((image_size, image_size, channels), name="image")
    h = keras.layers.Concatenate()([labels, image])
    for i, (mult, stride) in enumerate(((1, 2), (2, 2), (4, 2), (8, 1))):
        h = keras.layers.Conv2D(base_filters * mult, 4, strides=stride, padding="same", use_bias=i == 0,
                                kernel_initializer=_init(), name=f"c{i}")(h)
        if i:
            h = _norm(norm)(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    logits = keras.layers.Conv2D(1, 4, strides=1, padding="same", kernel_initializer=_init(),
                                 dtype="float32", name="patch_logits")(h)
    return keras.Model([labels, image], logits, name=name)


class Pix2Pix(LabelMapGAN):
    """Conditional GAN translating a one-hot label map into an image (Isola et al. 2017).

    Train with ``fit(x=label_onehot, y=image)`` (or a dataset of such pairs): label maps float32
    ``[B, H, W, num_labels]``, images ``[B, H, W, out_channels]`` in [-1, 1]. There is no z
    (``latent_dim`` is 0): dropout in the generator is the noise, as in the paper.
    ``augment``, ``ema_beta`` and ``upsample``: see the module docstring (off by default).
    """

    tracker_names = ("d_loss", "g_loss", "g_gan", "g_l1")
    _global_means = ("g_gan", "g_l1")  # averaged over the global batch like the losses

    def __init__(self, image_size=256, num_labels=3, out_channels=1, base_filters=64, lambda_l1=100.0,
                 dropout=0.5, norm="instance", seed=0, augment=None, ema_beta=0.0, upsample="transpose",
                 **kwargs):
        super().__init__(
            build_generator(image_size, num_labels, out_channels, base_filters, dropout, norm, seed,
                            upsample=upsample),
            build_discriminator(image_size, num_labels, out_channels, base_filters, norm),
            latent_dim=0, num_classes=num_labels, seed=seed, augment=augment, ema_beta=ema_beta, **kwargs)
        if self.augment.active and self.augment.image_channels != int(out_channels):
            raise ConfigError(f"Pix2Pix augment needs image_channels={out_channels} (the image channels of D's "
                              f"(image, label map) input), got {self.augment.image_channels}")
        self.image_size, self.num_labels = int(image_size), int(num_labels)
        self.out_channels = int(out_channels)
        self.base_filters, self.dropout, self.norm = int(base_filters), float(dropout), norm
        self.upsample = upsample
        self.lambda_l1 = float(lambda_l1)

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        from tfganaug.gans import augment
        g = cfg.gan
        gan = cls(image_size=cfg.data.image_size, num_labels=num_labels, out_channels=channels, base_filters=g.width,
                  lambda_l1=g.lambda_l1, dropout=g.g_dropout, norm=g.norm, seed=cfg.seed,
                  augment=augment.from_config(g, cfg.seed, image_channels=channels), ema_beta=g.g_ema_beta,
                  upsample=g.upsample)
        gan.compile(d_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1, beta_2=g.beta_2),
                    g_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1, beta_2=g.beta_2))
        return gan

    def _d(self, label, image):
        """D's patch logits on the (label map, image) pair, augmented jointly (see the module
        docstring): image channels first, so the augmenter's `image_channels` are the image's."""
        pair = self.d_input(tf.concat([tf.cast(image, tf.float32), label], axis=-1))
        return self.discriminator([pair[..., self.out_channels:], pair[..., :self.out_channels]], training=True)

    def train_step(self, data):
        label, real = data[0], data[1]
        label = tf.cast(label, tf.float32)
        real = tf.cast(real, tf.float32)
        with tf.GradientTape() as g_tape:
            fake = self.generator(label, training=True)
            with g_tape.stop_recording():
                # D step on the detached fake (the tape below never saw G's forward pass).
                with tf.GradientTape() as d_tape:
                    real_logits = self._d(label, real)
                    fake_logits = self._d(label, fake)
                    # Per-patch cross-entropy, mean over patches, halved as in the paper.
                    d_loss = 0.5 * global_mean(non_saturating_d(real_logits, fake_logits))
                self._apply(self.d_optimizer, d_tape, d_loss, self.discriminator.trainable_variables)
                self.augment.accumulate(real_logits)
            fake_logits = self._d(label, fake)
            g_gan = global_mean(non_saturating_g(fake_logits))
            g_l1 = global_mean(tf.abs(real - tf.cast(fake, tf.float32)))  # un-augmented: D alone sees augmentation
            g_loss = g_gan + self.lambda_l1 * g_l1
        self._apply(self.g_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.end_step(tf.shape(real)[0])
        return self._update_trackers({"d_loss": d_loss, "g_loss": g_loss, "g_gan": g_gan, "g_l1": g_l1})

    def _update_trackers(self, values: dict) -> dict:
        # The base class rescales names ending in "loss" by the replica count; the two terms of
        # G's loss are global means too and need the same.
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        return super()._update_trackers({name: value * replicas if name in self._global_means else value
                                         for name, value in values.items()})

    def checkpoint_items(self) -> dict:
        """G, D, both optimizers and the Dropout seed states: everything exact resume needs
        besides the data position (there is no z generator to save); with augmentation or EMA on,
        also their state and the EMA generator (`training_items`, absent otherwise, so checkpoints
        from before these options restore unchanged)."""
        return {"generator": self.generator, "discriminator": self.discriminator,
                "d_optimizer": self.d_optimizer, "g_optimizer": self.g_optimizer,
                "seed_states": seed_generator_states(self.generator, self.discriminator, *self.ema.values()),
                **self.training_items()}
