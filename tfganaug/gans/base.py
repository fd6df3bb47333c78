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

The contract a GAN of tfganaug implements (junyanz's `base_model.py` style):

* `__init__` builds its networks and calls `GAN.__init__` (directly or, with several
  generators, with `generator=None` and then `self.init_ema()` once they exist);
* `train_step(data)`: the D step, then the G step. Everything D sees, real and fake, goes
  through `self.d_input(x)` (the differentiable augmentation of `gans/augment.py`, the
  identity when off); D's logits on the augmented reals go to `self.augment.accumulate`;
  the step ends with `self.end_step(batch_size)` (ADA's p update, then the EMA update) and
  returns `self._update_trackers(...)`;
* `generate(...)`: samples from `self.sampler()`, the EMA generator when there is one;
* `checkpoint_items()`: everything exact resume needs, including `self.training_items()`
  (augmentation state and EMA weights, present only when those options are on, so runs from
  before they existed still resume);
* `ema_sources()`: the generators that get an EMA copy (default: `self.generator`).

and, for the stages (stages/train_gan.py, synthesize.py, export.py serve all five through
these, with no branch on the architecture; register the class in `gans/__init__.py`):

* build: `from_config(cfg, num_labels=, channels=, member=, steps=)`, the compiled GAN of a run
  config (optimizers and schedules included);
* data stream: `data_kind` (what train-gan loads: "rois", "paired" slices + label maps,
  "unpaired" domains), `members(arch, class_names)` and `member_data(...)` (one DCGAN per
  class), `train_inputs(batches)` (the (images, labels or label maps) stream as `train_step`
  takes it);
* sample grid: `grid_fn(class_names, train)`, drawn into the run folder every few epochs;
* sample: `generate(...)` and `synthesises_from` ("labels", "label_maps", "source", "noise":
  what `synthesize` draws from); `final_models(member)` are saved as final/<name>.keras;
* servable: `synthesises_from` also picks the SavedModel signature in stages/export.py.

`LabelMapGAN` (below) implements the stream, grid, sampling and final models of the GANs
conditioned on label maps (Pix2Pix, and the labels2image baseline, which has no D).

Training tricks for small data sets, off by default so the paper presets stay the papers':
`augment` (DiffAugment policies and/or ADA, Zhao et al. 2020, Karras et al. 2020) and
`ema_beta` (an exponential moving average of G's weights, used for sampling, synthesis and
export; Karras et al. 2018, Yazici et al. 2019).

Speed, not maths: a D step may score the (augmented) reals and fakes with
`self.discriminate_pair(real, fake)`, one D pass over both when D's batch normalisation is
`SplitBatchNormalization` (each half keeps its own batch statistics, as two separate passes
would), else two passes.
"""
from __future__ import annotations

import contextlib
import contextvars

import keras
import numpy as np
import tensorflow as tf

_BATCH_GROUPS = contextvars.ContextVar("tfganaug_batch_groups", default=1)


@contextlib.contextmanager
def batch_groups(groups: int):
    """Inside: every `SplitBatchNormalization` treats its batch as `groups` equal slices, each
    normalised with its own statistics (a context variable, so per thread: each replica of a
    tf.distribute strategy traces its own train step)."""
    token = _BATCH_GROUPS.set(int(groups))
    try:
        yield
    finally:
        _BATCH_GROUPS.reset(token)


@keras.saving.register_keras_serializable(package="tfganaug")
class SplitBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that, in training inside `batch_groups(k)`, normalises each of k equal
    consecutive slices of the batch with that slice's statistics and updates the moving
    statistics once per slice, in order: the same maths as k separate calls on the slices
    (equal up to float rounding), while the layers around it run once on the whole batch.
    This lets D see the real and the fake batch in one pass (one convolution per layer over
    2n images) with the statistics of separate real and fake batches (the DCGAN paper's
    training), not of the mixed batch. Outside `batch_groups`, plain BatchNormalization;
    `synchronized=True` all-reduces each slice's statistics across replicas."""

    def call(self, inputs, training=None, mask=None):
        groups = _BATCH_GROUPS.get()
        if groups == 1 or not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        rank = len(inputs.shape)
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"SplitBatchNormalization with groups needs axis=-1, got {self.axis}")
        dtype = tf.float64 if inputs.dtype == tf.float64 else tf.float32  # as BatchNormalization
        x = tf.cast(inputs, dtype)
        shape = tf.shape(x)
        x = tf.reshape(x, tf.concat([[groups, shape[0] // groups], shape[1:]], 0))
        mean, variance = keras.ops.moments(x, list(range(1, rank)), keepdims=True,
                                           synchronized=self.synchronized)
        moving_mean, moving_variance = tf.cast(self.moving_mean, dtype), tf.cast(self.moving_variance, dtype)
        flat = lambda t, g: tf.reshape(t[g], [-1])
        for g in range(groups):  # the order of k separate calls
            moving_mean = moving_mean * self.momentum + flat(mean, g) * (1.0 - self.momentum)
            moving_variance = moving_variance * self.momentum + flat(variance, g) * (1.0 - self.momentum)
        self.moving_mean.assign(tf.cast(moving_mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(moving_variance, self.moving_variance.dtype))
        gamma = tf.cast(self.gamma, dtype) if self.scale else None
        beta = tf.cast(self.beta, dtype) if self.center else None
        out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        return tf.cast(tf.reshape(out, shape), self.compute_dtype)


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


def _float_weights(model) -> list:
    """A model's floating-point weights (trainable and statistics such as BN moving means), in
    a fixed order; integer states (Dropout seeds) are left out of the average."""
    return [w for w in model.weights if w.dtype in ("float32", "float16", "bfloat16", "float64")]


def grid_rows(*rows) -> tuple[np.ndarray, int]:
    """Equally long lists of (H, W) images in [0,1] -> ((n_rows*n, H, W, 1), n_rows): one grid row each."""
    return np.concatenate([np.asarray(r, np.float32)[..., None] for r in rows], axis=0), len(rows)


def show_indices(n: int, k: int = 6) -> np.ndarray:
    """`k` evenly spaced training examples for the sample grids of the image GANs."""
    return np.linspace(0, n - 1, min(k, n)).round().astype(int)


class GAN(keras.Model):
    """Base of the five GANs: G, D, the noise generator, the loss trackers, D's input
    augmentation and the EMA generators (see the contract in the module docstring)."""

    tracker_names: tuple[str, ...] = ("d_loss", "g_loss", "d_real", "d_fake")

    def __init__(self, generator: keras.Model | None, discriminator: keras.Model | None, latent_dim: int = 0,
                 num_classes: int = 1, seed: int = 0, *, augment=None, ema_beta: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        from tfganaug.gans.augment import DiscriminatorAugment
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.noise = tf.random.Generator.from_seed(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.augment = augment if augment is not None else DiscriminatorAugment(seed=seed)
        if not 0.0 <= float(ema_beta) < 1.0:
            raise ValueError(f"expected ema_beta in [0, 1), got {ema_beta}")
        self.ema_beta = float(ema_beta)
        self.ema: dict[str, keras.Model] = {}
        if generator is not None:
            self.init_ema()
        norms = [layer for layer in (discriminator._flatten_layers() if discriminator is not None else [])
                 if isinstance(layer, keras.layers.BatchNormalization)]
        self._d_joint = bool(norms) and all(isinstance(layer, SplitBatchNormalization) for layer in norms)
        self.built = True

    # ------------------------------------------------------------ augmentation and EMA
    def ema_sources(self) -> dict:
        """name -> generator that gets an EMA copy when ema_beta > 0."""
        return {"generator": self.generator}

    def init_ema(self) -> None:
        """Create the EMA copies (equal to the generators at the start)."""
        if not self.ema_beta:
            return
        for name, model in self.ema_sources().items():
            copy = keras.models.clone_model(model)
            for src, dst in zip(_float_weights(model), _float_weights(copy), strict=True):
                dst.assign(src)
            self.ema[name] = copy

    def sampler(self, name: str = "generator") -> keras.Model:
        """The generator to sample from: its EMA copy when there is one."""
        return self.ema.get(name) or self.ema_sources()[name]

    def discriminate_pair(self, real, fake, training=True):
        """D's outputs on `real` and on `fake` (already through `d_input`), as two separate calls
        would give them: one pass over the concatenated 2n images when every batch
        normalisation in D is a `SplitBatchNormalization` (each half keeps its own statistics;
        D's other layers must be per-sample, as in DCGAN / ACGAN), else two passes. One pass
        runs each convolution once on twice the batch, cheaper on a CPU than twice on n.
        Dropout in D then draws one mask for the 2n images: the same distribution as two
        calls, other draws for the same seed."""
        if not self._d_joint:
            return (self.discriminator(real, training=training), self.discriminator(fake, training=training))
        n = tf.shape(real)[0]
        with batch_groups(2):
            out = self.discriminator(tf.concat([real, tf.cast(fake, real.dtype)], 0), training=training)
        return (tf.nest.map_structure(lambda t: t[:n], out), tf.nest.map_structure(lambda t: t[n:], out))

    def d_input(self, x):
        """What D sees: `x` after the differentiable augmentation (identity when off)."""
        return self.augment(x) if self.augment.active else x

    def ema_statistics_inputs(self, name: str, n):
        """Inputs on which the EMA copy `name` recomputes its batch-normalisation statistics
        after each EMA update (a batch of n latent draws for the ROI GANs), or None to copy the
        statistics of the trained generator instead (G without batch normalisation, or one
        whose inputs are training images)."""
        return None

    def end_step(self, batch_size) -> None:
        """ADA's p update, then the EMA update of every generator copy.

        The moving BN statistics are not averaged: they must describe the activations of the
        EMA weights themselves. Copied from the trained G (momentum 0.9: its last ~10 steps)
        they belonged to other weights than the EMA's average over ~1/(1 - beta) steps, and
        the EMA G sampled with mismatched normalisation (washed-out, off-class ROIs). So the
        copy runs once per step in training mode on fresh noise (`ema_statistics_inputs`):
        its moving statistics then follow its own activations, and are checkpointed with it."""
        if self.augment.active:
            self.augment.update_p(batch_size)
        beta = self.ema_beta
        for name, copy in self.ema.items():
            source = self.ema_sources()[name]
            inputs = self.ema_statistics_inputs(name, batch_size)
            for src, dst in zip(_float_weights(source), _float_weights(copy), strict=True):
                if src.trainable:
                    dst.assign(src + (dst - src) * beta)
                elif inputs is None:  # statistics copied from G, as for StyleGAN2's G_ema
                    dst.assign(src)
            if inputs is not None:
                copy(inputs, training=True)  # updates only the copy's moving mean / variance

    def training_items(self) -> dict:
        """Checkpoint items of the augmentation and the EMA copies (only those that are on)."""
        items = dict(self.augment.checkpoint_items()) if self.augment.active else {}
        items.update({f"{name}_ema": copy for name, copy in self.ema.items()})
        return items

    def sampling_items(self) -> dict:
        """The checkpoint items a sampler restores: the generators and their EMA copies."""
        return {**self.ema_sources(), **{f"{name}_ema": copy for name, copy in self.ema.items()}}

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
        logs.update(self.augment.logs() if self.augment.active else {})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def checkpoint_items(self) -> dict:
        """Everything exact resume needs besides the data position (see runs.py)."""
        return {"generator": self.generator, "discriminator": self.discriminator,
                "d_optimizer": self.d_optimizer, "g_optimizer": self.g_optimizer,
                "noise": self.noise,
                "seed_states": seed_generator_states(self.generator, self.discriminator),
                **self.training_items()}

    def generate(self, z, labels=None, training=False):
        raise NotImplementedError

    # ------------------------------------------------------------ what the stages call
    # stages/train_gan.py, stages/synthesize.py and stages/export.py serve all five GANs
    # through these, with no branch on the architecture.
    data_kind = "rois"          # what train_gan loads: "rois" | "paired" (slices + label maps) | "unpaired"
    synthesises_from = "labels"  # what synthesize draws from: "labels" | "label_maps" | "source" | "noise"

    @classmethod
    def from_config(cls, cfg, *, num_labels: int, channels: int = 1, member: int = 0, steps: int = 1) -> "GAN":
        """The compiled GAN of run config `cfg`: `num_labels` classes (ROI GANs) or label-map
        classes, `channels` image channels, `member` the index of its run-folder member,
        `steps` training steps per epoch (for schedules)."""
        raise NotImplementedError

    @classmethod
    def members(cls, arch: str, class_names) -> list[str]:
        """The run-folder members one train-gan run trains: one GAN, named after its arch."""
        return [arch]

    @classmethod
    def member_data(cls, images, labels, index: int):
        """The training examples of member `index` (all of them, but one DCGAN per class)."""
        return images, labels

    def train_inputs(self, batches):
        """The stream of (images, labels or label maps) batches as `train_step` takes it."""
        return batches

    def grid_fn(self, class_names, train=None):
        """A function that draws the sample grid of the run folder, (N, H, W, C) in [0, 1]
        (or with its number of rows): ROI GANs a fixed z, one class per row of 6."""
        fixed_z = np.random.default_rng(0).uniform(-1, 1, (36, self.latent_dim)).astype(np.float32)
        fixed_labels = ((np.arange(36) // 6) % len(class_names)).astype(np.int32)
        return lambda: (self.generate(fixed_z, fixed_labels).numpy() + 1.0) / 2.0

    def final_models(self, member: str) -> dict:
        """name -> Keras model saved as final/<name>.keras (the sampling generator)."""
        return {member: self.sampler()}


class LabelMapGAN(GAN):
    """What the stages need from a GAN conditioned on one-hot label maps (Pix2Pix, labels2image),
    written once: it trains on (label map, image) pairs and synthesises from label maps."""

    data_kind = "paired"
    synthesises_from = "label_maps"

    def train_inputs(self, batches):
        k = self.num_labels
        return batches.map(lambda x, m: (tf.one_hot(m, k), x))

    def grid_fn(self, class_names, train=None):
        """Rows: the label maps, the generated images for them (first channel), the real images."""
        show, k = show_indices(len(train)), self.num_labels

        def draw():
            fake = (self.generate(tf.one_hot(train.masks[show].astype(np.int32), k)).numpy() + 1) / 2
            return grid_rows(train.masks[show] / max(1, k - 1), fake[..., 0], train.images[show, ..., 0])
        return draw

    def final_models(self, member):
        return {}  # sampled from the checkpoint

    def generate(self, label_onehot, training=False):
        """Image [B, H, W, C] in [-1, 1] for one-hot label maps [B, H, W, num_labels] (see
        :func:`tfganaug.gans.pix2pix.label_to_onehot`), from the EMA generator when there is one;
        ``training=True`` keeps Pix2Pix's dropout on, as its paper does."""
        return self.sampler()(tf.convert_to_tensor(label_onehot, tf.float32), training=training)
