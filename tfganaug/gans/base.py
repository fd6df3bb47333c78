"""Shared machinery of the adversarial models: a `keras.Model` wrapper trained with `fit()`.

Following the keras-io GAN examples, a GAN is `compile(d_optimizer=..., g_optimizer=...)`d and
its `train_step` does the discriminator step and then the generator step. The pitfalls
measured for TF 2.21 + Keras 3 (../shared/TF_KERAS_NOTES.md) are handled here once:

* `self.built = True`, so `fit()` works under every `tf.distribute` strategy;
* per-example losses are averaged with `tf.nn.compute_average_loss`, i.e. over the *global*
  batch, so updates are the same on one device and on N replicas;
* noise comes from a `tf.random.Generator` (distinct streams per replica, checkpointable);
* logged losses are multiplied back by the replica count;
* under MultiWorkerMirroredStrategy, logs are rank-1 (Keras reduces them on axis 0);
* with `mixed_float16` both optimizers are wrapped in `LossScaleOptimizer` and losses pass
  through `optimizer.scale_loss` (the identity for plain optimizers).
"""
from __future__ import annotations

import keras
import tensorflow as tf


def global_mean(per_example):
    """Mean over the global batch (all replicas): the correct loss scale under tf.distribute."""
    per_example = tf.cast(per_example, tf.float32)
    per_example = tf.reshape(per_example, [tf.shape(per_example)[0], -1])
    return tf.nn.compute_average_loss(tf.reduce_mean(per_example, axis=1))


def non_saturating_d(real_logits, fake_logits):
    """Per-example discriminator loss -log D(x) - log(1 - D(G(z))), computed from logits."""
    return tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits)


def non_saturating_g(fake_logits):
    """Per-example non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014)."""
    return tf.nn.softplus(-fake_logits)


def seed_generator_states(*models) -> list:
    """The state variables of every Keras SeedGenerator (e.g. in Dropout) inside `models`.

    They are not tracked by `tf.train.Checkpoint(model=...)`; exact resume needs them.
    Uses the private `_seed_generators` attribute of Keras 3 layers (pinned by a test).
    """
    states = []
    for model in models:
        for layer in model._flatten_layers(include_self=True, recursive=True):
            for gen in getattr(layer, "_seed_generators", []):
                states.append(gen.state)
    return states


class GAN(keras.Model):
    """Base of DCGAN/ACGAN: holds G, D, the noise generator and the loss trackers."""

    tracker_names: tuple[str, ...] = ("d_loss", "g_loss", "d_real", "d_fake")

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 num_classes: int = 1, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.noise = tf.random.Generator.from_seed(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.built = True

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            wrap = keras.optimizers.LossScaleOptimizer
            d_optimizer = d_optimizer if isinstance(d_optimizer, wrap) else wrap(d_optimizer)
            g_optimizer = g_optimizer if isinstance(g_optimizer, wrap) else wrap(g_optimizer)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        # Build optimizer slots now (inside the strategy scope): needed by Adam under
        # tf.distribute and for a checkpoint restore whose assert_consumed() passes.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def sample_z(self, n):
        """z ~ U[-1, 1]^latent_dim, as in Frid-Adar et al. 2018."""
        return self.noise.uniform([n, self.latent_dim], -1.0, 1.0)

    def sample_labels(self, n):
        return self.noise.uniform([n], 0, self.num_classes, dtype=tf.int32)

    def _apply(self, optimizer, tape, loss, variables):
        # The loss scaling must be recorded by the tape (re-entered here): scaled after the tape
        # closed, the scaled loss had no path to the weights and mixed_float16 got no gradients.
        with tape:
            loss = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))

    def _update_trackers(self, values: dict) -> dict:
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        for name, value in values.items():
            scale = replicas if name.endswith("loss") else 1.0
            self.trackers[name].update_state(tf.cast(value, tf.float32) * scale)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def checkpoint_items(self) -> dict:
        """Everything exact resume needs besides the data position (see train.py)."""
        return {"generator": self.generator, "discriminator": self.discriminator,
                "d_optimizer": self.d_optimizer, "g_optimizer": self.g_optimizer,
                "noise": self.noise,
                "seed_states": seed_generator_states(self.generator, self.discriminator)}

    def generate(self, z, labels=None, training=False):
        raise NotImplementedError
