"""Damaged run folders (issue 16): a resuming run whose newest checkpoint cannot be read goes on
from the one before it and says so in metrics.jsonl; every other command meets a damaged
status.json, final model or checkpoint with one line naming the file, exit code 2.

The training side uses one weight w fitted to w * 1 = 0 by plain SGD at lr 0.1, so that
w = 0.8 ** steps is known in closed form after any resume."""
import json
import shutil
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from cli.main import main
from tfganaug.errors import RunFolderError
from tfganaug.fsutil import read_jsonl
from tfganaug.runs import RunFolder, fit_member

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs-v0.1"
STEPS = 10


def fit(run, epochs):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    optimizer = keras.optimizers.SGD(0.1)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)

    def batches(start):
        return tf.data.Dataset.from_tensors(([[1.0]], [[0.0]])).repeat()
    fit_member(run, "w", model, {"model": model, "optimizer": optimizer}, batches, epochs=epochs,
               steps_per_epoch=STEPS, keep=3, verbose=0)
    return float(model.weights[0].numpy().item())


def damage(checkpoint_prefix: str) -> None:
    data = next(Path(checkpoint_prefix).parent.glob(Path(checkpoint_prefix).name + ".data-*"))
    data.write_bytes(data.read_bytes()[:7])  # truncated, as a full disk or a killed copy leaves it


def test_resume_passes_over_a_damaged_newest_checkpoint(tmp_path, capsys):
    run = RunFolder(tmp_path)
    assert fit(run, 3) == pytest.approx(0.8 ** 30, rel=1e-4)
    damage(str(run.checkpoint_dir("w") / "ckpt-3"))
    assert fit(run, 5) == pytest.approx(0.8 ** 50, rel=1e-4)  # epochs 3-5 redone from checkpoint 2
    assert "ckpt-3 could not be read" in capsys.readouterr().err
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows if "epoch" in r] == [1, 2, 3, 4, 5]  # the lost epoch 3 logged once
    event, = [r for r in rows if r.get("event") == "checkpoint_unreadable"]
    assert event["restored"].endswith("ckpt-2") and event["restored_epoch"] == 2
    assert [Path(p).name for p in event["skipped"]] == ["ckpt-3"]


def test_no_readable_checkpoint_is_one_line(tmp_path):
    run = RunFolder(tmp_path)
    fit(run, 2)
    for n in (1, 2):
        damage(str(run.checkpoint_dir("w") / f"ckpt-{n}"))
    with pytest.raises(RunFolderError, match=r"ckpt-2: expected a checkpoint of this run's models, got one that "
                                             r"does not match or is damaged .* no older kept checkpoint"):
        fit(run, 4)


def cli_error(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    copy = tmp_path / "runs"
    shutil.copytree(FIXTURES, copy)
    monkeypatch.chdir(copy)
    return copy


def test_damaged_files_of_finished_runs_are_named(runs, capsys):
    status = runs / "gan-acgan" / "status.json"
    text = status.read_text()
    status.write_text(text[:len(text) // 2])
    line = cli_error(capsys, "synthesize", "gan-acgan", "--n", 4, "--out", "s1")
    assert "gan-acgan/status.json: expected the run's status as a JSON object, got a damaged file" in line
    status.write_text(text)

    damage(str(runs / "gan-acgan" / "checkpoints" / "acgan" / "ckpt-2"))
    line = cli_error(capsys, "synthesize", "gan-acgan", "--n", 4, "--out", "s2")
    assert "ckpt-2: expected a checkpoint of this GAN run, got a damaged or foreign one" in line
    line = cli_error(capsys, "export", "gan-acgan", "--out", "m")
    assert "ckpt-2" in line

    final = runs / "cls" / "final" / "cls.keras"
    final.write_bytes(final.read_bytes()[:1000])
    line = cli_error(capsys, "evaluate", "cls")
    assert "cls.keras: expected the classifier run's Keras model, got a damaged file" in line
    assert "train-cls command with --overwrite" in line
    assert not any((runs / name).exists() for name in ("s1", "s2", "m"))
    assert json.loads(status.read_text())["state"] == "complete"  # nothing was rewritten
