"""Pix2Pix (Isola et al. 2017) at tiny shapes: 32x32 label maps, base width 8."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.errors import ConfigError, InputError
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
