"""Pix2Pix (Isola et al. 2017) at tiny shapes: 32x32 label maps, base width 8."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.errors import ConfigError, InputError
from tfganaug.gans.augment import DiscriminatorAugment
from tfganaug.gans.pix2pix import Pix2Pix, build_generator, encoder_widths, label_to_onehot

SIZE, BASE = 32, 8


def _model(seed=0, lr=2e-4, run_eagerly=False, **kwargs):
    keras.utils.set_random_seed(seed)
    model = Pix2Pix(image_size=SIZE, num_labels=3, base_filters=BASE, seed=seed, **kwargs)
    model.compile(d_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(lr, beta_1=0.5), run_eagerly=run_eagerly)
    return model


def _pair(n=1):
    """Label maps with a 'kidney' disc and a 'tumour' disc, and images that follow them."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks, images = [], []
    for i in range(n):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[(yy - 12 - i) ** 2 + (xx - 10) ** 2 < 36] = 1
        mask[(yy - 20) ** 2 + (xx - 22 + i) ** 2 < 16] = 2
        image = np.choose(mask, [-0.8, 0.6, -0.3]) + 0.1 * np.sin(xx / 3.0)
        masks.append(mask)
        images.append(image[..., None])
    return label_to_onehot(np.stack(masks), 3), np.stack(images).astype(np.float32)


def test_label_to_onehot_numpy_and_tf():
    mask = np.array([[0, 1], [2, 1]], np.uint8)
    onehot = label_to_onehot(mask, 3)
    assert onehot.dtype == np.float32 and onehot.shape == (2, 2, 3)
    np.testing.assert_array_equal(onehot.argmax(-1), mask)
    np.testing.assert_array_equal(onehot.sum(-1), 1)
    batch = label_to_onehot(np.stack([mask, mask])[..., None], 3)  # (B, H, W, 1) -> (B, H, W, 3)
    assert batch.shape == (2, 2, 2, 3)
    as_tf = label_to_onehot(tf.constant(mask), 3)
    assert isinstance(as_tf, tf.Tensor) and as_tf.dtype == tf.float32
    np.testing.assert_array_equal(as_tf.numpy(), onehot)
    with pytest.raises(InputError, match=r"labels 0\.\.2.*\[3\]"):
        label_to_onehot(np.array([[0, 3]]), 3)


def test_generator_and_patchgan_shapes():
    model = _model()
    labels, _ = _pair(2)
    assert model.generate(labels).shape == (2, SIZE, SIZE, 1)
    assert np.abs(model.generate(labels).numpy()).max() <= 1.0
    # 70x70 PatchGAN: strides 2, 2, 2, 1, 1 -> one logit per patch on an (H/8, W/8) grid.
    logits = model.discriminator([tf.constant(labels), model.generate(labels)])
    assert logits.shape == (2, SIZE // 8, SIZE // 8, 1)
    convs = [l for l in model.discriminator.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.strides for l in convs] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert [l.filters for l in convs] == [BASE, 2 * BASE, 4 * BASE, 8 * BASE, 1]
    assert all(l.kernel_size == (4, 4) for l in convs)


def test_unet_depth_adapts_to_image_size():
    """C64-C128-C256-C512-C512... down to 1x1: depth log2(size), widths capped at 8x base."""
    assert encoder_widths(256, 64) == [64, 128, 256, 512, 512, 512, 512, 512]
    assert encoder_widths(16, 8) == [8, 16, 32, 64]
    for size in (16, 64):
        g = build_generator(size, 3, 1, base_filters=4)
        downs = [l for l in g.layers if l.name.startswith("down")]
        assert len(downs) == int(np.log2(size)) and downs[-1].output.shape[1:3] == (1, 1)
        assert g.output_shape == (None, size, size, 1)
        drops = [l for l in g.layers if isinstance(l, keras.layers.Dropout)]
        assert len(drops) == 3 and all(d.rate == 0.5 for d in drops)
    for bad in (8, 48, 100):
        with pytest.raises(ConfigError):
            build_generator(bad)
    with pytest.raises(ConfigError):
        Pix2Pix(image_size=32, base_filters=4, norm="layer")


def _fit_one_epoch(model):
    """One fit() epoch of two steps; returns the last logs and whether G and D changed."""
    labels, images = _pair(4)
    g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
    d_before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    history = model.fit(tf.data.Dataset.from_tensor_slices((labels, images)).batch(2), epochs=1, verbose=0,
                        shuffle=False)
    logs = {k: v[-1] for k, v in history.history.items()}
    changed = [any(not np.array_equal(b, a.numpy()) for b, a in zip(before, net.trainable_weights))
               for before, net in ((g_before, model.generator), (d_before, model.discriminator))]
    return logs, changed


@pytest.fixture(scope="module")
def trained():
    """A model after one fit() epoch, with that epoch's logs. Eager: tracing fit's graph costs
    more than two tiny steps; graph-mode fit() runs in the MirroredStrategy test, the traced
    train_step in the L1 test."""
    model = _model(seed=0, run_eagerly=True)
    logs, changed = _fit_one_epoch(model)
    return model, logs, changed


def test_fit_epoch_runs_and_updates_both_networks(trained):
    _, logs, changed = trained
    assert set(logs) == {"d_loss", "g_loss", "g_gan", "g_l1"}
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert logs["g_loss"] == pytest.approx(logs["g_gan"] + 100.0 * logs["g_l1"], rel=1e-4)
    assert changed == [True, True], "G and D must both update"


def test_batch_norm_variant_trains():
    """norm="batch" (synchronized BatchNormalization); eager, to keep the test short."""
    model = _model(norm="batch", run_eagerly=True)
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in model.generator.layers)
    logs, changed = _fit_one_epoch(model)
    assert all(np.isfinite(v) for v in logs.values()) and changed == [True, True]


