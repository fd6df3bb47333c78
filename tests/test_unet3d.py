"""The 3-D U-Net option of Sandfort et al.: the network's building blocks, volumes and windows
of slices, 3-D standard augmentation, sliding-window prediction, and train-seg / evaluate /
export end to end on tiny abdominal phantoms (real TensorFlow graphs, a SavedModel loaded in a
fresh process)."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from cli.main import main
from tfganaug import config
from tfganaug.data.pipeline import training_batches
from tfganaug.data.segsets import load_segsets
from tfganaug.data.volumes import (Volume, predict_volume, standard_augment_3d_np, standard_augment_3d_tf,
                                   volume_chunks, volumes_of, window_stack)
from tfganaug.errors import ConfigError, InputError
from tfganaug.stages.export import export_run
from tfganaug.stages.evaluate import evaluate_seg
from tfganaug.stages.train_seg import train_seg
from tfganaug.tasks.segmenter import SegLoss
from tfganaug.tasks.unet3d import build_unet3d

DATA = {"name": "phantom-abdomen", "image_size": 16, "n_phantom_patients": 5, "phantom_size": 32}
SEG = {"base_filters": 4, "depth": 2, "patch_depth": 8, "epochs": 2, "steps_per_epoch": 2, "batch_size": 2}


def cfg3d(seed=0, **seg):
    return config.preset("cpu_unet3d_abdomen", data=DATA, seg={**SEG, **seg}, seed=seed)


@pytest.fixture(scope="module")
def run3d(tmp_path_factory):
    return train_seg(cfg3d(), tmp_path_factory.mktemp("seg3d") / "run", verbose=0).path


def test_unet3d_blocks_of_the_paper_and_any_number_of_slices():
    model = build_unet3d(4, 16, channels=2, depth=2, base_filters=32)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert "MaxPooling3D" not in kinds and "LeakyReLU" in kinds and "ReLU" not in kinds
    strided = [l for l in model.layers if isinstance(l, keras.layers.Conv3D) and l.strides == (2, 2, 2)]
    assert len(strided) == 2  # one strided convolution per level replaces pooling
    groups = {l.groups: l for l in model.layers if isinstance(l, keras.layers.GroupNormalization)}
    assert sorted(groups) == [2, 4, 8]  # 32, 64, 128 channels in groups of 16
    for z in (1, 5, 8, 13):
        out = model(np.zeros((1, z, 16, 16, 2), np.float32))
        assert out.shape == (1, z, 16, 16, 4)
        np.testing.assert_allclose(out.numpy().sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_unet3d(2, 18, depth=2)


def test_windows_never_cross_a_volume_and_short_volumes_are_padded():
    vols = [Volume(f"p{i}", np.full((z, 4, 4, 1), i + 1, np.float32), np.full((z, 4, 4), i, np.uint8),
                   np.ones(3), np.arange(z)) for i, z in enumerate((5, 3, 9))]
    x, y, starts = window_stack(vols, 4)
    assert len(x) == 5 + 4 + 9 and len(starts) == 2 + 1 + 6
    for s in starts:
        values = x[s:s + 4, 0, 0, 0]
        assert len(set(values[values > 0].tolist())) == 1  # one volume per window
    assert x[8, 0, 0, 0] == 0 and y[8, 0, 0] == 0  # the 3-slice volume padded with air / background
    cx, cy = volume_chunks(vols, 4)
    assert cx.shape == (2 + 1 + 3, 4, 4, 4, 1) and cy.shape == (6, 4, 4, 4)


def test_volumes_are_whole_cases_in_order():
    sets = load_segsets(cfg3d().data, all_slices=True)
    vols = volumes_of(sets["train"])
    assert vols and all(len(v.masks) == 24 for v in vols)  # every slice of the 24-slice phantoms
    assert all(np.array_equal(v.slice_index, np.arange(24)) for v in vols)
    two_d = load_segsets(cfg3d().data)["train"]
    with pytest.raises(InputError, match="consecutive"):
        volumes_of(two_d.subset(np.arange(0, len(two_d), 2)))


def test_standard_augment_3d_identity_flips_and_labels():
    rng = np.random.default_rng(0)
    image = rng.random((6, 12, 12, 2)).astype(np.float32)
    mask = rng.integers(0, 3, (6, 12, 12)).astype(np.uint8)
    off = dict(rotation_deg=0, crop_fraction=1.0, elastic=False)
    out, labels = standard_augment_3d_np(image, mask, rng, flip=False, **off)
    np.testing.assert_allclose(out, image, atol=1e-6)
    assert np.array_equal(labels, mask)
    # flips only: the output is the input flipped along some axes, image and labels together
    out, labels = standard_augment_3d_np(image, mask, np.random.default_rng(3), **off)
    matches = [axes for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
               if np.allclose(out, np.flip(image, axes) if axes else image, atol=1e-6)]
    assert len(matches) == 1 and np.array_equal(labels, np.flip(mask, matches[0]) if matches[0] else mask)
    # everything on: labels stay a subset, values stay in the input's range, a pure function of the seed
    seed = tf.constant([7, 11], tf.int64)
    a = standard_augment_3d_tf(tf.constant(image), tf.constant(mask), seed)
    b = standard_augment_3d_tf(tf.constant(image), tf.constant(mask), seed)
    c = standard_augment_3d_tf(tf.constant(image), tf.constant(mask), tf.constant([7, 12], tf.int64))
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and not np.array_equal(a[0].numpy(), c[0].numpy())
    assert set(np.unique(a[1].numpy())) <= set(np.unique(mask))
    assert image.min() - 1e-6 <= a[0].numpy().min() and a[0].numpy().max() <= image.max() + 1e-6


def test_window_batches_are_consecutive_slices_and_resume_exactly():
    vols = [Volume(f"p{i}", (100 * i + np.arange(z, dtype=np.float32))[:, None, None, None] * np.ones((1, 4, 4, 1)),
                   np.zeros((z, 4, 4), np.uint8), np.ones(3), np.arange(z)) for i, z in enumerate((6, 9))]
    x, y, starts = window_stack(vols, 3)
    kwargs = dict(batch_size=2, steps_per_epoch=4, epochs=3, seed=5, window=3, starts=starts)
    batches = list(training_batches(x, y, **kwargs))
    assert len(batches) == 12 and batches[0][0].shape == (2, 3, 4, 4, 1) and batches[0][1].shape == (2, 3, 4, 4)
    for images, _ in batches:
        for w in images.numpy()[..., 0, 0, 0]:
            assert np.array_equal(np.diff(w), [1, 1]) and w[0] // 100 == w[-1] // 100
    resumed = list(training_batches(x, y, start_epoch=2, **kwargs))
    for (a, _), (b, _) in zip(batches[8:], resumed):
        assert np.array_equal(a.numpy(), b.numpy())


def test_sliding_window_prediction_averages_overlaps_exactly():
    inputs = keras.Input((None, 4, 4, 1))
    model = keras.Model(inputs, keras.layers.Concatenate()([inputs, 1.0 - inputs]))  # per-voxel, no context
    volume = np.random.default_rng(1).random((11, 4, 4, 1)).astype(np.float32)
    for depth in (4, 11, 16):
        probs = predict_volume(model, volume, depth)
        np.testing.assert_allclose(probs[..., 0], volume[..., 0], atol=1e-6)


def test_seg_loss_in_3d_is_the_2d_loss_over_stacked_slices():
    rng = np.random.default_rng(2)
    probs = tf.nn.softmax(rng.normal(size=(2, 3, 8, 8, 4)).astype(np.float32))
    labels = rng.integers(0, 4, (2, 3, 8, 8))
    for kind in ("dice", "dice_ce"):
        loss = SegLoss(4, "softmax", kind)
        flat = loss.call(labels.reshape(6, 8, 8), tf.reshape(probs, (6, 8, 8, 4)))
        vol = loss.call(labels, probs)
        assert vol.shape == (2,)
        # batch Dice pools every voxel of the batch either way; the CE term is a mean over voxels
        np.testing.assert_allclose(vol.numpy().mean(), flat.numpy().mean(), rtol=1e-5)


def test_train_evaluate_whole_volumes_and_resume(run3d, tmp_path):
    status = json.loads((run3d / "status.json").read_text())
    assert status["state"] == "complete" and status["dims"] == 3 and status["patch_depth"] == 8
    result = evaluate_seg(run3d)
    test = load_segsets(cfg3d().data, all_slices=True)["test"]
    assert result["dims"] == 3 and result["slices_scored"] == "whole volumes"
    assert result["n_slices"] == len(test) == 24 * result["n_cases"]
    other = evaluate_seg(run3d, test_data="phantom-abdomen-native")
    assert other["n_cases"] == 5 and (run3d / "evaluation-phantom-abdomen-native-volumes.json").exists()
    # the same command is a no-op on a complete run
    assert train_seg(cfg3d(), run3d, verbose=0).path == run3d


def test_2d_runs_can_be_scored_on_whole_volumes(tmp_path):
    # training (and default scoring) on at most 10 slices per case; whole volumes have all 24
    cfg = config.preset("cpu_unet_abdomen", data={**DATA, "max_slices_per_case": 10},
                        seg={"base_filters": 4, "depth": 2, "epochs": 1,
                                                             "steps_per_epoch": 2, "batch_size": 4})
    run = train_seg(cfg, tmp_path / "run2d", verbose=0).path
    selected, whole = evaluate_seg(run), evaluate_seg(run, whole_volumes=True)
    assert whole["n_slices"] == 24 * whole["n_cases"] and selected["n_slices"] == 10 * selected["n_cases"]
    assert (run / "evaluation-volumes.json").exists() and (run / "evaluation.json").exists()


def test_export_3d_segmenter_serves_any_number_of_slices(run3d, tmp_path):
    """`preprocessed`: volumes of 16 px slices in [0, 1]; serving_default: a real CT volume in HU
    as stored (TotalSegmentator, 101 x 122 slices), windowed and resized in the graph, answered
    on its grid; both against the Python path in this process."""
    from tfganaug.data.datasets import data_root
    from tfganaug.data.raw_input import request_to_unit, to_input_grid
    from tfganaug.data.readers import read_image, to_zyx
    from tfganaug.runs import RunFolder
    from tfganaug.stages.evaluate import load_segmenter
    folder = export_run(run3d, tmp_path / "sm")
    info = json.loads((folder / "assets.extra" / "tfganaug_export.json").read_text())
    assert info["inputs"]["image"]["shape"] == [None, None, None, None, 1] and info["units"] == "HU"
    assert info["other_signatures"]["preprocessed"]["inputs"]["image"]["shape"] == [None, None, 16, 16, 1]
    volume = np.random.default_rng(0).random((1, 7, 16, 16, 1)).astype(np.float32)
    hu = to_zyx(*read_image(data_root() / "totalseg-examples" / "example_ct.nii.gz"))[0][40:49, ..., None][None]
    np.savez(tmp_path / "x.npz", preprocessed=volume, serving_default=hu)
    code = ("import numpy as np, tensorflow as tf, sys\n"
            f"m = tf.saved_model.load({str(folder)!r})\n"
            "x = np.load(sys.argv[1])\n"
            "np.savez(sys.argv[2], **{s: m.signatures[s](image=tf.constant(x[s]))['probabilities'].numpy()\n"
            "                         for s in ('preprocessed', 'serving_default')})\n")
    subprocess.run([sys.executable, "-c", code, tmp_path / "x.npz", tmp_path / "p.npz"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    run, cfg = RunFolder.load(run3d)
    model = load_segmenter(run)
    got = np.load(tmp_path / "p.npz")
    assert got["preprocessed"].shape == (1, 7, 16, 16, 4)
    np.testing.assert_allclose(got["preprocessed"], np.asarray(model(volume), np.float32), atol=1e-5)
    want = to_input_grid(model(request_to_unit(hu, "HU", cfg.data, volumes=True)), 101, 122)
    assert got["serving_default"].shape == (1, 9, 101, 122, 4)
    np.testing.assert_allclose(got["serving_default"], want, atol=1e-5)


def test_config_and_cli_checks_for_3d(tmp_path, capsys):
    with pytest.raises(ConfigError, match="seg.unet one of"):
        config.validate(config.preset("cpu_unet_abdomen", seg={"unet": "sandfort_3d"}))
    with pytest.raises(ConfigError, match="setting"):
        config.validate(config.preset("cpu_unet3d_abdomen", seg={"setting": "100R"}))
    with pytest.raises(ConfigError, match="padding same"):
        config.validate(config.preset("cpu_unet3d_abdomen", seg={"padding": "valid"}))
    with pytest.raises(SystemExit) as info:
        main(["train-seg", "--unet", "sandfort3d", "--data", "phantom-abdomen", "--dry-run",
              "--out", str(tmp_path / "x")])
    assert info.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seg"]["unet"] == "sandfort3d" and printed["preset"] == "cpu_unet3d_abdomen"
    assert not (tmp_path / "x").exists()


def test_real_contrast_ct_becomes_whole_z_block_volumes(shared_data):
    """The shared IRCADb scan (one patient, DICOM in zip archives) in 3-D: split along z, every
    block a volume of consecutive slices, every slice of the scan in exactly one split."""
    cfg = config.preset("cpu_unet3d_abdomen", data={"name": "ircadb", "image_size": 32})
    sets = load_segsets(cfg.data, all_slices=True)
    vols = {split: volumes_of(s) for split, s in sets.items()}
    assert all(len(v) >= 1 for v in vols.values())
    for v in vols["train"] + vols["val"] + vols["test"]:
        assert "#z" in v.patient_id and len(v.masks) <= 16
        assert np.array_equal(v.slice_index, np.arange(v.slice_index[0], v.slice_index[0] + len(v.masks)))
    counted = sum(len(v.masks) for split in ("train", "val", "test") for v in vols[split])
    assert counted == 129  # 3D-IRCADb-01 patient 1: every slice, once
    assert {1, 2, 3} <= set(np.unique(np.concatenate([v.masks.ravel() for v in vols["train"]])).tolist())
    x, y, starts = window_stack(vols["train"], 16)
    assert len(starts) == len(vols["train"]) and x.shape[1:] == (32, 32, 1)


def test_tiny_unet3d_learns_bright_balls_through_the_window_chain():
    """Labels stay aligned with their voxels through windows, the 3-D augmentation and sliding-
    window prediction: a tiny 3-D U-Net learns bright balls on noise."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:12, :16, :16]
    vols = []
    for i in range(4):
        c = rng.uniform([4, 5, 5], [8, 11, 11])
        ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < rng.uniform(9, 16)
        image = (0.2 + 0.6 * ball + rng.normal(0, 0.05, ball.shape)).astype(np.float32)[..., None]
        vols.append(Volume(f"p{i}", image, ball.astype(np.uint8), np.ones(3), np.arange(12)))
    x, y, starts = window_stack(vols[:3], 8)
    keras.utils.set_random_seed(0)
    model = build_unet3d(2, 16, depth=2, base_filters=8)
    model.compile(keras.optimizers.Adam(3e-3), loss=SegLoss(2, "softmax", "dice_ce"))
    model.fit(training_batches(x, y, batch_size=2, steps_per_epoch=40, epochs=1, seed=0, window=8, starts=starts,
                               augment=lambda i, m, s: standard_augment_3d_tf(i, m, s, rotation_deg=10.0,
                                                                              sigma_px=0.5)), verbose=0)
    pred = predict_volume(model, vols[3].images, 8).argmax(-1)
    truth = vols[3].masks
    dice = 2 * np.logical_and(pred == 1, truth == 1).sum() / ((pred == 1).sum() + (truth == 1).sum())
    assert dice > 0.7, dice
