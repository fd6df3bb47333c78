"""Run folders written by tfganaug 0.1 before the orchestration redesign still work: a finished
GAN run synthesises the same images, an interrupted one resumes to the end, finished task runs
evaluate to the same numbers and export. The folders are in tests/fixtures/runs-v0.1, written by
tests/fixtures/make_run_folders.py through the command line."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli.main import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs-v0.1"


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    """A private copy of the fixtures (commands write into run folders), as the working folder:
    the recorded paths are relative to it."""
    copy = tmp_path / "runs"
    shutil.copytree(FIXTURES, copy)
    monkeypatch.chdir(copy)
    return copy


def cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    return out


def _numbers(d, digits=6):
    """An evaluation.json with its floats rounded, whatever its nesting."""
    if isinstance(d, dict):
        return {k: _numbers(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_numbers(v) for v in d]
    return round(d, digits) if isinstance(d, float) else d


def test_a_finished_gan_run_synthesises_the_same_images(runs, capsys):
    cli(capsys, "synthesize", "gan-acgan", "--n", 12, "--out", "again", "--no-png")
    with np.load(runs / "again" / "images.npz") as new, np.load(FIXTURES / "synth-acgan" / "images.npz") as old:
        np.testing.assert_allclose(new["images"], old["images"], atol=1e-6)
        np.testing.assert_array_equal(new["labels"], old["labels"])
    manifest = json.loads((runs / "again" / "manifest.json").read_text())
    assert manifest["checkpoints"] == {"acgan": "gan-acgan/checkpoints/acgan/ckpt-2"}


def test_an_interrupted_gan_run_resumes_to_its_last_epoch(runs, capsys):
    before = [json.loads(line) for line in (runs / "gan-acgan-killed" / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((runs / "gan-acgan-killed" / "status.json").read_text())["state"] == "running"
    cli(capsys, "train-gan", "--config", "gan-acgan-killed/config.json", "--out", "gan-acgan-killed", "--quiet")
    status = json.loads((runs / "gan-acgan-killed" / "status.json").read_text())
    assert status["state"] == "complete" and status["members"] == {"acgan": 40}
    rows = [json.loads(line) for line in (runs / "gan-acgan-killed" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in rows if "epoch" in r and r.get("member") == "acgan" and "event" not in r]
    assert epochs == list(range(1, 41)), epochs  # no epoch trained twice, none missing
    assert rows[:len(before)] == before  # the rows written before the crash are kept as they were
    assert (runs / "gan-acgan-killed" / "final" / "acgan.keras").exists()


@pytest.mark.parametrize("run", ["cls", "seg"])
def test_finished_task_runs_evaluate_to_the_same_numbers(runs, capsys, run):
    old = json.loads((FIXTURES / run / "evaluation.json").read_text())
    (runs / run / "evaluation.json").unlink()
    cli(capsys, "evaluate", run)
    new = json.loads((runs / run / "evaluation.json").read_text())
    assert new.keys() == old.keys()
    assert json.dumps(_numbers(new), sort_keys=True) == json.dumps(_numbers(old), sort_keys=True)  # NaN too


def test_image_gan_and_export_of_old_runs(runs, capsys):
    cli(capsys, "synthesize", "gan-pix2pix", "--out", "synth-p2p", "--no-png")
    with np.load(runs / "synth-p2p" / "images.npz") as z:
        assert z["images"].shape[1:3] == (16, 16) and z["masks"].shape[0] == z["images"].shape[0] > 0
    cli(capsys, "export", "gan-acgan", "--out", "served")
    assert (runs / "served" / "1" / "saved_model.pb").exists()
