"""CycleGAN (Zhu et al. 2017, as used by Sandfort et al. 2019): shapes, training, image pool,
LinearDecay, exact resume. Tiny shapes: 32x32, base width 8, one residual block."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.gans.augment import DiscriminatorAugment
from tfganaug.gans.cyclegan import (CycleGAN, ImagePool, LinearDecay, build_discriminator, build_generator,
                                    patch_grid_size)

TINY = dict(image_size=32, base_filters=8, n_res_blocks=1)


def _domains(n=2, seed=0):
    """Unpaired batches: A is brighter with a bright disc ("contrast"), B darker and smoother."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 60).astype(np.float32)
    a = np.clip(0.2 + 0.6 * disc + 0.1 * rng.normal(size=(n, 32, 32)), -1, 1)
    b = np.clip(-0.3 + 0.2 * disc + 0.05 * rng.normal(size=(n, 32, 32)), -1, 1)
    return a[..., None].astype(np.float32), b[..., None].astype(np.float32)


def _weights(model):
    nets = (model.g_ab, model.g_ba, model.d_a, model.d_b)
    return [w.numpy().copy() for net in nets for w in net.trainable_weights]


def test_generator_and_patchgan_shapes(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    g = build_generator(channels=1, base_filters=8, n_res_blocks=2)
    y = g(x).numpy()
    assert y.shape == x.shape and np.abs(y).max() <= 1.0
    assert g(np.zeros((1, 48, 64, 1), np.float32)).shape == (1, 48, 64, 1)  # fully convolutional
    assert len([l for l in g.layers if isinstance(l, keras.layers.Add)]) == 2
    d = build_discriminator(channels=1, base_filters=8)
    assert d(x).shape == (3, 2, 2, 1) and patch_grid_size(32) == 2
    assert d(np.zeros((1, 256, 256, 1), np.float32)).shape == (1, 30, 30, 1)  # the 70x70 PatchGAN grid
    assert [l.strides for l in d.layers if isinstance(l, keras.layers.Conv2D)] == [(2, 2)] * 3 + [(1, 1)] * 2
    # ReflectionPadding2D is registered: the generator round-trips through a .keras file in safe mode.
    g.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(x).numpy(), y, atol=1e-6)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = CycleGAN(**TINY, pool_size=3, seed=0)
    model.compile(g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    a, b = _domains()
    data = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(a), tf.data.Dataset.from_tensors(b)).repeat()
    before = _weights(model)
    history = model.fit(data, epochs=6, steps_per_epoch=5, verbose=0)
    return model, before, history.history


def test_fit_gives_finite_logs_and_moves_every_network(trained):
    model, before, history = trained
    assert set(history) == {"g_loss", "d_loss", "cycle", "identity", "d_a", "d_b"}
    assert all(np.isfinite(v).all() for v in history.values())
    np.testing.assert_allclose(history["d_loss"], np.add(history["d_a"], history["d_b"]), rtol=1e-5)
    after = _weights(model)
    sizes = np.cumsum([0] + [len(n.trainable_weights) for n in (model.g_ab, model.g_ba, model.d_a, model.d_b)])
    for name, lo, hi in zip(("G_AB", "G_BA", "D_A", "D_B"), sizes[:-1], sizes[1:]):
        assert any(not np.array_equal(before[i], after[i]) for i in range(lo, hi)), f"{name} did not update"
    assert int(model.g_optimizer.iterations.numpy()) == int(model.d_optimizer.iterations.numpy()) == 30
    assert int(model.pool_a.count.numpy()) == int(model.pool_b.count.numpy()) == 3
    a, _ = _domains(1)
    assert model.translate_ab(a).shape == a.shape and model.translate_ba(a).shape == a.shape


def test_cycle_and_identity_losses_decrease_on_a_fixed_batch(trained):
    """30 steps on one fixed (a, b) batch: the L1 terms the generator is weighted on must fall."""
    _, _, history = trained
    assert history["cycle"][-1] < 0.85 * history["cycle"][0], history["cycle"]
    assert history["identity"][-1] < 0.85 * history["identity"][0], history["identity"]


