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
occur. The paper preset keeps `upsample="transpose"`. It is computed by `ResizeConv2D`, the
same function and weights at about 9/25 of the multiply-adds (at k = 5) of upsampling first.

`layout="sngan"` (not in the paper; the cpu_dcgan / cpu_acgan presets) is the 32 px
generator of Miyato et al. 2018 ("Spectral Normalization for GANs", Table 3(a), after Radford
et al.'s CIFAR-10 models): the first layer is (image/8)^2 x width, three upsampling layers
(width/2, width/4, width/8) reach the full resolution, and a 3x3 stride-1 convolution maps to
the image. The paper's layout starts at (image/16)^2 and its last upsampling layer writes the
image directly, so at 32 px it starts from 2x2 and the full-resolution pixels come from a
single layer. On OrganAMNIST (60 crops per class, 32 px, width 96, 2,000 steps, seed 0) the
sngan layout's samples varied across z about twice as much (pixel std across samples 0.35 vs
0.20; real 0.41) and lost most of the paper layout's pixel grain; starting at image/8 alone gave
the variety but kept the grain (0.35; the final 3x3 convolution removed it).

D's batch normalisation is `SplitBatchNormalization`, so D's step scores reals and fakes in
one pass with the separate real / fake batch statistics of the paper (`GAN.discriminate_pair`).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfganaug.gans.base import GAN, SplitBatchNormalization, global_mean, non_saturating_d, non_saturating_g

def INIT():
    """N(0, 0.02), a new initializer per layer: one shared unseeded Keras initializer draws its
    seed once at import (from Python's `random`, before any run seed is set) and gives every
    kernel of the same shape the same values."""
    return keras.initializers.RandomNormal(stddev=0.02)


def _bn():
    # synchronized=True: statistics over the global batch under tf.distribute (unsynchronised
    # BN changed updates by up to 2x across replicas); on one device as fast as unsynchronised
    # (measured in the bench, issue 13 part 7).
    return keras.layers.BatchNormalization(synchronized=True, momentum=0.9, epsilon=1e-5)


def d_batch_norm():
    # D's batch normalisation: the same, but able to keep the real and the fake half of one
    # joint D pass apart (GAN.discriminate_pair): the paper's separate-batch statistics.
    return SplitBatchNormalization(synchronized=True, momentum=0.9, epsilon=1e-5)


UPSAMPLING = ("transpose", "resize")
G_LAYOUTS = ("paper", "sngan")


def _phase_taps(kernel_size: int):
    """The 0/1 matrix (T*T*4, k*k) that maps a k x k kernel (flattened) to the four T x T phase
    kernels, rows ordered (ey, ex, a, b), and the low-resolution padding (before, after).

    Tap d of a stride-1 'same' k-kernel applied to a nearest-2x-upsampled row reads the
    low-resolution pixel i + floor((a + d) / 2) for output pixel 2i + a, so phase a of the
    output is a T-tap convolution of the low-resolution row whose taps are sums of the k taps."""
    before = (kernel_size - 1) // 2  # Keras 'same' for stride 1: floor((k-1)/2) before, the rest after
    offsets = [[(a + j - before) // 2 for j in range(kernel_size)] for a in (0, 1)]
    low, high = min(min(o) for o in offsets), max(max(o) for o in offsets)
    t = high - low + 1
    taps = np.zeros((2, t, kernel_size), np.float32)  # taps[a, e, d]
    for a in (0, 1):
        for j, e in enumerate(offsets[a]):
            taps[a, e - low, j] = 1.0
    matrix = np.einsum("aed,bfg->efabdg", taps, taps).reshape(t * t * 4, kernel_size * kernel_size)
    return matrix, t, (-low, high)


@keras.saving.register_keras_serializable(package="tfganaug")
class ResizeConv2D(keras.layers.Conv2D):
    """Nearest 2x upsampling followed by a stride-1 'same' convolution, computed at the low
    resolution: the same function as `UpSampling2D(2, "nearest")` then `Conv2D(k, padding="same")`
    (equal up to float rounding, zero padding included) and the same weights (a k x k kernel),
    in about (ceil(k/2) + 1)^2 / k^2 of the multiply-adds (9/25 at k = 5): each of the four
    output phases (2i + a, 2j + b) is a small convolution of the low-resolution input whose
    taps are sums of the k x k taps, so one convolution with 4x the output channels and a
    depth-to-space give the upsampled result."""

    def __init__(self, filters, kernel_size, **kwargs):
        kwargs.pop("strides", None), kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, strides=1, padding="same", **kwargs)
        if self.kernel_size[0] != self.kernel_size[1] or self.dilation_rate != (1, 1) or self.groups != 1:
            raise ValueError("ResizeConv2D expects a square kernel, no dilation and groups=1")
        if self.data_format != "channels_last":
            raise ValueError("ResizeConv2D expects channels_last")

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def call(self, inputs):
        k, cin, cout = self.kernel_size[0], self.kernel.shape[2], self.filters
        matrix, t, (before, after) = _phase_taps(k)
        # phase[ey, ex, a, b, in, out] = sum_{dy,dx} taps[a, ey, dy] taps[b, ex, dx] kernel[dy, dx, in, out]
        # (one small matmul; a 3-operand tf.einsum took longer than the convolutions on oneDNN)
        phase = tf.matmul(tf.constant(matrix, self.kernel.dtype), tf.reshape(self.kernel, [k * k, cin * cout]))
        phase = tf.transpose(tf.reshape(phase, [t, t, 4, cin, cout]), [0, 1, 3, 2, 4])
        phase = tf.cast(tf.reshape(phase, [t, t, cin, 4 * cout]), inputs.dtype)
        x = tf.pad(inputs, [[0, 0], [before, after], [before, after], [0, 0]])
        out = tf.nn.conv2d(x, phase, strides=1, padding="VALID")
        if self.use_bias:
            out = out + tf.cast(tf.tile(self.bias, [4]), out.dtype)
        out = tf.nn.depth_to_space(out, 2)  # channel (a * 2 + b) * filters + o -> pixel (2i + a, 2j + b)
        return self.activation(out) if self.activation is not None else out


def upsample_conv(filters: int, kernel_size: int, upsample: str, fused_resize: bool = True, **kwargs):
    """A 2x upsampling convolution: fractionally strided (the paper) or resize-then-convolve
    (`ResizeConv2D`; the Identity before it keeps the layer positions, hence the checkpoint
    paths, of generators built with UpSampling2D + Conv2D before, so their runs still restore)."""
    if upsample == "transpose":
        return lambda h: keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same",
                                                      kernel_initializer=INIT(), **kwargs)(h)
    if upsample != "resize":
        raise ValueError(f"expected upsample one of {UPSAMPLING}, got {upsample!r}")
    if not fused_resize:  # the textbook layers (the bench's keras-io reference)
        return lambda h: keras.layers.Conv2D(filters, kernel_size, padding="same", kernel_initializer=INIT(),
                                             **kwargs)(keras.layers.UpSampling2D(2, interpolation="nearest")(h))
    return lambda h: ResizeConv2D(filters, kernel_size, kernel_initializer=INIT(), **kwargs)(
        keras.layers.Identity()(h))


