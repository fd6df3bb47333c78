"""DiscriminatorAugment (tfganaug/gans/augment.py): DiffAugment policies and ADA on D's input."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfganaug.gans.augment import ADA_OPS, POLICIES, DiscriminatorAugment, parse_policy

INTEGER_GEOMETRY = ("xflip", "rot90", "int_translation")


def label_map(n=4, size=16, labels=3, block=4, seed=0):
    """Integer labels constant on block x block tiles, and their one-hot (0/1) float32."""
    lab = np.random.default_rng(seed).integers(0, labels, (n, size // block, size // block))
    lab = lab.repeat(block, 1).repeat(block, 2)
    return lab, np.eye(labels, dtype=np.float32)[lab]


def image_and_mask(n=4, size=16, seed=0):
    """One image channel in [0.1, 1] (never 0, so zero = padding/cutout) + 3 one-hot channels."""
    _, onehot = label_map(n, size, seed=seed)
    image = np.random.default_rng(seed + 1).uniform(0.1, 1.0, (n, size, size, 1)).astype(np.float32)
    return tf.constant(np.concatenate([image, onehot], -1))


def same_bits(a, b):
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_identity_without_augmentation_and_bitwise_at_p0():
    x = image_and_mask()
    aug = DiscriminatorAugment()
    assert not aug.active and aug(x) is x and aug.logs() == {}
    ada = DiscriminatorAugment(ada_target=0.6, image_channels=1)
    assert ada.active and float(ada.p) == 0.0
    assert same_bits(ada(x), x)
    assert same_bits(tf.function(ada.__call__)(x), x)


@pytest.mark.parametrize("op", POLICIES)
def test_policy_op_changes_image_keeps_shape(op):
    x = tf.random.stateless_uniform([4, 16, 16, 1], [1, 2], -1, 1)
    out = DiscriminatorAugment((op,), seed=1)(x).numpy()
    assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.array_equal(out, x.numpy())


def test_translation_moves_a_pixel_by_an_integer_offset():
    x = np.zeros((8, 16, 16, 1), np.float32)
    x[:, 8, 8] = 1.0
    out = DiscriminatorAugment(("translation",), seed=2)(x).numpy()
    offsets = set()
    for sample in out[..., 0]:
        pos = np.argwhere(sample != 0)
        assert len(pos) == 1 and sample[tuple(pos[0])] == 1.0  # moved, not blurred
        dy, dx = pos[0] - 8
        assert abs(dy) <= 2 and abs(dx) <= 2  # round(0.125 * 16) = 2
        offsets.add((dy, dx))
    assert len(offsets) > 1  # per-sample shifts


@pytest.mark.parametrize("shape", [(8, 16, 16, 1), (4, 12, 10, 4)])
def test_zero_padded_translation_equals_the_gather_bitwise(shape):
    """DiffAugment translation as one-hot selection matmuls (for speed) gives the gather's
    values and gradients bit for bit, with the same RNG draws."""
    from tfganaug.gans.augment import _gather, _grid
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    fast, slow = DiscriminatorAugment(("translation",), seed=4), DiscriminatorAugment(("translation",), seed=4)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = fast(x)
        n, h, w = shape[:3]
        gy, gx = _grid(x)
        b = _gather(x, gy - slow._shifts(n, h, 0.125), gx - slow._shifts(n, w, 0.125), True)
        la, lb = tf.reduce_sum(a * tf.sin(a)), tf.reduce_sum(b * tf.sin(b))
    assert same_bits(a, b) and same_bits(tape.gradient(la, x), tape.gradient(lb, x))
    assert same_bits(fast.rng.state, slow.rng.state)


def test_cutout_zeroes_one_square_per_sample():
    out = DiscriminatorAugment(("cutout",), seed=3)(np.ones((8, 16, 16, 1), np.float32)).numpy()[..., 0]
    for sample in out:
        rows, cols = np.nonzero(sample == 0)
        assert 0 < len(rows) <= 64  # side round(0.5 * 16) = 8, clipped at the border
        assert (sample[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()  # a rectangle
        assert set(np.unique(sample)) == {0.0, 1.0}


@pytest.mark.parametrize("policy", [("translation",), ("cutout",), ("intensity",), POLICIES])
def test_policy_keeps_mask_channels_one_hot_or_empty(policy):
    x = image_and_mask()
    out = DiscriminatorAugment(policy, image_channels=1, seed=4)(x).numpy()
    mask, sums = out[..., 1:], out[..., 1:].sum(-1)
    assert set(np.unique(mask)) <= {0.0, 1.0} and set(np.unique(sums)) <= {0.0, 1.0}
    assert not np.array_equal(out[..., :1], x.numpy()[..., :1])
    if policy == ("translation",):
        # 'no label' exactly where padding entered (the image is never 0 elsewhere)
        assert (sums == 0).any()
        np.testing.assert_array_equal(sums == 0, out[..., 0] == 0)
    if "translation" not in policy:
        assert same_bits(mask, x.numpy()[..., 1:])  # intensity and cutout never touch masks


def test_ada_keeps_masks_one_hot_and_intensity_ops_leave_them_alone():
    x = image_and_mask()
    out = DiscriminatorAugment(ada_target=0.6, image_channels=1, p_init=1.0, seed=5)(x).numpy()
    assert set(np.unique(out[..., 1:])) <= {0.0, 1.0} and (out[..., 1:].sum(-1) == 1).all()  # reflect
    aug = DiscriminatorAugment(ada_target=0.6, image_channels=1, p_init=1.0, seed=5,
                               ada_ops=("brightness", "contrast", "cutout"))
    out = aug(x).numpy()
    assert same_bits(out[..., 1:], x.numpy()[..., 1:]) and not np.array_equal(out[..., 0], x.numpy()[..., 0])


def test_translation_moves_image_and_mask_together():
    lab, onehot = label_map(seed=6)
    x = np.concatenate([(lab[..., None] + 1) * 0.3, onehot], -1).astype(np.float32)
    out = DiscriminatorAugment(("translation",), image_channels=1, seed=6)(x).numpy()
    mask = out[..., 1:]
    expected = np.where(mask.sum(-1) == 1, (mask.argmax(-1) + 1) * 0.3, 0).astype(np.float32)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert not np.array_equal(out, x)


def test_ada_integer_geometry_moves_image_and_mask_together():
    _, onehot = label_map(seed=7)
    x = np.concatenate([onehot, onehot], -1)  # image channels = a copy of the mask
    out = DiscriminatorAugment(ada_target=0.6, image_channels=3, p_init=1.0, seed=7,
                               ada_ops=INTEGER_GEOMETRY)(x).numpy()
    np.testing.assert_array_equal(out[..., :3], out[..., 3:])
    assert not np.array_equal(out, x)


def test_ada_warp_uses_the_same_coordinates_for_image_and_mask():
    """Image = one-hot copy of the mask, warped bilinearly; where the warped image is still a
    one-hot vector (all 4 bilinear neighbours share a label) the nearest-sampled mask must hold
    that same label."""
    _, onehot = label_map(n=4, size=32, block=8, seed=8)
    x = np.concatenate([onehot, onehot], -1)
    out = DiscriminatorAugment(ada_target=0.6, image_channels=3, p_init=1.0, seed=8,
                               ada_ops=("scale", "rotate"))(x).numpy()
    image, mask = out[..., :3], out[..., 3:]
    nearest = np.round(image)
    homogeneous = (np.abs(image - nearest).max(-1) < 1e-5) & (nearest.sum(-1) == 1)
    assert 0.5 < homogeneous.mean() < 1.0  # a real warp: some pixels interpolated
    np.testing.assert_array_equal(nearest[homogeneous], mask[homogeneous])
    assert (mask.sum(-1) == 1).all() and not np.array_equal(mask, onehot)


GRADIENT_CASES = ([dict(policy=(op,)) for op in POLICIES]
                  + [dict(ada_target=0.6, p_init=1.0, ada_ops=(op,)) for op in ADA_OPS]
                  + [dict(policy=POLICIES, ada_target=0.6, p_init=1.0)])


@pytest.mark.parametrize("kwargs", GRADIENT_CASES,
                         ids=[",".join(k.get("policy", ()) + k.get("ada_ops", ())) or "all" for k in GRADIENT_CASES])
def test_gradients_flow_and_are_the_exact_adjoint(kwargs):
    """For fixed random draws every op is affine in x, so aug(x + v) - aug(x) = J v and the
    dot-product test <J v, u> = <v, J^T u> checks the gradient itself, not just its presence."""
    rng = np.random.default_rng(9)
    x, v, u = (tf.constant(rng.normal(size=(4, 16, 16, 4)).astype(np.float32)) for _ in range(3))
    make = lambda: DiscriminatorAugment(image_channels=1, seed=9, **kwargs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = make()(x)
    grad = tape.gradient(y, x, output_gradients=u)
    assert grad is not None and np.isfinite(grad.numpy()).all() and np.any(grad.numpy()[..., 0] != 0)
    lhs = float(tf.reduce_sum((make()(x + v) - make()(x)) * u))
    rhs = float(tf.reduce_sum(v * grad))
    assert abs(lhs - rhs) <= 1e-3 * (abs(lhs) + abs(rhs)) + 1e-3, (lhs, rhs)


def test_ada_p_rises_while_d_overfits_and_is_clipped_to_0_1():
    aug = DiscriminatorAugment(ada_target=0.6, ada_interval=4, ada_speed_images=500)

    @tf.function
    def train_step(logits):
        aug.accumulate(logits)
        aug.update_p(tf.shape(logits)[0])

    overfit = tf.fill([8, 1], 3.0)  # sign(D(real)) = +1: r_t = 1 > 0.6
    for _ in range(3):
        train_step(overfit)
    assert float(aug.p) == 0.0  # only every ada_interval steps
    train_step(overfit)
    assert float(aug.p) == pytest.approx(8 * 4 / 500) and float(aug.logs()["ada_rt"]) == 1.0
    assert float(aug.sign_count) == 0.0  # accumulators reset
    for _ in range(36):
        train_step(overfit)
    assert float(aug.p) > 0.1
    for _ in range(80):
        train_step(overfit)
    assert float(aug.p) == 1.0
    balanced = tf.constant([[1.0]] * 4 + [[-1.0]] * 4)  # r_t = 0 < 0.6
    for _ in range(80):
        train_step(balanced)
    assert float(aug.p) == 0.0 and float(aug.logs()["ada_p"]) == 0.0


def test_ada_p_stays_zero_without_overfitting_and_no_ada_is_a_no_op():
    aug = DiscriminatorAugment(ada_target=0.6, ada_interval=2)
    for _ in range(20):
        aug.accumulate(tf.constant([2.0, -2.0, 1.0, -1.0]))
        aug.update_p(4)
    assert float(aug.p) == 0.0 and float(aug.rt) == 0.0
    aug.update_p(4), aug.update_p(4)  # an interval without reals: p kept
    assert float(aug.p) == 0.0
    plain = DiscriminatorAugment(("translation",), p_init=0.7)
    plain.accumulate(tf.ones([4])), plain.update_p(4)
    assert float(plain.p) == 0.0 and float(plain.sign_count) == 0.0 and plain.logs() == {}


def test_same_seed_same_output_and_checkpoint_resume_is_bitwise(tmp_path):
    kwargs = dict(policy=POLICIES, ada_target=0.6, image_channels=1, p_init=0.5)
    x = image_and_mask()
    a = DiscriminatorAugment(seed=7, **kwargs)
    assert same_bits(a(x), DiscriminatorAugment(seed=7, **kwargs)(x))
    assert not same_bits(DiscriminatorAugment(seed=7, **kwargs)(x), DiscriminatorAugment(seed=8, **kwargs)(x))

    def feed(aug):
        aug.accumulate(tf.ones([8]))
        aug.update_p(8)

    feed(a), feed(a)  # mid-interval: step 2 of 4, accumulators non-empty
    path = tf.train.Checkpoint(**a.checkpoint_items()).write(str(tmp_path / "ckpt"))
    continued = []
    for _ in range(3):  # crosses the step-4 update of p
        continued.append(a(x).numpy())
        feed(a)
    b = DiscriminatorAugment(seed=123, **{**kwargs, "p_init": 0.0})
    tf.train.Checkpoint(**b.checkpoint_items()).read(path).assert_consumed()
    for expected in continued:
        assert same_bits(b(x), expected)
        feed(b)
    assert float(b.p) == float(a.p) == pytest.approx(0.5 + 32 / 500)


def test_parse_policy():
    assert parse_policy("translation,cutout") == ("translation", "cutout")
    assert parse_policy(" Translation , CUTOUT,intensity ") == POLICIES
    for empty in ("", None, "none", " None "):
        assert parse_policy(empty) == ()
    with pytest.raises(ValueError) as err:
        parse_policy("translation,Color")
    assert "color" in str(err.value) and all(name in str(err.value) for name in POLICIES)
    assert DiscriminatorAugment("Translation").policy == ("translation",)
    with pytest.raises(ValueError):
        DiscriminatorAugment(("flip",))
    with pytest.raises(ValueError):
        DiscriminatorAugment(ada_target=0.6, ada_ops=("hue",))


def test_graph_mode_unknown_batch_other_dtypes_and_non_square():
    aug = DiscriminatorAugment(POLICIES, ada_target=0.6, image_channels=1, p_init=1.0)
    fn = tf.function(aug.__call__, input_signature=[tf.TensorSpec([None, 16, 16, 4], tf.float32)])
    x = image_and_mask(n=5)
    for n in (1, 3, 5):
        out = fn(x[:n])
        assert out.shape == (n, 16, 16, 4) and np.isfinite(out.numpy()).all()
    assert fn.experimental_get_tracing_count() == 1
    for dtype in (tf.float16, tf.bfloat16):
        out = aug(tf.cast(x, dtype))
        assert out.dtype == dtype and out.shape == x.shape
    wide = DiscriminatorAugment(ada_target=0.6, p_init=1.0)(tf.ones([2, 8, 16, 1]))  # rot90: 180 only
    assert wide.shape == (2, 8, 16, 1)


MIRRORED = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfganaug.gans.augment import DiscriminatorAugment
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        aug = DiscriminatorAugment(("translation",), ada_target=0.6, ada_interval=1,
                                   ada_speed_images=100, p_init=0.5)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype("float32"))

    @tf.function
    def step():
        def replica_fn():
            first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
            # replica 0: 8 positive logits; replica 1: 2 positive, 6 negative -> r_t = 4/16
            logits = tf.where(first, tf.ones([8]), tf.constant([1.0] * 2 + [-1.0] * 6))
            aug.accumulate(logits)
            aug.update_p(4)
            return aug(x), tf.identity(aug.p), tf.identity(aug.rt)
        return strategy.run(replica_fn)

    outs, ps, rts = (strategy.experimental_local_results(t) for t in step())
    print("RESULT", json.dumps({"p": [float(p) for p in ps], "rt": [float(r) for r in rts],
                                "same_aug": bool(np.array_equal(outs[0], outs[1]))}))
""")


def test_mirrored_strategy_all_reduces_r_t_and_gives_replicas_distinct_draws():
    """2 logical CPUs: r_t over the global batch (4/16, not each replica's own), p identical on
    both replicas and moved by the global image count (4 per replica x 2 / 100), while each
    replica draws its own augmentation."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0][7:])
    assert result["rt"] == [0.25, 0.25]
    assert result["p"] == pytest.approx([0.5 - 0.08] * 2)
    assert not result["same_aug"]
