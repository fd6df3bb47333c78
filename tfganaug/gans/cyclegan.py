"""CycleGAN for contrast -> non-contrast CT, after Zhu, Park, Isola & Efros 2017, "Unpaired
Image-to-Image Translation using Cycle-Consistent Adversarial Networks" (ICCV), as used by
Sandfort, Yan, Pickhardt & Summers 2019 (Scientific Reports 9:16884) to make synthetic
non-contrast CTs from contrast CTs (DeepLesion: 10,681 contrast and 603 non-contrast CTs) and
augment the training of organ segmentation with them.

Two translators G_AB: A -> B and G_BA: B -> A, and two discriminators: D_A judges domain A
(real a against G_BA(b)), D_B judges domain B (real b against G_AB(a)). (The reference code
calls G_AB "G_A" and our D_B "D_A"; here every name says which domain it works on.)

Generator (paper, appendix 7.2, after Johnson et al. 2016): c7s1-64, d128, d256, n x R256,
u128, u64, c7s1-C; "c7s1-k" is a 7x7 convolution with stride 1 after reflection padding,
"dk" a 3x3 stride-2 convolution, "Rk" a residual block of two reflection-padded 3x3
convolutions, "uk" a 3x3 fractionally-strided convolution with stride 1/2; instance
normalisation and ReLU after every convolution but the last, whose output goes through tanh.
The paper uses 9 blocks at 256x256 and 6 at 128x128. Instance normalisation is
`GroupNormalization(groups=-1)` (tensorflow-addons is gone with Keras 3).

Discriminator: the 70x70 PatchGAN of Isola et al. 2017: C64 (no normalisation), C128, C256,
C512 with stride 1, then a 1-channel convolution; "Ck" is a 4x4 convolution, instance
normalisation, LeakyReLU 0.2. Zero padding 1 as in the reference code, so a 256x256 image
gives a 30x30 grid of patch scores (32x32 -> 2x2).

Objective: least-squares GAN losses (Mao et al. 2017): D minimises
0.5 [(D(y) - 1)^2 + D(G(x))^2], G minimises (D(G(x)) - 1)^2; plus the cycle loss
lambda_cycle (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1) with lambda_cycle = 10, and the
identity loss lambda_cycle * lambda_identity (|G_AB(b) - b|_1 + |G_BA(a) - a|_1) with
lambda_identity = 0.5 (relative to lambda_cycle, as in the reference code; the paper uses it
to keep the intensity of the image, which is what a CT number is). D is trained on a history
of 50 generated images (Shrivastava et al. 2017, :class:`ImagePool`). Weights ~ N(0, 0.02);
Adam lr 2e-4, beta_1 0.5, batch 1; lr constant for 100 epochs, then linearly to 0 over 100
more (:class:`LinearDecay`).

One train step follows the reference implementation: the generator step (both directions at
once, one optimizer for G_AB and G_BA), then the discriminator step (one optimizer for D_A
and D_B) on the fakes of the same forward pass after the image pool.

Under tf.distribute, each replica keeps its own image pool (per-replica variables); a
checkpoint holds replica 0's pool, which every replica gets back on restore, so resume is
exact on one device and only approximately so (the pools) on several.

Training tricks for small data sets (not in the paper; all off by default, so the paper preset
stays the paper's; the cpu_* presets may switch them on and say so). CycleGAN follows the
contract of `gans/base.py`:

* ``augment``: one :class:`~tfganaug.gans.augment.DiscriminatorAugment` (DiffAugment and/or
  ADA) for everything both discriminators see: real a and b and the pooled fakes in D's step,
  the fresh fakes in G's step, each call with its own draw. The cycle and identity L1 terms
  use the un-augmented images (augmentation is for D only). ADA's overfitting heuristic needs
  a sign of D's output, but these are least-squares scores with targets 0 (fake) and 1 (real),
  not logits: r_t = E[sign(D_B(b) - 0.5)], the score measured from the midpoint between the
  two targets. It is taken from D_B's scores on real b only: domain B is the small one
  (Sandfort et al.: 603 non-contrast against 10,681 contrast CTs), so D_B is the
  discriminator that overfits; one p serves both discriminators.
* ``ema_beta`` > 0: exponential moving averages of G_AB and G_BA (``self.ema["g_ab"]``,
  ``self.ema["g_ba"]``), used by :meth:`CycleGAN.translate_ab` / :meth:`CycleGAN.translate_ba`,
  synthesis and export (``sampler("g_ab")``).
* ``upsample="resize"``: the two fractionally-strided 3x3 convolutions u128, u64 become a
  nearest-neighbour 2x resize followed by a 3x3 stride-1 convolution ("same" padding;
  Odena et al. 2016: no checkerboard artefacts). The paper keeps ``"transpose"``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tfganaug.gans.base import GAN, global_mean, grid_rows, seed_generator_states, show_indices

def INIT():
    """N(0, 0.02), a new initializer per layer (a shared unseeded one gives every kernel of one
    shape the same values, e.g. all residual blocks)."""
    return keras.initializers.RandomNormal(stddev=0.02)


# ---------------------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="tfganaug")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by mirroring the image (tf.pad mode REFLECT), as the CycleGAN
    generator does before every 3x3 and 7x7 convolution (fewer border artefacts than zeros)."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (input_shape[0], grow(input_shape[1]), grow(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _instance_norm():
    # Instance normalisation: one group per channel, statistics per image (epsilon as in torch).
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)


def _residual_block(x, filters: int, index: int):
    h = ReflectionPadding2D(1)(x)
    h = keras.layers.Conv2D(filters, 3, use_bias=False, kernel_initializer=INIT())(h)
    h = keras.layers.ReLU()(_instance_norm()(h))
    h = ReflectionPadding2D(1)(h)
    h = keras.layers.Conv2D(filters, 3, use_bias=False, kernel_initializer=INIT())(h)
    h = _instance_norm()(h)
    return keras.layers.Add(name=f"R{filters}_{index}")([x, h])


UPSAMPLING = ("transpose", "resize")


def build_generator(channels: int = 1, base_filters: int = 64, n_res_blocks: int = 9,
                    name: str = "generator", upsample: str = "transpose") -> keras.Model:
    """ResNet translator c7s1-64, d128, d256, n x R256, u128, u64, c7s1-C (tanh), fully
    convolutional: it takes any image whose sides are multiples of 4. ``upsample="resize"``:
    u128, u64 as nearest 2x resize + 3x3 convolution (see the module docstring)."""
    if upsample not in UPSAMPLING:
        raise ValueError(f"expected upsample one of {UPSAMPLING}, got {upsample!r}")
    x = keras.Input((None, None, channels), name="image")
    h = ReflectionPadding2D(3)(x)
    h = keras.layers.Conv2D(base_filters, 7, use_bias=False, kernel_initializer=INIT())(h)
    h = keras.layers.ReLU()(_instance_norm()(h))
    for mult in (2, 4):  # d128, d256: 3x3 stride 2, zero padding 1 (halves even sides exactly)
        h = keras.layers.ZeroPadding2D(1)(h)
        h = keras.layers.Conv2D(base_filters * mult, 3, strides=2, use_bias=False, kernel_initializer=INIT())(h)
        h = keras.layers.ReLU()(_instance_norm()(h))
    for i in range(n_res_blocks):
        h = _residual_block(h, base_filters * 4, i)
    for mult in (2, 1):  # u128, u64: torch ConvTranspose2d(3, stride 2, padding 1, output_padding 1)
        if upsample == "transpose":
            h = keras.layers.Conv2DTranspose(base_filters * mult, 3, strides=2, padding="valid", use_bias=False,
                                             kernel_initializer=INIT())(h)  # 2n + 1 ...
            h = keras.layers.Cropping2D(((1, 0), (1, 0)))(h)  # ... minus the first row/column = 2n
        else:
            h = keras.layers.UpSampling2D(2, interpolation="nearest")(h)
            h = keras.layers.Conv2D(base_filters * mult, 3, padding="same", use_bias=False,
                                    kernel_initializer=INIT())(h)
        h = keras.layers.ReLU()(_instance_norm()(h))
    h = ReflectionPadding2D(3)(h)
    h = keras.layers.Conv2D(channels, 7, kernel_initializer=INIT(), dtype="float32")(h)
    image = keras.layers.Activation("tanh", dtype="float32", name="translated")(h)
    return keras.Model(x, image, name=name)


def build_discriminator(channels: int = 1, base_filters: int = 64, name: str = "discriminator") -> keras.Model:
    """70x70 PatchGAN: C64 (no norm), C128, C256, C512 (stride 1), 1-channel conv; one
    least-squares score per 70x70 patch (a 256 image -> 30x30 scores)."""
    x = keras.Input((None, None, channels), name="image")
    h = x
    for i, (mult, stride) in enumerate(((1, 2), (2, 2), (4, 2), (8, 1))):
        h = keras.layers.ZeroPadding2D(1)(h)
        h = keras.layers.Conv2D(base_filters * mult, 4, strides=stride, use_bias=i == 0,
                                kernel_initializer=INIT())(h)
        if i:
            h = _instance_norm()(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    h = keras.layers.ZeroPadding2D(1)(h)
    patches = keras.layers.Conv2D(1, 4, kernel_initializer=INIT(), dtype="float32", name="patch_scores")(h)
    return keras.Model(x, patches, name=name)


def patch_grid_size(image_size: int) -> int:
    """Side of the PatchGAN score grid for an `image_size` input (256 -> 30)."""
    side = image_size
    for _ in range(3):
        side = (side + 2 - 4) // 2 + 1
    return side - 2


# ---------------------------------------------------------------------------- image pool

class ImagePool(tf.Module):
    """History of generated images for the discriminator (Shrivastava et al. 2017, section
    2.3; the ImagePool of the reference code).

    For each image of a batch, in order: while the pool holds fewer than `pool_size` images,
    store it and return it; once full, with probability 0.5 return a stored image picked
    uniformly and store the new one in its place, else return the new one. An image stored by
    an earlier item of the same batch can be returned by a later one, exactly as in the
    sequential reference loop.

    The buffer and the fill count are tf.Variables and the draws come from a given
    `tf.random.Generator`, so the pool is in the checkpoint, resumes exactly and runs inside
    tf.function. The variables are per replica under tf.distribute (ON_READ; a checkpoint holds
    replica 0's). `pool_size` 0 turns the pool off (D sees the newest fakes).
    """

    def __init__(self, pool_size: int, image_shape, name: str | None = None):
        super().__init__(name=name)
        self.pool_size = int(pool_size)
        per_replica = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.images = tf.Variable(tf.zeros([max(self.pool_size, 1), *image_shape], tf.float32),
                                  name="images", **per_replica)
        self.count = tf.Variable(0, dtype=tf.int32, name="count", **per_replica)

    def query(self, images, rng: tf.random.Generator):
        """Returns a batch like `images`, mixing them with older fakes; updates the pool.

        Always draws n uniforms then n slot indices from `rng` (also while filling), so the
        random stream advances the same way whatever the pool holds.
        """
        images = tf.cast(images, tf.float32)
        if self.pool_size == 0:
            return images
        n = tf.shape(images)[0]
        accept = rng.uniform([n]) > 0.5
        slots = rng.uniform([n], 0, self.pool_size, dtype=tf.int32)
        return self._query(images, accept, slots)

    def _query(self, images, accept, slots):
        """The pool update for given draws: `accept[i]` (prob. 0.5) swaps item i with the
        stored image at `slots[i]` once the pool is full. Vectorised form of the sequential
        loop: item i's position in the stream is count + i."""
        n = tf.shape(images)[0]
        order = tf.range(n)
        buffer, count = self.images.read_value(), self.count.read_value()
        position = count + order
        full = position >= self.pool_size
        slot = tf.where(full, slots, tf.minimum(position, self.pool_size - 1))
        swap = tf.logical_and(full, accept)
        store = tf.logical_or(tf.logical_not(full), swap)
        # writes[i, j]: an earlier item j < i of this batch stored into item i's slot.
        same_slot = tf.logical_and(tf.equal(slot[:, None], slot[None, :]), store[None, :])
        writes = tf.logical_and(same_slot, order[None, :] < order[:, None])
        latest = tf.reduce_max(tf.where(writes, order[None, :], -1), axis=1)
        stored = tf.where(latest[:, None, None, None] >= 0, tf.gather(images, tf.maximum(latest, 0)),
                          tf.gather(buffer, slot))
        out = tf.where(swap[:, None, None, None], stored, images)
        # The buffer keeps, per slot, the last item of the batch that stored into it (unique
        # indices: the scatter is deterministic). A whole-buffer assign, because per-replica
        # (ON_READ) variables have no scatter_update.
        later = tf.logical_and(same_slot, order[None, :] > order[:, None])
        keep = tf.where(tf.logical_and(store, tf.logical_not(tf.reduce_any(later, axis=1))))[:, 0]
        self.images.assign(tf.tensor_scatter_nd_update(buffer, tf.gather(slot, keep)[:, None],
                                                       tf.gather(images, keep)))
        self.count.assign(tf.minimum(count + n, self.pool_size))
        return out


# ---------------------------------------------------------------------------- lr schedule

@keras.saving.register_keras_serializable(package="tfganaug")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule, tf.Module):
    """Constant learning rate for `decay_start_step` steps, then linearly to 0 at `total_steps`
    (CycleGAN: 100 epochs at 2e-4, then 100 epochs of linear decay), times `scale`.

    The step is the optimizer's iteration count, which is in the optimizer's checkpoint, so a
    resumed run continues the schedule exactly. `scale` is a non-trainable tf.Variable
    (default 1.0) for rollback-on-divergence code to lower the whole schedule
    (`schedule.scale.assign(0.5)`); the schedule is a tf.Module tracked by its optimizer, so
    the scale is saved in the optimizer's checkpoint too.

    The reference code decays once per epoch with a slightly different end point (the last
    epoch still runs at 1/101 of the rate); this schedule decays per step and reaches 0.
    """

    def __init__(self, initial_learning_rate: float = 2e-4, decay_start_step: int = 0, total_steps: int = 1,
                 scale: float = 1.0, name: str = "linear_decay"):
        tf.Module.__init__(self, name=name)
        if not 0 <= int(decay_start_step) < int(total_steps):
            raise ValueError(f"need 0 <= decay_start_step < total_steps, got {decay_start_step} and "
                             f"{total_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_start_step = int(decay_start_step)
        self.total_steps = int(total_steps)
        self.scale = tf.Variable(float(scale), dtype=tf.float32, trainable=False, name="scale")

    @classmethod
    def from_epochs(cls, initial_learning_rate: float, steps_per_epoch: int, constant_epochs: int = 100,
                    decay_epochs: int = 100, **kwargs) -> "LinearDecay":
        return cls(initial_learning_rate, steps_per_epoch * constant_epochs,
                   steps_per_epoch * (constant_epochs + decay_epochs), **kwargs)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        remaining = (float(self.total_steps) - step) / float(self.total_steps - self.decay_start_step)
        return self.initial_learning_rate * self.scale * tf.clip_by_value(remaining, 0.0, 1.0)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_start_step": self.decay_start_step,
                "total_steps": self.total_steps, "scale": float(self.scale.numpy()), "name": self.name}


