"""StyleGAN2 generating multi-contrast MR images and their tumour mask together.

Architecture and training after Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN" (CVPR 2020, arXiv:1912.04958; config F, with the details of NVlabs' stylegan2 /
stylegan2-ada reference code), as used on BraTS 2018 by Son, Eo, Jun, Shin and Hwang (Yonsei
University; an ISMRM abstract: a StyleGAN2-based architecture that jointly generates
multi-contrast MR images and segmentation maps, all other settings of StyleGAN2 unchanged):

* **Mapping network** f: z (normalised to unit second moment, "pixel norm") -> ``mapping_layers``
  fully connected layers, LeakyReLU 0.2, learning-rate multiplier 0.01 -> w, broadcast to the
  ``num_ws = 2 log2(resolution) - 2`` style inputs. ``w_avg`` (an EMA of w, decay 0.995) gives
  the truncation trick w' = w_avg + psi (w - w_avg) (StyleGAN, Karras et al. 2019, appendix B).
* **Synthesis network** g: a learned 4x4 constant; per resolution two 3x3 convolutions whose
  weights are *modulated* by a per-layer style s = A(w) (A: affine, bias initialised to 1) and
  *demodulated* (paper sec. 2.2, eq. 1-3): w'_ijk = s_i w_ijk, w''_ijk = w'_ijk /
  sqrt(sum_ik w'^2_ijk + 1e-8). Implemented both ways of the reference code: scaling the
  activations before and after a shared convolution (training) and per-sample weights run as one
  grouped convolution ("fused", used by :meth:`StyleGAN2.generate`); a test checks they agree.
  After each convolution: per-pixel Gaussian noise times a learned per-layer strength
  (initialised 0), bias, LeakyReLU 0.2 with gain sqrt(2).
* **Skip generator** (paper sec. 4.1, fig. 7): every resolution has a tRGB (a modulated 1x1
  convolution without demodulation); the outputs are up-sampled and summed. The image is linear
  (no tanh), as in StyleGAN2.
* **Residual discriminator** (fig. 7c) with the minibatch standard deviation layer (group 4,
  one feature; Karras et al. 2018) and a 3x3 conv + two dense layers at 4x4; residual branches
  scaled by sqrt(0.5).
* **Resampling** with the [1, 3, 3, 1] FIR filter (a depthwise convolution): up = zero
  insertion + filter (gain 4), down = filter + stride 2. The up-sampling convolution is
  "up-sample, then modulated 3x3 convolution", the same linear map as the reference code's
  transposed convolution followed by the filter (the two filters commute) up to border handling.
* **Equalised learning rate** everywhere (Karras et al. 2018): weights ~ N(0, 1/lr_mul) scaled
  at run time by lr_mul / sqrt(fan_in).
* **Losses**: non-saturating logistic loss; lazy R1 (Mescheder et al. 2018) on reals (every ``r1_interval`` = 16 D
  steps, weight gamma/2, multiplied by the interval, paper sec. 3.1); path-length
  regularisation (sec. 3.2: every ``pl_interval`` = 4 G steps, weight 2, pl_mean an EMA with
  decay 0.01, on half the batch ("batch shrink" 2)); style-mixing regularisation (probability
  0.9, one crossover point per minibatch); an EMA copy of the generator (``G_ema``) for sampling.
* **Optimizers** (sec. 3.1 and appendix B): Adam lr 0.0025, betas (0, 0.99), eps 1e-8, with the lazy
  regularisation correction c = k / (k + 1): lr' = c lr, beta' = beta^c
  (:func:`stylegan2_optimizers`).

Joint image + mask output (Son et al.): the generator makes ``n_channels`` MR contrasts (default
4: T1, T1-CE, T2, FLAIR) and a segmentation head, a 1x1 convolution on the final
full-resolution features + softmax over ``num_labels`` (default 4: background, necrosis /
non-enhancing core, oedema, enhancing tumour), so every fake image comes with its mask. The
discriminator sees ``concat(images, mask probabilities)``; real masks enter one-hot.

Lazy regularisation runs on the step counter inside the graph. ``reg_step="separate"`` is the
paper's: an extra optimizer step on the regulariser alone, sharing Adam's state (hence the c
correction). Under a multi-device ``tf.distribute`` strategy, an optimizer step inside
``tf.cond`` is not supported (its gradient all-reduce is a ``merge_call``), so ``"auto"`` then
uses ``"joint"``: the regulariser's gradient (already multiplied by the interval) is added to
the main gradient of the same minibatch, one optimizer step per minibatch.

Differentiable augmentation (not in Karras et al. 2020 nor in Son et al.; off by default, so the
paper preset stays the paper's; the cpu_* presets may switch it on and say so): ``augment``, a
:class:`~tfganaug.gans.augment.DiscriminatorAugment` built with ``image_channels=n_channels``
(DiffAugment policies and/or ADA, Karras et al. 2020 "Training Generative Adversarial Networks
with Limited Data", i.e. StyleGAN2-ADA). Everything D sees goes through it: the reals
``concat(images, one-hot masks)`` and the fakes ``concat(images, mask probabilities)`` in D's
step, the fakes in G's step; geometric ops move the contrasts and the mask together, intensity
ops and cutout touch the contrasts only. R1 is computed as in StyleGAN2-ADA: D on freshly
augmented reals, the gradient taken with respect to the un-augmented reals (through the
differentiable augmentation). ADA's r_t comes from D's logits on the augmented reals of the
main D step; p is updated at the end of every step. The path-length regulariser does not
involve D and is unchanged. The generator already has its EMA copy (``G_ema``, ``ema_beta``).

Every layer computes in float32 whatever the global mixed-precision policy (the reference
code's fp16 layers need its activation clamping, which is not implemented). Also not
implemented: the truncation cut-off (psi applies to every layer) and class conditioning.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfganaug.errors import ConfigError
from tfganaug.gans.base import GAN, global_mean, grid_rows, non_saturating_d, non_saturating_g, seed_generator_states

SQRT2 = math.sqrt(2.0)
FIR = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]) / 64.0
"""The 2-D [1, 3, 3, 1] binomial filter, normalised to sum 1."""


# --- resampling and the modulated convolution -----------------------------------------------

def _fir(x, pad0: int, pad1: int, gain: float = 1.0, down: int = 1):
    """Pad then filter every channel with the 4x4 FIR kernel (a depthwise convolution)."""
    channels = x.shape[-1]
    kernel = tf.constant(FIR * gain, tf.float32)[:, :, None, None]
    x = tf.pad(x, [[0, 0], [pad0, pad1], [pad0, pad1], [0, 0]])
    return tf.nn.depthwise_conv2d(x, tf.tile(kernel, [1, 1, channels, 1]), [1, down, down, 1], "VALID")


def upsample2d(x):
    """2x up-sampling: zero insertion then the FIR filter with gain 4 (upfirdn2d, up=2)."""
    shape = tf.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    x = tf.reshape(x, [n, h, 1, w, 1, c])
    x = tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 0], [0, 1], [0, 0]])
    x = tf.reshape(x, [n, 2 * h, 2 * w, c])
    return _fir(x, 2, 1, gain=4.0)


def downsample2d(x):
    """2x down-sampling: the FIR filter then every other pixel (upfirdn2d, down=2)."""
    return _fir(x, 1, 1, down=2)


def lrelu(x):
    """LeakyReLU 0.2 with gain sqrt(2), which keeps the signal's magnitude (reference bias_act)."""
    return tf.nn.leaky_relu(x, 0.2) * SQRT2


