"""StyleGAN2 (Karras et al. 2020) with the joint image + mask output of Son et al., at tiny shapes.

One model is traced once (module fixture, ~30 s on 2 cores) and trained 30 steps on a fixed
batch; the other tests run eagerly.
"""
import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfganaug.errors import ConfigError
from tfganaug.gans.augment import DiscriminatorAugment
from tfganaug.gans.stylegan2 import (FIR, StyleGAN2, downsample2d, ema_beta_for_half_life, minibatch_stddev,
                                     modulated_conv2d, stylegan2_optimizers, upsample2d)

TINY = dict(resolution=16, n_channels=4, num_labels=4, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
            channel_max=16)
STEPS = 30


def _tiny(**overrides):
    model = StyleGAN2(**{**TINY, **overrides})
    model.compile(*stylegan2_optimizers(0.0025, model.r1_interval, model.pl_interval))
    return model


def _batch(n=4, resolution=16, channels=4, seed=0):
    """Images in [-1, 1] and label maps with a blob of labels 1-3 (a tumour-like mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:resolution, :resolution]
    masks = np.zeros((n, resolution, resolution), np.int32)
    for i in range(n):
        cy, cx = rng.integers(resolution // 4, resolution - resolution // 4, 2)
        r = np.hypot(yy - cy, xx - cx) * 16 / resolution
        masks[i][r < 4], masks[i][r < 2.5], masks[i][r < 1.2] = 2, 3, 1
    images = np.tanh(rng.normal(0, 0.5, (n, resolution, resolution, channels)) + masks[..., None] * 0.3)
    return images.astype(np.float32), masks


def _weights(variables):
    return [v.numpy().copy() for v in variables]


def test_mapping_synthesis_and_discriminator_shapes():
    model = StyleGAN2(**TINY)
    G = model.generator
    assert model.num_ws == 2 * int(math.log2(16)) - 2 == 6
    assert len(G.mapping.fcs) == 2 and G.mapping.fcs[0].weight_gain == pytest.approx(0.01 / math.sqrt(16))
    assert G.synthesis.noise_resolutions == [4, 8, 8, 16, 16]
    # channels per resolution: min(channel_base // res, channel_max) = 16, 16, 8
    assert G.synthesis.const.shape == (4, 4, 16) and G.synthesis.convs[-1].kernel.shape == (3, 3, 8, 8)
    z = tf.random.normal([3, 16])
    ws = G.mapping(z)
    assert ws.shape == (3, 6, 16)
    images, probs = G.synthesis(ws, noise_mode="const")
    assert images.shape == (3, 16, 16, 4) and probs.shape == (3, 16, 16, 4)
    logits = model.discriminator(tf.concat([images, probs], -1))
    assert logits.shape == (3, 1)
    assert StyleGAN2(**{**TINY, "resolution": 32}).num_ws == 8
    with pytest.raises(ConfigError, match="power of two"):
        StyleGAN2(**{**TINY, "resolution": 12})


def test_demodulation_gives_unit_output_std_whatever_the_style():
    """Paper eq. 3: for i.i.d. unit-variance input, each output map has unit std per sample."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 20, 20, 64)), tf.float32)
    weight = tf.constant(rng.normal(size=(3, 3, 64, 32)), tf.float32)
    scale = np.array([0.01, 1.0, 10.0, 300.0])[:, None]
    styles = tf.constant(np.exp(rng.normal(size=(4, 64))) * scale, tf.float32)
    for fused in (False, True):
        y = modulated_conv2d(x, weight, styles, demodulate=True, fused=fused).numpy()[:, 1:-1, 1:-1]
        np.testing.assert_allclose(y.std(axis=(1, 2, 3)), 1.0, atol=0.06)
        np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=0.25)  # per sample and output channel
    raw = modulated_conv2d(x, weight, styles, demodulate=False).numpy().std(axis=(1, 2, 3))
    assert raw.max() / raw.min() > 1000  # without demodulation the style scales the output