def build_generator(latent_dim: int = 100, width: int = 1024, image_size: int = 64, channels: int = 1,
                    kernel_size: int = 5, num_classes: int = 0, name: str = "generator",
                    upsample: str = "transpose", conditioning: str = "multiply",
                    fused_resize: bool = True, layout: str = "paper") -> keras.Model:
    """G(z) -> image in [-1, 1]; with `num_classes` > 0 also takes a label. Conditioning:
    "multiply" (a learned class embedding multiplies z, as in Odena et al. 2017's code) or
    "concat" (the one-hot label is appended to z, Mirza & Osindero 2014: z keeps its own
    dimensions, so it cannot be scaled away per class, which is how the multiplied form
    collapsed to one image per class on 40 ROIs per class in our runs). `fused_resize=False`
    builds `upsample="resize"` from the textbook UpSampling2D + Conv2D layers instead of
    `ResizeConv2D` (the same function and weights; used by the bench's keras-io reference).
    `layout`: "paper" (start at image/16, the last upsampling writes the image) or "sngan"
    (start at image/8, a 3x3 convolution writes the image at full resolution: module docstring)."""
    if layout not in G_LAYOUTS:
        raise ValueError(f"expected layout one of {G_LAYOUTS}, got {layout!r}")
    start = image_size // (16 if layout == "paper" else 8)
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
        h = upsample_conv(width // 2 ** i, kernel_size, upsample, fused_resize, use_bias=False)(h)
        h = keras.layers.ReLU()(_bn()(h))
    if layout == "paper":
        h = upsample_conv(channels, kernel_size, upsample, fused_resize, dtype="float32")(h)
    else:
        h = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer=INIT(), dtype="float32")(h)
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
            h = d_batch_norm()(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    h = keras.layers.Flatten()(h)
    logit = keras.layers.Dense(1, kernel_initializer=INIT(), dtype="float32", name="logit")(h)
    return keras.Model(x, logit, name=name)


class DCGAN(GAN):
    """Unconditional DCGAN: one is trained per lesion class (`members`)."""

    def __init__(self, latent_dim=100, width=1024, image_size=64, channels=1, kernel_size=5, seed=0,
                 upsample="transpose", augment=None, ema_beta=0.0, g_layout="paper", **kwargs):
        super().__init__(build_generator(latent_dim, width, image_size, channels, kernel_size, upsample=upsample,
                                         layout=g_layout),
                         build_discriminator(width, image_size, channels, kernel_size),
                         latent_dim, num_classes=1, seed=seed, augment=augment, ema_beta=ema_beta, **kwargs)

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        from tfganaug.gans import augment
        seed = cfg.seed * 1000 + member
        g = cfg.gan
        gan = cls(latent_dim=g.latent_dim, width=g.width, image_size=cfg.data.image_size, kernel_size=g.kernel_size,
                  seed=seed, upsample=g.upsample, augment=augment.from_config(g, seed), ema_beta=g.g_ema_beta,
                  g_layout=g.g_layout)
        gan.compile(d_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1),
                    g_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1))
        return gan

    @classmethod
    def members(cls, arch, class_names):
        return list(class_names)  # one DCGAN per class, named after it

    @classmethod
    def member_data(cls, images, labels, index):
        keep = labels == index
        return images[keep], np.zeros(int(keep.sum()), np.int32)

    def generate(self, z, labels=None, training=False):
        return self.sampler()(z, training=training)

    def ema_statistics_inputs(self, name, n):
        return self.sample_z(n)

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        n = tf.shape(real)[0]
        with tf.GradientTape() as tape:
            fake = self.generator(self.sample_z(n), training=True)
            real_logits, fake_logits = self.discriminate_pair(self.d_input(real), self.d_input(fake))
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
