"""Exact resume: a run killed with SIGKILL and rerun ends bitwise equal to an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfganaug import config as C

CLI = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8

CONFIGS = {  # name: (command, run-folder member, config)
    # ACGAN: both optimizers, the noise generator, six Dropout seed states, the EMA generator
    # with its own batch-norm statistics and the augmentation state (DiffAugment + ADA: p, its
    # accumulators, its RNG) must come back; cpu_acgan's mode-seeking term is on.
    # ADA target 0.01 (paper 0.6): a tiny D in 24 steps rarely reaches r_t = 0.6, and p must move
    # for the resume to exercise it.
    "train-gan": ("train-gan", "acgan",
                  C.preset("cpu_acgan", data={"image_size": 16, "n_phantom_patients": 40},
                           gan={"width": 16, "latent_dim": 8, "epochs": EPOCHS, "steps_per_epoch": 3,
                                "batch_size": 8, "augment": "classic", "sample_every_epochs": 1,
                                "d_dropout": 0.5, "diffaug": "translation,cutout,intensity",
                                "ada_target": 0.01, "ada_interval": 2, "ada_speed_images": 64,
                                "g_ema_beta": 0.9})),
    # Pix2Pix with DiffAugment + ADA (p moving every step) + the EMA generator + resize
    # upsampling (config keys, through --config): the augmentation's random
    # generator, p and its accumulators, and the EMA weights must come back too.
    "train-gan-ada-ema": ("train-gan", "pix2pix",
                          C.preset("cpu_pix2pix", data={"image_size": 16, "n_phantom_patients": 4, "phantom_size": 32},
                                   gan={"width": 4, "epochs": EPOCHS, "steps_per_epoch": 3, "batch_size": 4,
                                        "sample_every_epochs": 1, "diffaug": "translation,cutout,intensity",
                                        "ada_target": 0.6, "ada_interval": 1, "ada_speed_images": 16,
                                        "g_ema_beta": 0.9, "upsample": "resize"})),
    # Segmentation U-Net on streamed slices (data.stream: read from disk per element) with the
    # standard augmentation: the chain restarted at the checkpoint's epoch reads the same slices.
    "train-seg-stream": ("train-seg", "seg",
                         C.preset("cpu_unet_abdomen", data={"image_size": 16, "phantom_size": 32,
                                                            "n_phantom_patients": 4, "stream": True},
                                  seg={"base_filters": 4, "depth": 2, "epochs": EPOCHS, "steps_per_epoch": 3,
                                       "batch_size": 4, "augment": "standard"})),
    # Lesion CNN: SGD momentum, Dropout seeds and classic augmentation must come back.
    "train-cls": ("train-cls", "cls",
                  C.preset("cpu_cnn", data={"image_size": 16, "n_phantom_patients": 40},
                           cls={"epochs": EPOCHS, "steps_per_epoch": 3, "batch_size": 8,
                                "filters": [4, 8, 8], "dense_units": 16})),
}


def _run(args, **kw):
    return subprocess.Popen(CLI + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _variables(run: Path, member: str) -> dict:
    latest = tf.train.latest_checkpoint(str(run / "checkpoints" / member))
    assert latest and latest.endswith(f"ckpt-{EPOCHS}"), latest
    reader = tf.train.load_checkpoint(latest)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "save_counter" not in name}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sigkill_and_rerun_gives_the_uninterrupted_result(tmp_path, name):
    command, member, cfg = CONFIGS[name]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(C.to_dict(cfg)))
    args = [command, "--config", str(config), "--quiet"]

    straight = _run(args + ["--out", str(tmp_path / "straight")])
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-2000:]

    crashed = tmp_path / "crashed"
    proc = _run(args + ["--out", str(crashed)])
    marker = crashed / "checkpoints" / member / "ckpt-3.index"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert (crashed / ".lock").exists()  # left behind by the killed process; must not block the rerun
    resumed = _run(args + ["--out", str(crashed)])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]

    a, b = _variables(tmp_path / "straight", member), _variables(crashed, member)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # bitwise: tolerance 0
    rows = [json.loads(line) for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))  # lines logged past the checkpoint were replaced
    if cfg.kind == "gan" and cfg.gan.ada_target is not None:
        # ADA's state and the EMA generator are in the checkpoint (and so compared above), p is logged
        assert any(k.startswith("diffaug_p/") for k in a) and any(k.startswith("generator_ema/") for k in a)
    if member == "acgan":  # the EMA G's own batch-norm statistics (recomputed each step) come back too
        assert any(k.startswith("generator_ema/") and "moving_mean" in k for k in a)
        assert all("ada_p" in row for row in rows)
        assert len({row["ada_p"] for row in rows}) > 1, "p should move in this run"
    assert json.loads((crashed / "status.json").read_text())["state"] == "complete"
    assert not (crashed / ".lock").exists()


def test_a_live_lock_refuses_a_second_run(tmp_path):
    from tfganaug.errors import RunFolderError
    from tfganaug.fsutil import FolderLock
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(str(sleeper.pid))
        with pytest.raises(RunFolderError, match=f"in use by process {sleeper.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(tmp_path):  # a dead owner's lock is taken over
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
