"""The labels2image baseline (gans/labels2image.py): statistics fitted exactly by its train
step, images drawn from them as a pure function of the label map, and the stages (train-gan,
synthesize, export) serving it like any other label-map GAN."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfganaug import config
from tfganaug.gans import GANS
from tfganaug.gans.labels2image import Labels2Image, gaussian_blur

SIZE, K = 16, 3


def _pairs(seed=0, n=6):
    """Label maps with a square of label 1 and a bar of label 2 in varying places, images in [-1, 1]."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, SIZE, SIZE), np.int32)
    for m in masks:
        y, x = rng.integers(1, 8, 2)
        m[y:y + 6, x:x + 6] = 1
        m[12:14, 2:2 + rng.integers(4, 12)] = 2
    images = rng.normal(0.0, 0.1, (n, SIZE, SIZE, 2)).astype(np.float32)
    images += np.array([-0.8, 0.4, 0.2], np.float32)[masks][..., None] + rng.normal(0, 0.2, (n, 1, 1, 1))
    return masks, np.clip(images, -1, 1)


def _fit(masks, images, batch=4):
    gan = Labels2Image(image_size=SIZE, num_labels=K, out_channels=images.shape[-1])
    gan.compile()
    data = tf.data.Dataset.from_tensor_slices((tf.one_hot(masks, K), images)).batch(batch)
    gan.fit(data, epochs=1, verbose=0)
    return gan


def test_train_step_fits_the_per_label_statistics_exactly():
    masks, images = _pairs()
    gan = _fit(masks, images)
    mu, between, within = (t.numpy() for t in gan.intensities.statistics())
    for label in range(K):
        means = np.stack([img[m == label].mean(axis=0) for img, m in zip(images, masks)])  # (n, C)
        variances = np.stack([img[m == label].var(axis=0) for img, m in zip(images, masks)])
        np.testing.assert_allclose(mu[label], means.mean(0), atol=1e-5)
        np.testing.assert_allclose(between[label], means.std(0), atol=1e-4)
        np.testing.assert_allclose(within[label], np.sqrt(variances.mean(0)), atol=1e-4)
    atlas_mean, atlas_sd = (t.numpy() for t in gan.intensities.atlas())
    background = masks == 0
    for y, x in [(0, 0), (15, 15), (12, 14)]:
        values = images[background[:, y, x], y, x]
        np.testing.assert_allclose(atlas_mean[y, x], values.mean(0), atol=1e-5)
        np.testing.assert_allclose(atlas_sd[y, x], values.std(0), atol=1e-4)


def test_generation_is_a_pure_function_of_the_label_map_and_follows_the_statistics():
    masks, images = _pairs()
    gan = _fit(masks, images)
    onehot = tf.one_hot(masks, K)
    first, again = gan.generate(onehot).numpy(), gan.generate(onehot[::-1]).numpy()[::-1]
    np.testing.assert_array_equal(first, again)  # per-map noise, whatever the batch order
    assert first.shape == (6, SIZE, SIZE, 2) and first.min() >= -1 and first.max() <= 1
    assert not np.allclose(first[0], first[1])
    from scipy.ndimage import binary_erosion
    inner = np.stack([binary_erosion(m == 1) for m in masks])  # away from the edge blur
    assert abs(first[inner].mean() - images[masks == 1].mean()) < 0.15
    assert abs(first[masks == 0].mean() - images[masks == 0].mean()) < 0.1
    # a label unseen in training is mid-grey, without texture
    unseen = Labels2Image(image_size=SIZE, num_labels=K, out_channels=1, edge_sigma=0.0)
    np.testing.assert_allclose(unseen.generate(tf.one_hot(masks[:1] * 0 + 2, K)).numpy(), 0.0, atol=1e-6)


def test_gaussian_blur_keeps_constants_and_spreads_an_impulse():
    flat = tf.fill([1, 9, 9, 2], 0.3)
    np.testing.assert_allclose(gaussian_blur(flat, 1.0).numpy(), 0.3, atol=1e-6)  # reflect padding
    impulse = np.zeros((1, 9, 9, 1), np.float32)
    impulse[0, 4, 4] = 1.0
    out = gaussian_blur(tf.constant(impulse), 1.0).numpy()[0, ..., 0]
    assert out.sum() == pytest.approx(1.0, abs=1e-5) and out[4, 4] == out.max() and out[4, 3] == out[3, 4]


def test_stages_train_synthesize_and_export_the_baseline(tmp_path):
    from tfganaug.stages.export import INFO_FILE, export_run
    from tfganaug.stages.synthesize import synthesize
    from tfganaug.stages.train_gan import load_gan, train_gan
    assert GANS.get("labels2image") is Labels2Image
    cfg = config.preset("cpu_labels2image", data={"image_size": 16, "n_phantom_patients": 4, "phantom_size": 32})
    run = train_gan(cfg, tmp_path / "run", verbose=0).path
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and np.isfinite(rows[0]["l1_to_label_means"])
    assert (run / "samples" / "labels2image" / "epoch_0001.png").exists()
    _, _, _, gans = load_gan(run)
    assert gans[0][1].intensities.images_with_label.numpy()[0] > 0  # the fitted statistics were restored
    out = synthesize(run, 5, tmp_path / "synth", labels="perturb")
    with np.load(out / "images.npz") as z:
        assert z["images"].shape == (5, 16, 16, 1) and 0 <= z["images"].min() and z["images"].max() <= 1
    version = export_run(run, tmp_path / "served")  # verified against the Keras model on reload
    info = json.loads((version / "assets.extra" / INFO_FILE).read_text())
    assert info["arch"] == "labels2image" and info["verified_max_abs_diff"] <= 1e-5
