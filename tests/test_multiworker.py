"""`--distribute multiworker`: real MultiWorkerMirroredStrategy clusters of two worker processes
on localhost (TF_CONFIG as TensorFlow defines it), running the real training commands.

Checked: both workers finish; only the chief (worker 0) writes the run folder, and the other
worker leaves nothing behind; the result equals a single-process run with the same global batch
(classifier, SGD, no dropout: to 1e-5, float reduction order only); a run whose worker was
killed resumes from the chief's last checkpoint when both are started again; a GAN and a U-Net
train the same way. The two Keras gaps this needs (runs._multiworker_shims) are pinned here:
without them every command below fails inside `fit`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(tmp_path: Path, index: int | None, ports=None) -> dict:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    if index is not None:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                       "task": {"type": "worker", "index": index}})
    return env


def start_workers(tmp_path: Path, args: list[str]) -> list[subprocess.Popen]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    ports = _free_ports(2)
    return [subprocess.Popen([sys.executable, "-m", "cli.main", *args, "--distribute", "multiworker"], cwd=ROOT,
                             env=_env(tmp_path, i, ports), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def finish(procs, timeout: float = 600) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def run_workers(tmp_path: Path, args: list[str]) -> list[tuple[int, str, str]]:
    results = finish(start_workers(tmp_path, args))
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return results


def single_process(tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=_env(tmp_path, None),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def final_weights(path: Path) -> list[np.ndarray]:
    import keras
    import tfganaug.schedules  # noqa: F401  (registers the custom objects the saved models name)
    import tfganaug.tasks.classifier  # noqa: F401
    import tfganaug.tasks.segmenter  # noqa: F401
    return keras.saving.load_model(path, safe_mode=True).get_weights()


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def assert_only_chief_wrote(tmp_path: Path, run: Path, results) -> None:
    assert json.loads((run / "status.json").read_text())["state"] == "complete"
    assert json.loads((run / "status.json").read_text())["replicas"] == 2
    assert not list((tmp_path / "tmp").glob("tfganaug-worker-*")), "the non-chief worker left its copy"
    # Both report the chief's folder as the run they trained.
    assert all(str(run) in stdout for _, stdout, _ in results)


def classifier_args(tmp_path: Path, out: Path, epochs: int) -> list[str]:
    cfg = {"kind": "cls", "data": {"name": "phantom", "image_size": 16, "train_per_class": 8},
           "cls": {"filters": [4, 8], "dense_units": 16, "dropout": 0.0, "lr": 0.05, "momentum": 0.9,
                   "epochs": epochs, "batch_size": 8, "steps_per_epoch": 3, "augment": "classic"}}
    path = tmp_path / f"cls-{epochs}.json"
    path.write_text(json.dumps(cfg))
    return ["train-cls", "--config", str(path), "--quiet", "--out", str(out)]


def test_classifier_matches_one_process_and_a_killed_worker_resumes(tmp_path):
    epochs = 4
    single_process(tmp_path, classifier_args(tmp_path, tmp_path / "single", epochs))
    reference = final_weights(tmp_path / "single" / "final" / "cls.keras")

    run = tmp_path / "multi"
    procs = start_workers(tmp_path, classifier_args(tmp_path, run, epochs))
    checkpoint_index = run / "checkpoints" / "cls" / "checkpoint"
    deadline = time.time() + 600
    while not checkpoint_index.exists() and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    assert checkpoint_index.exists(), "no checkpoint before the kill: " + procs[0].stderr.read()[-2000:]
    procs[1].send_signal(signal.SIGKILL)  # a worker dies mid-run ...
    procs[0].send_signal(signal.SIGKILL)  # ... and the job is restarted, as a cluster manager would
    finish(procs)
    before = {r["epoch"]: r for r in metric_rows(run) if r.get("member") == "cls"}
    assert before and max(before) < epochs, "the run was not interrupted"

    results = run_workers(tmp_path, classifier_args(tmp_path, run, epochs))
    assert_only_chief_wrote(tmp_path, run, results)
    after = {r["epoch"]: r for r in metric_rows(run) if r.get("member") == "cls"}
    assert sorted(after) == list(range(1, epochs + 1))
    saved = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', checkpoint_index.read_text()).group(1))
    kept = [e for e in before if e <= saved]
    assert kept and all(after[e] == before[e] for e in kept), "epochs before the checkpoint were trained again"

    weights = final_weights(run / "final" / "cls.keras")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(weights, reference))
    assert diff < 1e-5, f"two workers differ from one process by {diff}"


def test_gan_trains_on_two_workers(tmp_path):
    run = tmp_path / "gan"
    results = run_workers(tmp_path, ["train-gan", "--arch", "acgan", "--image-size", "16", "--width", "16",
                                     "--epochs", "2", "--batch-size", "8", "--quiet", "--out", str(run)])
    assert_only_chief_wrote(tmp_path, run, results)
    rows = [r for r in metric_rows(run) if "d_loss" in r]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["d_loss"]) for r in rows)
    assert (run / "final").is_dir() and list((run / "checkpoints").iterdir())


def test_unet_trains_on_two_workers_like_one_process(tmp_path):
    args = ["train-seg", "--image-size", "16", "--epochs", "2", "--batch-size", "8", "--quiet"]
    single_process(tmp_path, args + ["--out", str(tmp_path / "single")])
    run = tmp_path / "seg"
    results = run_workers(tmp_path, args + ["--out", str(run)])
    assert_only_chief_wrote(tmp_path, run, results)
    # The batch Dice is summed over each replica's share of the batch (tasks/segmenter.SegLoss), and
    # Adam turns float-order differences of near-zero gradients into full steps, so the losses, not
    # the weights, are compared: measured 0.1 % apart.
    one = [r["loss"] for r in metric_rows(tmp_path / "single") if "loss" in r]
    two = [r["loss"] for r in metric_rows(run) if "loss" in r]
    assert len(one) == len(two) == 2
    np.testing.assert_allclose(two, one, rtol=0.02)


@pytest.mark.parametrize("tf_config", ["", "{not json", '{"cluster": {"worker": []}, "task": {"type": "worker", '
                                                         '"index": 0}}',
                                       '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}'])
def test_a_wrong_tf_config_is_one_line(tmp_path, tf_config):
    env = {**os.environ, "TF_CONFIG": tf_config, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "cli.main", "train-cls", "--image-size", "16", "--epochs", "1",
                           "--distribute", "multiworker", "--out", str(tmp_path / "run")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "TF_CONFIG" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
