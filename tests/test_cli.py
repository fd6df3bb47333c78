"""The command line: help everywhere, the whole study end to end, and bad input met with one
line on stderr, exit code 2, no traceback and nothing written."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import app, main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err  # Click's usage errors too (cli/params.py)
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("command", sorted(app.commands))
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "Example" in out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The whole Frid-Adar study at the smoke budget, through the CLI (two seeds)."""
    out = tmp_path_factory.mktemp("study") / "frid-adar"  # where `reproduce frid-adar --out <parent>` looks
    proc = subprocess.run([sys.executable, "-m", "cli.main", "study", "--budget", "smoke", "--out", str(out),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_study_writes_every_stage_and_a_report(study):
    for seed in (0, 1):
        folder = study / f"seed-{seed}"
        for stage in ("gan-dcgan", "gan-acgan", "cls-none", "cls-classic", "cls-classic+dcgan", "cls-classic+acgan",
                      "cls-dcgan-only", "cls-acgan-only"):
            assert json.loads((folder / stage / "status.json").read_text())["state"] == "complete", stage
        for arch in ("dcgan", "acgan"):
            manifest = json.loads((folder / f"synth-{arch}" / "manifest.json").read_text())
            assert manifest["count"] == 30 and sum(manifest["class_counts"]) == 30
            assert json.loads((folder / f"synth-{arch}" / "fidelity.json").read_text())["n_synthetic"] == 30
        # TSTR: the CNN saw synthetic ROIs only
        assert json.loads((folder / "cls-dcgan-only" / "config.json").read_text())["cls"]["synthetic_ratio"] == 1.0
        evaluation = json.loads((folder / "cls-classic+acgan" / "evaluation.json").read_text())
        assert evaluation["n"] > 50 and 0.0 <= evaluation["accuracy"] <= 1.0
        assert np.sum(evaluation["confusion_matrix"]) == evaluation["n"]
        assert (folder / "gan-dcgan" / "samples" / "cyst" / "epoch_0001.png").exists()
        assert (folder / "gan-dcgan" / "final" / "cyst.keras").exists()
    report = (study / "report" / "report.md").read_text()
    assert "| classic | 78.6 | 88.4 |" in report and "| classic+dcgan | 85.7 | 92.4 |" in report
    assert "Budget **smoke**" in report and "Seeds: [0, 1]" in report
    assert "| dcgan-only: synthetic only (TSTR) |" in report and "### DCGAN" in report and "| radiomics (v" in report
    assert "## Where the test patients come from" in report and "in-distribution" in report
    summary = json.loads((study / "report" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["paper_figure"].startswith("macro sensitivity 78.6%")
    for figure in ("samples_dcgan.png", "samples_acgan.png", "samples_real.png", "training_curves.png"):
        with Image.open(study / "report" / figure) as picture:
            assert picture.format == "PNG" and min(picture.size) > 30


@pytest.mark.slow
def test_class_fidelity_and_the_paper_gan_training(study, tmp_path, capsys):
    fidelity = json.loads((study / "seed-0" / "class-fidelity.json").read_text())
    for arch in ("dcgan", "acgan"):
        f = fidelity[arch]
        assert f["n_synthetic"] == 30 and 0.0 <= f["synthetic_accuracy"] <= 1.0 and f["n_real"] > 50
        # >= 0, not > 0: after the smoke budget's 4 steps the EMA G's batch-norm statistics (moving
        # variance starting at 1) still shrink z's effect, and its 16 px samples at width 16 round to
        # near-identical PNGs; the metric itself is tested in test_metrics_fidelity (by hand)
        assert len(f["diversity"]["per_class"]) == 3 and all(np.isfinite(v) and v >= 0
                                                             for v in f["diversity"]["per_class"])
    assert json.loads((study / "seed-0" / "cls-reference" / "status.json").read_text())["n_train_real"] > \
        json.loads((study / "seed-0" / "cls-classic" / "status.json").read_text())["n_train_real"]
    report = (study / "report" / "report.md").read_text()
    assert "## Conditional agreement: do the synthetic ROIs look like their class?" in report and "| DCGAN | " in report
    assert "| DiffAugment policies on D's input | none | translation,cutout | translation,cutout |" in report
    assert "| ACGAN D's class loss on fakes | - / True | - | False |" in report and "diversity per class" in report

    paper = tmp_path / "paper"
    code, _, err = run_cli(capsys, "study", "--budget", "smoke", "--gan-training", "paper", "--out", paper, "--quiet")
    assert code == 0, err
    cfg = json.loads((paper / "seed-0" / "gan-acgan" / "config.json").read_text())["gan"]
    assert (cfg["diffaug"], cfg["g_ema_beta"], cfg["upsample"], cfg["d_dropout"], cfg["conditioning"],
            cfg["d_classifies_fakes"], cfg["mode_seeking"]) == ("none", 0.0, "transpose", 0.5, "multiply", True, 0.0)


@pytest.mark.slow
def test_stages_run_alone_from_the_study_folders(study, tmp_path, capsys):
    code, out, err = run_cli(capsys, "evaluate", study / "seed-0" / "cls-classic")
    assert code == 0 and "macro_sensitivity" in out and "confusion matrix" in out, err
    # Over a folder of seed runs: mean and 95% CI.
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for s in (0, 1):
        (seeds / f"seed-{s}").symlink_to(study / f"seed-{s}" / "cls-classic")
    code, out, err = run_cli(capsys, "evaluate", seeds)
    assert code == 0 and "runs: 2" in out and "[" in out, err

    synth = tmp_path / "synth"
    code, _, err = run_cli(capsys, "synthesize", study / "seed-0" / "gan-acgan", "--n", 7, "--out", synth)
    assert code == 0, err
    assert len(list((synth / "png").rglob("*.png"))) == 7
    # Same seed, same images: synthesis is reproducible from the run folder.
    again = tmp_path / "again"
    run_cli(capsys, "synthesize", study / "seed-0" / "gan-acgan", "--n", 7, "--out", again, "--no-png")
    with np.load(synth / "images.npz") as a, np.load(again / "images.npz") as b:
        np.testing.assert_array_equal(a["images"], b["images"])
    code, _, err = run_cli(capsys, "synthesize", study / "seed-0" / "gan-acgan", "--n", 7, "--out", synth)
    assert_one_line_error(code, err, str(synth), "already exists")

    # A rerun of a finished study trains nothing and leaves every result as it was.
    before = (study / "seed-1" / "cls-classic" / "evaluation.json").read_text()
    code, _, err = run_cli(capsys, "study", "--budget", "smoke", "--out", study, "--quiet")
    assert code == 0, err
    assert (study / "seed-1" / "cls-classic" / "evaluation.json").read_text() == before


@pytest.mark.slow
def test_reproduce_resumes_a_finished_study_and_writes_its_report_and_the_summary(study, tmp_path, capsys):
    """`reproduce frid-adar --budget smoke` is the README's study under the name of its protocol:
    given the finished smoke study as its folder, it trains nothing and writes the report and
    the summary table (tests/test_reproduce.py checks the rest of both)."""
    before = {p: p.stat().st_mtime_ns for p in study.glob("seed-*/*/status.json")}
    code, out, err = run_cli(capsys, "reproduce", "frid-adar", "--budget", "smoke", "--out", study.parent,
                             "--reports", tmp_path / "reports", "--quiet")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert "## " in (tmp_path / "reports" / "frid-adar" / "report.md").read_text()
    assert "frid-adar" in (tmp_path / "reports" / "README.md").read_text()
    assert f"summary: {tmp_path / 'reports' / 'README.md'}" in out


def test_bad_synthetic_sets_are_refused_before_training(study, tmp_path, capsys):
    synth = study / "seed-0" / "synth-acgan"
    out = tmp_path / "cls"
    base = ["train-cls", "--image-size", 16, "--out", out, "--quiet"]
    code, _, err = run_cli(capsys, *base, "--synthetic", tmp_path / "nowhere")
    assert_one_line_error(code, err, "nowhere", "expected a synthetic set")
    code, _, err = run_cli(capsys, *base[:-3], "--image-size", 32, "--out", out, "--synthetic", synth)
    assert_one_line_error(code, err, "expected synthetic image size as 32 px")
    code, _, err = run_cli(capsys, *base, "--classes", "cyst,metastasis", "--synthetic", synth)
    assert_one_line_error(code, err, "expected synthetic classes as the training classes ['cyst', 'metastasis']")
    assert not out.exists()


def test_bad_inputs_get_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    cases = [
        (["train-gan", "--data", tmp_path / "missing.npz", "--out", out], ["missing.npz", "no such file"]),
        (["train-gan", "--classes", "cyst,lipoma", "--out", out], ["expected class names as some of cyst", "lipoma"]),
        (["train-gan", "--image-size", 48, "--out", out], ["power of two", "48"]),
        (["synthesize", tmp_path / "norun", "--n", 4, "--out", tmp_path / "s"], ["norun", "expected a run folder"]),
        (["evaluate", tmp_path], ["expected a run folder or a folder of run folders"]),
        (["export", tmp_path / "norun", "--out", tmp_path / "m"], ["norun"]),
        (["report", tmp_path, "--out", tmp_path / "r"], ["expected a study folder"]),
        (["train-cls", "--seeds", "a,b", "--out", out], ["comma-separated integers"]),
        (["train-gan", "--arch", "stylegan9", "--out", out], ["stylegan9"]),
        # values out of range (issue 16): one line with the range, before anything is built
        (["train-gan", "--seed", -1, "--out", out], ["--seed: expected an integer in [0, 4294967295]", "-1"]),
        (["train-gan", "--seed", 2**32, "--out", out], ["--seed: expected an integer in [0, 4294967295]"]),
        (["train-cls", "--seeds", "0,-3", "--out", out], ["--seeds: expected distinct comma-separated integers in",
                                                          "0,-3"]),
        (["train-seg", "--seeds", "1,1", "--out", out], ["--seeds: expected distinct comma-separated integers"]),
        (["train-gan", "--image-size", 65536, "--out", out], ["--image-size: expected an integer in [8, 1024]", "65536"]),
        (["train-gan", "--arch", "stylegan9", "--out", out], ["--arch: expected one of dcgan, acgan"]),
        (["train-gan", "--bogus", "--out", out], ["No such option", "--bogus", "tfganaug train-gan --help"]),
        (["train-cls", "--classes", "cyst,CYST", "--out", out], ["without repeats", "CYST"]),
    ]
    for args, fragments in cases:
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, *fragments)
    assert not out.exists() and not (tmp_path / "s").exists() and not (tmp_path / "m").exists()


def test_no_command_prints_the_help_and_an_unknown_one_is_one_line(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2 and err.startswith("Usage: tfganaug") and "train-gan" in err
    code, _, err = run_cli(capsys, "trian-gan")
    assert_one_line_error(code, err, "No such command 'trian-gan'", "tfganaug --help")


def test_synthesize_refuses_a_set_too_large_to_hold_and_class_names_match_any_case(capsys, tmp_path):
    import shutil
    run = tmp_path / "gan"
    shutil.copytree(ROOT / "tests" / "fixtures" / "runs-v0.1" / "gan-acgan", run)
    code, _, err = run_cli(capsys, "synthesize", run, "--n", 10**9, "--out", tmp_path / "s")
    assert_one_line_error(code, err, "--n", "at most", "samples of 16 px", "1000000000")
    assert not (tmp_path / "s").exists()
    code, out, err = run_cli(capsys, "train-cls", "--classes", "CYST,Metastasis", "--dry-run", "--out", tmp_path / "c")
    assert code == 0, err
    from tfganaug.config import from_dict
    from tfganaug.data.datasets import load_rois
    cfg = from_dict(json.loads(out))
    assert load_rois(cfg.data)["train"].class_names == ("cyst", "metastasis")  # the data's own spelling


def test_config_file_errors(capsys, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"kind": "gan", "gan": {"lerning_rate": 1}}))
    code, _, err = run_cli(capsys, "train-gan", "--config", config, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "unknown key 'lerning_rate'", "c.json")
    config.write_text("[1, 2")
    code, _, err = run_cli(capsys, "train-gan", "--config", config, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "expected a JSON configuration")
    config.write_text(json.dumps({"kind": "gan", "gan": {"lr": "fast", "epochs": True}}))
    code, _, err = run_cli(capsys, "train-gan", "--config", config, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "c.json: gan.lr: expected a number, got 'fast'")
    config.write_text(json.dumps({"kind": "gan", "gan": {"epochs": True}}))
    code, _, err = run_cli(capsys, "train-gan", "--config", config, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "gan.epochs: expected an integer, got True")
    assert not (tmp_path / "r").exists()


def test_an_existing_folder_is_not_taken_over(capsys, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "train-gan", "--image-size", 16, "--out", tmp_path)
    assert_one_line_error(code, err, "not a tfganaug run folder")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_the_installed_console_script_prints_one_line(tmp_path):
    script = Path(sys.executable).parent / "tfganaug"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    proc = subprocess.run(command + ["synthesize", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in proc.stderr
