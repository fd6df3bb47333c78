"""The segmentation network of the studies: a U-Net preset wrapped so that its output has the
input's size, a Dice loss on integer label maps, and decoding of probabilities to labels.

Valid padding (Ronneberger et al. 2015) shrinks the output; the paper's overlap-tile
strategy mirrors the input border so that the output covers the whole image. The wrapper
does exactly that: it mirror-pads the input to the smallest size whose output is at least
the image, runs the U-Net and centre-crops the output. With ``padding="same"`` nothing is
padded.

Outputs: ``softmax`` has one channel per class, background included; ``sigmoid`` has one
channel per *foreground* class (the KiTS capstone's kidney and tumour channels), and a pixel
is labelled with the most probable foreground class whose probability exceeds 0.5, else
background.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfganaug.tasks.losses import soft_dice_loss
from tfganaug.tasks.unet import UNET_PRESETS, build_unet, unet_output_size
from tfganaug.tasks.unet3d import UNET3D_PRESETS, build_unet3d


def is_3d(seg_cfg) -> bool:
    """True when the config's U-Net preset is a 3-D one (`tasks.unet3d.UNET3D_PRESETS`)."""
    return seg_cfg.unet in UNET3D_PRESETS


@keras.saving.register_keras_serializable(package="tfganaug")
class MirrorPad2D(keras.layers.Layer):
    """Symmetric (mirror) padding of (B, H, W, C) by `top`/`left` and `bottom`/`right` pixels;
    constant (0) padding where the border is wider than the image."""

    def __init__(self, pads, **kwargs):
        super().__init__(**kwargs)
        self.pads = [list(map(int, p)) for p in pads]

    def call(self, x):
        (t, b), (l, r) = self.pads
        mode = "SYMMETRIC" if max(t, b) <= x.shape[1] and max(l, r) <= x.shape[2] else "CONSTANT"
        return tf.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], mode=mode)

    def compute_output_shape(self, shape):
        (t, b), (l, r) = self.pads
        return (shape[0], None if shape[1] is None else shape[1] + t + b,
                None if shape[2] is None else shape[2] + l + r, shape[3])

    def get_config(self):
        return {**super().get_config(), "pads": self.pads}


def unet_args(seg_cfg, num_classes: int) -> dict:
    """`build_unet` arguments: the preset, the config's overrides, and the class count."""
    args = dict({**UNET_PRESETS, **UNET3D_PRESETS}[seg_cfg.unet])
    for key in ("base_filters", "depth", "padding", "output", "norm"):
        value = getattr(seg_cfg, key, None)
        if value is not None:
            args[key] = None if value == "none" else value
    args["num_classes"] = num_classes - 1 if args["output"] == "sigmoid" else num_classes
    return args


def build_segmenter(seg_cfg, num_classes: int, image_size: int, channels: int, seed: int = 0) -> keras.Model:
    """U-Net (preset + overrides of `seg_cfg`) mapping (S, S, channels) images to (S, S, k)
    probabilities; a 3-D preset maps (Z, S, S, channels) volumes of any Z to (Z, S, S, k)."""
    args = unet_args(seg_cfg, num_classes)
    if is_3d(seg_cfg):
        return build_unet3d(image_size=image_size, channels=channels, seed=seed, name="segmenter", **args)
    if args.get("padding", "valid") == "same":
        return build_unet(image_size=image_size, channels=channels, seed=seed, name="segmenter", **args)
    size = image_size
    while True:
        try:
            if unet_output_size(size, args["depth"], "valid") >= image_size:
                break
        except ValueError:
            pass
        size += 1
    unet = build_unet(image_size=size, channels=channels, seed=seed, name="unet", **args)
    x = keras.Input((image_size, image_size, channels), name="image")
    pad = size - image_size
    h = MirrorPad2D([(pad // 2, pad - pad // 2)] * 2, name="overlap_tile")(x)
    h = unet(h)
    extra = h.shape[1] - image_size
    h = keras.layers.Cropping2D([(extra // 2, extra - extra // 2)] * 2, name="crop_to_image")(h)
    probs = keras.layers.Activation("linear", dtype="float32", name="probabilities")(h)
    return keras.Model(x, probs, name="segmenter")


def targets(masks, num_classes: int, output: str):
    """Integer label maps (B, H, W) or (B, Z, H, W) -> the network's target channels (float32)."""
    onehot = tf.one_hot(tf.cast(masks, tf.int32), num_classes, dtype=tf.float32)
    return onehot[..., 1:] if output == "sigmoid" else onehot


def decode(probs, output: str):
    """Probabilities (..., k) -> integer label maps (...) (module docstring)."""
    probs = tf.convert_to_tensor(probs, tf.float32)
    if output == "sigmoid":
        probs = tf.concat([tf.fill(tf.shape(probs[..., :1]), 0.5), probs], axis=-1)
    return tf.argmax(probs, axis=-1, output_type=tf.int32)


@keras.saving.register_keras_serializable(package="tfganaug")
class SegLoss(keras.losses.Loss):
    """Soft Dice (plus cross-entropy for "dice_ce") on integer label maps.

    Softmax outputs: Dice over all classes (background included) + categorical CE;
    sigmoid outputs: Dice over the foreground channels + binary CE.

    `batch_dice=True` sums intersections and areas over the whole batch before the ratio
    (segmentation_models' `DiceLoss`, which the KiTS capstone used, and nnU-Net's batch Dice).
    Per-image Dice with smoothing scores an empty channel as perfect when nothing is
    predicted, which on small structures drove our U-Nets to predict nothing at all within a
    few epochs; the batch form does not reward that. Under tf.distribute the batch is the
    replica's share. Works for 2-D (B, H, W, k) and 3-D (B, Z, H, W, k) outputs alike.
    """

    def __init__(self, num_classes: int, output: str = "softmax", kind: str = "dice", smooth: float = 1.0,
                 batch_dice: bool = True, name: str = "seg_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.output, self.kind, self.smooth = int(num_classes), output, kind, float(smooth)
        self.batch_dice = bool(batch_dice)

    def call(self, y_true, y_pred):
        rank = y_pred.shape.rank  # 4 (2-D) or 5 (3-D)
        y_true = targets(tf.reshape(y_true, tf.shape(y_pred)[:-1]), self.num_classes, self.output)
        y_pred = tf.cast(y_pred, tf.float32)
        if self.batch_dice:
            loss = soft_dice_loss(y_true[None], y_pred[None], self.smooth, axis=tuple(range(1, rank)))
            loss = tf.fill(tf.shape(y_pred)[:1], loss[0])
        else:
            loss = soft_dice_loss(y_true, y_pred, self.smooth, axis=tuple(range(1, rank - 1)))
        if self.kind == "dice_ce":
            ce = (keras.losses.binary_crossentropy(y_true, y_pred) if self.output == "sigmoid"
                  else keras.losses.categorical_crossentropy(y_true, y_pred))
            loss = loss + tf.reduce_mean(ce, axis=list(range(1, rank - 1)))
        return loss

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "output": self.output,
                "kind": self.kind, "smooth": self.smooth, "batch_dice": self.batch_dice}