def test_checkpoint_items_restore_in_graph_mode(trained, tmp_path):
    """In the traced fit() step: save checkpoint_items(), train 2 steps, restore, train the same 2
    steps: the same result, so no state that matters (weights, optimizer steps and slots, pools,
    pool draws) lives outside the checkpoint. (Bitwise with op determinism and a fresh model:
    test_checkpoint_items_resume_bitwise.)"""
    model, _, _ = trained
    a, b = _domains(seed=1)
    data = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(a), tf.data.Dataset.from_tensors(b)).repeat()
    checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
    path = checkpoint.write(str(tmp_path / "ckpt"))

    def continued():
        model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
        return _weights(model) + [model.pool_a.images.numpy(), model.pool_b.images.numpy(),
                                  model.rng.state.numpy(), model.g_optimizer.iterations.numpy()]

    first = continued()
    checkpoint.read(path).assert_consumed()
    assert int(model.g_optimizer.iterations.numpy()) == 30
    for x, y in zip(first, continued()):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def _reference_pool(pool, size, images, accept, slots):
    """The reference ImagePool.query loop (junyanz/pytorch-CycleGAN-and-pix2pix), on given draws;
    returns the outputs and whether an item got back an image stored earlier in the same batch."""
    out, from_this_batch = [], False
    for i, image in enumerate(images):
        if len(pool) < size:
            pool.append((image, True))
            out.append(image)
        elif accept[i]:
            stored, fresh = pool[slots[i]]
            from_this_batch |= fresh
            pool[slots[i]] = (image, True)
            out.append(stored)
        else:
            out.append(image)
    pool[:] = [(img, False) for img, _ in pool]
    return np.stack(out), from_this_batch


def test_image_pool_fills_first_then_mixes_like_the_reference():
    size, shape = 3, (2, 2, 1)
    pool = ImagePool(size, shape)
    twin = ImagePool(size, shape)
    rng, twin_rng, draws = (tf.random.Generator.from_seed(7) for _ in range(3))
    query_in_graph = tf.function(lambda x: twin.query(x, twin_rng))
    reference, counter, mixed, fresh, within_batch = [], 0, 0, 0, False
    for step in range(8):
        n = 3 if step == 0 else 4
        # image k is filled with the value k, so every output says where it came from
        images = np.ones((n, *shape), np.float32) * np.arange(counter, counter + n)[:, None, None, None]
        counter += n
        accept = (draws.uniform([n]) > 0.5).numpy()
        slots = draws.uniform([n], 0, size, dtype=tf.int32).numpy()
        expected, hit = _reference_pool(reference, size, images, accept, slots)
        within_batch |= hit
        got = pool.query(images, rng).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"step {step}")
        np.testing.assert_array_equal(query_in_graph(images).numpy(), expected)  # same in tf.function
        if step == 0:  # filling: every new image comes back unchanged and is stored
            np.testing.assert_array_equal(got, images)
            assert int(pool.count.numpy()) == size
        else:
            ids = got[:, 0, 0, 0]
            mixed += int(np.sum(ids < images[0, 0, 0, 0]))
            fresh += int(np.sum(ids >= images[0, 0, 0, 0]))
        np.testing.assert_array_equal(pool.images.numpy(), np.stack([img for img, _ in reference]))
    assert mixed > 5 and fresh > 5, (mixed, fresh)  # about half of each after filling
    assert within_batch, "the seed should exercise an image stored and returned within one batch"
    assert int(pool.count.numpy()) == size
    off = ImagePool(0, shape)
    np.testing.assert_array_equal(off.query(np.ones((2, *shape), np.float32), rng).numpy(), 1.0)