def test_l1_falls_when_fitting_one_pair():
    """30 steps on one fixed pair: the L1 term must fall to well under half (it would not if
    G's update ignored the L1 term or went the wrong way)."""
    model = _model(lr=1e-3)
    labels, images = (tf.constant(a) for a in _pair(1))
    before = float(tf.reduce_mean(tf.abs(model.generate(labels) - images)))
    step = tf.function(model.train_step)
    l1 = []
    for _ in range(30):
        for tracker in model.metrics:
            tracker.reset_state()
        l1.append(float(step((labels, images))["g_l1"]))
    after = float(tf.reduce_mean(tf.abs(model.generate(labels) - images)))
    assert l1[-1] < 0.5 * l1[0], l1
    assert after < 0.5 * before, (before, after)


def test_checkpoint_round_trip_restores_generator_and_dropout(tmp_path, trained):
    model = trained[0]
    labels = tf.constant(_pair(2)[0])
    items = model.checkpoint_items()
    assert set(items) == {"generator", "discriminator", "d_optimizer", "g_optimizer", "seed_states"}
    assert len(items["seed_states"]) == 3  # one Dropout in each of the first three decoder blocks
    path = tf.train.Checkpoint(**items).write(str(tmp_path / "ckpt"))

    other = _model(seed=1)
    assert not np.allclose(other.generate(labels).numpy(), model.generate(labels).numpy())
    tf.train.Checkpoint(**other.checkpoint_items()).read(path).assert_consumed()
    np.testing.assert_array_equal(other.generate(labels).numpy(), model.generate(labels).numpy())
    assert other.g_optimizer.iterations.numpy() == model.g_optimizer.iterations.numpy() == 2
    # Dropout masks continue identically too: the seed states came back.
    np.testing.assert_array_equal(other.generate(labels, training=True).numpy(),
                                  model.generate(labels, training=True).numpy())


POLICY = "translation,cutout,intensity"


def _counting_d_input(model):
    """Wrap `model.d_input` so every tensor D is shown is recorded (eager steps only)."""
    seen, inner = [], model.d_input

    def d_input(x):
        seen.append(tuple(x.shape))
        return inner(x)
    model.d_input = d_input
    return seen


