"""labels2image: a zero-training baseline for label-conditioned synthesis (no adversary, no gradients).

The generative model of SynthSeg (Billot et al. 2023, "SynthSeg: segmentation of brain MRI
scans of any contrast and resolution without retraining") and TorchIO's
``RandomLabelsToImage`` (Pérez-García et al. 2021), with its intensities fitted to the real
training data instead of drawn at random: a label map becomes an image by giving every label
region an intensity drawn from that label's distribution in the real training images, a
texture of smoothed Gaussian noise with the label's within-region spread, and a slight blur
(partial volume). A GAN that does not beat this downstream (Pix2Pix in the KiTS capstone,
StyleGAN2 in Son et al.) has learned nothing a histogram per label does not know.

Fitted per label l and channel c, over the training images in which l occurs:

* ``mu[l, c]``: mean of the per-image region means; ``sd_between[l, c]``: their standard
  deviation (how much the organ's brightness varies between patients and scans);
* ``sd_within[l, c]``: root mean of the per-image within-region variances (texture and noise).

Label 0 is different: in these label maps it is air, body and every unlabelled organ at once,
which no single intensity distribution can draw (SynthSeg avoids this with whole-head label
maps). It is drawn from a per-pixel atlas instead: the mean and standard deviation, at each
pixel, of the training images wherever that pixel is background, so the background shows the
average anatomy of the training slices.

Sampling an image for a one-hot label map: per label l >= 1, a region mean ``mu + sd_between
* z`` (one z per image, label and channel); per pixel, that mean plus ``sd_within`` times a
texture (white Gaussian noise blurred with ``texture_sigma`` pixels, rescaled to unit
variance); background pixels the atlas mean plus the atlas standard deviation times the same
texture; the result blurred with ``edge_sigma`` pixels and clipped to [-1, 1] (the GANs'
range). A label never seen in training is mid-grey. Every random number is stateless, seeded by ``seed`` and
a hash of the label map, so the generator is a pure function of its input, as Pix2Pix with
dropout off is: the same map gives the same image (synthesis, export and its verification
agree bitwise), two different maps independent draws.

"Training" (``train_step``) accumulates the sums behind these statistics in non-trainable
weights of the generator; one epoch over the training pairs fits them exactly (more epochs
count the same pairs again and leave them unchanged up to rounding; flips do not change them).
It is a `gans.base.LabelMapGAN` like Pix2Pix (``synthesises_from = "label_maps"``), so
train-gan, synthesize, export and `evaluate --fidelity` treat it as any other label-map GAN.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfganaug.gans.base import LabelMapGAN


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of (B, H, W, C), reflect-padded so the borders keep their level."""
    if sigma <= 0:
        return x
    k = _gaussian_kernel(sigma)
    r, channels = len(k) // 2, x.shape[-1]
    x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    rows = tf.constant(np.tile(k[:, None, None, None], (1, 1, channels, 1)))
    cols = tf.constant(np.tile(k[None, :, None, None], (1, 1, channels, 1)))
    x = tf.nn.depthwise_conv2d(x, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(x, cols, [1, 1, 1, 1], "VALID")


@keras.saving.register_keras_serializable(package="tfganaug")
class LabelIntensities(keras.layers.Layer):
    """One-hot label map (B, H, W, K) -> image (B, H, W, C) in [-1, 1] from fitted per-label statistics."""

    def __init__(self, num_labels: int, channels: int, texture_sigma: float = 1.0, edge_sigma: float = 0.5,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_labels, self.channels = int(num_labels), int(channels)
        self.texture_sigma, self.edge_sigma, self.seed = float(texture_sigma), float(edge_sigma), int(seed)

    def build(self, input_shape):
        k, c = self.num_labels, self.channels
        stat = dict(initializer="zeros", trainable=False)
        self.images_with_label = self.add_weight(shape=(k,), name="images_with_label", **stat)
        self.sum_mean = self.add_weight(shape=(k, c), name="sum_region_mean", **stat)
        self.sum_mean_sq = self.add_weight(shape=(k, c), name="sum_region_mean_sq", **stat)
        self.sum_var = self.add_weight(shape=(k, c), name="sum_region_var", **stat)
        h, w = int(input_shape[1]), int(input_shape[2])
        self.background_count = self.add_weight(shape=(h, w, 1), name="background_count", **stat)
        self.background_sum = self.add_weight(shape=(h, w, c), name="background_sum", **stat)
        self.background_sum_sq = self.add_weight(shape=(h, w, c), name="background_sum_sq", **stat)
        # fixed pseudo-random weight per pixel: a label map's hash is its weighted label sum
        self._position = tf.constant((np.arange(h * w, dtype=np.int64) * 2654435761 + 12345).reshape(h, w)
                                     % 2147483647)

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels, "channels": self.channels,
                "texture_sigma": self.texture_sigma, "edge_sigma": self.edge_sigma, "seed": self.seed}

    def region_statistics(self, onehot, image):
        """Per image and label: (present (B, K), region means (B, K, C), region variances (B, K, C))."""
        onehot, image = tf.cast(onehot, tf.float32), tf.cast(image, tf.float32)
        count = tf.reduce_sum(onehot, axis=(1, 2))
        safe = tf.maximum(count, 1.0)[..., None]
        mean = tf.einsum("bhwk,bhwc->bkc", onehot, image) / safe
        mean_sq = tf.einsum("bhwk,bhwc->bkc", onehot, tf.square(image)) / safe
        return tf.cast(count > 0, tf.float32), mean, tf.maximum(mean_sq - tf.square(mean), 0.0)

    def accumulate(self, onehot, image):
        present, mean, var = self.region_statistics(onehot, image)
        self.images_with_label.assign_add(tf.reduce_sum(present, 0))
        weight = present[..., None]
        self.sum_mean.assign_add(tf.reduce_sum(weight * mean, 0))
        self.sum_mean_sq.assign_add(tf.reduce_sum(weight * tf.square(mean), 0))
        self.sum_var.assign_add(tf.reduce_sum(weight * var, 0))
        background = tf.cast(onehot[..., :1], tf.float32)
        image = tf.cast(image, tf.float32)
        self.background_count.assign_add(tf.reduce_sum(background, 0))
        self.background_sum.assign_add(tf.reduce_sum(background * image, 0))
        self.background_sum_sq.assign_add(tf.reduce_sum(background * tf.square(image), 0))

    def statistics(self):
        """(mu, sd_between, sd_within), each (K, C); an unseen label: 0 (mid-grey), 0, 0."""
        n = tf.maximum(self.images_with_label, 1.0)[:, None]
        mu = self.sum_mean / n
        return (mu, tf.sqrt(tf.maximum(self.sum_mean_sq / n - tf.square(mu), 0.0)),
                tf.sqrt(tf.maximum(self.sum_var / n, 0.0)))

    def atlas(self):
        """Per-pixel mean and standard deviation (H, W, C) of the training background; a pixel
        never background in training gets label 0's mean and no spread."""
        mu, _, _ = self.statistics()
        seen = self.background_count > 0
        n = tf.maximum(self.background_count, 1.0)
        mean = self.background_sum / n
        sd = tf.sqrt(tf.maximum(self.background_sum_sq / n - tf.square(mean), 0.0))
        return tf.where(seen, mean, mu[0]), tf.where(seen, sd, 0.0)

    def call(self, onehot):
        onehot = tf.cast(onehot, tf.float32)
        k, c = self.num_labels, self.channels
        h, w = onehot.shape[1], onehot.shape[2]
        labels = tf.argmax(onehot, axis=-1, output_type=tf.int64)
        hashes = tf.reduce_sum((labels + 1) * self._position, axis=(1, 2)) % 2147483647
        seed = tf.constant(self.seed, tf.int64)
        noise = tf.map_fn(lambda s: tf.random.stateless_normal([k * c + h * w * c], tf.stack([seed, s])), hashes,
                          fn_output_signature=tf.float32)
        batch = tf.shape(onehot)[0]
        z_region = tf.reshape(noise[:, :k * c], [batch, k, c])
        texture = gaussian_blur(tf.reshape(noise[:, k * c:], [batch, h, w, c]), self.texture_sigma)
        if self.texture_sigma > 0:  # back to unit variance: blurring white noise divides it by sum(kernel^2)
            kernel = _gaussian_kernel(self.texture_sigma)
            texture = texture / float(np.sum(kernel ** 2))
        mu, sd_between, sd_within = self.statistics()
        region_mean = mu[None] + sd_between[None] * z_region
        labelled = onehot[..., 1:]
        atlas_mean, atlas_sd = self.atlas()
        image = (tf.einsum("bhwk,bkc->bhwc", labelled, region_mean[:, 1:])
                 + tf.einsum("bhwk,kc->bhwc", labelled, sd_within[1:]) * texture
                 + onehot[..., :1] * (atlas_mean[None] + atlas_sd[None] * texture))
        return tf.clip_by_value(gaussian_blur(image, self.edge_sigma), -1.0, 1.0)


def build_generator(image_size: int, num_labels: int, channels: int, texture_sigma: float = 1.0,
                    edge_sigma: float = 0.5, seed: int = 0) -> keras.Model:
    onehot = keras.Input((image_size, image_size, num_labels), name="label_onehot")
    image = LabelIntensities(num_labels, channels, texture_sigma, edge_sigma, seed, name="label_intensities")(onehot)
    return keras.Model(onehot, image, name="generator")


class Labels2Image(LabelMapGAN):
    """Label map -> image from per-label intensity statistics of the training data (see the module docstring)."""

    tracker_names = ("l1_to_label_means",)

    def __init__(self, image_size=64, num_labels=3, out_channels=1, texture_sigma=1.0, edge_sigma=0.5, seed=0,
                 **kwargs):
        super().__init__(build_generator(image_size, num_labels, out_channels, texture_sigma, edge_sigma, seed),
                         None, latent_dim=0, num_classes=num_labels, seed=seed, **kwargs)
        self.num_labels, self.out_channels = int(num_labels), int(out_channels)
        self.intensities = self.generator.get_layer("label_intensities")

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        gan = cls(image_size=cfg.data.image_size, num_labels=num_labels, out_channels=channels, seed=cfg.seed)
        gan.compile()
        return gan

    def compile(self, **kwargs):
        keras.Model.compile(self, **kwargs)  # no optimizers: nothing is learned by gradient

    def train_step(self, data):
        label, real = tf.cast(data[0], tf.float32), tf.cast(data[1], tf.float32)
        self.intensities.accumulate(label, real)
        mu, _, _ = self.intensities.statistics()
        # how far the images are from their labels' fitted means: the texture this baseline draws
        l1 = tf.reduce_mean(tf.abs(real - tf.einsum("bhwk,kc->bhwc", label, mu)))
        return self._update_trackers({"l1_to_label_means": l1})

    def checkpoint_items(self) -> dict:
        return {"generator": self.generator, "noise": self.noise}
