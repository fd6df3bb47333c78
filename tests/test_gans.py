"""Every registered architecture builds, trains a step with finite losses and generates."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.config import DataConfig, GANConfig, RunConfig
from tfganaug.gans.base import seed_generator_states
from tfganaug.gans import GANS
from tfganaug.tasks.classifier import build_lesion_cnn

GAN_ARCHS = ("dcgan", "acgan")


def build_gan(gan_cfg, image_size, num_classes, seed):
    """The GAN of `gan_cfg` as train-gan builds it (`from_config`, member 0 of run seed `seed`)."""
    cfg = RunConfig(kind="gan", data=DataConfig(image_size=image_size), gan=gan_cfg, seed=seed)
    return GANS.get(gan_cfg.arch).from_config(cfg, num_labels=num_classes)


def _tiny(arch):
    gan = build_gan(GANConfig(arch=arch, width=16, latent_dim=8, kernel_size=3 if arch == "acgan" else 5,
                              d_dropout=0.5 if arch == "acgan" else 0.0), image_size=16, num_classes=3, seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
                g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5))
    return gan


@pytest.mark.parametrize("arch", GAN_ARCHS)
def test_architecture_trains_and_generates(arch):
    gan = _tiny(arch)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
    y = np.arange(8, dtype=np.int32) % 3
    before = [w.numpy().copy() for w in gan.generator.trainable_weights]
    history = gan.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    after = gan.generator.trainable_weights
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(before, after)), "G did not update"
    images = gan.generate(gan.sample_z(5), np.array([0, 1, 2, 0, 1], np.int32)).numpy()
    assert images.shape == (5, 16, 16, 1) and np.abs(images).max() <= 1.0


def test_paper_generator_shapes():
    """DCGAN G: FC 4x4x1024 then four 5x5 stride-2 transposed convolutions to 64x64x1."""
    from tfganaug.gans.dcgan import build_discriminator, build_generator
    g = build_generator(100, 1024, 64)
    convs = [l for l in g.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert [l.kernel_size for l in convs] == [(5, 5)] * 4 and g.output_shape == (None, 64, 64, 1)
    assert g.get_layer(index=1).units == 4 * 4 * 1024
    d = build_discriminator(1024, 64)
    assert [l.strides for l in d.layers if isinstance(l, keras.layers.Conv2D)] == [(2, 2)] * 4


@pytest.mark.parametrize("image_size", [16, 32, 64])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_sngan_layout_starts_at_an_eighth_and_writes_the_image_with_a_3x3_conv(image_size, num_classes):
    """g_layout sngan (Miyato et al. 2018, Table 3(a)): FC (image/8)^2 x width, three 2x
    upsamplings (width/2, /4, /8), then a 3x3 stride-1 convolution to the image; the paper layout
    starts at image/16 and its fourth upsampling writes the image."""
    from tfganaug.gans.dcgan import ResizeConv2D, build_generator
    kw = dict(num_classes=num_classes, upsample="resize", conditioning="concat")
    g = build_generator(8, 32, image_size, layout="sngan", **kw)
    dense = next(l for l in g.layers if isinstance(l, keras.layers.Dense))
    assert dense.units == (image_size // 8) ** 2 * 32 and g.output_shape == (None, image_size, image_size, 1)
    ups = [l for l in g.layers if isinstance(l, ResizeConv2D)]
    assert [l.filters for l in ups] == [16, 8, 4]
    last = [l for l in g.layers if type(l) is keras.layers.Conv2D][-1]
    assert last.kernel_size == (3, 3) and last.strides == (1, 1) and last.filters == 1
    paper = build_generator(8, 32, image_size, **kw)
    assert [l.filters for l in paper.layers if isinstance(l, ResizeConv2D)] == [16, 8, 4, 1]
    assert next(l for l in paper.layers if isinstance(l, keras.layers.Dense)).units == (image_size // 16) ** 2 * 32
    with pytest.raises(ValueError, match="layout"):
        build_generator(8, 32, image_size, layout="progressive", **kw)


def test_seed_generator_states_are_found_and_checkpointed(tmp_path):
    """Pins the private Keras attribute exact resume relies on (Dropout's SeedGenerator)."""
    acgan = _tiny("acgan")
    states = seed_generator_states(acgan.discriminator)
    assert len(states) == 6  # one Dropout per conv layer
    assert len(seed_generator_states(build_lesion_cnn(3, 16))) == 2
    saved = [s.numpy().copy() for s in states]
    path = tf.train.Checkpoint(seed_states=states).write(str(tmp_path / "ckpt"))
    acgan.discriminator(np.zeros((2, 16, 16, 1), np.float32), training=True)  # advances the dropout seeds
    assert any(not np.array_equal(a, s.numpy()) for a, s in zip(saved, states))
    tf.train.Checkpoint(seed_states=states).read(path).assert_consumed()
    for a, s in zip(saved, states):
        np.testing.assert_array_equal(a, s.numpy())


MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfganaug.gans.dcgan import DCGAN
    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            gan = DCGAN(latent_dim=8, width=16, image_size=16, seed=0)
            gan.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
        # Replicas draw distinct noise by design; here z is a fixed table indexed by the global
        # batch position, so both runs see identical fakes.
        table = tf.constant(np.random.default_rng(1).uniform(-1, 1, (8, 8)), tf.float32)
        def fixed_z(n):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return tf.slice(table, [replica * n, 0], [n, 8])
        gan.sample_z = fixed_z
        x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype("float32")
        gan.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0)
        return np.concatenate([w.numpy().ravel() for m in (gan.discriminator, gan.generator)
                               for w in m.trainable_weights])
    one = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("MAXDIFF", float(np.abs(one - two).max()), float(np.abs(one).max()))