def test_augmented_step_with_ada_and_ema():
    """One eager step with DiffAugment + ADA (p = 0.5, so its ops run too) and EMA, next to the
    same model without them (dropout off: G's forward pass is then a function of its weights)."""
    labels, images = (tf.constant(a) for a in _pair(2))
    plain = _model(dropout=0.0)
    augment = DiscriminatorAugment(POLICY, ada_target=0.6, image_channels=1, ada_interval=2, ada_speed_images=8,
                                   p_init=0.5, seed=3)
    model = _model(dropout=0.0, augment=augment, ema_beta=0.9)
    for a, b in zip(plain.discriminator.weights + plain.generator.weights,
                    model.discriminator.weights + model.generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same start
    d_before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
    l1_before = float(tf.reduce_mean(tf.abs(images - model.generator(labels, training=True))))
    seen = _counting_d_input(model)
    logs = model.train_step((labels, images))
    plain.train_step((labels, images))

    # Every pair D sees went through the augmenter: real and fake in D's step, fake in G's, each
    # as concat(image, label map).
    assert seen == [(2, SIZE, SIZE, 1 + 3)] * 3
    assert {"ada_p", "ada_rt"} <= set(logs) and float(logs["ada_p"]) == 0.5  # interval 2: not moved yet
    # D learnt from augmented pairs: it moved, and not as it did without augmentation.
    d_after = [w.numpy() for w in model.discriminator.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, d_after))
    assert any(not np.allclose(a, b.numpy(), atol=1e-6)
               for a, b in zip(d_after, plain.discriminator.trainable_weights))
    # ADA accumulated the sign of D's patch logits on the real pairs: 2 pairs x (32/8)^2 patches.
    assert float(model.augment.sign_count.numpy()) == 2 * (SIZE // 8) ** 2
    # The L1 term compares G's output with the un-augmented real image.
    assert float(logs["g_l1"]) == pytest.approx(l1_before, rel=1e-5)
    # EMA after one step: beta * old + (1 - beta) * new on every trainable weight of G.
    ema = model.ema["generator"]
    for old, new, avg in zip(g_before, model.generator.trainable_weights, ema.trainable_weights, strict=True):
        np.testing.assert_allclose(avg.numpy(), 0.9 * old + 0.1 * new.numpy(), rtol=1e-5, atol=1e-7)
    assert model.generate(labels).shape == (2, SIZE, SIZE, 1)
    np.testing.assert_array_equal(model.generate(labels).numpy(), ema(labels, training=False).numpy())
    assert not np.allclose(model.generate(labels).numpy(), model.generator(labels, training=False).numpy(),
                           atol=1e-6)
    # The second step ends ADA's interval: p moved by sign(r_t - 0.6) * 2 pairs * 2 steps / 8.
    logs = model.train_step((labels, images))
    rt = float(logs["ada_rt"])
    assert float(logs["ada_p"]) == pytest.approx(np.clip(0.5 + np.sign(rt - 0.6) * 0.5, 0, 1))
    assert float(model.augment.sign_count.numpy()) == 0 and int(model.augment.step.numpy()) == 2
    items = model.checkpoint_items()
    assert {"generator_ema", "diffaug_p", "diffaug_rng"} <= set(items) and len(items["seed_states"]) == 0
    with pytest.raises(ConfigError, match="image_channels=1"):
        Pix2Pix(image_size=SIZE, base_filters=BASE, augment=DiscriminatorAugment(POLICY))


def test_resize_upsampling_replaces_transposed_convolutions():
    """upsample="resize": nearest 2x + 4x4 stride-1 convolution in every decoder block and the
    output layer; the same number of weights as the paper's transposed convolutions."""
    paper = build_generator(SIZE, 3, 1, base_filters=4)
    resize = build_generator(SIZE, 3, 1, base_filters=4, upsample="resize")
    assert resize.output_shape == paper.output_shape == (None, SIZE, SIZE, 1)
    assert not any(isinstance(l, keras.layers.Conv2DTranspose) for l in resize.layers)
    ups = [l for l in resize.layers if isinstance(l, keras.layers.UpSampling2D)]
    assert len(ups) == int(np.log2(SIZE)) and all(l.interpolation == "nearest" for l in ups)
    convs = [resize.get_layer(f"up{j}") for j in range(int(np.log2(SIZE)) - 1)] + [resize.get_layer("up_out")]
    assert all(type(l) is keras.layers.Conv2D and l.strides == (1, 1) and l.kernel_size == (4, 4) for l in convs)
    assert resize.count_params() == paper.count_params()
    with pytest.raises(ConfigError, match="upsample"):
        build_generator(SIZE, upsample="bilinear")


RESUME = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf, keras
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    from tfganaug.gans.augment import DiscriminatorAugment
    from tfganaug.gans.pix2pix import Pix2Pix, label_to_onehot

    def make(seed):
        augment = DiscriminatorAugment("translation,cutout,intensity", ada_target=0.6, image_channels=1,
                                       ada_interval=1, ada_speed_images=16, p_init=0.5, seed=seed)
        model = Pix2Pix(image_size=16, base_filters=4, seed=seed, augment=augment, ema_beta=0.9, upsample="resize")
        model.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                      g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), run_eagerly=True)
        return model

    rng = np.random.default_rng(0)
    labels = label_to_onehot(rng.integers(0, 3, (8, 16, 16)), 3)
    images = rng.uniform(-1, 1, (8, 16, 16, 1)).astype("float32")
    def batches(lo, hi):
        return tf.data.Dataset.from_tensor_slices((labels[lo:hi], images[lo:hi])).batch(2)
    def state(model):
        path = tf.train.Checkpoint(**model.checkpoint_items()).write(sys.argv[1] + f"/state{id(model)}")
        reader = tf.train.load_checkpoint(path)
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}

    original = make(seed=0)
    original.fit(batches(0, 4), epochs=1, verbose=0)
    path = tf.train.Checkpoint(**original.checkpoint_items()).write(sys.argv[1] + "/ckpt")
    saved = state(original)
    original.fit(batches(4, 8), epochs=1, verbose=0)

    fresh = make(seed=1)  # other weights, dropout seeds and augmentation draws: all from the checkpoint
    tf.train.Checkpoint(**fresh.checkpoint_items()).read(path).assert_consumed()
    fresh.fit(batches(4, 8), epochs=1, verbose=0)

    one, two = state(original), state(fresh)
    moved = [k for k in one if not np.array_equal(one[k], saved[k])]
    print("RESULT", json.dumps({
        "same_keys": sorted(one) == sorted(two), "n": len(one),
        "differ": [k for k in one if not np.array_equal(one[k], two[k])],
        "moved": len(moved), "moved_aug": sorted(k.split("/")[0] for k in moved if k.startswith("diffaug")),
        "moved_ema": sum(k.startswith("generator_ema") for k in moved),
        "seed_states": len(fresh.checkpoint_items()["seed_states"]),
        "ema_lags": any(not np.allclose(a.numpy(), b.numpy())
                        for a, b in zip(fresh.generator.trainable_weights, fresh.ema["generator"].trainable_weights))}))