def modulated_conv2d(x, weight, styles, demodulate: bool = True, up: bool = False, fused: bool = False):
    """Modulated (and demodulated) convolution, paper sec. 2.2, eq. 1-3.

    ``x`` [N, H, W, I], ``weight`` [k, k, I, O], ``styles`` [N, I]. ``fused=False`` scales the
    activations by the style before a convolution shared by the batch and by the demodulation
    coefficients after it; ``fused=True`` builds the per-sample weights and runs them as one
    grouped convolution. Both compute the same thing.
    """
    if up:
        x = upsample2d(x)
    dcoefs = None
    if demodulate:
        w = weight[None] * styles[:, None, None, :, None]                         # [N, k, k, I, O]
        dcoefs = tf.math.rsqrt(tf.reduce_sum(tf.square(w), axis=[1, 2, 3]) + 1e-8)  # [N, O]
    if not fused:
        x = tf.nn.conv2d(x * styles[:, None, None, :], weight, 1, "SAME")
        return x if dcoefs is None else x * dcoefs[:, None, None, :]
    w = weight[None] * styles[:, None, None, :, None]
    if dcoefs is not None:
        w = w * dcoefs[:, None, None, None, :]
    k, in_ch, out_ch = weight.shape[0], weight.shape[2], weight.shape[3]
    shape = tf.shape(x)
    n, h, wd = shape[0], shape[1], shape[2]
    grouped = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, wd, n * in_ch])         # samples -> groups
    kernel = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]), [k, k, in_ch, n * out_ch])
    y = tf.nn.conv2d(grouped, kernel, 1, "SAME")
    return tf.transpose(tf.reshape(y, [h, wd, n, out_ch]), [2, 0, 1, 3])


