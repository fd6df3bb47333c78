"""Divergence guard: a NaN or Inf stops training with one line and keeps the last good
checkpoint; `--on-divergence rollback` restores it with half the learning rate.

Divergence is real in every test, never mocked. The command-line tests use learning rates so
absurd that the real GAN and CNN overflow within their first epoch at every rate tried (the
rate and its three halvings), with a wide margin: the CNN still overflows at 1e6, the GAN at
1e10. Where the exact schedule matters (recovery after k halvings, resume), the model is one
weight w fitted to w * 1 = 0 by plain SGD, whose divergence is known in closed form.
"""
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cli.main import main
from tfganaug import config as C
from tfganaug.errors import DivergenceError, RunFolderError
from tfganaug.fsutil import read_jsonl
from tfganaug.runs import RunFolder, _optimizers, fit_member


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def one_line(code, err) -> str:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def all_finite(checkpoint: str) -> bool:
    reader = tf.train.load_checkpoint(checkpoint)
    values = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    return all(np.all(np.isfinite(v)) for v in values if np.issubdtype(np.asarray(v).dtype, np.floating))


def write_config(path, cfg):
    path.write_text(json.dumps(C.to_dict(cfg)))
    return path


def test_gan_stops_then_rolls_back_until_max_rollbacks(capsys, tmp_path):
    """Adam at lr 1e12 moves every weight by ~1e12 in the first step: the ACGAN's losses are NaN
    at batch 1, and still are at 1.25e11 after three halvings (1e10 already overflows)."""
    cfg = C.preset("cpu_acgan", data={"image_size": 16, "n_phantom_patients": 40},
                   gan={"width": 16, "latent_dim": 8, "epochs": 3, "steps_per_epoch": 2, "batch_size": 8,
                        "lr": 1e12})
    out = tmp_path / "gan"
    args = ["train-gan", "--config", write_config(tmp_path / "c.json", cfg), "--out", out, "--quiet"]

    line = one_line(*run_cli(capsys, *args)[::2])
    assert line.startswith(f"error: {out}: training diverged in acgan at batch 1 of epoch 1"), line
    assert "no checkpoint was written yet" in line and "--on-divergence rollback" in line
    assert json.loads((out / "status.json").read_text())["state"] == "running"
    assert not (out / "final").exists()

    # The advice of the message: the same command with rollback resumes this very folder.
    line = one_line(*run_cli(capsys, *args, "--on-divergence", "rollback")[::2])
    assert "in acgan at batch 1 of epoch 1" in line and "gave up after 3 rollbacks (learning rate x 0.125)" in line
    assert json.loads((out / "config.json").read_text())["on_divergence"] == "rollback"
    rollbacks = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "rollback"]
    assert [(r["member"], r["epoch"], r["restored_epoch"], r["lr_scale"]) for r in rollbacks] == [
        ("acgan", 1, 0, 0.5), ("acgan", 1, 0, 0.25), ("acgan", 1, 0, 0.125)]
    latest = tf.train.latest_checkpoint(str(out / "checkpoints" / "acgan"))
    assert latest.endswith("ckpt-0") and all_finite(latest)  # the initial state, kept to roll back to
    assert json.loads((out / "status.json").read_text())["state"] == "running"


def test_cnn_divergence_through_the_cli_is_one_line(capsys, tmp_path):
    """SGD at lr 1e9: the lesion CNN's loss is NaN by batch 3."""
    cfg = C.preset("cpu_cnn", data={"image_size": 16, "n_phantom_patients": 40},
                   cls={"epochs": 2, "steps_per_epoch": 3, "batch_size": 8, "filters": [4, 8, 8],
                        "dense_units": 16, "lr": 1e9})
    out = tmp_path / "cls"
    code, _, err = run_cli(capsys, "train-cls", "--config", write_config(tmp_path / "c.json", cfg), "--out", out,
                           "--quiet")
    line = one_line(code, err)
    assert f"{out}: training diverged in cls at batch" in line and "of epoch 1 (non-finite {'loss': nan}" in line
    assert json.loads((out / "status.json").read_text())["state"] == "running"


# One weight w, data x = 1, y = 0, loss w^2 (MSE), plain SGD: w <- (1 - 2 lr) w. From w = 1,
# lr 3 multiplies |w| by 5 per step and w^2 overflows float32 (3.4e38) once |w| > 1.8e19:
# at step 29, in epoch 3 of 10-step epochs (checkpoint 2 holds w = 5^20 ~ 1e14). Halved to
# 1.5, |w| doubles per step: it overflows again 18 steps later, in epoch 4 (checkpoint 3:
# w ~ 1e17). Halved to 0.75, |w| halves per step and training completes. So: two rollbacks.
EPOCHS, STEPS, LR = 10, 10, 3.0


def quadratic(lr=LR):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    optimizer = keras.optimizers.SGD(lr)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    return model, {"model": model, "optimizer": optimizer}