""")


def test_mirrored_strategy_matches_one_device():
    """Loss scaling and synchronized BN across replicas: one SGD step of D and G on 2 replicas
    equals one device at the same global batch (SGD, because Adam would hide a 2x error; the
    notes measured 1.5e-8 when right). Tolerance 1e-5: float reduction order only."""
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("MAXDIFF")][0]
    diff, scale = map(float, line.split()[1:])
    assert scale > 0 and diff < 1e-5, line


MIRRORED_CLI = textwrap.dedent("""
    import sys, tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    from cli.main import main
    main(sys.argv[1:])
""")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train-gan", "train-cls"])
def test_cli_trains_under_mirrored_strategy_on_two_devices(tmp_path, command):
    """`--distribute mirrored` runs the real training commands on 2 replicas (2 logical CPUs)."""
    import json
    from pathlib import Path
    args = [command, "--image-size", "16", "--epochs", "1", "--batch-size", "8", "--distribute", "mirrored",
            "--quiet", "--out", str(tmp_path / "run")]
    if command == "train-gan":
        args += ["--width", "16"]
    proc = subprocess.run([sys.executable, "-c", MIRRORED_CLI] + args, cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["distribute"] == "mirrored"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "complete" and status["replicas"] == 2
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(v) for r in rows for k, v in r.items() if k.endswith("loss"))


def test_initial_weights_follow_the_run_seed_across_processes():
    """A fresh process seeded alike builds the same DCGAN/ACGAN weights (a shared unseeded
    initializer would have drawn its seed at import, from an unseeded Python `random`)."""
    import subprocess
    import sys
    code = ("import keras, numpy as np\n"
            "from tfganaug.gans.acgan import build_discriminator\n"
            "from tfganaug.gans.dcgan import build_generator\n"
            "keras.utils.set_random_seed(5)\n"
            "w = build_generator(8, 16, 16).get_weights() + build_discriminator(16, 16, 3).get_weights()\n"
            "print(repr(float(sum(np.abs(x).sum() for x in w))))\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.strip()
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_mixed_float16_trains_a_dcgan_step():
    """Loss scaling recorded by the tape: under mixed_float16 every weight gets a gradient."""
    import keras
    import numpy as np
    from tfganaug.gans.dcgan import DCGAN
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gan = DCGAN(latent_dim=4, width=8, image_size=16, seed=0)
        gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
        before = [w.numpy().copy() for w in gan.generator.trainable_weights]
        batch = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype("float32")
        step = __import__("tensorflow").function(gan.train_step)
        for _ in range(20):  # dynamic loss scaling skips steps until the scale stops overflowing float16
            logs = step(batch)
        moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, gan.generator.trainable_weights)]
        assert all(np.isfinite(float(v)) for v in logs.values()) and all(moved)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("arch", GAN_ARCHS)
def test_small_data_tricks_train_and_the_ema_generator_is_an_average(arch):
    """DiffAugment + ADA on D's input, resize upsampling and an EMA generator (the cpu_* presets)."""
    cfg = GANConfig(arch=arch, width=16, latent_dim=8, kernel_size=3 if arch == "acgan" else 5,
                    diffaug="translation,cutout,intensity", ada_target=0.6, ada_interval=1, ada_speed_images=8,
                    g_ema_beta=0.75, upsample="resize", conditioning="concat", g_layout="sngan")
    gan = build_gan(cfg, image_size=16, num_classes=3, seed=0)
    gan.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.05))
    assert not any(isinstance(l, keras.layers.Conv2DTranspose) for l in gan.generator.layers)
    g_ema = gan.ema["generator"]
    assert gan.sampler() is g_ema and gan.sampler() is not gan.generator
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
    y = np.arange(8, dtype=np.int32) % 3
    old_g = [w.numpy().copy() for w in gan.generator.trainable_weights]
    old_ema = [w.numpy().copy() for w in g_ema.trainable_weights]
    for a, b in zip(old_g, old_ema):
        np.testing.assert_array_equal(a, b)  # the copy starts equal to G
    logs = gan.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0).history
    assert "ada_p" in logs and np.isfinite(logs["d_loss"][-1])
    new_g = [w.numpy() for w in gan.generator.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(old_g, new_g)), "G did not update"
    for a, new, ema in zip(old_ema, new_g, g_ema.trainable_weights):  # one step: 0.75 old + 0.25 new
        np.testing.assert_allclose(ema.numpy(), 0.75 * a + 0.25 * new, rtol=1e-5, atol=1e-7)
    stats = [(w, e) for w, e in zip(gan.generator.weights, g_ema.weights) if not w.trainable]
    # BN statistics are the copy's own (test_ema_generator_recomputes_its_batch_norm_statistics), not G's
    assert stats and not any(np.array_equal(w.numpy(), e.numpy()) for w, e in stats)
    items = gan.checkpoint_items()
    assert {"generator_ema", "diffaug_p", "diffaug_rng"} <= set(items)
    # Sampling goes through the EMA copy.
    z = gan.sample_z(3)
    labels = tf.constant([0, 1, 2], tf.int32)
    expected = g_ema([z, labels] if arch == "acgan" else z, training=False).numpy()
    np.testing.assert_array_equal(gan.generate(z, labels).numpy(), expected)