def minibatch_stddev(x, group_size: int = 4, num_features: int = 1):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3), as in the reference code.

    The batch is split into groups of G samples (sample i in group i mod N/G); the std over each
    group, averaged over pixels and channels, is appended as ``num_features`` constant maps.
    G is the largest of ``group_size``..1 that divides the (per-replica) batch.
    """
    shape = tf.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    sizes = tf.range(group_size, 0, -1)
    g = tf.gather(sizes, tf.argmax(tf.cast(tf.equal(n % sizes, 0), tf.int32)))
    f = num_features
    y = tf.reshape(x, [g, -1, h, w, f, c // f])
    y = y - tf.reduce_mean(y, axis=0)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + 1e-8)    # [n/G, H, W, F, c/F]
    y = tf.reduce_mean(y, axis=[1, 2, 4])                       # [n/G, F]
    y = tf.tile(y, [g, 1])[:, None, None, :]                    # [N, 1, 1, F]
    return tf.concat([x, tf.broadcast_to(y, [n, h, w, f])], axis=-1)


# --- equalised-learning-rate layers ---------------------------------------------------------

def _attach(owner, layers) -> tuple[str, ...]:
    """Make each sub-layer an attribute named after it and return the names, in order.

    Keras 3 tracks layers held in a Python list for ``weights``, but TensorFlow's checkpoint
    does not see them (the list is a Keras ``TrackedList``, not a TF trackable): only attributes
    are checkpoint dependencies. Found by a round-trip test.
    """
    names = []
    for layer in layers:
        setattr(owner, layer.name, layer)
        names.append(layer.name)
    return tuple(names)


class _Seeds:
    """Deterministic initializer seeds: the same model seed gives the same weights."""

    def __init__(self, seed: int):
        self.next = int(seed) * 1000 + 1

    def normal(self, stddev: float = 1.0):
        self.next += 1
        return keras.initializers.RandomNormal(0.0, stddev, seed=self.next)


class EqualizedDense(keras.layers.Layer):
    """Fully connected layer with equalised learning rate and a learning-rate multiplier."""

    def __init__(self, in_dim: int, units: int, seeds: _Seeds, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activation: bool = False, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        self.kernel = self.add_weight(shape=(in_dim, units), initializer=seeds.normal(1.0 / lr_mul),
                                      name="kernel", aggregation="mean")
        self.bias = self.add_weight(shape=(units,), initializer=keras.initializers.Constant(bias_init),
                                    name="bias", aggregation="mean")
        self.weight_gain, self.bias_gain = lr_mul / math.sqrt(in_dim), lr_mul
        self.activation = activation
        self.built = True

    def call(self, x):
        y = tf.matmul(x, self.kernel * self.weight_gain) + self.bias * self.bias_gain
        return lrelu(y) if self.activation else y


class EqualizedConv2D(keras.layers.Layer):
    """Convolution with equalised learning rate, optional FIR down-sampling (discriminator)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, seeds: _Seeds, use_bias: bool = True,
                 activation: bool = False, down: bool = False, gain: float = 1.0, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        self.kernel = self.add_weight(shape=(kernel_size, kernel_size, in_ch, out_ch), initializer=seeds.normal(),
                                      name="kernel", aggregation="mean")
        self.bias = self.add_weight(shape=(out_ch,), initializer="zeros", name="bias",
                                    aggregation="mean") if use_bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.kernel_size, self.activation, self.down, self.gain = kernel_size, activation, down, gain
        self.built = True

    def call(self, x):
        w = self.kernel * self.weight_gain
        if self.down and self.kernel_size == 1:
            x = tf.nn.conv2d(downsample2d(x), w, 1, "VALID")
        elif self.down:  # filter (padded so the output is H/2), then a stride-2 convolution
            pad = self.kernel_size // 2 + 1
            x = tf.nn.conv2d(_fir(x, pad, pad), w, 2, "VALID")
        else:
            x = tf.nn.conv2d(x, w, 1, "SAME")
        if self.bias is not None:
            x = x + self.bias
        if self.activation:
            x = lrelu(x)
        return x * self.gain if self.gain != 1.0 else x


# --- generator --------------------------------------------------------------------------------

class MappingNetwork(keras.layers.Layer):
    """z -> w: normalise z, then ``num_layers`` equalised dense layers with lr multiplier 0.01."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int, seeds: _Seeds,
                 lr_mul: float = 0.01, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        dims = [z_dim] + [w_dim] * num_layers
        self._fc_names = _attach(self, [EqualizedDense(dims[i], dims[i + 1], seeds, lr_mul=lr_mul, activation=True,
                                                       name=f"fc{i}") for i in range(num_layers)])
        self.num_ws = num_ws
        self.built = True

    @property
    def fcs(self):
        return [getattr(self, name) for name in self._fc_names]

    def call(self, z):
        x = z * tf.math.rsqrt(tf.reduce_mean(tf.square(z), axis=1, keepdims=True) + 1e-8)
        for fc in self.fcs:
            x = fc(x)
        return tf.tile(x[:, None, :], [1, self.num_ws, 1])


class SynthesisLayer(keras.layers.Layer):
    """Modulated/demodulated 3x3 convolution + noise (learned strength) + bias + LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, seeds: _Seeds, up: bool = False,
                 **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        self.affine = EqualizedDense(w_dim, in_ch, seeds, bias_init=1.0, name="affine")
        self.kernel = self.add_weight(shape=(3, 3, in_ch, out_ch), initializer=seeds.normal(), name="kernel",
                                      aggregation="mean")
        self.bias = self.add_weight(shape=(out_ch,), initializer="zeros", name="bias", aggregation="mean")
        self.noise_strength = self.add_weight(shape=(), initializer="zeros", name="noise_strength",
                                              aggregation="mean")
        self.noise_const = self.add_weight(shape=(resolution, resolution, 1), initializer=seeds.normal(),
                                           trainable=False, name="noise_const", aggregation="mean")
        self.up, self.resolution = up, resolution
        self.built = True

    def call(self, x, w, noise=None, fused=False):
        x = modulated_conv2d(x, self.kernel, self.affine(w), demodulate=True, up=self.up, fused=fused)
        if noise is not None:
            x = x + noise * self.noise_strength
        return lrelu(x + self.bias)


