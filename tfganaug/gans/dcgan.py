"""DCGAN for liver-lesion ROIs, after Frid-Adar et al. 2018 (Neurocomputing 321), section III-B,
which follows Radford et al. 2016.

Generator: z (100, uniform in [-1, 1]) -> fully connected 4x4x1024 -> four 5x5
fractionally-strided convolutions (stride 2) halving the width each time -> 64x64x1, batch
normalisation on every layer but the output, ReLU, tanh output.
Discriminator: four 5x5 stride-2 convolutions (width/8 ... width) -> fully connected logit,
batch normalisation on every layer but the input and the output, LeakyReLU 0.2; the sigmoid
of the paper is folded into the loss (softplus on logits: the same objective, numerically
safer). Weights ~ N(0, 0.02). Adam lr 2e-4 (beta_1 0.5), batch 64, 70 epochs; one DCGAN is
trained per lesion class.

`width` (paper: 1024) and the image size (paper: 64, any power of two >= 16 here) are
configurable so the same code runs at CPU budgets.

`upsample="resize"` (not in the paper; Odena et al. 2016, "Deconvolution and Checkerboard
Artifacts") replaces each fractionally-strided convolution by a nearest-neighbour 2x resize
followed by a stride-1 convolution of the same kernel size: the uneven kernel overlap of a
stride-2 transposed convolution, which prints a checkerboard into every sample, cannot
occur. The paper preset keeps `upsample="transpose"`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfganaug.gans.base import GAN, global_mean, non_saturating_d, non_saturating_g

def INIT():
    """N(0, 0.02), a new initializer per layer: one shared unseeded Keras initializer draws its
    seed once at import (from Python's `random`, before any run seed is set) and gives every
    kernel of the same shape the same values."""
    return keras.initializers.RandomNormal(stddev=0.02)


def _bn():
    # synchronized=True: statistics over the global batch under tf.distribute (unsynchronised
    # BN changed updates by up to 2x across replicas); a no-op on one device.
    return keras.layers.BatchNormalization(synchronized=True, momentum=0.9, epsilon=1e-5)


UPSAMPLING = ("transpose", "resize")


def upsample_conv(filters: int, kernel_size: int, upsample: str, **kwargs):
    """A 2x upsampling convolution: fractionally strided (the paper) or resize-then-convolve."""
    if upsample == "transpose":
        return lambda h: keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same",
                                                      kernel_initializer=INIT(), **kwargs)(h)
    if upsample != "resize":
        raise ValueError(f"expected upsample one of {UPSAMPLING}, got {upsample!r}")
    return lambda h: keras.layers.Conv2D(filters, kernel_size, padding="same", kernel_initializer=INIT(), **kwargs)(
        keras.layers.UpSampling2D(2, interpolation="nearest")(h))


def build_generator(latent_dim: int = 100, width: int = 1024, image_size: int = 64, channels: int = 1,
                    kernel_size: int = 5, num_classes: int = 0, name: str = "generator",
                    upsample: str = "transpose", conditioning: str = "multiply") -> keras.Model:
    """G(z) -> image in [-1, 1]; with `num_classes` > 0 also takes a label. Conditioning:
    "multiply" (a learned class embedding multiplies z, as in Odena et al. 2017's code) or
    "concat" (the one-hot label is appended to z, Mirza & Osindero 2014: z keeps its own
    dimensions, so it cannot be scaled away per class, which is how the multiplied form
    collapsed to one image per class on 40 ROIs per class in our runs)."""
    start = image_size // 16
    z = keras.Input((latent_dim,), name="z")
    inputs, h = [z], z
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        if conditioning == "multiply":
            embed = keras.layers.Embedding(num_classes, latent_dim, embeddings_initializer=INIT())(label)
            h = keras.layers.Multiply()([z, embed])
        elif conditioning == "concat":
            h = keras.layers.Concatenate()([z, keras.layers.CategoryEncoding(num_classes, "one_hot")(label)])
        else:
            raise ValueError(f"expected conditioning multiply or concat, got {conditioning!r}")
        inputs.append(label)
    h = keras.layers.Dense(start * start * width, use_bias=False, kernel_initializer=INIT())(h)
    h = keras.layers.Reshape((start, start, width))(h)
    h = keras.layers.ReLU()(_bn()(h))
    for i in range(1, 4):
        h = upsample_conv(width // 2 ** i, kernel_size, upsample, use_bias=False)(h)
        h = keras.layers.ReLU()(_bn()(h))
    h = upsample_conv(channels, kernel_size, upsample, dtype="float32")(h)
    image = keras.layers.Activation("tanh", dtype="float32", name="image")(h)
    return keras.Model(inputs if num_classes else z, image, name=name)


def build_discriminator(width: int = 1024, image_size: int = 64, channels: int = 1, kernel_size: int = 5,
                        name: str = "discriminator") -> keras.Model:
    x = keras.Input((image_size, image_size, channels), name="image")
    h = x
    for i, filters in enumerate((width // 8, width // 4, width // 2, width)):
        h = keras.layers.Conv2D(filters, kernel_size, strides=2, padding="same", use_bias=i == 0,
                                kernel_initializer=INIT())(h)
        if i:
            h = _bn()(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    h = keras.layers.Flatten()(h)
    logit = keras.layers.Dense(1, kernel_initializer=INIT(), dtype="float32", name="logit")(h)
    return keras.Model(x, logit, name=name)


class DCGAN(GAN):
    """Unconditional DCGAN: one is trained per lesion class (see train.py)."""

    def __init__(self, latent_dim=100, width=1024, image_size=64, channels=1, kernel_size=5, seed=0,
                 upsample="transpose", augment=None, ema_beta=0.0, **kwargs):
        super().__init__(build_generator(latent_dim, width, image_size, channels, kernel_size, upsample=upsample),
                         build_discriminator(width, image_size, channels, kernel_size),
                         latent_dim, num_classes=1, seed=seed, augment=augment, ema_beta=ema_beta, **kwargs)

    def generate(self, z, labels=None, training=False):
        return self.sampler()(z, training=training)

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        n = tf.shape(real)[0]
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_z(n), training=True)
            real_logits = self.discriminator(self.d_input(real), training=True)
            fake_logits = self.discriminator(self.d_input(fake), training=True)
            d_loss = global_mean(non_saturating_d(real_logits, fake_logits))
        self._apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        self.augment.accumulate(real_logits)
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_z(n), training=True)
            fake_logits = self.discriminator(self.d_input(fake), training=True)
            g_loss = global_mean(non_saturating_g(fake_logits))
        self._apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)
        self.end_step(n)
        return self._update_trackers({
            "d_loss": d_loss, "g_loss": g_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))})