def test_fused_grouped_convolution_equals_activation_scaling():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(3, 8, 8, 6)), tf.float32)
    styles = tf.constant(rng.uniform(0.2, 3, (3, 6)), tf.float32)
    for kernel, demodulate, up in ((3, True, False), (3, True, True), (1, False, False)):
        weight = tf.constant(rng.normal(size=(kernel, kernel, 6, 5)), tf.float32)
        a = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, fused=False)
        b = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, fused=True)
        assert a.shape == b.shape == (3, 16 if up else 8, 16 if up else 8, 5)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_fir_resampling_and_minibatch_std():
    assert FIR.sum() == pytest.approx(1.0) and FIR[0].tolist() == pytest.approx(np.array([1, 3, 3, 1]) / 64)
    flat = tf.ones([1, 8, 8, 3])
    up, down = upsample2d(flat).numpy(), downsample2d(flat).numpy()
    assert up.shape == (1, 16, 16, 3) and down.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.0, atol=1e-6)  # gain 4 keeps a constant constant
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.0, atol=1e-6)
    # Minibatch std: 4 samples, one group; sample k is constant k -> std over the group = std(0..3).
    x = tf.constant(np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 4, 4, 2), np.float32))
    y = minibatch_stddev(x).numpy()
    assert y.shape == (4, 4, 4, 3)
    np.testing.assert_allclose(y[..., 2], np.std(np.arange(4)), rtol=1e-5)


def test_generate_returns_contrasts_and_a_mask_distribution():
    model = StyleGAN2(**{**TINY, "n_channels": 2})
    for layer in model.G_ema.synthesis.convs:  # the learned noise strengths start at 0
        layer.noise_strength.assign(0.5)
    z = model.sample_z(5)
    images, probs = model.generate(z)
    assert images.shape == (5, 16, 16, 2) and probs.shape == (5, 16, 16, 4)
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, atol=1e-5)
    assert probs.numpy().min() >= 0
    again, _ = model.generate(z)                        # fresh noise from the model's generator
    assert not np.allclose(images.numpy(), again.numpy())
    c1, _ = model.generate(z, noise_mode="const")
    c2, _ = model.generate(z, noise_mode="const")
    np.testing.assert_array_equal(c1.numpy(), c2.numpy())


