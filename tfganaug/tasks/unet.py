"""2-D U-Net of Ronneberger, Fischer and Brox 2015 ("U-Net: Convolutional Networks for
Biomedical Image Segmentation"), the segmentation network of the augmentation studies.

From the paper: per level two 3x3 convolutions + ReLU, unpadded (``padding="valid"``);
2x2 max-pooling with stride 2 and twice the filters after each pooling; on the way up a
2x2 up-convolution halving the filters, concatenation with the centre-cropped encoder
features of the same level, two 3x3 convolutions; a 1x1 convolution to the classes.
The paper has depth 4 (four poolings) and 64 base filters, and dropout at the end of the
contracting path (here: on the bottleneck features, ``dropout``).

Valid padding shrinks every 3x3 convolution by 2 pixels, so the output is smaller than the
input (572 -> 388 at depth 4) and only some input sizes work: every feature map that is
pooled must have an even size and the decoder must not shrink to nothing. They are
``2**depth * k + 4 * (2**(depth + 1) - 1)`` for ``k >= 4`` (``k >= 3`` at depth 1; depth 4:
188, 204, ..., 572, ...); :func:`valid_input_size` finds the next one and
:func:`unet_output_size` the output size, against which labels are cropped
(:func:`tfganaug.tasks.losses.center_crop_to`). With ``padding="same"`` the output has the
input's size, which must be divisible by ``2**depth``.

Not in the paper, taken from the studies: normalisation after each convolution (``"batch"``,
synchronised across replicas; ``"group"`` with ``group_size`` channels per group as in
Sandfort et al. 2019; ``"instance"``) and leaky ReLU (Sandfort et al.; slope 0.01 is our
choice, the paper gives none). The classes' layer runs in float32 so mixed precision is safe.
"""
from __future__ import annotations

import math

import keras

UNET_PRESETS = {
    # KiTS19 capstone: the paper's U-Net (valid 3x3 convs, 2x2 max-pool, up-conv, crop and
    # concatenate, 1x1 head), 2 output channels kidney / tumour, Dice loss, Adam 1e-3.
    # The capstone gives a light and a heavy variant without their widths: 16 base filters
    # (light) is our choice; the heavy variant uses the paper's 64. Sigmoid per channel,
    # because kidney and tumour are two channels with no background channel (our reading).
    "kits_light": dict(num_classes=2, depth=4, base_filters=16, padding="valid", norm=None,
                       activation="relu", output="sigmoid"),
    "kits_heavy": dict(num_classes=2, depth=4, base_filters=64, padding="valid", norm=None,
                       activation="relu", dropout=0.5, output="sigmoid"),
    # Sandfort et al. 2019: leaky ReLU and group normalisation (group size 16) from the paper;
    # their network is 3-D with a strided convolution, ours stays 2-D with max-pooling, same
    # padding and 32 base filters (our choices). Classes depend on the task: no default.
    "sandfort": dict(depth=4, base_filters=32, padding="same", norm="group", group_size=16,
                     activation="leaky_relu", output="softmax"),
    # Son et al.: "U-Net" without further detail: the paper's U-Net with same padding and batch
    # normalisation (our choices), softmax over background + the 3 BraTS tumour labels.
    "son": dict(num_classes=4, depth=4, base_filters=64, padding="same", norm="batch",
                activation="relu", output="softmax"),
}

_SHRINK = 4  # two unpadded 3x3 convolutions take 2 pixels each


def unet_output_size(input_size: int, depth: int, padding: str = "valid") -> int:
    """Side of the U-Net output for an input side; ValueError if the size does not work."""
    if padding == "same":
        if input_size % 2 ** depth:
            raise ValueError(f"padding='same' at depth {depth} expects a size divisible by "
                             f"{2 ** depth}, got {input_size}")
        return input_size
    if padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    size = input_size
    for level in range(depth):
        size -= _SHRINK
        if size < 2 or size % 2:
            raise ValueError(f"input size {input_size} does not fit a valid-padding U-Net of depth "
                             f"{depth}: level {level} would pool a {size}-pixel map; use "
                             f"valid_input_size({input_size}, {depth}) = "
                             f"{valid_input_size(input_size, depth)}")
        size //= 2
    size -= _SHRINK
    if size < 1:
        raise ValueError(f"input size {input_size} is too small for depth {depth}; use at least "
                         f"{valid_input_size(1, depth)}")
    for _ in range(depth):
        size = 2 * size - _SHRINK
        if size < 1:
            raise ValueError(f"input size {input_size} is too small for depth {depth}; use at "
                             f"least {valid_input_size(1, depth)}")
    return size


