"""`tfganaug reproduce gan-training` at the smoke budget (phantoms, real TF graphs, tiny shapes):
the five GANs with the paper's and the small-data training, their checks, and a report whose
rows come from the run folders."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from test_cli import ROOT, assert_one_line_error, run_cli

ARCHS = ("dcgan", "acgan", "pix2pix", "cyclegan", "stylegan2")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan-training")
    proc = subprocess.run([sys.executable, "-m", "cli.main", "reproduce", "gan-training", "--budget", "smoke",
                           "--seeds", "0", "--out", str(out), "--reports", str(out / "reports"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _row(text: str, arch: str, training: str) -> list[str]:
    line = next(l for l in text.splitlines() if l.startswith(f"| {arch.upper()} | {training} | "))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_every_gan_runs_both_trainings_and_the_report_reads_the_runs(studies, tmp_path, capsys):
    study = studies / "gan-training"
    seed = study / "seed-0"
    for arch in ARCHS:
        for training in ("paper", "small-data"):
            assert json.loads((seed / f"gan-{arch}-{training}" / "status.json").read_text())["state"] == "complete"
            assert (seed / f"synth-{arch}-{training}" / "fidelity.json").exists()
        paper, small = (json.loads((seed / f"gan-{arch}-{t}" / "config.json").read_text())["gan"]
                        for t in ("paper", "small-data"))
        assert paper["epochs"] * paper["steps_per_epoch"] == small["epochs"] * small["steps_per_epoch"]
    for arch in ("dcgan", "pix2pix"):  # pix2pix: the options added on top of cpu_pix2pix
        paper, small = (json.loads((seed / f"gan-{arch}-{t}" / "config.json").read_text())["gan"]
                        for t in ("paper", "small-data"))
        assert (paper["diffaug"], paper["g_ema_beta"], paper["upsample"]) == ("none", 0.0, "transpose")
        assert (small["diffaug"], small["g_ema_beta"], small["upsample"]) == ("translation,cutout", 0.99, "resize")

    text = (studies / "reports" / "gan-training" / "report.md").read_text()
    fidelity = json.loads((seed / "class-fidelity.json").read_text())
    for arch in ARCHS:
        for training in ("paper", "small-data"):
            row = _row(text, arch, training)
            assert row[-1] == "[0]", row  # the seeds the row averages
            if arch in ("dcgan", "acgan"):
                assert row[2].startswith(f"{fidelity[f'{arch}-{training}']['ratio']:.2f}"), row
    for arch in ARCHS:  # phantom data is the package's own: grids are committed with the report
        with Image.open(studies / "reports" / "gan-training" / f"grid_{arch}.png") as picture:
            assert picture.format == "PNG" and picture.size[1] > 3 * 16

    # A check removed from a run folder leaves its row, and only that row, without numbers.
    copy = tmp_path / "gan-training"
    shutil.copytree(study, copy)
    for p in (copy / "seed-0" / "synth-stylegan2-small-data").glob("evaluation-*.json"):
        p.unlink()
    code, _, err = run_cli(capsys, "report-gan-training", copy, "--out", tmp_path / "report")
    assert code == 0, err
    again = (tmp_path / "report" / "report.md").read_text()
    assert _row(again, "stylegan2", "small-data")[2] == "not run"
    assert _row(again, "stylegan2", "paper") == _row(text, "stylegan2", "paper")
    assert re.search(r"- STYLEGAN2: ", again) is None and re.search(r"- STYLEGAN2: ", text)

    # Another study's folder is refused in one line, nothing written.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "study.json").write_text(json.dumps({"study": "son"}))
    code, _, err = run_cli(capsys, "report-gan-training", tmp_path / "other", "--out", tmp_path / "wrong")
    assert_one_line_error(code, err, "expected a gan-training study folder")
    assert not (tmp_path / "wrong").exists()