def test_truncation_psi_zero_gives_the_average_image():
    model = StyleGAN2(**TINY)
    model.generator.w_avg.assign(tf.random.normal([16]))
    model.G_ema.w_avg.assign(model.generator.w_avg)
    z = tf.random.normal([3, 16]) * 3
    images, probs = model.generate(z, truncation_psi=0.0, noise_mode="const")
    for k in (1, 2):
        np.testing.assert_allclose(images[k].numpy(), images[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(probs[k].numpy(), probs[0].numpy(), atol=1e-6)
    free, _ = model.generate(z, truncation_psi=1.0, noise_mode="const", use_ema=False)
    assert not np.allclose(free[1].numpy(), free[0].numpy(), atol=1e-3)


@pytest.fixture(scope="module")
def trained():
    """30 steps on one fixed batch with R1 and path length every 2 steps; EMA then beta 0."""
    keras.utils.set_random_seed(0)
    model = _tiny(r1_interval=2, pl_interval=2, seed=0)
    images, masks = _batch()
    data = tf.data.Dataset.from_tensors((images, masks)).repeat()
    g_before = _weights(model.generator.trainable_weights)
    history = model.fit(data, epochs=STEPS, steps_per_epoch=1, verbose=0).history
    out = {"model": model, "history": history, "g_before": g_before, "data": data,
           "g_after": _weights(model.generator.trainable_weights),
           "ema_after": _weights(model.G_ema.trainable_weights),
           "d_iterations": int(model.d_optimizer.iterations.numpy()),
           "g_iterations": int(model.g_optimizer.iterations.numpy())}
    model.ema_beta.assign(0.0)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    out["ema_beta0"] = (_weights(model.generator.weights), _weights(model.G_ema.weights))
    model.ema_beta.assign(0.999)
    return out


def test_fit_logs_are_finite_and_lazy_regularisers_run_on_their_steps(trained):
    h, model = trained["history"], trained["model"]
    assert set(h) >= {"d_loss", "g_loss", "r1", "pl", "d_real", "d_fake"}
    assert all(np.all(np.isfinite(v)) for v in h.values())
    # Steps 0, 2, 4, ... run R1 and path length (each epoch here is one step).
    r1, pl = np.array(h["r1"]), np.array(h["pl"])
    assert np.all(r1[0::2] > 0) and np.all(r1[1::2] == 0)
    assert np.all(pl[0::2] > 0) and np.all(pl[1::2] == 0)
    # Paper's separate regularisation step: one extra optimizer step per regularised minibatch.
    assert trained["d_iterations"] == trained["g_iterations"] == STEPS + STEPS // 2
    assert float(model.pl_mean.numpy()) > 0 and np.abs(model.generator.w_avg.numpy()).sum() > 0
    assert any(not np.array_equal(a, b) for a, b in zip(trained["g_before"], trained["g_after"]))


def test_discriminator_loss_decreases_on_a_fixed_batch(trained):
    d_loss = np.array(trained["history"]["d_loss"])
    assert d_loss[-5:].mean() < d_loss[:5].mean() - 0.1, d_loss.round(3)


def test_ema_generator_lags_and_follows_with_beta_zero(trained):
    g, ema = trained["g_after"], trained["ema_after"]
    assert any(not np.allclose(a, b) for a, b in zip(g, ema))
    g_all, ema_all = trained["ema_beta0"]
    for a, b in zip(g_all, ema_all):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_round_trip_restores_generate(trained, tmp_path):
    a = trained["model"]
    b = _tiny(r1_interval=2, pl_interval=2, seed=1)
    path = tf.train.Checkpoint(**a.checkpoint_items()).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(**b.checkpoint_items()).read(path).assert_consumed()
    for name in ("generator", "G_ema", "discriminator"):  # every weight, buffers included
        for wa, wb in zip(getattr(a, name).weights, getattr(b, name).weights, strict=True):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=f"{name} {wa.path}")
    assert set(a.checkpoint_items()) >= {"generator", "discriminator", "G_ema", "d_optimizer", "g_optimizer",
                                         "pl_mean", "w_avg", "step", "noise", "seed_states"}
    assert int(b.step_counter.numpy()) == STEPS + 1 and float(b.pl_mean.numpy()) == float(a.pl_mean.numpy())
    assert int(b.d_optimizer.iterations.numpy()) == int(a.d_optimizer.iterations.numpy())
    z = tf.random.normal([3, 16])
    for use_ema in (True, False):
        for mode in ("random", "const"):  # random: the noise generator's state was restored too
            ia, pa = a.generate(z, truncation_psi=0.7, use_ema=use_ema, noise_mode=mode)
            ib, pb = b.generate(z, truncation_psi=0.7, use_ema=use_ema, noise_mode=mode)
            np.testing.assert_array_equal(ia.numpy(), ib.numpy())
            np.testing.assert_array_equal(pa.numpy(), pb.numpy())


def test_joint_regularisation_step_runs_eagerly():
    """reg_step="joint" (what "auto" picks under a multi-device strategy): one optimizer step per
    minibatch with the regulariser's gradient added."""
    model = _tiny(resolution=8, r1_interval=1, pl_interval=1, reg_step="joint")
    images, masks = _batch(n=4, resolution=8)
    logs = model.train_step((tf.constant(images), tf.constant(masks)))
    assert all(np.isfinite(float(v)) for v in logs.values()) and float(logs["r1"]) > 0 and float(logs["pl"]) > 0
    assert int(model.d_optimizer.iterations.numpy()) == int(model.g_optimizer.iterations.numpy()) == 1


def test_optimizers_follow_the_lazy_regularisation_correction():
    d_opt, g_opt = stylegan2_optimizers(0.0025, r1_interval=16, pl_interval=4)
    assert float(d_opt.learning_rate.numpy()) == pytest.approx(0.0025 * 16 / 17)
    assert d_opt.beta_1 == 0.0 and d_opt.beta_2 == pytest.approx(0.99 ** (16 / 17))
    assert float(g_opt.learning_rate.numpy()) == pytest.approx(0.0025 * 4 / 5)
    assert g_opt.beta_2 == pytest.approx(0.99 ** 0.8)
    assert ema_beta_for_half_life(10_000, 32) == pytest.approx(0.5 ** (32 / 10_000))


POLICY = "translation,cutout,intensity"


def _augment(seed=3, **kwargs):
    """DiffAugment + ADA at p = 1 (every ADA op on every sample: the R1 double gradient goes
    through all of them), contrasts = the first 4 channels of D's input."""
    return DiscriminatorAugment(POLICY, **{"ada_target": 0.6, "image_channels": 4, "ada_interval": 2, "p_init": 1.0,
                                           "seed": seed, **kwargs})


def test_augmented_step_reaches_every_d_input_including_r1():
    """One eager step with R1 and path length on, DiffAugment + ADA, next to the same model
    without augmentation."""
    images, masks = (tf.constant(a) for a in _batch(n=4, resolution=8))
    plain = _tiny(resolution=8, r1_interval=1, pl_interval=1, seed=0)
    model = _tiny(resolution=8, r1_interval=1, pl_interval=1, seed=0, augment=_augment())
    for a, b in zip(plain.discriminator.weights, model.discriminator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same start
    d_before = _weights(model.discriminator.trainable_weights)
    seen, inner = [], model.d_input

    def d_input(x):
        seen.append(tuple(x.shape))
        return inner(x)
    model.d_input = d_input
    logs = model.train_step((images, masks))
    plain_logs = plain.train_step((images, masks))
    # concat(contrasts, mask) through the augmenter: real and fake in D's step, the reals of R1,
    # the fake in G's step (the path-length regulariser does not involve D).
    assert seen == [(4, 8, 8, 4 + 4)] * 4
    assert {"ada_p", "ada_rt"} <= set(logs) and float(logs["ada_p"]) == 1.0  # interval 2: not moved yet
    assert float(model.augment.sign_count.numpy()) == 4  # one logit per real sample
    assert all(np.isfinite(float(v)) for v in logs.values()) and float(logs["r1"]) > 0
    assert float(logs["r1"]) != float(plain_logs["r1"])
    d_after = _weights(model.discriminator.trainable_weights)
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, d_after))
    assert any(not np.allclose(a, b.numpy(), atol=1e-6) for a, b in zip(d_after, plain.discriminator.trainable_weights))
    items = model.checkpoint_items()
    assert {"diffaug_p", "diffaug_rng", "diffaug_sign_sum", "diffaug_step"} <= set(items)
    assert not any(k.startswith("diffaug") for k in plain.checkpoint_items())  # old layout when off
    assert model.sampler() is model.G_ema and set(model.sampling_items()) == {"generator", "G_ema"}
    logs = model.train_step((images, masks))  # end of ADA's interval: p moves by -+ 4 x 2 / 500
    assert float(logs["ada_p"]) == pytest.approx(np.clip(1.0 + np.sign(float(logs["ada_rt"]) - 0.6) * 8 / 500, 0, 1))
    with pytest.raises(ConfigError, match="image_channels=4"):
        StyleGAN2(**TINY, augment=DiscriminatorAugment(POLICY))