@pytest.mark.parametrize("arch", GAN_ARCHS)
def test_ema_generator_recomputes_its_batch_norm_statistics(arch):
    """After the EMA update of the weights, the EMA copy's moving mean / variance are updated
    from its own activations (one training-mode pass on fresh noise), exactly as a copy with the
    averaged weights would update them, and not copied from the trained G."""
    cfg = GANConfig(arch=arch, width=16, latent_dim=8, kernel_size=3 if arch == "acgan" else 5, g_ema_beta=0.75,
                    upsample="resize", conditioning="concat")
    gan = build_gan(cfg, image_size=16, num_classes=3, seed=0)
    g, g_ema = gan.generator, gan.ema["generator"]
    rng = np.random.default_rng(1)
    for w in g.trainable_weights:  # G after some training steps
        w.assign(w.numpy() + rng.normal(0, 0.1, w.shape).astype(np.float32))
    for w in g.non_trainable_weights:  # G's own statistics, which the copy must not take
        w.assign(w.numpy() + 5.0)
    noise_state = gan.noise.state.numpy().copy()
    inputs = gan.ema_statistics_inputs("generator", 8)
    expected = keras.models.clone_model(g_ema)
    for src, dst in zip(g_ema.weights, expected.weights, strict=True):
        dst.assign(src)
    for src, old, dst in zip(g.trainable_weights, g_ema.trainable_weights, expected.trainable_weights, strict=True):
        dst.assign(src + (old - src) * 0.75)
    gan.noise.state.assign(noise_state)  # end_step draws the same inputs again
    gan.end_step(8)
    expected(inputs, training=True)
    stats = [(a, b) for a, b in zip(g_ema.weights, expected.weights) if not a.trainable]
    assert stats
    for a, b in zip(g_ema.weights, expected.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    for a, b in zip(g_ema.non_trainable_weights, g.non_trainable_weights, strict=True):
        assert not np.allclose(a.numpy(), b.numpy())


def test_acgan_d_classifies_fakes_only_with_odenas_term():
    """d_classifies_fakes (the paper's ACGAN, Odena et al.) adds the class loss on fakes to D's
    loss; without it (cpu_acgan) D's loss does not depend on its class logits on fakes at all."""
    rng = np.random.default_rng(0)
    src = [tf.constant(rng.normal(size=(4, 1)), tf.float32) for _ in range(2)]
    cls = [tf.constant(rng.normal(size=(4, 3)), tf.float32) for _ in range(2)]
    labels, fake_labels = tf.constant([0, 1, 2, 0]), tf.constant([2, 2, 1, 0])
    ce = keras.losses.sparse_categorical_crossentropy
    for on in (True, False):
        gan = build_gan(GANConfig(arch="acgan", width=16, latent_dim=8, kernel_size=3, d_classifies_fakes=on),
                        image_size=16, num_classes=3, seed=0)
        with tf.GradientTape() as tape:
            tape.watch(cls[1])
            loss = gan.d_per_example(labels, src[0], cls[0], fake_labels, src[1], cls[1])
        base = tf.nn.softplus(-src[0][:, 0]) + tf.nn.softplus(src[1][:, 0]) + ce(labels, cls[0], from_logits=True)
        fake_term = ce(fake_labels, cls[1], from_logits=True)
        np.testing.assert_allclose(loss.numpy(), (base + fake_term if on else base).numpy(), rtol=1e-6)
        grad = tape.gradient(loss, cls[1])
        assert (grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0) if on else grad is None


def test_mode_seeking_loss_is_maos_ratio_and_acgan_pairs_share_classes():
    """Mao et al.'s term in closed form, and an ACGAN G step with it draws pairs of one class."""
    from tfganaug.gans.acgan import mode_seeking_loss
    images = tf.constant([[0.0], [1.0], [0.5], [0.0], [3.0]])  # pairs (0, 3) and (1, 4); 2 is unpaired
    z = tf.constant([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0], [1.0, 1.0], [0.0, 0.0]])
    dx, dz = (0.0 + 2.0) / 2, 1.0  # mean |x_i - x_j| over the pairs, mean |z_i - z_j|
    np.testing.assert_allclose(float(mode_seeking_loss(images, z)), 1.0 / (dx / dz + 1e-5), rtol=1e-6)
    same = tf.constant([[1.0], [1.0], [1.0], [1.0]])
    assert float(mode_seeking_loss(same, tf.constant([[0.0], [1.0], [2.0], [3.0]]))) > 1e4  # collapse is costly
    gan = build_gan(GANConfig(arch="acgan", width=16, latent_dim=8, kernel_size=3, mode_seeking=1.0,
                              conditioning="concat"), image_size=16, num_classes=3, seed=0)
    seen = []
    real_generator = gan.generator
    gan.generator = keras.Model(real_generator.inputs, real_generator.outputs)
    original_call = gan.generator.call

    def spy(inputs, *args, **kwargs):
        seen.append(inputs[1])
        return original_call(inputs, *args, **kwargs)

    gan.generator.call = spy
    x = np.zeros((6, 16, 16, 1), np.float32)
    logs = gan.train_step((tf.constant(x), tf.constant([0, 1, 2, 0, 1, 2])))
    labels = seen[-1].numpy()  # the G step's labels
    np.testing.assert_array_equal(labels[:3], labels[3:])
    assert np.isfinite(float(logs["g_loss"]))


