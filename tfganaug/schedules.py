"""Learning-rate schedules driven by the optimizer's step counter (checkpointed, so a resumed
run continues the schedule exactly), each with a `scale` variable that rollback-on-divergence
(runs.fit_member) halves."""
from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfganaug")
class ScaledCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = scale * initial * 0.5 * (1 + cos(pi * min(step, total) / total)) (Loshchilov & Hutter 2017,
    without restarts): from `initial` to 0 over `total_steps`."""

    def __init__(self, initial_learning_rate: float, total_steps: int, scale: float = 1.0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.scale = tf.Variable(float(scale), trainable=False, dtype=tf.float32, name="lr_scale")

    def __call__(self, step):
        progress = tf.minimum(tf.cast(step, tf.float32), float(self.total_steps)) / float(self.total_steps)
        return self.scale * self.initial_learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "total_steps": self.total_steps,
                "scale": float(self.scale.numpy())}