def lsgan_d(real_scores, fake_scores):
    """Per-example least-squares D loss 0.5 [(D(y) - 1)^2 + D(G(x))^2], mean over patches."""
    return 0.5 * (_per_example(tf.square(real_scores - 1.0)) + _per_example(tf.square(fake_scores)))


def lsgan_g(fake_scores):
    """Per-example least-squares G loss (D(G(x)) - 1)^2, mean over patches."""
    return _per_example(tf.square(fake_scores - 1.0))


def l1(x, y):
    """Per-example mean absolute difference."""
    return _per_example(tf.abs(tf.cast(x, tf.float32) - tf.cast(y, tf.float32)))


def _per_example(values):
    values = tf.cast(values, tf.float32)
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


# ---------------------------------------------------------------------------- model

class CycleGAN(GAN):
    """Unpaired translation A <-> B; `fit()` on a dataset of (a, b) batches in [-1, 1].

    `image_size` is the side of the training crops (the image pools hold images of that size);
    the networks themselves are fully convolutional, so `translate_ab` / `translate_ba` take
    any size whose sides are multiples of 4 (e.g. full 512x512 slices after 256 crops).
    `lambda_identity` is relative to `lambda_cycle` (reference code: identity weight 0.5 x 10);
    0 skips the identity forward passes. Logged: g_loss (the weighted generator objective),
    d_loss = d_a + d_b, and the unweighted L1 sums cycle and identity (and ada_p, ada_rt with
    ADA). `augment`, `ema_beta`, `upsample`: see the module docstring (off by default).

    A `base.GAN` with two generators and two discriminators: `generator` and `discriminator`
    stay None; its own `compile` (one optimizer per pair), trackers and checkpoint items.
    """

    tracker_names = ("g_loss", "d_loss", "cycle", "identity", "d_a", "d_b")

    def __init__(self, image_size=256, channels=1, base_filters=64, n_res_blocks=9, lambda_cycle=10.0,
                 lambda_identity=0.5, pool_size=50, seed=0, augment=None, ema_beta=0.0, upsample="transpose",
                 **kwargs):
        if image_size % 4 or patch_grid_size(image_size) < 1:
            raise ValueError(f"image_size must be a multiple of 4 and at least 24, got {image_size}")
        GAN.__init__(self, None, None, latent_dim=0, seed=seed, augment=augment, ema_beta=ema_beta, **kwargs)
        self.image_size, self.channels = int(image_size), int(channels)
        self.lambda_cycle, self.lambda_identity = float(lambda_cycle), float(lambda_identity)
        self.upsample = upsample
        self.g_ab = build_generator(channels, base_filters, n_res_blocks, name="G_AB", upsample=upsample)
        self.g_ba = build_generator(channels, base_filters, n_res_blocks, name="G_BA", upsample=upsample)
        self.d_a = build_discriminator(channels, base_filters, name="D_A")
        self.d_b = build_discriminator(channels, base_filters, name="D_B")
        shape = (self.image_size, self.image_size, self.channels)
        self.pool_a = ImagePool(pool_size, shape, name="pool_a")  # fakes of domain A: G_BA(b)
        self.pool_b = ImagePool(pool_size, shape, name="pool_b")  # fakes of domain B: G_AB(a)
        self.rng = tf.random.Generator.from_seed(seed)
        self.init_ema()

    data_kind = "unpaired"
    synthesises_from = "source"

    @classmethod
    def from_config(cls, cfg, *, num_labels, channels=1, member=0, steps=1):
        """With the paper's schedule: constant learning rate, then linear decay to 0 from
        gan.decay_start_epoch (default: half the epochs), `steps` per epoch."""
        from tfganaug.gans import augment
        g = cfg.gan
        gan = cls(image_size=cfg.data.image_size, channels=channels, base_filters=g.width,
                  n_res_blocks=g.n_res_blocks, lambda_cycle=g.lambda_cycle, lambda_identity=g.lambda_identity,
                  pool_size=g.pool_size, seed=cfg.seed, augment=augment.from_config(g, cfg.seed, image_channels=channels),
                  ema_beta=g.g_ema_beta, upsample=g.upsample)
        total = max(2, g.epochs * steps)
        start = g.decay_start_epoch if g.decay_start_epoch is not None else g.epochs // 2
        decay_start = min(total - 1, start * steps)

        def adam():
            return keras.optimizers.Adam(LinearDecay(g.lr, decay_start, total), beta_1=g.beta_1, beta_2=g.beta_2)
        gan.compile(g_optimizer=adam(), d_optimizer=adam())
        return gan

    def train_inputs(self, batches):
        """(domain A batches, domain B batches) of (images, labels) -> (a, b) pairs."""
        a, b = batches
        return tf.data.Dataset.zip(a, b).map(lambda a, b: (a[0], b[0]))

    def grid_fn(self, class_names, train=None):
        """Rows: domain A slices, G_AB of them, G_BA(G_AB) (the cycle)."""
        show = show_indices(len(train))

        def grid():
            fake = (self.translate_ab(train.images[show] * 2 - 1).numpy() + 1) / 2
            back = (self.translate_ba(fake * 2 - 1).numpy() + 1) / 2
            return grid_rows(train.images[show, ..., 0], fake[..., 0], back[..., 0])
        return grid

    def final_models(self, member):
        return {}  # sampled from the checkpoint

    def ema_sources(self) -> dict:
        return {"g_ab": self.g_ab, "g_ba": self.g_ba}

    def sampler(self, name: str = "g_ab") -> keras.Model:
        """G_AB (default) or G_BA to translate with: its EMA copy when there is one."""
        return super().sampler(name)

    @property
    def generators(self):
        return [self.g_ab, self.g_ba]

    @property
    def discriminators(self):
        return [self.d_a, self.d_b]

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """One optimizer for both generators and one for both discriminators (reference code);
        None gives the paper's Adam(2e-4, beta_1=0.5) at a constant rate. Under mixed_float16
        both are wrapped in LossScaleOptimizer unless they already are."""
        keras.Model.compile(self, **kwargs)  # not GAN.compile: its optimizers are per network
        if g_optimizer is None:
            g_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        if d_optimizer is None:
            d_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            wrap = lambda opt: (opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)  # noqa: E731
                                else keras.optimizers.LossScaleOptimizer(opt))
            g_optimizer, d_optimizer = wrap(g_optimizer), wrap(d_optimizer)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        # Slots now, inside the strategy scope (Adam under tf.distribute; assert_consumed on restore).
        self.g_optimizer.build(self._variables(self.generators))
        self.d_optimizer.build(self._variables(self.discriminators))

    @property
    def metrics(self):
        return list(self.trackers.values())

    @staticmethod
    def _variables(models):
        return [v for m in models for v in m.trainable_variables]

    def translate_ab(self, x, training=False):
        """G_AB(x): domain A (e.g. contrast CT) -> domain B (non-contrast), in [-1, 1]; the EMA
        copy of G_AB when there is one."""
        return self.sampler("g_ab")(tf.convert_to_tensor(x, tf.float32), training=training)

    def translate_ba(self, x, training=False):
        """G_BA(x): domain B -> domain A (the EMA copy of G_BA when there is one)."""
        return self.sampler("g_ba")(tf.convert_to_tensor(x, tf.float32), training=training)

    @staticmethod
    def _scaled(optimizer, loss):
        """`optimizer.scale_loss(loss)` (LossScaleOptimizer under mixed_float16, else the
        identity); called inside the tape, or the scaled loss has no gradient."""
        return optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss

    @staticmethod
    def _apply(optimizer, tape, scaled_loss, variables):
        optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))

    def train_step(self, data):
        real_a, real_b = data
        real_a, real_b = tf.cast(real_a, tf.float32), tf.cast(real_b, tf.float32)
        # Generator step: adversarial both ways + cycle + identity.
        with tf.GradientTape() as tape:
            fake_b = self.g_ab(real_a, training=True)
            fake_a = self.g_ba(real_b, training=True)
            cycle = (global_mean(l1(self.g_ba(fake_b, training=True), real_a))
                     + global_mean(l1(self.g_ab(fake_a, training=True), real_b)))
            adversarial = (global_mean(lsgan_g(self.d_b(self.d_input(fake_b), training=True)))
                           + global_mean(lsgan_g(self.d_a(self.d_input(fake_a), training=True))))
            g_loss = adversarial + self.lambda_cycle * cycle
            if self.lambda_identity:
                identity = (global_mean(l1(self.g_ab(real_b, training=True), real_b))
                            + global_mean(l1(self.g_ba(real_a, training=True), real_a)))
                g_loss += self.lambda_cycle * self.lambda_identity * identity
            else:
                identity = tf.constant(0.0)
            scaled = self._scaled(self.g_optimizer, g_loss)
        self._apply(self.g_optimizer, tape, scaled, self._variables(self.generators))
        # Discriminator step on the fakes of this forward pass, through the image pools.
        pooled_a = self.pool_a.query(tf.stop_gradient(fake_a), self.rng)
        pooled_b = self.pool_b.query(tf.stop_gradient(fake_b), self.rng)
        with tf.GradientTape() as tape:
            d_a = global_mean(lsgan_d(self.d_a(self.d_input(real_a), training=True),
                                      self.d_a(self.d_input(pooled_a), training=True)))
            real_scores_b = self.d_b(self.d_input(real_b), training=True)
            d_b = global_mean(lsgan_d(real_scores_b, self.d_b(self.d_input(pooled_b), training=True)))
            d_loss = d_a + d_b
            scaled = self._scaled(self.d_optimizer, d_loss)
        self._apply(self.d_optimizer, tape, scaled, self._variables(self.discriminators))
        # ADA's sign heuristic on least-squares scores: the sign about 0.5, midway between the
        # targets 0 and 1 (see the module docstring), on D_B's real scores.
        self.augment.accumulate(tf.cast(real_scores_b, tf.float32) - 0.5)
        self.end_step(tf.shape(real_b)[0])
        return self._update_trackers({"g_loss": g_loss, "d_loss": d_loss, "cycle": cycle,
                                      "identity": identity, "d_a": d_a, "d_b": d_b})

    def _update_trackers(self, values: dict) -> dict:
        """As base.GAN._update_trackers; every value here is a global-batch loss, so all are
        multiplied back by the replica count."""
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        for name, value in values.items():
            self.trackers[name].update_state(tf.cast(value, tf.float32) * replicas)
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs.update(self.augment.logs() if self.augment.active else {})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def checkpoint_items(self) -> dict:
        """Everything exact resume needs besides the data position (see runs.py): the four
        networks, both optimizers (with their LinearDecay scales, if any), both image pools,
        the pool's random generator and any Keras SeedGenerator states; with augmentation or EMA
        on, also their state and the EMA generators (`training_items`, absent otherwise, so
        checkpoints from before these options restore unchanged)."""
        return {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer,
                "pool_a": self.pool_a, "pool_b": self.pool_b, "rng": self.rng,
                "seed_states": seed_generator_states(self.g_ab, self.g_ba, self.d_a, self.d_b),
                **self.training_items()}
