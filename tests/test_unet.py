"""U-Net of Ronneberger et al. 2015 and the Dice losses: shapes, presets, training, maths, reload."""
import numpy as np
import pytest
import tensorflow as tf

import keras
from tfganaug.tasks.losses import (DiceCELoss, SoftDiceLoss, center_crop_to, dice_ce_loss,
                                   soft_dice_loss)
from tfganaug.tasks.unet import (UNET_PRESETS, build_unet, build_unet_preset, unet_output_size,
                                 valid_input_size)


def test_paper_size_572_to_388():
    assert unet_output_size(572, 4, "valid") == 388
    assert valid_input_size(572, 4) == 572
    model = build_unet(2, 572, depth=4, base_filters=4)
    assert model.output_shape == (None, 388, 388, 2)


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_output_shape_matches_helper(depth, padding):
    size = valid_input_size(50, depth, padding)
    model = build_unet(3, size, depth=depth, base_filters=4, padding=padding)
    out = unet_output_size(size, depth, padding)
    assert model.output_shape == (None, out, out, 3)
    assert out == size if padding == "same" else out < size


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("min_size", [1, 61, 100, 173])
def test_valid_input_size_is_smallest_that_builds(depth, min_size):
    size = valid_input_size(min_size, depth)
    assert size >= min_size
    unet_output_size(size, depth)
    for smaller in range(max(1, min_size), size):
        with pytest.raises(ValueError, match="valid_input_size|at least"):
            unet_output_size(smaller, depth)
    build_unet(2, size, depth=depth, base_filters=4)


def test_invalid_size_names_the_fix():
    with pytest.raises(ValueError, match=r"valid_input_size\(102, 2\) = 104"):
        build_unet(2, 102, depth=2, base_filters=4)
    with pytest.raises(ValueError, match="divisible by 8"):
        build_unet(2, 36, depth=3, base_filters=4, padding="same")


def test_forward_pass_rectangular_and_crop_labels():
    h, w = valid_input_size(40, 2), valid_input_size(60, 2)
    model = build_unet(3, (h, w), depth=2, base_filters=4)
    oh, ow = unet_output_size(h, 2), unet_output_size(w, 2)
    probs = model(np.random.default_rng(0).random((2, h, w, 1), np.float32))
    assert probs.shape == (2, oh, ow, 3) and probs.dtype == tf.float32
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, atol=1e-5)
    labels = np.arange(2 * h * w * 3).reshape(2, h, w, 3)
    cropped = center_crop_to(labels, (oh, ow)).numpy()
    top, left = (h - oh) // 2, (w - ow) // 2
    np.testing.assert_array_equal(cropped, labels[:, top:top + oh, left:left + ow])


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_norms_run(norm):
    model = build_unet(2, 16, depth=2, base_filters=8, padding="same", norm=norm,
                       activation="leaky_relu", dropout=0.2)
    assert model(np.ones((2, 16, 16, 1), np.float32), training=True).shape == (2, 16, 16, 2)


@pytest.mark.parametrize("preset", sorted(UNET_PRESETS))
def test_presets_build_small(preset):
    depth = UNET_PRESETS[preset]["depth"]
    size = valid_input_size(1, depth, UNET_PRESETS[preset]["padding"])
    model = build_unet_preset(preset, size, num_classes=2, base_filters=4)
    out = unet_output_size(size, depth, UNET_PRESETS[preset]["padding"])
    assert model.output_shape == (None, out, out, 2)
    if preset == "sandfort":
        kinds = {type(layer).__name__ for layer in model.layers}
        assert {"GroupNormalization", "LeakyReLU"} <= kinds


def _two_discs(n, size=32, seed=0):
    """Images with a bright and a dim disc; labels background / bright / dim, one-hot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0, 0.05, (n, size, size, 1)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        for cls, value in ((1, 1.0), (2, 0.5)):
            cy, cx = rng.integers(6, size - 6, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(3, 6) ** 2
            images[i, disc, 0] = value
            labels[i, disc] = cls
    return images, np.eye(3, dtype=np.float32)[labels]


def test_tiny_unet_learns_two_discs():
    keras.utils.set_random_seed(0)
    images, labels = _two_discs(8)
    model = build_unet(3, 32, depth=2, base_filters=4, padding="same")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SoftDiceLoss())
    before = float(np.mean(soft_dice_loss(labels, model(images))))
    model.fit(images, labels, batch_size=8, epochs=20, verbose=0)
    after = float(np.mean(soft_dice_loss(labels, model(images))))
    assert after < before - 0.15, (before, after)


def test_soft_dice_against_numpy():
    rng = np.random.default_rng(1)
    a = np.eye(4)[rng.integers(0, 4, (3, 9, 7))]
    b = np.eye(4)[rng.integers(0, 4, (3, 9, 7))]
    both = (a * b).sum((1, 2))
    expected = 1 - ((2 * both + 1) / (a.sum((1, 2)) + b.sum((1, 2)) + 1)).mean(-1)
    got = soft_dice_loss(a, b).numpy()
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(soft_dice_loss(a, a, smooth=1e-6).numpy(), 0.0, atol=1e-6)
    ce = -np.mean(np.sum(a * np.log(np.clip(b * 0.9 + 0.025, 1e-7, 1)), -1), axis=(1, 2))
    np.testing.assert_allclose(dice_ce_loss(a, b * 0.9 + 0.025).numpy(),
                               soft_dice_loss(a, b * 0.9 + 0.025).numpy() + ce, rtol=1e-5)
    np.testing.assert_allclose(SoftDiceLoss()(a, b), expected.mean(), rtol=1e-6)


def test_keras_roundtrip_safe_mode(tmp_path):
    model = build_unet(3, valid_input_size(30, 2), depth=2, base_filters=4, norm="group",
                       group_size=2, activation="leaky_relu", dropout=0.1)
    model.compile(optimizer="adam", loss=DiceCELoss(smooth=0.5, ce_weight=0.3))
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).random((2, *model.input_shape[1:]), np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert isinstance(loaded.loss, DiceCELoss)
    assert (loaded.loss.smooth, loaded.loss.ce_weight, loaded.loss.axis) == (0.5, 0.3, (1, 2))