def fit_quadratic(run, model, items, **kw):
    def batches(start):
        return tf.data.Dataset.from_tensors(([[1.0]], [[0.0]])).repeat()
    kw.setdefault("on_divergence", "rollback")
    return fit_member(run, "w", model, items, batches, epochs=EPOCHS, steps_per_epoch=STEPS, keep=EPOCHS + 1,
                      verbose=0, check_weights=lambda: [v.numpy() for v in model.weights], **kw)


def test_stop_keeps_the_last_good_checkpoint(tmp_path):
    run = RunFolder(tmp_path)
    model, items = quadratic()
    with pytest.raises(DivergenceError, match=r"diverged in w at batch 9 of epoch 3 \(non-finite \{'loss': inf"):
        fit_quadratic(run, model, items, on_divergence="stop")
    latest = tf.train.latest_checkpoint(str(run.checkpoint_dir("w")))
    assert latest.endswith("ckpt-2") and all_finite(latest)
    restored, items = quadratic()
    tf.train.Checkpoint(**items).read(latest).expect_partial()
    assert restored.weights[0].numpy().item() == pytest.approx(5.0 ** 20, rel=1e-5)


def test_rollback_halves_the_rate_until_training_recovers(tmp_path):
    run = RunFolder(tmp_path)
    model, items = quadratic()
    assert fit_quadratic(run, model, items) == EPOCHS
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["epoch"], r["restored_epoch"], r["lr_scale"]) for r in rows if "event" in r] == [(3, 2, 0.5),
                                                                                                (4, 3, 0.25)]
    assert [r["epoch"] for r in rows if "event" not in r] == list(range(1, EPOCHS + 1))
    assert float(items["optimizer"].learning_rate.numpy()) == LR / 4
    assert abs(model.weights[0].numpy().item()) < 1e-3  # converged towards w = 0
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run.checkpoint_dir("w"))))
    assert reader.get_tensor("lr_scale/.ATTRIBUTES/VARIABLE_VALUE") == 0.25


def test_the_lowered_rate_survives_a_crash_and_resume(tmp_path):
    straight_model, items = quadratic()
    fit_quadratic(RunFolder(tmp_path / "straight"), straight_model, items)

    calls = []

    def crash_after_epoch_6():  # sample grids are drawn after the checkpoint: epochs 1 and 6 here
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((1, 4, 4, 1), np.float32)

    run = RunFolder(tmp_path / "crashed")
    model, items = quadratic()
    with pytest.raises(KeyboardInterrupt):
        fit_quadratic(run, model, items, sample_fn=crash_after_epoch_6, sample_every=6)
    model, items = quadratic()  # a new process: rate 3 again until the checkpoint says otherwise
    assert fit_quadratic(run, model, items) == EPOCHS - 6
    assert float(items["optimizer"].learning_rate.numpy()) == LR / 4
    rows = read_jsonl(run.path / "metrics.jsonl")
    assert [r.get("event", r["epoch"]) for r in rows] == [1, 2, "rollback", 3, "rollback"] + list(range(4, 11))
    np.testing.assert_array_equal(model.weights[0].numpy(), straight_model.weights[0].numpy())  # bitwise


def test_a_checkpoint_from_before_lr_scale_still_resumes(tmp_path):
    run = RunFolder(tmp_path)
    model, items = quadratic(lr=0.1)
    epoch = tf.Variable(4, dtype=tf.int64, name="epoch")
    tf.train.CheckpointManager(tf.train.Checkpoint(epoch=epoch, **items), str(run.checkpoint_dir("w")),
                               max_to_keep=3).save(checkpoint_number=4)
    model, items = quadratic(lr=0.1)
    assert fit_quadratic(run, model, items) == EPOCHS - 4
    assert float(items["optimizer"].learning_rate.numpy()) == pytest.approx(0.1)


def test_only_the_divergence_policy_may_change_on_resume(tmp_path):
    cfg = C.preset("cpu_cnn")
    RunFolder.open(tmp_path, cfg)
    # A config.json written before the policy keys existed resumes as the default "stop".
    old = json.loads((tmp_path / "config.json").read_text())
    del old["on_divergence"], old["max_rollbacks"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    RunFolder.open(tmp_path, cfg)
    RunFolder.open(tmp_path, C.preset("cpu_cnn", on_divergence="rollback", max_rollbacks=5))
    stored = json.loads((tmp_path / "config.json").read_text())
    assert (stored["on_divergence"], stored["max_rollbacks"]) == ("rollback", 5)
    with pytest.raises(RunFolderError, match="different configuration"):
        RunFolder.open(tmp_path, C.preset("cpu_cnn", cls={"lr": 0.5}))


def test_config_refuses_an_unknown_policy():
    with pytest.raises(ValueError, match="on_divergence stop or rollback"):
        C.preset("cpu_cnn", on_divergence="retry")
    with pytest.raises(ValueError, match=re.escape("max_rollbacks an integer in [1, 1000000]")):
        C.preset("cpu_cnn", max_rollbacks=0)


def test_loss_scaled_optimizers_are_unwrapped():
    inner = keras.optimizers.Adam(1e-3)
    assert _optimizers({"g": keras.optimizers.LossScaleOptimizer(inner), "x": tf.Variable(1)}) == [inner]
