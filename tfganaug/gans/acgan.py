"""Auxiliary-classifier GAN for labelled lesion ROIs, after Frid-Adar et al. 2018, section III-C,
and Odena et al. 2017.

Generator: the DCGAN generator conditioned on the class: a learned class embedding
multiplies z. Discriminator (the paper's changes to DCGAN): 3x3 kernels, stride 2 on every
odd layer (six convolutions: strides 2,1,2,1,2,1), dropout 0.5 after every layer except the
last, LeakyReLU 0.2, and two heads: the source logit P(S|X) and the class logits P(C|X).
D maximises L_S + L_C, G maximises L_C - L_S (with the non-saturating form for G).
Adam lr 1e-4, batch 64, 50 epochs.

L_C is Odena et al.'s log-likelihood of the correct class on real *and* fake images, for D as
for G. `d_classifies_fakes=False` (the cpu_acgan preset, not the paper) drops the fake term from
D's loss, so D's class head learns the classes from real images only, as in Gulrajani et al.
2017's AC-WGAN-GP: trained on fakes too, the head also learns whatever tells G's classes apart,
G and D agree on such cues, and G need not draw the real class (Shu et al. 2017, "AC-GAN learns
a biased distribution"). On OrganAMNIST at the cpu budget the fake term left the synthetic ROIs
at 0.37 of the real accuracy in the eyes of a CNN trained on real ROIs.

`mode_seeking` > 0 (cpu_acgan, not the paper) adds Mao et al. 2019's mode-seeking term to G's
loss: the batch is drawn as pairs with the same class and different z, and G minimises
lambda / (mean |G(z1, c) - G(z2, c)| / mean |z1 - z2| + eps), so it cannot map every z of a
class to one image. G's class term rewards the most classifiable image of each class (Shu et
al. 2017); on the phantom the metastasis class collapsed to one small blob without this term.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfganaug.gans.base import GAN, global_mean, non_saturating_d, non_saturating_g
from tfganaug.gans.dcgan import INIT, d_batch_norm, build_generator


def build_discriminator(num_classes: int, width: int = 1024, image_size: int = 64, channels: int = 1,
                        kernel_size: int = 3, dropout: float = 0.5, seed: int = 0,
                        name: str = "discriminator") -> keras.Model:
    x = keras.Input((image_size, image_size, channels), name="image")
    h = x
    filters = (width // 8, width // 8, width // 4, width // 4, width // 2, width)
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(f, kernel_size, strides=2 if i % 2 == 0 else 1, padding="same",
                                use_bias=i == 0, kernel_initializer=INIT())(h)
        if i:
            h = d_batch_norm()(h)
        h = keras.layers.LeakyReLU(0.2)(h)
        if dropout:
            h = keras.layers.Dropout(dropout, seed=seed + i)(h)
    h = keras.layers.Flatten()(h)
    source = keras.layers.Dense(1, kernel_initializer=INIT(), dtype="float32", name="source")(h)
    classes = keras.layers.Dense(num_classes, kernel_initializer=INIT(), dtype="float32", name="classes")(h)
    return keras.Model(x, [source, classes], name=name)


def mode_seeking_loss(images, z, eps: float = 1e-5):
    """Mao et al. 2019: 1 / (mean |x_i - x_j| / mean |z_i - z_j| + eps) over the pairs
    (i, i + n - n // 2) of a batch, divided by the replica count (each replica's term is a
    mean over its own pairs; the replicas' gradients are summed)."""
    n = tf.shape(images)[0]
    m = n - n // 2
    dx = tf.reduce_mean(tf.abs(tf.cast(images[:n // 2], tf.float32) - tf.cast(images[m:], tf.float32)))
    dz = tf.reduce_mean(tf.abs(z[:n // 2] - z[m:]))
    replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
    return 1.0 / (dx / dz + eps) / replicas


class ACGAN(GAN):
    tracker_names = ("d_loss", "g_loss", "d_real", "d_fake", "d_class_acc")

    def __init__(self, num_classes, latent_dim=100, width=1024, image_size=64, channels=1, g_kernel_size=5,
                 d_kernel_size=3, dropout=0.5, seed=0, upsample="transpose", augment=None, ema_beta=0.0,
                 conditioning="multiply", d_classifies_fakes=True, mode_seeking=0.0, g_layout="paper", **kwargs):
        super().__init__(build_generator(latent_dim, width, image_size, channels, g_kernel_size, num_classes,
                                         upsample=upsample, conditioning=conditioning, layout=g_layout),
                         build_discriminator(num_classes, width, image_size, channels, d_kernel_size,
                                             dropout, seed),
                         latent_dim, num_classes=num_classes, seed=seed, augment=augment, ema_beta=ema_beta,
                         **kwargs)
        self.d_classifies_fakes = bool(d_classifies_fakes)
        self.mode_seeking = float(mode_seeking)

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        from tfganaug.gans import augment
        seed = cfg.seed * 1000 + member
        g = cfg.gan
        gan = cls(num_classes=num_labels, latent_dim=g.latent_dim, width=g.width, image_size=cfg.data.image_size,
                  d_kernel_size=g.kernel_size, dropout=g.d_dropout, seed=seed, conditioning=g.conditioning,
                  upsample=g.upsample, augment=augment.from_config(g, seed), ema_beta=g.g_ema_beta,
                  d_classifies_fakes=g.d_classifies_fakes, mode_seeking=g.mode_seeking, g_layout=g.g_layout)
        gan.compile(d_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1),
                    g_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1))
        return gan

    def generate(self, z, labels=None, training=False):
        z = tf.convert_to_tensor(z, tf.float32)
        labels = tf.convert_to_tensor(labels, tf.int32)
        return self.sampler()([z, labels], training=training)

    def ema_statistics_inputs(self, name, n):
        return [self.sample_z(n), self.sample_labels(n)]

    def d_per_example(self, labels, real_src, real_cls, fake_labels, fake_src, fake_cls):
        """D's per-example loss -(L_S + L_C): the source term, the class term on reals and, with
        `d_classifies_fakes` (Odena et al.), the class term on fakes."""
        ce = keras.losses.sparse_categorical_crossentropy
        loss = non_saturating_d(real_src, fake_src)[:, 0] + ce(labels, real_cls, from_logits=True)
        return loss + ce(fake_labels, fake_cls, from_logits=True) if self.d_classifies_fakes else loss

    def train_step(self, data):
        real, labels = data
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        n = tf.shape(real)[0]
        ce = keras.losses.sparse_categorical_crossentropy
        with tf.GradientTape() as tape:
            fake_labels = self.sample_labels(n)
            fake = self.generator([self.sample_z(n), fake_labels], training=True)
            (real_src, real_cls), (fake_src, fake_cls) = self.discriminate_pair(self.d_input(real),
                                                                                self.d_input(fake))
            d_loss = global_mean(self.d_per_example(labels, real_src, real_cls, fake_labels, fake_src, fake_cls))
        self._apply(self.d_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        self.augment.accumulate(real_src)
        with tf.GradientTape() as tape:
            fake_labels = self.sample_labels(n)
            if self.mode_seeking:  # pairs (i, i + n - n // 2) share their class
                fake_labels = tf.concat([fake_labels[:n - n // 2], fake_labels[:n // 2]], 0)
            z = self.sample_z(n)
            fake = self.generator([z, fake_labels], training=True)
            fake_src, fake_cls = self.discriminator(self.d_input(fake), training=True)
            g_loss = global_mean(non_saturating_g(fake_src)[:, 0] + ce(fake_labels, fake_cls, from_logits=True))
            if self.mode_seeking:
                g_loss += self.mode_seeking * mode_seeking_loss(fake, z)
        self._apply(self.g_optimizer, tape, g_loss, self.generator.trainable_variables)
        self.end_step(n)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(real_cls, -1, output_type=tf.int32), labels), tf.float32))
        return self._update_trackers({
            "d_loss": d_loss, "g_loss": g_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_src)), "d_fake": tf.reduce_mean(tf.sigmoid(fake_src)),
            "d_class_acc": accuracy})
