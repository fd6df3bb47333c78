"""Benchmarks run and report (tiny settings). Speed itself is read from reports/bench, never asserted here."""
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tfganaug.bench import (bench_classifier, bench_gan, bench_input_pipeline, bench_segmenter, format_table,
                            write_bench_report)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(image_size=16, batch_size=8, steps=2, warmup=1)
NUMERIC = ("seconds", "steps_per_s", "images_per_s", "peak_rss_mb", "steps", "batch_size", "image_size")


@pytest.fixture(scope="module")
def rows():
    return [bench_gan("dcgan", width=16, **TINY), bench_gan("acgan", width=16, **TINY),
            bench_gan("acgan", width=16, precision="mixed_bfloat16", **TINY),
            bench_classifier(**TINY), bench_input_pipeline(**TINY)]


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


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--preset", "smoke", "--steps", "2",
                           "--warmup", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "bench.md").read_text()
    assert "--steps 2" in report
    for name in ("dcgan", "acgan", "lesion_cnn", "unet2d", "unet3d", "3-D windows"):
        assert name in proc.stdout and name in report
    # the 3-D window chain is compared with the 3-D U-Net it feeds, not with the 2-D models
    assert "for the fastest training row (unet3d, float32)" in report


def test_segmenter_rows_count_slices():
    row = bench_segmenter(3, 16, 4, 2, 2, steps=2, warmup=1, patch_depth=4)
    _positive_finite(row, NUMERIC + ("params",))
    assert row["model"] == "unet3d" and row["images_per_s"] == pytest.approx(row["steps_per_s"] * 2 * 4)