def valid_input_size(min_size: int, depth: int, padding: str = "valid") -> int:
    """Smallest input side >= min_size that the U-Net accepts (see the module docstring)."""
    step = 2 ** depth
    if padding == "same":
        return max(step, -(-min_size // step) * step)
    offset = _SHRINK * (2 ** (depth + 1) - 1)
    # the decoder's convolutions also shrink: a bottleneck below 4 pixels (3 at depth 1) dies out
    return offset + step * max(4 if depth > 1 else 3, -(-(min_size - offset) // step))


def _norm(kind: str | None, filters: int, group_size: int):
    if kind is None:
        return None
    if kind == "batch":
        return keras.layers.BatchNormalization(synchronized=True)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=math.gcd(filters, max(1, filters // group_size)))
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=-1)
    raise ValueError(f"norm must be None, 'batch', 'group' or 'instance', got {kind!r}")


def _conv_block(h, filters: int, padding: str, norm: str | None, activation: str, group_size: int):
    for _ in range(2):
        h = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=norm is None,
                                kernel_initializer="he_normal")(h)
        layer = _norm(norm, filters, group_size)
        if layer is not None:
            h = layer(h)
        h = (keras.layers.LeakyReLU(negative_slope=0.01) if activation == "leaky_relu"
             else keras.layers.ReLU())(h)
    return h


def build_unet(num_classes: int, image_size, channels: int = 1, depth: int = 4,
               base_filters: int = 64, padding: str = "valid", norm: str | None = None,
               activation: str = "relu", dropout: float = 0.0, output: str = "softmax",
               group_size: int = 16, seed: int = 0, name: str = "unet") -> keras.Model:
    """U-Net for (H, W, channels) images; `image_size` is a side or (H, W).

    Returns per-pixel class probabilities (softmax over `num_classes`, or an independent
    sigmoid per channel), of size :func:`unet_output_size` per side.
    """
    if activation not in ("relu", "leaky_relu"):
        raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {activation!r}")
    if output not in ("softmax", "sigmoid"):
        raise ValueError(f"output must be 'softmax' or 'sigmoid', got {output!r}")
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    for side in hw:
        unet_output_size(side, depth, padding)  # raises with the nearest working size
    block = dict(padding=padding, norm=norm, activation=activation, group_size=group_size)

    x = keras.Input((*hw, channels), name="image")
    h, skips = x, []
    for level in range(depth):
        h = _conv_block(h, base_filters * 2 ** level, **block)
        skips.append(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = _conv_block(h, base_filters * 2 ** depth, **block)
    if dropout:
        h = keras.layers.Dropout(dropout, seed=seed)(h)
    for level in reversed(range(depth)):
        filters = base_filters * 2 ** level
        h = keras.layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal")(h)
        skip = skips[level]
        dh, dw = skip.shape[1] - h.shape[1], skip.shape[2] - h.shape[2]
        if dh or dw:
            skip = keras.layers.Cropping2D(((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)))(skip)
        h = keras.layers.Concatenate()([skip, h])
        h = _conv_block(h, filters, **block)
    probs = keras.layers.Conv2D(num_classes, 1, activation=output, dtype="float32",
                                name="probabilities")(h)
    return keras.Model(x, probs, name=name)


def build_unet_preset(preset: str, image_size, **overrides) -> keras.Model:
    """`build_unet` with the arguments of `UNET_PRESETS[preset]`, any of them overridden."""
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown U-Net preset {preset!r}; expected one of {sorted(UNET_PRESETS)}")
    return build_unet(image_size=image_size, **{**UNET_PRESETS[preset], **overrides})
