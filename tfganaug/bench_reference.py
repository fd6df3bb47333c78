"""keras-io-style reference GANs for `tfganaug bench`: the speed yardstick of the project's steps.

The idiom of keras-io's `dcgan_overriding_train_step` example (and `conditional_gan`): D's
step is ONE discriminator pass over the concatenated real + fake batch with 1/0 labels, then
G's step with "all real" labels; plain `tf.reduce_mean` of sigmoid cross-entropy losses, a
`keras.metrics.Mean` tracker per loss, z from a `keras.random.SeedGenerator`. The networks
are the project's own (`dcgan.build_generator/build_discriminator`, `acgan.build_discriminator`)
at the same settings. By default G's resize-convolutions are the textbook Keras layers
(`UpSampling2D` then `Conv2D`, as a keras-io user writes them and as the project built them
before issue 13 part 7); `fused_resize=True` gives the reference the project's `ResizeConv2D`
(the same function and weights, fewer multiply-adds), so that row pair differs only in the
train step.

Differences from keras-io, each to time the same computation as the project: the networks
are called with `training=True` (keras-io's own layers have no batch normalisation, so it
omits the argument, which in Keras 3 would run BN in inference mode); no label smoothing
noise; z ~ U[-1, 1] as in the project. Not for training: no tf.distribute loss scaling, no
augmentation, no EMA, no checkpoint items. With batch normalisation in D, the joint pass
normalises D's features over the mixed real + fake batch, which is not the DCGAN paper's
training (separate real and fake batches) but is the reference's idiom.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfganaug.gans import acgan, dcgan


def _bce(labels, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


class ReferenceDCGAN(keras.Model):
    """keras-io `dcgan_overriding_train_step` with the project's DCGAN G and D."""

    def __init__(self, latent_dim=100, width=128, image_size=32, channels=1, kernel_size=5,
                 upsample="resize", fused_resize=False, seed=0, g_layout="paper", **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.generator = dcgan.build_generator(latent_dim, width, image_size, channels, kernel_size,
                                               upsample=upsample, fused_resize=fused_resize, layout=g_layout)
        self.discriminator = dcgan.build_discriminator(width, image_size, channels, kernel_size)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.built = True

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def _z(self, n):
        return keras.random.uniform((n, self.latent_dim), -1.0, 1.0, seed=self.seed_generator)

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        n = tf.shape(real)[0]
        fake = self.generator(self._z(n), training=True)
        combined = tf.concat([real, fake], axis=0)
        labels = tf.concat([tf.ones((n, 1)), tf.zeros((n, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = _bce(labels, self.discriminator(combined, training=True))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = self._z(n)
        with tf.GradientTape() as tape:
            g_loss = _bce(tf.ones((n, 1)), self.discriminator(self.generator(z, training=True), training=True))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


class ReferenceACGAN(ReferenceDCGAN):
    """keras-io `conditional_gan` idiom with the ACGAN heads: one D pass over concat(real, fake)
    giving the source and the class logits, then G's step through both heads."""

    def __init__(self, num_classes, latent_dim=100, width=128, image_size=32, channels=1, g_kernel_size=5,
                 d_kernel_size=3, dropout=0.0, upsample="resize", conditioning="concat", fused_resize=False,
                 seed=0, g_layout="paper", **kwargs):
        keras.Model.__init__(self, **kwargs)
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.generator = dcgan.build_generator(latent_dim, width, image_size, channels, g_kernel_size,
                                               num_classes, upsample=upsample, conditioning=conditioning,
                                               fused_resize=fused_resize, layout=g_layout)
        self.discriminator = acgan.build_discriminator(num_classes, width, image_size, channels, d_kernel_size,
                                                       dropout, seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.built = True

    def _labels(self, n):
        return keras.random.randint((n,), 0, self.num_classes, seed=self.seed_generator, dtype="int32")

    def train_step(self, data):
        real, labels = data
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        n = tf.shape(real)[0]
        ce = lambda y, logits: tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        fake_labels = self._labels(n)
        fake = self.generator([self._z(n), fake_labels], training=True)
        combined = tf.concat([real, fake], axis=0)
        source_labels = tf.concat([tf.ones((n, 1)), tf.zeros((n, 1))], axis=0)
        class_labels = tf.concat([labels, fake_labels], axis=0)
        with tf.GradientTape() as tape:
            source, classes = self.discriminator(combined, training=True)
            d_loss = _bce(source_labels, source) + ce(class_labels, classes)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        fake_labels = self._labels(n)
        z = self._z(n)
        with tf.GradientTape() as tape:
            source, classes = self.discriminator(self.generator([z, fake_labels], training=True), training=True)
            g_loss = _bce(tf.ones((n, 1)), source) + ce(fake_labels, classes)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}