""")


@pytest.mark.slow
def test_checkpoint_items_resume_bitwise_with_augmentation_and_ema(tmp_path):
    """DiffAugment + ADA + EMA (and resize upsampling): 2 steps, checkpoint, 2 more steps ==
    restore into a fresh model (other seed) and the same 2 steps, bitwise, with op determinism
    (in a subprocess: it is process-wide). Eager, as the CycleGAN resume test."""
    out = subprocess.run([sys.executable, "-c", RESUME, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads([l for l in out.stdout.splitlines() if l.startswith("RESULT")][0][len("RESULT"):])
    assert result["same_keys"] and result["n"] > 50, result
    assert result["differ"] == [], result["differ"][:10]
    # the augmentation state (its random generator, p's step counter) and the EMA weights moved
    assert {"diffaug_rng", "diffaug_step"} <= set(result["moved_aug"]) and result["moved_ema"] > 10, result
    assert result["seed_states"] == 6 and result["ema_lags"], result  # G's and the EMA copy's Dropouts


MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfganaug.gans.pix2pix import Pix2Pix, label_to_onehot
    rng = np.random.default_rng(0)
    labels = label_to_onehot(rng.integers(0, 3, (4, 16, 16)), 3)
    images = rng.uniform(-1, 1, (4, 16, 16, 1)).astype("float32")
    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = Pix2Pix(image_size=16, base_filters=4, dropout=0.0)
            model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
        logs = model.fit(labels, images, batch_size=4, epochs=1, verbose=0, shuffle=False).history
        return np.concatenate([w.numpy().ravel() for m in (model.discriminator, model.generator)
                               for w in m.trainable_weights]), {k: v[-1] for k, v in logs.items()}
    one, logs1 = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two, logs2 = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("MAXDIFF", float(np.abs(one - two).max()), float(np.abs(one).max()),
          max(abs(logs1[k] - logs2[k]) for k in logs1))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device():
    """Losses are global means: one SGD step on 2 replicas equals one device at the same
    global batch, and the logged losses agree (dropout off: replicas share Dropout seeds)."""
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("MAXDIFF")][0]
    diff, scale, log_diff = map(float, line.split()[1:])
    assert scale > 0 and diff < 1e-5 and log_diff < 1e-4, line
