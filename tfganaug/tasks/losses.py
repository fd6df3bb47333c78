"""Segmentation losses: soft Dice (Milletari et al. 2016; the KiTS19 capstone and Sandfort et al.
2019 train with it, the latter with smoothing s = 1) and Dice + cross-entropy.

The functions return one value per example (shape [batch]) so that a custom `train_step`
under tf.distribute can reduce them with `tf.nn.compute_average_loss`; the `keras.losses.Loss`
classes wrap them for `compile()`. Computation is in float32 whatever the model's policy.
"""
from __future__ import annotations

import keras
import tensorflow as tf


def soft_dice_loss(y_true_onehot, y_pred_probs, smooth: float = 1.0, axis=(1, 2)):
    """1 - mean over classes of (2 |A.B| + s) / (|A| + |B| + s), per example.

    `y_true_onehot` and `y_pred_probs` are [batch, H, W, classes]; the sums run over `axis`.
    """
    y_pred = tf.cast(y_pred_probs, tf.float32)
    y_true = tf.cast(y_true_onehot, tf.float32)
    axis = tuple(axis)
    intersection = tf.reduce_sum(y_true * y_pred, axis=axis)
    total = tf.reduce_sum(y_true, axis=axis) + tf.reduce_sum(y_pred, axis=axis)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - tf.reduce_mean(dice, axis=-1)


def dice_ce_loss(y_true_onehot, y_pred_probs, smooth: float = 1.0, axis=(1, 2),
                 dice_weight: float = 1.0, ce_weight: float = 1.0):
    """dice_weight * soft Dice + ce_weight * categorical cross-entropy (mean over pixels)."""
    y_pred = tf.cast(y_pred_probs, tf.float32)
    y_true = tf.cast(y_true_onehot, tf.float32)
    ce = keras.losses.categorical_crossentropy(y_true, y_pred)  # [batch, H, W]
    ce = tf.reduce_mean(ce, axis=tuple(range(1, len(ce.shape))))
    return dice_weight * soft_dice_loss(y_true, y_pred, smooth, axis) + ce_weight * ce


def center_crop_to(labels, target_hw):
    """Centre crop of [batch, H, W, C] (or [H, W, C]) labels to a valid-padding U-Net's output.

    Sizes come from `tf.shape`, so the same graph serves any batch size.
    """
    labels = tf.convert_to_tensor(labels)
    th, tw = (target_hw, target_hw) if isinstance(target_hw, int) else target_hw
    shape = tf.shape(labels)
    h, w = shape[-3], shape[-2]
    tf.debugging.assert_greater_equal(
        tf.stack([h, w]), tf.constant([th, tw]),
        message=f"expected labels at least {th}x{tw} to crop to the U-Net output")
    top, left = (h - th) // 2, (w - tw) // 2
    return labels[..., top:top + th, left:left + tw, :]


@keras.saving.register_keras_serializable(package="tfganaug")
class SoftDiceLoss(keras.losses.Loss):
    """:func:`soft_dice_loss` for `compile()`; Keras averages the per-example values."""

    def __init__(self, smooth: float = 1.0, axis=(1, 2), name: str = "soft_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth, self.axis = float(smooth), tuple(axis)

    def call(self, y_true, y_pred):
        return soft_dice_loss(y_true, y_pred, self.smooth, self.axis)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "axis": list(self.axis)}


@keras.saving.register_keras_serializable(package="tfganaug")
class DiceCELoss(keras.losses.Loss):
    """:func:`dice_ce_loss` for `compile()`."""

    def __init__(self, smooth: float = 1.0, axis=(1, 2), dice_weight: float = 1.0,
                 ce_weight: float = 1.0, name: str = "dice_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth, self.axis = float(smooth), tuple(axis)
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)

    def call(self, y_true, y_pred):
        return dice_ce_loss(y_true, y_pred, self.smooth, self.axis, self.dice_weight, self.ce_weight)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "axis": list(self.axis),
                "dice_weight": self.dice_weight, "ce_weight": self.ce_weight}
