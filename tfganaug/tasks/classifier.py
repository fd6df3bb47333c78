"""Lesion classification CNN of Frid-Adar et al. 2018, section II-B.

Input a 64x64 ROI scaled to [0, 1]; the mean of the training images is subtracted (kept in
the model as a non-trainable value, so an exported model applies it too); three pairs of
convolution + 2x2 max-pooling, two fully connected layers with dropout 0.5, softmax over
the lesion classes; ReLU throughout. Trained with SGD, lr 1e-3, batch 64, 150 epochs.
Kernel size and dense width are not given in the notes: 3x3 and 256 here (configurable).
"""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfganaug")
class SubtractMean(keras.layers.Layer):
    """x - mean, with the training-set mean stored as a weight (set before training)."""

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(), initializer="zeros", trainable=False, name="mean")

    def call(self, x):
        return x - keras.ops.cast(self.mean, x.dtype)


def build_lesion_cnn(num_classes: int, image_size: int = 64, channels: int = 1, filters=(32, 64, 128),
                     kernel_size: int = 3, dense_units: int = 256, dropout: float = 0.5, seed: int = 0,
                     name: str = "lesion_cnn") -> keras.Model:
    x = keras.Input((image_size, image_size, channels), name="image")
    h = SubtractMean(name="subtract_mean")(x)
    for f in filters:
        h = keras.layers.Conv2D(f, kernel_size, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(dense_units, activation="relu")(h)
    h = keras.layers.Dropout(dropout, seed=seed)(h)
    h = keras.layers.Dense(dense_units // 2, activation="relu")(h)
    h = keras.layers.Dropout(dropout, seed=seed + 1)(h)
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(h)
    return keras.Model(x, probs, name=name)