RESUME = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf, keras
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    from tfganaug.gans.augment import DiscriminatorAugment
    from tfganaug.gans.stylegan2 import StyleGAN2, stylegan2_optimizers

    def make(seed):
        augment = DiscriminatorAugment("translation,cutout,intensity", ada_target=0.6, image_channels=2,
                                       ada_interval=1, ada_speed_images=16, p_init=0.5, seed=seed)
        model = StyleGAN2(resolution=8, n_channels=2, num_labels=3, z_dim=8, w_dim=8, mapping_layers=1,
                          channel_base=32, channel_max=8, r1_interval=2, pl_interval=2, ema_beta=0.9, seed=seed,
                          augment=augment)
        model.compile(*stylegan2_optimizers(0.0025, 2, 2), run_eagerly=True)
        return model

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 8, 8, 2)).astype("float32")
    masks = rng.integers(0, 3, (8, 8, 8)).astype("int32")
    def batches(lo, hi):
        return tf.data.Dataset.from_tensor_slices((images[lo:hi], masks[lo:hi])).batch(2)
    def state(model):
        path = tf.train.Checkpoint(**model.checkpoint_items()).write(sys.argv[1] + f"/state{id(model)}")
        reader = tf.train.load_checkpoint(path)
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}

    original = make(seed=0)
    original.fit(batches(0, 6), epochs=1, verbose=0)  # 3 steps: the restored run starts on an odd step
    path = tf.train.Checkpoint(**original.checkpoint_items()).write(sys.argv[1] + "/ckpt")
    saved = state(original)
    original.fit(batches(2, 8), epochs=1, verbose=0)

    fresh = make(seed=1)  # other weights, noise and augmentation draws: all from the checkpoint
    tf.train.Checkpoint(**fresh.checkpoint_items()).read(path).assert_consumed()
    fresh.fit(batches(2, 8), epochs=1, verbose=0)

    one, two = state(original), state(fresh)
    moved = [k for k in one if not np.array_equal(one[k], saved[k])]
    print("RESULT", json.dumps({
        "same_keys": sorted(one) == sorted(two), "n": len(one),
        "differ": [k for k in one if not np.array_equal(one[k], two[k])],
        "moved": len(moved), "moved_aug": sorted(k.split("/")[0] for k in moved if k.startswith("diffaug")),
        "p": float(fresh.augment.p.numpy())}))
""")


@pytest.mark.slow
def test_checkpoint_items_resume_bitwise_with_augmentation(tmp_path):
    """DiffAugment + ADA with lazy R1 and path length: 3 steps, checkpoint, 3 more == restore into
    a fresh model (other seed) and the same 3 steps, bitwise, with op determinism (subprocess)."""
    out = subprocess.run([sys.executable, "-c", RESUME, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads([l for l in out.stdout.splitlines() if l.startswith("RESULT")][0][len("RESULT"):])
    assert result["same_keys"] and result["n"] > 50, result
    assert result["differ"] == [], result["differ"][:10]
    assert {"diffaug_p", "diffaug_rng", "diffaug_step"} <= set(result["moved_aug"]), result