def test_linear_decay_values_scale_and_serialisation(tmp_path):
    schedule = LinearDecay(2e-4, decay_start_step=100, total_steps=300)
    for step, lr in ((0, 2e-4), (50, 2e-4), (100, 2e-4), (200, 1e-4), (250, 5e-5), (300, 0.0), (400, 0.0)):
        assert float(schedule(step)) == pytest.approx(lr, rel=1e-6, abs=1e-12), step
    schedule.scale.assign(0.5)
    assert float(schedule(200)) == pytest.approx(5e-5, rel=1e-6)
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"] == "tfganaug>LinearDecay"
    copy = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert isinstance(copy, LinearDecay) and copy.get_config() == schedule.get_config()
    assert float(copy(200)) == pytest.approx(5e-5, rel=1e-6)
    # Driven by the optimizer's iteration count; the scale is in the optimizer's checkpoint.
    opt = keras.optimizers.Adam(LinearDecay.from_epochs(2e-4, steps_per_epoch=10, constant_epochs=1,
                                                        decay_epochs=2), beta_1=0.5)
    opt.iterations.assign(20)
    assert float(opt.learning_rate) == pytest.approx(1e-4, rel=1e-6)
    restored = keras.optimizers.Adam.from_config(opt.get_config())
    assert isinstance(restored._learning_rate, LinearDecay)
    opt._learning_rate.scale.assign(0.25)
    names = [n for n, _ in tf.train.list_variables(tf.train.Checkpoint(opt=opt).write(str(tmp_path / "ckpt")))]
    assert "opt/_learning_rate/scale/.ATTRIBUTES/VARIABLE_VALUE" in names
    with pytest.raises(ValueError):
        LinearDecay(2e-4, decay_start_step=10, total_steps=10)


