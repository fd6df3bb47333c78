"""3-D U-Net of Sandfort, Yan, Pickhardt and Summers 2019 ("Data augmentation using generative
adversarial networks (CycleGAN) to improve generalizability in CT segmentation tasks",
Sci. Rep. 9, 16884), after Cicek et al. 2016 ("3D U-Net: Learning Dense Volumetric
Segmentation from Sparse Annotation").

From Sandfort et al. (Methods): "a modified 3D U-Net, leaky ReLU, group normalization (group
size 16), a strided convolution", volumes of up to 256 x 256 x 192 voxels, Dice loss. The
paper gives no depth, widths or kernel sizes; ours, as in Cicek et al.: per level two 3x3x3
convolutions (same padding) each followed by group normalisation with 16 channels per group
and leaky ReLU (slope 0.01, our choice); downsampling by a 3x3x3 convolution with stride 2
(the strided convolution, in place of max-pooling); upsampling by a 2x2x2 transposed
convolution with stride 2, concatenation with the encoder features of the same level, two
convolutions; a 1x1x1 convolution to the classes (softmax with background), in float32.

Input ``(batch, Z, H, W, channels)``. The model is fully convolutional along z: any number
of slices works, because a :class:`PadDepth` layer pads z to a multiple of ``2**depth``
(zeros: air after windowing) and the output is cut back to the input's Z. H and W are fixed
and must be divisible by ``2**depth``.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

UNET3D_PRESETS = {
    # Sandfort et al.: the paper's building blocks; depth 4 and 16 base filters (our choices,
    # the paper gives none) for a GPU and 192^3 volumes.
    "sandfort3d": dict(depth=4, base_filters=16, norm="group", group_size=16, activation="leaky_relu",
                       output="softmax"),
}


@keras.saving.register_keras_serializable(package="tfganaug")
class PadDepth(keras.layers.Layer):
    """Pad axis 1 (z) of (B, Z, H, W, C) with zeros at the end to a multiple of `multiple`."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        z = tf.shape(x)[1]
        pad = (-z) % self.multiple
        return tf.pad(x, [[0, 0], [0, pad], [0, 0], [0, 0], [0, 0]])

    def compute_output_shape(self, shape):
        z = shape[1]
        return (shape[0], None if z is None else -(-z // self.multiple) * self.multiple, *shape[2:])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="tfganaug")
class CropDepthLike(keras.layers.Layer):
    """Cut axis 1 of the first input to the length of axis 1 of the second."""

    def call(self, inputs):
        x, like = inputs
        return x[:, :tf.shape(like)[1]]

    def compute_output_shape(self, shapes):
        x, like = shapes
        return (x[0], like[1], *x[2:])


def _norm3d(kind: str | None, filters: int, group_size: int):
    if kind is None:
        return None
    if kind == "group":
        return keras.layers.GroupNormalization(groups=math.gcd(filters, max(1, filters // group_size)))
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=-1)
    if kind == "batch":
        return keras.layers.BatchNormalization(synchronized=True)
    raise ValueError(f"norm must be None, 'group', 'instance' or 'batch', got {kind!r}")


def _conv(h, filters: int, norm, activation: str, group_size: int, strides: int = 1):
    h = keras.layers.Conv3D(filters, 3, strides=strides, padding="same", use_bias=norm is None,
                            kernel_initializer="he_normal")(h)
    layer = _norm3d(norm, filters, group_size)
    if layer is not None:
        h = layer(h)
    return (keras.layers.LeakyReLU(negative_slope=0.01) if activation == "leaky_relu" else keras.layers.ReLU())(h)


def build_unet3d(num_classes: int, image_size, channels: int = 1, depth: int = 4, base_filters: int = 16,
                 norm: str | None = "group", group_size: int = 16, activation: str = "leaky_relu",
                 output: str = "softmax", dropout: float = 0.0, seed: int = 0, padding: str = "same",
                 name: str = "unet3d") -> keras.Model:
    """3-D U-Net for (Z, H, W, channels) volumes of any Z; `image_size` is a side or (H, W).

    Returns per-voxel probabilities (B, Z, H, W, num_classes): softmax over the classes, or a
    sigmoid per channel.
    """
    if padding != "same":
        raise ValueError(f"the 3-D U-Net uses same padding, got padding={padding!r}")
    if activation not in ("relu", "leaky_relu"):
        raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {activation!r}")
    if output not in ("softmax", "sigmoid"):
        raise ValueError(f"output must be 'softmax' or 'sigmoid', got {output!r}")
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    step = 2 ** depth
    if any(side % step for side in hw):
        raise ValueError(f"the 3-D U-Net at depth {depth} expects H and W divisible by {step}, got {hw}")
    block = dict(norm=norm, activation=activation, group_size=group_size)

    x = keras.Input((None, *hw, channels), name="image")
    h = PadDepth(step, name="pad_depth")(x)
    skips = []
    for level in range(depth):
        filters = base_filters * 2 ** level
        h = _conv(h, filters, **block)
        h = _conv(h, filters, **block)
        skips.append(h)
        h = _conv(h, filters * 2, strides=2, **block)  # the strided convolution
    h = _conv(h, base_filters * 2 ** depth, **block)
    if dropout:
        h = keras.layers.Dropout(dropout, seed=seed)(h)
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        h = keras.layers.Conv3DTranspose(filters, 2, strides=2, kernel_initializer="he_normal")(h)
        h = keras.layers.Concatenate()([skips[level], h])
        h = _conv(h, filters, **block)
        h = _conv(h, filters, **block)
    h = keras.layers.Conv3D(num_classes, 1, activation=output, dtype="float32", name="probabilities")(h)
    probs = CropDepthLike(dtype="float32", name="crop_depth")([h, x])
    return keras.Model(x, probs, name=name)