def test_tricks_off_leave_the_checkpoint_as_before():
    """Runs from before the options existed restore with assert_consumed: no new checkpoint items."""
    gan = _tiny("acgan")
    assert not gan.augment.active and gan.ema == {} and gan.sampler() is gan.generator
    assert set(gan.checkpoint_items()) == {"generator", "discriminator", "d_optimizer", "g_optimizer", "noise",
                                           "seed_states"}


@pytest.mark.parametrize("kernel_size", [3, 4, 5])
@pytest.mark.parametrize("use_bias", [True, False])
def test_resize_conv_equals_upsampling_then_conv(kernel_size, use_bias):
    """ResizeConv2D (computed at the low resolution) is nearest 2x upsampling + a 'same'
    convolution with the same kernel: outputs and gradients equal up to float rounding."""
    from tfganaug.gans.dcgan import ResizeConv2D
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 5, 6, 7)), tf.float32)
    fused = ResizeConv2D(4, kernel_size, use_bias=use_bias, bias_initializer="random_normal")
    fused.build(x.shape)
    plain = keras.layers.Conv2D(4, kernel_size, padding="same", use_bias=use_bias)
    plain.build((None, 10, 12, 7))
    plain.set_weights(fused.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = fused(x)
        b = plain(keras.layers.UpSampling2D(2)(x))
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    assert a.shape == b.shape == (3, 10, 12, 4)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    np.testing.assert_allclose(tape.gradient(la, x).numpy(), tape.gradient(lb, x).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(la, fused.kernel).numpy(), tape.gradient(lb, plain.kernel).numpy(),
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_resize_generator_restores_checkpoints_of_the_textbook_layers(num_classes, tmp_path):
    """Runs trained with UpSampling2D + Conv2D (before ResizeConv2D) restore into today's
    generator (same checkpoint paths) and give the same images; the .keras file reloads."""
    from tfganaug.gans.dcgan import ResizeConv2D, build_generator
    kw = dict(num_classes=num_classes, upsample="resize", conditioning="concat")
    old = build_generator(8, 32, 16, fused_resize=False, **kw)
    new = build_generator(8, 32, 16, **kw)
    assert sum(isinstance(layer, ResizeConv2D) for layer in new.layers) == 4
    for w in old.weights:
        w.assign(tf.random.normal(w.shape) * 0.1 + (1.0 if "variance" in w.path else 0.0))
    path = tf.train.Checkpoint(generator=old).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(generator=new).read(path).assert_consumed()
    z = tf.random.uniform((4, 8), -1, 1)
    inputs = [z, tf.constant([0, 1, 2, 0])] if num_classes else z
    np.testing.assert_allclose(new(inputs).numpy(), old(inputs).numpy(), atol=1e-5)
    new.save(str(tmp_path / "g.keras"))
    again = keras.saving.load_model(str(tmp_path / "g.keras"), safe_mode=True)
    np.testing.assert_array_equal(again(inputs).numpy(), new(inputs).numpy())


@pytest.mark.parametrize("arch", GAN_ARCHS)
def test_joint_d_pass_keeps_separate_real_and_fake_statistics(arch):
    """D's one pass over concat(real, fake) with SplitBatchNormalization gives the training of
    two separate passes (the papers'): weights, BN moving statistics and losses after three
    SGD steps equal up to float rounding."""
    def train(joint):
        keras.utils.set_random_seed(0)
        gan = build_gan(GANConfig(arch=arch, width=16, latent_dim=8, kernel_size=3 if arch == "acgan" else 5,
                                  upsample="resize", diffaug="translation,cutout"), 16, 3, seed=0)
        assert gan._d_joint
        gan._d_joint = joint
        # lr 0.01: at 0.1, three GAN steps amplified the kernels' rounding differences to 1.7e-3 on an
        # AVX-512 machine (oneDNN picks other kernels for batch 8 and 16 there); 2e-5 held on AVX2.
        gan.compile(d_optimizer=keras.optimizers.SGD(0.01), g_optimizer=keras.optimizers.SGD(0.01))
        x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32)
        y = np.arange(8, dtype=np.int32) % 3
        logs = gan.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), steps_per_epoch=3, verbose=0).history
        return [w.numpy() for w in gan.discriminator.weights + gan.generator.weights], logs
    (two, logs_two), (one, logs_one) = train(False), train(True)
    for a, b in zip(two, one, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    for key in logs_two:
        assert logs_one[key][-1] == pytest.approx(logs_two[key][-1], abs=1e-5)


def test_split_batch_norm_is_plain_batch_norm_outside_batch_groups():
    from tfganaug.gans.base import SplitBatchNormalization, batch_groups
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 4, 4, 3)), tf.float32)
    split, plain = SplitBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    split.build(x.shape), plain.build(x.shape)
    np.testing.assert_allclose(split(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-6)
    with batch_groups(2):  # each half normalised alone, moving statistics updated half by half
        halves = tf.concat([plain(x[:3], training=True), plain(x[3:], training=True)], 0)
        np.testing.assert_allclose(split(x, training=True).numpy(), halves.numpy(), atol=1e-5)
        np.testing.assert_allclose(split(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    np.testing.assert_allclose(split.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(split.moving_variance.numpy(), plain.moving_variance.numpy(), atol=1e-6)