def test_mixed_float16_trains_with_loss_scaling():
    """mixed_float16: optimizers are wrapped in LossScaleOptimizer (once), and the scaled loss is
    taken inside the tape (else: "No gradients provided"). G's optimizer comes pre-wrapped with a
    small initial scale, so its first step does not overflow and must move G. Eager: no trace."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = CycleGAN(**TINY, pool_size=2)
        g_optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(2e-4), initial_scale=8.0)
        model.compile(g_optimizer=g_optimizer, run_eagerly=True)
        a, b = _domains()
        before = [w.numpy().copy() for w in model.g_ab.trainable_weights]
        history = model.fit(tf.data.Dataset.from_tensors((a, b)), epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.g_optimizer.inner_optimizer, keras.optimizers.Adam)  # not wrapped twice
    assert all(np.isfinite(v).all() for v in history.values())
    assert any(not np.array_equal(x, y.numpy()) for x, y in zip(before, model.g_ab.trainable_weights))
    assert model.translate_ab(a).dtype == tf.float32


POLICY = "translation,cutout,intensity"


def _tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = CycleGAN(**TINY, pool_size=3, seed=seed, **kwargs)
    model.compile(g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    return model


def test_augmented_step_with_ada_and_ema():
    """One eager step with DiffAugment + ADA (p = 0.5, so its ops run too) and EMA of both
    generators, next to the same model without them."""
    a, b = (tf.constant(x) for x in _domains())
    plain = _tiny_model()
    augment = DiscriminatorAugment(POLICY, ada_target=0.6, image_channels=1, ada_interval=2, p_init=0.5, seed=3)
    model = _tiny_model(augment=augment, ema_beta=0.9)
    for x, y in zip(_weights(plain), _weights(model)):
        np.testing.assert_array_equal(x, y)  # the same start
    before = {name: [w.numpy().copy() for w in getattr(model, name).trainable_weights]
              for name in ("g_ab", "g_ba", "d_a", "d_b")}
    seen, inner = [], model.d_input

    def d_input(x):
        seen.append(tuple(x.shape))
        return inner(x)
    model.d_input = d_input
    logs = model.train_step((a, b))
    plain.train_step((a, b))
    # Everything both discriminators see went through the augmenter: two fakes in G's step,
    # real and pooled fake for D_A and for D_B in D's step.
    assert seen == [(2, 32, 32, 1)] * 6
    assert {"ada_p", "ada_rt"} <= set(logs) and float(logs["ada_p"]) == 0.5  # interval 2: not moved yet
    for name in ("d_a", "d_b"):  # both moved, and not as without augmentation
        after = [w.numpy() for w in getattr(model, name).trainable_weights]
        assert any(not np.array_equal(x, y) for x, y in zip(before[name], after)), name
        assert any(not np.allclose(x, y.numpy(), atol=1e-6)
                   for x, y in zip(after, getattr(plain, name).trainable_weights)), name
    # ADA counts D_B's least-squares scores on the real b: 2 images x 2x2 patches.
    assert float(model.augment.sign_count.numpy()) == 2 * patch_grid_size(32) ** 2
    # EMA after one step: beta * old + (1 - beta) * new, for both generators.
    for name in ("g_ab", "g_ba"):
        for old, new, avg in zip(before[name], getattr(model, name).trainable_weights,
                                 model.ema[name].trainable_weights, strict=True):
            np.testing.assert_allclose(avg.numpy(), 0.9 * old + 0.1 * new.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model.translate_ab(a).numpy(), model.ema["g_ab"](a).numpy())
    np.testing.assert_array_equal(model.translate_ba(b).numpy(), model.ema["g_ba"](b).numpy())
    assert model.sampler() is model.ema["g_ab"] and model.sampler("g_ba") is model.ema["g_ba"]
    assert not np.allclose(model.translate_ab(a).numpy(), model.g_ab(a).numpy(), atol=1e-6)
    items = model.checkpoint_items()
    assert {"g_ab_ema", "g_ba_ema", "diffaug_p", "diffaug_rng", "diffaug_sign_sum"} <= set(items)
    assert set(plain.checkpoint_items()) == {"g_ab", "g_ba", "d_a", "d_b", "g_optimizer", "d_optimizer",
                                             "pool_a", "pool_b", "rng", "seed_states"}  # old layout when off
    assert plain.sampler() is plain.g_ab and "ada_p" not in plain.train_step((a, b))


def test_ada_signs_least_squares_scores_about_one_half():
    """LSGAN scores have targets 0 and 1: ADA's r_t counts sign(D_B(b) - 0.5). ADA alone at p = 0
    is the identity, so the accumulated signs are those of D_B on the real b before D's update."""
    a, b = (tf.constant(x) for x in _domains())
    model = _tiny_model(augment=DiscriminatorAugment(ada_target=0.6, image_channels=1, ada_interval=4))
    scores = model.d_b(b).numpy()
    model.train_step((a, b))
    assert float(model.augment.sign_sum.numpy()) == np.sign(scores - 0.5).sum()
    assert np.sign(scores - 0.5).sum() != np.sign(scores).sum()  # the offset matters here


def test_resize_upsampling_replaces_the_fractionally_strided_convolutions():
    paper = build_generator(channels=1, base_filters=8, n_res_blocks=1)
    resize = build_generator(channels=1, base_filters=8, n_res_blocks=1, upsample="resize")
    assert not any(isinstance(l, keras.layers.Conv2DTranspose) for l in resize.layers)
    ups = [l for l in resize.layers if isinstance(l, keras.layers.UpSampling2D)]
    assert len(ups) == 2 and all(l.interpolation == "nearest" for l in ups)
    assert resize.count_params() == paper.count_params()
    x = np.zeros((1, 48, 64, 1), np.float32)
    assert resize(x).shape == paper(x).shape == (1, 48, 64, 1)  # still fully convolutional
    with pytest.raises(ValueError, match="upsample"):
        build_generator(upsample="bilinear")