class ToRGB(keras.layers.Layer):
    """tRGB: modulated 1x1 convolution without demodulation, linear output (paper fig. 7b)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, seeds: _Seeds, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        self.affine = EqualizedDense(w_dim, in_ch, seeds, bias_init=1.0, name="affine")
        self.kernel = self.add_weight(shape=(1, 1, in_ch, out_ch), initializer=seeds.normal(), name="kernel",
                                      aggregation="mean")
        self.bias = self.add_weight(shape=(out_ch,), initializer="zeros", name="bias", aggregation="mean")
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.built = True

    def call(self, x, w, fused=False):
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.kernel, styles, demodulate=False, fused=fused) + self.bias


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: min(channel_base // res, channel_max), as the reference code."""
    return min(channel_base // resolution, channel_max)


class SynthesisNetwork(keras.layers.Layer):
    """ws [N, num_ws, w_dim] -> (images [N, R, R, n_channels], mask probabilities [N, R, R, num_labels])."""

    def __init__(self, resolution: int, n_channels: int, num_labels: int, w_dim: int, channel_base: int,
                 channel_max: int, seeds: _Seeds, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        ch = {r: channels_at(r, channel_base, channel_max) for r in _resolutions(resolution)}
        self.resolution = resolution
        self.const = self.add_weight(shape=(4, 4, ch[4]), initializer=seeds.normal(), name="const",
                                     aggregation="mean")
        convs = [SynthesisLayer(ch[4], ch[4], w_dim, 4, seeds, name="b4_conv1")]
        torgbs = [ToRGB(ch[4], n_channels, w_dim, seeds, name="b4_torgb")]
        for r in _resolutions(resolution)[1:]:
            convs.append(SynthesisLayer(ch[r // 2], ch[r], w_dim, r, seeds, up=True, name=f"b{r}_conv0"))
            convs.append(SynthesisLayer(ch[r], ch[r], w_dim, r, seeds, name=f"b{r}_conv1"))
            torgbs.append(ToRGB(ch[r], n_channels, w_dim, seeds, name=f"b{r}_torgb"))
        self._conv_names, self._torgb_names = _attach(self, convs), _attach(self, torgbs)
        # Son et al.: a 1x1 convolution + softmax on the last features gives the mask.
        self.seg_head = EqualizedConv2D(ch[resolution], num_labels, 1, seeds, name="seg_head")
        self.num_ws = len(self.convs) + 1
        self.noise_resolutions = [layer.resolution for layer in self.convs]
        self.built = True

    @property
    def convs(self):
        return [getattr(self, name) for name in self._conv_names]

    @property
    def torgbs(self):
        return [getattr(self, name) for name in self._torgb_names]

    def call(self, ws, noise_mode="const", noises=None, fused=False):
        """``noise_mode``: "random" (``noises``: one [N, r, r, 1] tensor per layer, drawn by the
        caller from its checkpointed generator), "const" (the fixed per-layer maps) or "none"."""
        if noise_mode not in ("random", "const", "none"):
            raise ConfigError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        if noise_mode == "random" and (noises is None or len(noises) != len(self.convs)):
            raise ConfigError(f"noise_mode='random' needs {len(self.convs)} noise tensors")

        def noise(i):
            if noise_mode == "random":
                return noises[i]
            return self.convs[i].noise_const[None] if noise_mode == "const" else None

        convs, torgbs = self.convs, self.torgbs
        n = tf.shape(ws)[0]
        x = tf.tile(self.const[None], [n, 1, 1, 1])
        x = convs[0](x, ws[:, 0], noise=noise(0), fused=fused)
        img = torgbs[0](x, ws[:, 1], fused=fused)
        for b in range(1, len(torgbs)):
            i = 2 * b - 1  # the first conv of block b shares its w with the previous block's tRGB
            x = convs[i](x, ws[:, i], noise=noise(i), fused=fused)
            x = convs[i + 1](x, ws[:, i + 1], noise=noise(i + 1), fused=fused)
            img = upsample2d(img) + torgbs[b](x, ws[:, i + 2], fused=fused)
        probs = tf.nn.softmax(self.seg_head(x), axis=-1)
        return img, probs


def _resolutions(resolution: int) -> list[int]:
    return [2 ** k for k in range(2, int(math.log2(resolution)) + 1)]


class Generator(keras.Model):
    """G = synthesis(mapping(z)); holds ``w_avg`` for the truncation trick."""

    def __init__(self, resolution: int, n_channels: int, num_labels: int, z_dim: int, w_dim: int,
                 mapping_layers: int, channel_base: int, channel_max: int, seed: int, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        seeds = _Seeds(seed)
        self.synthesis = SynthesisNetwork(resolution, n_channels, num_labels, w_dim, channel_base, channel_max,
                                          seeds, name="synthesis")
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, seeds, name="mapping")
        self.w_avg = self.add_weight(shape=(w_dim,), initializer="zeros", trainable=False, name="w_avg",
                                     aggregation="mean")
        self.z_dim, self.w_dim = z_dim, w_dim
        self.built = True

    def truncate(self, ws, psi):
        """Truncation trick: w_avg + psi (w - w_avg) on every layer's w; `psi` a number or a
        tensor of one psi per sample ([N] or [N, 1])."""
        if isinstance(psi, (int, float)):
            return self.w_avg + psi * (ws - self.w_avg) if psi != 1.0 else ws
        psi = tf.reshape(tf.cast(psi, ws.dtype), [-1, 1, 1])
        return self.w_avg + psi * (ws - self.w_avg)

    def call(self, z, truncation_psi=1.0, noise_mode="const", noises=None, fused=False):
        return self.synthesis(self.truncate(self.mapping(z), truncation_psi), noise_mode=noise_mode, noises=noises,
                              fused=fused)


# --- discriminator ----------------------------------------------------------------------------

class DiscriminatorBlock(keras.layers.Layer):
    """Residual block (paper fig. 7c): two 3x3 convs (the second down-sampling) + a 1x1 skip."""

    def __init__(self, in_ch: int, out_ch: int, seeds: _Seeds, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        self.conv0 = EqualizedConv2D(in_ch, in_ch, 3, seeds, activation=True, name="conv0")
        self.conv1 = EqualizedConv2D(in_ch, out_ch, 3, seeds, activation=True, down=True, gain=math.sqrt(0.5),
                                     name="conv1")
        self.skip = EqualizedConv2D(in_ch, out_ch, 1, seeds, use_bias=False, down=True, gain=math.sqrt(0.5),
                                    name="skip")
        self.built = True

    def call(self, x):
        return self.skip(x) + self.conv1(self.conv0(x))


class Discriminator(keras.Model):
    """Residual D over concat(images, mask probabilities) -> one logit per sample."""

    def __init__(self, resolution: int, in_channels: int, channel_base: int, channel_max: int, seed: int,
                 mbstd_group_size: int = 4, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # see the module docstring: float32
        seeds = _Seeds(seed + 7919)
        ch = {r: channels_at(r, channel_base, channel_max) for r in _resolutions(resolution)}
        self.from_rgb = EqualizedConv2D(in_channels, ch[resolution], 1, seeds, activation=True, name="from_rgb")
        self._block_names = _attach(self, [DiscriminatorBlock(ch[r], ch[r // 2], seeds, name=f"b{r}")
                                           for r in reversed(_resolutions(resolution)[1:])])
        self.mbstd_group_size = mbstd_group_size
        self.conv = EqualizedConv2D(ch[4] + 1, ch[4], 3, seeds, activation=True, name="b4_conv")
        self.fc = EqualizedDense(ch[4] * 16, ch[4], seeds, activation=True, name="b4_fc")
        self.out = EqualizedDense(ch[4], 1, seeds, name="b4_out")
        self.built = True

    @property
    def blocks(self):
        return [getattr(self, name) for name in self._block_names]

    def call(self, x):
        x = self.from_rgb(x)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.mbstd_group_size))
        return self.out(self.fc(tf.reshape(x, [tf.shape(x)[0], -1])))


# --- optimizers -------------------------------------------------------------------------------

def lazy_adam(lr: float = 0.0025, betas=(0.0, 0.99), interval: int = 1, epsilon: float = 1e-8):
    """Adam with the lazy-regularisation correction of appendix B: with a regularisation step
    every ``interval`` minibatches, c = interval / (interval + 1), lr' = c lr, beta' = beta^c."""
    c = interval / (interval + 1) if interval and interval > 1 else 1.0
    return keras.optimizers.Adam(learning_rate=lr * c, beta_1=betas[0] ** c, beta_2=betas[1] ** c,
                                 epsilon=epsilon)


def stylegan2_optimizers(lr: float = 0.0025, r1_interval: int = 16, pl_interval: int = 4):
    """(d_optimizer, g_optimizer) of the paper: Adam(lr, betas (0, 0.99)), corrected for the lazy
    R1 (D) and path-length (G) intervals."""
    return lazy_adam(lr, interval=r1_interval), lazy_adam(lr, interval=pl_interval)


def ema_beta_for_half_life(half_life_images: float, batch_size: int) -> float:
    """EMA decay per step whose weight halves after ``half_life_images`` images (reference code:
    ema_kimg = 10, i.e. 10 000 images, beta = 0.5 ** (batch / 10 000))."""
    return 0.5 ** (batch_size / max(float(half_life_images), 1e-8))


def _no_stats():
    """The (penalty mean, new pl_mean) of a step where the regulariser did not run."""
    return tf.constant(0.0), tf.constant(0.0)


# --- the GAN ----------------------------------------------------------------------------------

class StyleGAN2(GAN):
    """StyleGAN2 (Karras et al. 2020) generating ``n_channels`` contrasts + a ``num_labels`` mask.

    ``train_step(data)`` takes ``data = (images [B, H, W, n_channels] in about [-1, 1],
    masks [B, H, W] integer labels)``. One step = D main step, lazy R1 step (every
    ``r1_interval`` steps), G main step, lazy path-length step (every ``pl_interval`` steps),
    then the ``w_avg`` and ``G_ema`` updates. A regulariser with weight 0 is switched off.
    """

    tracker_names = ("d_loss", "g_loss", "r1", "pl", "d_real", "d_fake")

    def __init__(self, resolution=256, n_channels=4, num_labels=4, z_dim=512, w_dim=512, mapping_layers=8,
                 channel_base=16384, channel_max=512, r1_gamma=10.0, r1_interval=16, pl_weight=2.0, pl_interval=4,
                 style_mixing_prob=0.9, ema_beta=0.999, seed=0, *, pl_batch_shrink=2, pl_decay=0.01,
                 w_avg_beta=0.995, mbstd_group_size=4, reg_step="auto", augment=None, **kwargs):
        resolution = int(resolution)
        if resolution < 8 or resolution & (resolution - 1):
            raise ConfigError(f"StyleGAN2 resolution must be a power of two >= 8, got {resolution}")
        if n_channels < 1 or num_labels < 2:
            raise ConfigError(f"StyleGAN2 needs n_channels >= 1 and num_labels >= 2, got {n_channels}, {num_labels}")
        if channel_base // resolution < 1:
            raise ConfigError(f"channel_base {channel_base} gives no feature maps at {resolution} px "
                              f"(channel_base // resolution must be >= 1)")
        if int(r1_interval) < 1 or int(pl_interval) < 1 or int(pl_batch_shrink) < 1:
            raise ConfigError("r1_interval, pl_interval and pl_batch_shrink must be >= 1")
        if not 0.0 <= ema_beta <= 1.0 or not 0.0 <= style_mixing_prob <= 1.0:
            raise ConfigError(f"ema_beta and style_mixing_prob must lie in [0, 1], got {ema_beta}, "
                              f"{style_mixing_prob}")
        if reg_step not in ("auto", "separate", "joint"):
            raise ConfigError(f"reg_step must be auto, separate or joint, got {reg_step!r}")
        args = (resolution, n_channels, num_labels, z_dim, w_dim, mapping_layers, channel_base, channel_max)
        generator = Generator(*args, seed=seed, name="G")
        discriminator = Discriminator(resolution, n_channels + num_labels, channel_base, channel_max, seed,
                                      mbstd_group_size, name="D")
        super().__init__(generator, discriminator, latent_dim=z_dim, num_classes=1, seed=seed, augment=augment,
                         **kwargs)
        if self.augment.active and self.augment.image_channels != int(n_channels):
            raise ConfigError(f"StyleGAN2 augment needs image_channels={n_channels} (the contrasts of D's "
                              f"(images, mask) input), got {self.augment.image_channels}")
        self.G_ema = Generator(*args, seed=seed, name="G_ema")
        self._copy_weights(self.generator.weights, self.G_ema.weights)
        self.resolution, self.n_channels, self.num_labels = resolution, int(n_channels), int(num_labels)
        self.z_dim, self.w_dim, self.num_ws = int(z_dim), int(w_dim), self.generator.num_ws
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.pl_weight, self.pl_interval = float(pl_weight), int(pl_interval)
        self.pl_batch_shrink, self.pl_decay = int(pl_batch_shrink), float(pl_decay)
        self.style_mixing_prob, self.w_avg_beta = float(style_mixing_prob), float(w_avg_beta)
        self.reg_step = reg_step
        self.ema_beta = tf.Variable(float(ema_beta), trainable=False, name="ema_beta")
        self.pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean", aggregation=tf.VariableAggregation.MEAN)
        self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    # -- what the stages call (gans/base.py) -------------------------------------------------

    data_kind = "paired"
    synthesises_from = "noise"

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        from tfganaug.gans import augment
        g = cfg.gan
        gan = cls(resolution=cfg.data.image_size, n_channels=channels, num_labels=num_labels, z_dim=g.latent_dim,
                  w_dim=g.w_dim, mapping_layers=g.mapping_layers, channel_base=g.channel_base,
                  channel_max=g.channel_max, r1_gamma=g.r1_gamma, r1_interval=g.r1_interval, pl_weight=g.pl_weight,
                  pl_interval=g.pl_interval, style_mixing_prob=g.style_mixing_prob, ema_beta=g.ema_beta,
                  seed=cfg.seed, augment=augment.from_config(g, cfg.seed, image_channels=channels))
        d_opt, g_opt = stylegan2_optimizers(g.lr, g.r1_interval, g.pl_interval)
        gan.compile(d_optimizer=d_opt, g_optimizer=g_opt)
        return gan

    def grid_fn(self, class_names, train=None):
        """Rows: each contrast of G_ema's samples for 6 fixed z, then their masks."""
        fixed_z = np.random.default_rng(0).standard_normal((6, self.z_dim)).astype(np.float32)
        k = self.num_labels

        def grid():
            images, probs = self.generate(fixed_z, truncation_psi=1.0, noise_mode="const")
            images = np.clip((np.asarray(images) + 1) / 2, 0, 1)
            mask = np.asarray(probs).argmax(-1) / max(1, k - 1)
            return grid_rows(*[images[..., c] for c in range(images.shape[-1])], mask)
        return grid

    def final_models(self, member):
        return {}  # sampled from the checkpoint

    # -- sampling -----------------------------------------------------------------------------

    def sampler(self, name: str = "generator") -> keras.Model:
        """The generator to sample from: always ``G_ema`` (StyleGAN2 keeps its own EMA copy)."""
        if name != "generator":
            raise KeyError(name)
        return self.G_ema

    def sampling_items(self) -> dict:
        """The checkpoint items a sampler restores: G and G_ema (each with its w_avg)."""
        return {"generator": self.generator, "G_ema": self.G_ema}

    @property
    def w_avg(self):
        return self.generator.w_avg

    def sample_z(self, n):
        """z ~ N(0, I), as in StyleGAN2."""
        return self.noise.normal([n, self.z_dim])

    def draw_noises(self, n):
        """Per-layer noise maps [n, r, r, 1], from the model's checkpointed random generator."""
        return [self.noise.normal([n, r, r, 1]) for r in self.generator.synthesis.noise_resolutions]

    def _mix(self, G, ws):
        """Style mixing regularisation: with probability ``style_mixing_prob`` the layers from a
        random cut-off in [1, num_ws) on take the w of a second z (one cut-off per minibatch)."""
        if self.style_mixing_prob <= 0:
            return ws
        cutoff = self.noise.uniform([], 1, self.num_ws, dtype=tf.int32)
        cutoff = tf.where(self.noise.uniform([]) < self.style_mixing_prob, cutoff, self.num_ws)
        ws2 = G.mapping(self.sample_z(tf.shape(ws)[0]))
        return tf.where(tf.range(self.num_ws)[None, :, None] < cutoff, ws, ws2)

    def generate(self, z, truncation_psi=1.0, use_ema=True, noise_mode="random"):
        """(images [N, R, R, n_channels], mask probabilities [N, R, R, num_labels]) for z [N, z_dim].

        ``truncation_psi`` < 1 pulls w towards ``w_avg`` (0 gives the "average" sample);
        ``noise_mode``: "random" (drawn from the model's generator), "const" or "none".
        """
        G = self.G_ema if use_ema else self.generator
        z = tf.convert_to_tensor(z, tf.float32)
        psi = float(truncation_psi) if isinstance(truncation_psi, (int, float, np.floating)) else truncation_psi
        ws = G.truncate(G.mapping(z), psi)
        noises = self.draw_noises(tf.shape(z)[0]) if noise_mode == "random" else None
        return G.synthesis(ws, noise_mode=noise_mode, noises=noises, fused=True)

    def _fake(self, G, ws):
        """concat(images, mask probabilities) from ws, with random noise: what D sees of a fake."""
        images, probs = G.synthesis(ws, noise_mode="random", noises=self.draw_noises(tf.shape(ws)[0]))
        return tf.concat([images, probs], axis=-1)

    # -- training -----------------------------------------------------------------------------

    def _grads(self, optimizer, tape, loss, variables):
        scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        return tape.gradient(scaled, variables)

    @staticmethod
    def _copy_weights(source, target):
        for s, t in zip(source, target, strict=True):
            t.assign(s)

    def _joint_regularisation(self) -> bool:
        if self.reg_step == "auto":
            return tf.distribute.has_strategy()
        return self.reg_step == "joint"

    def _regularised(self, optimizer, main_grads, variables, flag, reg_fn, joint: bool):
        """Apply main gradients and, when ``flag``, the regulariser's ``reg_fn() -> (loss, stats)``.

        Separate: main step, then (inside tf.cond) a step on the regulariser alone. Joint: one step
        on the sum. Returns the stats (zeros when the regulariser did not run).
        """
        def reg_grads():
            with tf.GradientTape() as tape:
                loss, stats = reg_fn()
            grads = self._grads(optimizer, tape, loss, variables)
            return grads, stats

        if joint:
            def on():
                grads, stats = reg_grads()
                return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)], stats

            def off():
                return [tf.zeros_like(v) for v in variables], _no_stats()

            extra, stats = tf.cond(flag, on, off)
            optimizer.apply_gradients(zip([g + e for g, e in zip(main_grads, extra)], variables))
            return stats
        optimizer.apply_gradients(zip(main_grads, variables))

        def on_separate():
            grads, stats = reg_grads()
            # Variables the regulariser does not reach (e.g. D's last bias for R1) are skipped,
            # as PyTorch's Adam skips parameters without a gradient.
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
            return stats

        return tf.cond(flag, on_separate, _no_stats)

    @tf.autograph.experimental.do_not_convert  # explicit tf.cond only; conversion doubled tracing time
    def train_step(self, data):
        images, masks, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = tf.cast(images, tf.float32)
        masks = tf.cast(masks, tf.int32)
        if masks.shape.rank == 4:
            masks = masks[..., 0]
        real = tf.concat([images, tf.one_hot(masks, self.num_labels, dtype=tf.float32)], axis=-1)
        n = tf.shape(real)[0]
        step = self.step_counter.read_value()
        joint = self._joint_regularisation()
        G, D = self.generator, self.discriminator
        d_vars, g_vars = D.trainable_variables, G.trainable_variables

        # D: non-saturating logistic loss; lazy R1 = gamma/2 E||grad D(x)||^2 on reals, x interval.
        fake = tf.stop_gradient(self._fake(G, self._mix(G, G.mapping(self.sample_z(n)))))
        with tf.GradientTape() as tape:
            real_logits = D(self.d_input(real), training=True)
            fake_logits = D(self.d_input(fake), training=True)
            d_loss = global_mean(non_saturating_d(real_logits, fake_logits))
        d_grads = self._grads(self.d_optimizer, tape, d_loss, d_vars)
        self.augment.accumulate(real_logits)

        def r1():
            x = tf.identity(real)  # a tensor of this branch's graph, so the tape can watch it
            with tf.GradientTape() as inner:
                inner.watch(x)
                # StyleGAN2-ADA: D on augmented reals, the gradient w.r.t. the un-augmented ones.
                logits_sum = tf.reduce_sum(D(self.d_input(x), training=True))
            grad = inner.gradient(logits_sum, x)
            penalty = tf.reduce_sum(tf.square(grad), axis=[1, 2, 3])
            loss = global_mean(penalty * (self.r1_gamma / 2.0) * self.r1_interval)
            return loss, (tf.reduce_mean(penalty), tf.constant(0.0))

        do_r1 = tf.logical_and(tf.constant(self.r1_gamma > 0), step % self.r1_interval == 0)
        r1_penalty, _ = self._regularised(self.d_optimizer, d_grads, d_vars, do_r1, r1, joint)

        # G: non-saturating loss with style mixing; lazy path-length regularisation.
        with tf.GradientTape() as tape:
            ws = G.mapping(self.sample_z(n))
            fake_logits_g = D(self.d_input(self._fake(G, self._mix(G, ws))), training=True)
            g_loss = global_mean(non_saturating_g(fake_logits_g))
        g_grads = self._grads(self.g_optimizer, tape, g_loss, g_vars)

        def path_length():
            m = tf.maximum(n // self.pl_batch_shrink, 1)
            ws_pl = self._mix(G, G.mapping(self.sample_z(m)))
            with tf.GradientTape() as inner:
                inner.watch(ws_pl)
                out = self._fake(G, ws_pl)
                pl_noise = self.noise.normal(tf.shape(out)) / float(self.resolution)  # 1/sqrt(H W)
                projected = tf.reduce_sum(out * pl_noise)
            pl_grads = inner.gradient(projected, ws_pl)                                # [m, num_ws, w_dim]
            lengths = tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(pl_grads), axis=2), axis=1))
            pl_mean = self.pl_mean + (tf.reduce_mean(lengths) - self.pl_mean) * self.pl_decay
            penalty = tf.square(lengths - pl_mean)
            loss = global_mean(penalty * self.pl_weight * self.pl_interval)
            return loss, (tf.reduce_mean(penalty), tf.stop_gradient(pl_mean))

        do_pl = tf.logical_and(tf.constant(self.pl_weight > 0), step % self.pl_interval == 0)
        pl_penalty, pl_mean = self._regularised(self.g_optimizer, g_grads, g_vars, do_pl, path_length, joint)
        self.pl_mean.assign(tf.where(do_pl, pl_mean, self.pl_mean))

        # w_avg for truncation (decay 0.995), then the EMA generator (trainable weights averaged,
        # buffers such as w_avg and the constant noise copied, as the reference code does).
        G.w_avg.assign(G.w_avg + (tf.reduce_mean(ws[:, 0], axis=0) - G.w_avg) * (1.0 - self.w_avg_beta))
        beta = self.ema_beta.read_value()
        for g_var, e_var in zip(G.trainable_weights, self.G_ema.trainable_weights, strict=True):
            e_var.assign(g_var + (e_var - g_var) * beta)
        for g_var, e_var in zip(G.non_trainable_weights, self.G_ema.non_trainable_weights, strict=True):
            e_var.assign(g_var)
        if self.augment.active:
            self.augment.update_p(n)  # ADA's p; not base.end_step: G_ema has its own update above
        self.step_counter.assign_add(1)
        return self._log(d_loss, g_loss, r1_penalty, do_r1, pl_penalty, do_pl, real_logits, fake_logits)

    def _log(self, d_loss, g_loss, r1_penalty, do_r1, pl_penalty, do_pl, real_logits, fake_logits) -> dict:
        """As base.GAN._update_trackers; r1 and pl are averaged over the steps where they ran."""
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        self.trackers["d_loss"].update_state(d_loss * replicas)
        self.trackers["g_loss"].update_state(g_loss * replicas)
        self.trackers["r1"].update_state(r1_penalty, sample_weight=tf.cast(do_r1, tf.float32))
        self.trackers["pl"].update_state(pl_penalty, sample_weight=tf.cast(do_pl, tf.float32))
        self.trackers["d_real"].update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
        self.trackers["d_fake"].update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs.update(self.augment.logs() if self.augment.active else {})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def checkpoint_items(self) -> dict:
        """Everything exact resume needs besides the data position (see runs.py); with
        augmentation on, also its state (p, its random generator, the r_t accumulators: absent
        otherwise, so checkpoints from before the option restore unchanged)."""
        return {"generator": self.generator, "discriminator": self.discriminator, "G_ema": self.G_ema,
                "d_optimizer": self.d_optimizer, "g_optimizer": self.g_optimizer,
                "pl_mean": self.pl_mean, "w_avg": self.generator.w_avg, "step": self.step_counter,
                "noise": self.noise,
                "seed_states": seed_generator_states(self.generator, self.discriminator, self.G_ema),
                **self.training_items()}
