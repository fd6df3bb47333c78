"""Benchmarks run and report (tiny settings). Speed itself is read from reports/bench, never asserted here."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tfganaug.bench import (bench_classifier, bench_gan, bench_gan_pairs, bench_input_pipeline, bench_segmenter,
                            format_pair_table, format_table, write_bench_report)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(image_size=16, batch_size=8, steps=2, warmup=1)
NUMERIC = ("seconds", "steps_per_s", "images_per_s", "peak_rss_mb", "steps", "batch_size", "image_size")


@pytest.fixture(scope="module")
def rows():
    return [bench_gan("dcgan", width=16, **TINY), bench_gan("acgan", width=16, **TINY),
            bench_gan("acgan", width=16, precision="mixed_bfloat16", **TINY),
            bench_classifier(**TINY), bench_input_pipeline(**TINY)]


@pytest.fixture(scope="module")
def pair_rows():
    return bench_gan_pairs("cpu_dcgan", 16, 16, 8, steps=2, rounds=2, warmup=1)


def _positive_finite(row, fields):
    for field in fields:
        assert field in row, (row["model"], field)
        assert isinstance(row[field], (int, float)) and math.isfinite(row[field]) and row[field] > 0, (field, row)


def test_gan_rows_have_positive_finite_speed_memory_and_parameter_counts(rows):
    for row in rows[:3]:
        _positive_finite(row, NUMERIC + ("g_params", "d_params", "width"))
        assert row["images_per_s"] == pytest.approx(row["steps_per_s"] * row["batch_size"])
        assert row["tensorflow"] and row["keras"] and row["precision"] in ("float32", "mixed_bfloat16")
    assert [r["model"] for r in rows[:3]] == ["dcgan", "acgan", "acgan"]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the bf16 row


def test_classifier_and_input_rows(rows):
    _positive_finite(rows[3], NUMERIC + ("params",))
    _positive_finite(rows[4], NUMERIC)
    for row in rows:
        assert math.isfinite(row["load_before"]) and math.isfinite(row["load_after"])


def test_table_and_report_name_every_model(rows, tmp_path):
    table = format_table(rows)
    assert len(table.splitlines()) == 2 + len(rows)
    for name in ("dcgan", "acgan", "lesion_cnn", "input", "mixed_bfloat16"):
        assert name in table
    text = write_bench_report(rows, tmp_path / "bench", command="tfganaug bench --x").read_text()
    assert table in text and "`tfganaug bench --x`" in text and "load average" in text
    assert "TF_ENABLE_ONEDNN_OPTS" in text


def test_a_rerun_of_some_kinds_replaces_those_rows_only(rows, tmp_path):
    """`bench --only KIND`: the report keeps the other rows and names both commands."""
    from tfganaug.bench import merge_rows
    out = tmp_path / "bench"
    write_bench_report(rows, out, command="tfganaug bench --first")
    kind = rows[0]["kind"]
    new = [{**rows[0], "seconds": 1.0}]
    merged, command = merge_rows(out, new, (kind,))
    kept = json.loads(json.dumps([r for r in rows if r["kind"] != kind]))
    assert merged == kept + new and len(kept) < len(rows) and command == "`tfganaug bench --first`"
    assert merge_rows(tmp_path / "nothing-there", new, (kind,)) == (new, None)


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--preset", "smoke", "--steps", "2",
                           "--warmup", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "bench.md").read_text()
    assert "--steps 2" in report
    for name in ("dcgan", "acgan", "lesion_cnn", "unet2d", "unet3d", "3-D windows", "vs reference",
                 "dcgan ref keras-io", "dcgan tricks off", "dcgan cpu preset + ADA 0.6", "acgan ref keras-io",
                 "acgan DiffAugment translation,cutout", "acgan cpu preset"):
        assert name in proc.stdout and name in report, name
    # the 3-D window chain is compared with the 3-D U-Net it feeds, not with the 2-D models
    assert "for the fastest training row (unet3d, float32)" in report
    # serving rows (issue 15): every exported type's latency, predict at 1x and 10x, train-seg at 1x and 10x
    rows = json.loads((out / "bench.json").read_text())
    latency = [r for r in rows if r["kind"] == "serve_latency"]
    assert [(r["model"], r["signature"], r["rows"]) for r in latency] == [
        (m, s, n) for m, s in [("lesion_cnn", "serving_default"), ("acgan", "serving_default"),
                               ("unet2d", "serving_default"), ("unet2d", "preprocessed"),
                               ("cyclegan", "serving_default")] for n in (1, 4)]
    for r in latency:
        _positive_finite(r, ("p50_ms", "p95_ms", "rows_per_s", "load_s", "peak_rss_mb"))
        assert r["p50_ms"] <= r["p95_ms"] and r["request_shape"][0] == r["rows"]
    pairs = [[r for r in rows if r["kind"] == "predict_scale"]] + [
        [r for r in rows if r["kind"] == "train_scale" and r["stream"] == stream] for stream in (False, True)]
    for pair in pairs:  # predict; train-seg in memory and streamed
        assert [r["factor"] for r in pair] == [1, 10] and pair[1]["slices"] > pair[0]["slices"]
        for r in pair:
            _positive_finite(r, ("seconds", "slices", "peak_rss_mb", "baseline_rss_mb", "rss_ratio"))
            assert r["peak_rss_mb"] >= r["baseline_rss_mb"]
    assert [r["slices"] for r in rows if r["kind"] == "predict_scale"] == [2, 20]
    for text in ("SavedModel latency, loaded in a fresh process", "`predict` throughput", "p95 ms", "slices/s"):
        assert text in proc.stdout and text in report, text
    assert "`predict` with 10x the slices: peak RSS" in report
    assert "`train-seg` with 10x the patients, in memory" in report
    assert "`train-seg` with 10x the patients, streamed" in report


def test_segmenter_rows_count_slices():
    row = bench_segmenter(3, 16, 4, 2, 2, steps=2, warmup=1, patch_depth=4)
    _positive_finite(row, NUMERIC + ("params",))
    assert row["model"] == "unet3d" and row["images_per_s"] == pytest.approx(row["steps_per_s"] * 2 * 4)


def test_paired_rows_beside_the_keras_io_reference(pair_rows):
    """The CPU preset's step with tricks off / DiffAugment / the preset / + ADA beside the
    keras-io-style reference, with the printed ratios (speed itself is not asserted)."""
    assert [r["variant"] for r in pair_rows] == ["ref keras-io", "ref keras-io, project layers", "tricks off",
                                                 "DiffAugment translation,cutout", "cpu preset", "cpu preset + ADA 0.6"]
    for row in pair_rows:
        assert row["kind"] == "gan_pair" and row["model"] == f"dcgan {row['variant']}"
        _positive_finite(row, NUMERIC + ("g_params", "d_params", "vs_reference", "cpu_vs_reference",
                                         "cpu_vs_same_layers", "cpu_seconds"))
        assert row["steps"] == 2 * 2 and row["reference"] == "dcgan ref keras-io"
        low, high = row["vs_reference_iqr"]
        assert low <= row["vs_reference"] <= high
    ref = pair_rows[0]
    assert ref["vs_reference"] == ref["cpu_vs_reference"] == 1.0 and ref["tricks_share"] is None
    assert pair_rows[1]["cpu_vs_same_layers"] == 1.0
    # same networks: the references and the project's GANs have the same parameter counts
    assert len({(r["g_params"], r["d_params"]) for r in pair_rows}) == 1
    assert pair_rows[2]["tricks_share"] is None
    assert all(math.isfinite(r["tricks_share"]) and r["tricks_share"] < 1 for r in pair_rows[3:])


def test_pair_table_has_the_ratio_columns(pair_rows, rows):
    table = format_pair_table(pair_rows)
    header = table.splitlines()[0]
    for column in ("vs reference", "vs reference, CPU time", "vs same-layer reference, CPU time",
                   "tricks' share, CPU time"):
        assert column in header
    assert len(table.splitlines()) == 2 + len(pair_rows) and "| 1.00x (1.00–1.00) |" in table
    both = format_table(rows + pair_rows)
    assert table in both and format_pair_table(rows) == "" and format_table(rows) in both