RESUME = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf, keras
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    from tfganaug.gans.augment import DiscriminatorAugment
    from tfganaug.gans.cyclegan import CycleGAN, LinearDecay
    TRICKS = sys.argv[2] == "tricks"

    def make(seed):
        tricks = {}
        if TRICKS:  # DiffAugment + ADA (p = 0.5, moving every step) + EMA + resize upsampling
            tricks = dict(augment=DiscriminatorAugment("translation,cutout,intensity", ada_target=0.6,
                                                       image_channels=1, ada_interval=1, ada_speed_images=16,
                                                       p_init=0.5, seed=seed),
                          ema_beta=0.9, upsample="resize")
        model = CycleGAN(image_size=32, base_filters=8, n_res_blocks=1, pool_size=3, seed=seed, **tricks)
        model.compile(g_optimizer=keras.optimizers.Adam(LinearDecay(1e-3, 1, 10), beta_1=0.5),
                      d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), run_eagerly=True)
        return model

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (8, 32, 32, 1)).astype("float32")
    b = np.tanh(rng.normal(0, 1, (8, 32, 32, 1))).astype("float32")
    def batches(lo, hi):  # two unpaired batches of 2
        return tf.data.Dataset.from_tensor_slices((a[lo:hi], b[::-1][lo:hi])).batch(2)
    def state(model):
        path = tf.train.Checkpoint(**model.checkpoint_items()).write(sys.argv[1] + f"/state{id(model)}")
        reader = tf.train.load_checkpoint(path)
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}  # layer names differ

    original = make(seed=0)
    original.fit(batches(0, 4), epochs=1, verbose=0)
    original.g_optimizer._learning_rate.scale.assign(0.5)  # as a rollback would
    path = tf.train.Checkpoint(**original.checkpoint_items()).write(sys.argv[1] + "/ckpt")
    saved = state(original)
    original.fit(batches(4, 8), epochs=1, verbose=0)

    fresh = make(seed=1)  # other weights, other pool draws: all must come from the checkpoint
    tf.train.Checkpoint(**fresh.checkpoint_items()).read(path).assert_consumed()
    fresh.fit(batches(4, 8), epochs=1, verbose=0)

    one, two = state(original), state(fresh)
    moved = [k for k in one if not np.array_equal(one[k], saved[k])]
    print("RESULT", json.dumps({
        "same_keys": sorted(one) == sorted(two), "n": len(one),
        "differ": [k for k in one if not np.array_equal(one[k], two[k])],
        "moved": len(moved), "moved_aug": sorted(k.split("/")[0] for k in moved if k.startswith("diffaug")),
        "moved_ema": sum(k.startswith(("g_ab_ema", "g_ba_ema")) for k in moved),
        "pool_count": int(original.pool_b.count.numpy()),
        "scale": float(fresh.g_optimizer._learning_rate.scale.numpy()),
        "lr": float(fresh.g_optimizer.learning_rate)}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("tricks", ["paper", "tricks"])
def test_checkpoint_items_resume_bitwise(tmp_path, tricks):
    """2 steps, checkpoint, 2 more steps == restore into a fresh model (other seed) and the same
    2 steps, bitwise, with op determinism on (in a subprocess: it is process-wide). Eager
    (run_eagerly) keeps it to seconds: tracing the four networks' train step costs 15-30 s on
    this CPU; the traced path is covered by test_checkpoint_items_restore_in_graph_mode.
    "tricks": with DiffAugment + ADA + EMA + resize upsampling on, their state must come back too."""
    out = subprocess.run([sys.executable, "-c", RESUME, str(tmp_path), tricks], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads([l for l in out.stdout.splitlines() if l.startswith("RESULT")][0][len("RESULT"):])
    assert result["same_keys"] and result["n"] > 100, result
    assert result["differ"] == [], result["differ"][:10]
    assert result["moved"] > 50 and result["pool_count"] == 3
    if tricks == "tricks":  # the augmentation's random generator and p's counter, and both EMA copies, moved
        assert {"diffaug_rng", "diffaug_step"} <= set(result["moved_aug"]) and result["moved_ema"] > 20, result
    else:
        assert result["moved_aug"] == [] and result["moved_ema"] == 0
    assert result["scale"] == 0.5
    assert result["lr"] == pytest.approx(1e-3 * 0.5 * 6 / 9, rel=1e-5)  # step 4 of LinearDecay(1, 10)
