"""Differentiable augmentation of everything the discriminator sees (reals and fakes, in D's
and in G's step): DiffAugment and ADA, written from the two papers.

* Zhao, Liu, Lin, Zhu, Han 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training" (NeurIPS 2020, arXiv:2006.10738): a fixed *policy* of differentiable ops, every op
  on every sample, always on.
* Karras, Aittala, Hellsten, Laine, Lehtinen, Aila 2020, "Training Generative Adversarial
  Networks with Limited Data" (NeurIPS 2020, arXiv:2006.06676), ADA: each op on each sample
  with probability p; every `ada_interval` steps p moves by sign(r_t - target) * images /
  `ada_speed_images`, with the overfitting heuristic r_t = E[sign(D(real))] (target 0.6).
  Paper: p may go from 0 to 1 in 500k images; the default here, 500, is for short CPU runs.

Choices (images in [-1, 1]; fill value 0, i.e. mid grey, as in both papers; no clipping
after intensity ops, which would zero gradients; no hue/saturation: grey-level images):

* DiffAugment `translation`: integer shift of U{-s..s} pixels per axis and sample, s =
  round(translation_ratio * size), zero padding. `cutout`: one square of side
  round(cutout_ratio * size) per sample, centre uniform over the image, clipped at the border.
  `intensity`: brightness + U(-0.25, 0.25) (Zhao: +-0.5; halved because medical intensities
  are calibrated: CT windows, normalised MR) then contrast x U(0.5, 1.5) about each sample's
  per-channel mean (Zhao: mean over all channels; per channel keeps MR modalities apart).
* ADA, in the paper's order: xflip; rot90 (k ~ U{0..3}; non-square images k in {0, 2});
  int_translation U(-0.125, 0.125) * size, rounded; scale 2^N(0, 0.2^2), isotropic; rotate
  U(-15, 15) degrees (paper: the full circle; small angles keep reflected corners small and
  anatomy plausible, rot90 supplies the large rotations); brightness + N(0, 0.2^2); contrast
  x lognormal(0, (0.5 ln 2)^2) about the per-channel mean; cutout as above. Scale and rotate
  share one warp. Each op has its own Bernoulli(p) per sample, applied through `tf.where`, so
  p = 0 returns x bitwise. `ada_ops` picks a subset (all by default). Both: ADA, then policy.
* Channels after the first `image_channels` are masks (one-hot / label maps in the caller's
  values; 0 must mean 'no label'). Geometric ops only move them: integer index permutations,
  nearest sampling in the warp. Intensity ops and cutout leave them bitwise unchanged.
  Padding: DiffAugment translation pads with 0 (mask: 'no label'); ADA pads by symmetric
  reflection (edge pixel repeated) for image AND mask, so a one-hot stays one-hot everywhere
  and mask and image keep agreeing in the reflected border.
* The warp is our own gather-based bilinear sampler, not `ImageProjectiveTransformV3`: that
  op's registered gradient warps the incoming gradient by the inverse transform, which is not
  the adjoint of bilinear sampling (measured: dot-product test off by 2x at scale 0.8), so G
  would get biased gradients. Gather/where/arith have exact gradients (and run under XLA).
* All randomness comes from `self.rng` (a `tf.random.Generator`: checkpointable, distinct
  streams per replica when created in a strategy scope). r_t is summed over replicas
  (all_reduce), so p is the same on every replica.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfganaug.config import DIFFAUG_POLICIES as POLICIES, parse_policy  # noqa: F401  (names D's ops)

ADA_OPS = ("xflip", "rot90", "int_translation", "scale", "rotate", "brightness", "contrast", "cutout")
BRIGHTNESS = 0.25                  # DiffAugment: x + U(-0.25, 0.25)
CONTRAST = (0.5, 1.5)              # DiffAugment: (x - mean) * U(0.5, 1.5) + mean
ADA_TRANSLATION = 0.125            # ADA integer translation, fraction of the size
ADA_SCALE_STD = 0.2 * math.log(2)  # ADA isotropic scale: lognormal
ADA_ROTATE_DEGREES = 15.0          # ADA rotation: U(-15, 15) degrees (see module docstring)
ADA_BRIGHTNESS_STD = 0.2           # ADA brightness: x + N(0, 0.2^2)
ADA_CONTRAST_STD = 0.5 * math.log(2)  # ADA contrast: lognormal


def _select(cond, a, b):
    """Per-sample choice: a where cond[n] else b (exactly b's values: p = 0 is the identity)."""
    return tf.where(cond[:, None, None, None], a, b)


def _reflect(i, n):
    # Symmetric reflection d c b a | a b c d | d c b a, valid for any integer offset.
    i = tf.math.floormod(i, 2 * n)
    return tf.where(i >= n, 2 * n - 1 - i, i)


def _gather(x, iy, ix, zero_outside: bool):
    """out[n, i, j] = x[n, iy[n, i, j], ix[n, i, j]] for integer source indices (N, H, W);
    outside the image: 0 or symmetric reflection. The gradient is the exact scatter-add."""
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    if zero_outside:
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        iy, ix = tf.clip_by_value(iy, 0, h - 1), tf.clip_by_value(ix, 0, w - 1)
    else:
        iy, ix = _reflect(iy, h), _reflect(ix, w)
    out = tf.gather_nd(x, tf.stack([iy, ix], axis=-1), batch_dims=1)
    return tf.where(inside[..., None], out, tf.zeros_like(out)) if zero_outside else out


def _shift_zero(x, sy, sx):
    """out[n, i, j] = x[n, i - sy[n], j - sx[n]], 0 outside the image, as per-sample one-hot
    selection matrices on both sides (out = S_y x S_x^T): the same values as `_gather` with
    zero_outside (each output is 1.0 x one input plus exact zeros, for finite x) and the same
    gradient, at about a third of the CPU time of gather_nd and its scatter gradient (32 px,
    batch 32, forward + backward; issue 13 part 7)."""
    h, w = tf.shape(x)[1], tf.shape(x)[2]

    def one_hot(size, shift):  # m[n, i, k] = 1 where k = i - shift[n]
        return tf.cast(tf.equal(tf.range(size)[None, :, None] - shift[:, None, None], tf.range(size)[None, None, :]),
                       x.dtype)

    my, mx = one_hot(h, sy), one_hot(w, sx)
    if x.shape[-1] == 1:
        return tf.matmul(tf.matmul(my, x[..., 0]), mx, transpose_b=True)[..., None]
    return tf.einsum("nij,njwc,nkw->nikc", my, x, mx)


def _round_size(ratio, size):
    # floor(r * size + 0.5), as Zhao et al. (tf.round would round half to even)
    return tf.cast(tf.floor(ratio * tf.cast(size, tf.float32) + 0.5), tf.int32)


def _grid(x, dtype=tf.int32):
    gy, gx = tf.meshgrid(tf.range(tf.shape(x)[1]), tf.range(tf.shape(x)[2]), indexing="ij")
    return tf.cast(gy, dtype)[None], tf.cast(gx, dtype)[None]


def _bilinear(x, sy, sx):
    """Bilinear sampling at float source coordinates (N, H, W), reflect padding."""
    y0, x0 = tf.floor(sy), tf.floor(sx)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    top = _gather(x, y0, x0, False) * (1 - wx) + _gather(x, y0, x0 + 1, False) * wx
    bottom = _gather(x, y0 + 1, x0, False) * (1 - wx) + _gather(x, y0 + 1, x0 + 1, False) * wx
    return top * (1 - wy) + bottom * wy


class DiscriminatorAugment(tf.Module):
    """Augments D's input x (N, H, W, C), float in [-1, 1]; see the module docstring."""

    def __init__(self, policy=(), ada_target: float | None = None, image_channels: int | None = None,
                 ada_interval: int = 4, ada_speed_images: int = 500, p_init: float = 0.0, seed: int = 0,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5, ada_ops=ADA_OPS):
        super().__init__(name="discriminator_augment")
        self.policy = parse_policy(policy if isinstance(policy, str) else ",".join(policy))
        bad = [op for op in ada_ops if op not in ADA_OPS]
        if bad:
            raise ValueError(f"unknown ADA op(s) {bad}; known: {', '.join(ADA_OPS)}")
        self.ada_ops = tuple(op for op in ADA_OPS if op in ada_ops)  # always the paper's order
        self.ada_target = None if ada_target is None else float(ada_target)
        self.image_channels = None if image_channels is None else int(image_channels)
        self.ada_interval, self.ada_speed_images = int(ada_interval), float(ada_speed_images)
        self.translation_ratio, self.cutout_ratio = float(translation_ratio), float(cutout_ratio)
        # ONLY_FIRST_REPLICA: under tf.distribute every replica computes the same (all-reduced)
        # value, and a MirroredVariable refuses replica-context assigns without an aggregation.
        state = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        p0 = float(p_init) if self.ada_target is not None else 0.0
        self.p = tf.Variable(p0, dtype=tf.float32, name="ada_p", **state)
        self.rt = tf.Variable(0.0, dtype=tf.float32, name="ada_rt", **state)
        self.sign_sum = tf.Variable(0.0, dtype=tf.float32, name="ada_sign_sum", **state)
        self.sign_count = tf.Variable(0.0, dtype=tf.float32, name="ada_sign_count", **state)
        self.step = tf.Variable(0, dtype=tf.int64, name="ada_step", **state)
        self.rng = tf.random.Generator.from_seed(seed)

    @property
    def active(self) -> bool:
        return bool(self.policy) or self.ada_target is not None

    # -- entry points ---------------------------------------------------------------------
    def __call__(self, x):
        if not self.active:
            return x
        dtype = x.dtype
        x = tf.cast(x, tf.float32)  # float16/bfloat16 are augmented in float32
        if self.ada_target is not None:
            x = self._ada(x)
        for name in self.policy:
            x = getattr(self, f"_{name}")(x)
        return tf.cast(x, dtype)

    def accumulate(self, real_logits):
        """Adds sum(sign(logits)) and their count (over all replicas) to the accumulators."""
        if self.ada_target is None:
            return
        logits = tf.cast(tf.stop_gradient(real_logits), tf.float32)
        stats = tf.stack([tf.reduce_sum(tf.sign(logits)), tf.cast(tf.size(logits), tf.float32)])
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)
        self.sign_sum.assign_add(stats[0])
        self.sign_count.assign_add(stats[1])

    def update_p(self, batch_size):
        """Call once per train step with the per-replica batch size (tf.shape(real)[0]); every
        `ada_interval` calls p moves by sign(r_t - target) * images / ada_speed_images, where
        images = batch_size * replicas * ada_interval, then the accumulators reset. Branch-free
        (tf.where), so it runs in-graph; the step counter is a checkpointed variable."""
        if self.ada_target is None:
            return
        self.step.assign_add(1)
        due = tf.equal(self.step % self.ada_interval, 0)
        count = self.sign_count.read_value()
        rt = tf.math.divide_no_nan(self.sign_sum.read_value(), count)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        images = tf.cast(batch_size, tf.float32) * float(self.ada_interval * replicas)
        new_p = tf.clip_by_value(self.p + tf.sign(rt - self.ada_target) * images / self.ada_speed_images,
                                 0.0, 1.0)
        moved = due & (count > 0)  # no reals seen: nothing to steer by
        self.p.assign(tf.where(moved, new_p, self.p))
        self.rt.assign(tf.where(moved, rt, self.rt))
        self.sign_sum.assign(tf.where(due, 0.0, self.sign_sum))
        self.sign_count.assign(tf.where(due, 0.0, self.sign_count))

    def checkpoint_items(self) -> dict:
        return {"diffaug_p": self.p, "diffaug_rng": self.rng, "diffaug_sign_sum": self.sign_sum,
                "diffaug_sign_count": self.sign_count, "diffaug_step": self.step, "diffaug_rt": self.rt}

    def logs(self) -> dict:
        """Current p and last r_t (read values) with ADA, else {}."""
        if self.ada_target is None:
            return {}
        return {"ada_p": self.p.read_value(), "ada_rt": self.rt.read_value()}

    # -- helpers --------------------------------------------------------------------------
    def _split(self, x):
        if self.image_channels is None:
            return x, x[..., :0]
        return x[..., :self.image_channels], x[..., self.image_channels:]

    def _on_images(self, x, fn):
        """fn on the image channels; mask channels pass through bitwise."""
        image, mask = self._split(x)
        return tf.concat([fn(image), mask], axis=-1) if mask.shape[-1] else fn(image)

    def _shifts(self, n, size, ratio):
        s = _round_size(ratio, size)
        return self.rng.uniform([n], -s, s + 1, dtype=tf.int32)[:, None, None]

    def _translate(self, x, ratio, zero_outside):
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        sy, sx = self._shifts(n, h, ratio), self._shifts(n, w, ratio)  # y first: the RNG order
        if zero_outside:
            return _shift_zero(x, sy[:, 0, 0], sx[:, 0, 0])
        gy, gx = _grid(x)
        return _gather(x, gy - sy, gx - sx, zero_outside)

    def _cutout_all(self, x):
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        sh, sw = _round_size(self.cutout_ratio, h), _round_size(self.cutout_ratio, w)
        y0 = self.rng.uniform([n], 0, h, dtype=tf.int32)[:, None, None] - sh // 2
        x0 = self.rng.uniform([n], 0, w, dtype=tf.int32)[:, None, None] - sw // 2
        gy, gx = _grid(x)
        hole = ((gy >= y0) & (gy < y0 + sh) & (gx >= x0) & (gx < x0 + sw))[..., None]
        return self._on_images(x, lambda im: tf.where(hole, tf.zeros_like(im), im))

    def _contrast_by(self, x, c):
        def fn(im):
            mean = tf.reduce_mean(im, axis=[1, 2], keepdims=True)
            return (im - mean) * c[:, None, None, None] + mean
        return self._on_images(x, fn)

    def _brighten_by(self, x, b):
        return self._on_images(x, lambda im: im + b[:, None, None, None])

    def _warp(self, x, scale, theta):
        """Isotropic scale and rotation about the centre: bilinear on image channels, nearest on
        mask channels, the same source coordinates for both, reflect padding."""
        h, w = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        gy, gx = _grid(x, tf.float32)
        dy, dx = gy - (h - 1) / 2, gx - (w - 1) / 2
        inv, c, s = (1 / scale)[:, None, None], tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
        sy = (h - 1) / 2 + inv * (c * dy - s * dx)  # output -> source: the inverse transform
        sx = (w - 1) / 2 + inv * (s * dy + c * dx)
        image, mask = self._split(x)
        image = _bilinear(image, sy, sx)
        if not mask.shape[-1]:
            return image
        near = lambda t: tf.cast(tf.floor(t + 0.5), tf.int32)
        return tf.concat([image, _gather(mask, near(sy), near(sx), False)], axis=-1)

    # -- DiffAugment policy ops (always on) ---------------------------------------------------
    def _translation(self, x):
        return self._translate(x, self.translation_ratio, zero_outside=True)

    def _cutout(self, x):
        return self._cutout_all(x)

    def _intensity(self, x):
        n = tf.shape(x)[0]
        x = self._brighten_by(x, self.rng.uniform([n], -BRIGHTNESS, BRIGHTNESS))
        return self._contrast_by(x, self.rng.uniform([n], *CONTRAST))

    # -- ADA ------------------------------------------------------------------------------
    def _ada(self, x):
        n, ops = tf.shape(x)[0], self.ada_ops
        on = lambda: self.rng.uniform([n]) < self.p  # one Bernoulli(p) per sample and op
        if "xflip" in ops:
            x = _select(on(), tf.reverse(x, [2]), x)
        if "rot90" in ops:
            sel, square = on(), x.shape[1] is not None and x.shape[1] == x.shape[2]
            k = self.rng.uniform([n], 0, 4 if square else 2, dtype=tf.int32) * (1 if square else 2)
            # Index permutations (tf.image.rot90 adds shape Asserts/conds to the graph; tf.reverse
            # is several times faster than negative-stride slicing on CPU).
            quarter = lambda t: tf.reverse(tf.transpose(t, [0, 2, 1, 3]), [1])
            half = tf.reverse(x, [1, 2])
            turns = {1: quarter(x), 2: half, 3: quarter(half)} if square else {2: half}
            for j, turned in turns.items():
                x = _select(sel & tf.equal(k, j), turned, x)
        if "int_translation" in ops:
            x = _select(on(), self._translate(x, ADA_TRANSLATION, zero_outside=False), x)
        if "scale" in ops or "rotate" in ops:
            no = tf.zeros([n], tf.bool)
            do_s = on() if "scale" in ops else no
            scale = tf.where(do_s, tf.exp(self.rng.normal([n]) * ADA_SCALE_STD), 1.0)
            do_r = on() if "rotate" in ops else no
            limit = ADA_ROTATE_DEGREES * math.pi / 180
            theta = tf.where(do_r, self.rng.uniform([n], -limit, limit), 0.0)
            x = _select(do_s | do_r, self._warp(x, scale, theta), x)
        if "brightness" in ops:
            x = _select(on(), self._brighten_by(x, self.rng.normal([n]) * ADA_BRIGHTNESS_STD), x)
        if "contrast" in ops:
            x = _select(on(), self._contrast_by(x, tf.exp(self.rng.normal([n]) * ADA_CONTRAST_STD)), x)
        if "cutout" in ops:
            x = _select(on(), self._cutout_all(x), x)
        return x


def from_config(gan_cfg, seed: int, image_channels: int | None = None) -> DiscriminatorAugment:
    """D's input augmentation of a GAN config (identity when gan.diffaug is none and ADA off).
    `image_channels`: how many leading channels of D's input are images (the rest are masks
    or label maps, moved by geometric ops only)."""
    return DiscriminatorAugment(parse_policy(gan_cfg.diffaug), ada_target=gan_cfg.ada_target,
                                image_channels=image_channels, ada_interval=gan_cfg.ada_interval,
                                ada_speed_images=gan_cfg.ada_speed_images, seed=seed + 7)
