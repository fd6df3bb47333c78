"""Serving and scaling benchmarks (issue 15, part 5): SavedModel latency, `predict` throughput,
and peak memory of `predict` and of training as the data grows 10x.

Every measurement runs in a fresh child process (`python -m tfganaug.bench_serving TASK
JSON`), so its peak RSS (VmHWM, the child's own high-water mark) belongs to that
measurement alone, and a SavedModel is loaded the way TF Serving loads it: from disk into a
process that has never built the Keras model.

* Latency: tiny runs of each exported model type (lesion classifier, ACGAN generator, 2-D
  U-Net, CycleGAN translator) are trained for a few steps and exported (`tfganaug export`);
  the child loads one with `tf.saved_model.load` and calls a signature with one row per
  request and with `batch` rows per request, `requests` times each after a few warm-up calls:
  p50 / p95 of the call (outputs read back as NumPy), and rows/s. Requests are built from the
  export's own example request (`tfganaug_export.json`: what TF Serving's warm-up replays),
  its rows repeated to the batch size; the U-Net's `preprocessed` signature (what
  `predict --server` calls) gets uniform [0, 1] slices. No HTTP or gRPC in these numbers: the
  signature call is what the model server runs per request.
* `predict` throughput: the exported 2-D U-Net on a CT NIfTI of N and of 10N slices
  (synthetic HU, slices of `predict_side` px): slices/s of the `predict` call (reading,
  preprocessing, the network, mapping back, writing), the model loaded before the clock.
* Memory as the data grows 10x: peak RSS of those two `predict` runs (the scan streamed a
  block of slices at a time), and of `train-seg` on phantom data of P and 10P patients (same
  steps, slices of `train_image` px), with the data in memory (the default) and streamed from
  disk (`data.stream`), each beside the child's RSS after its imports (the baseline). What
  grows is reported as measured.

`kinds` runs some of the row kinds only (`tfganaug bench --only predict_scale,train_scale`):
the latency rows need every export, the predict rows the U-Net's only, the train rows none.

Load averages before and after each row go into the tables, as for the training rows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tfganaug.errors import ConfigError

SERVING_KINDS = ("serve_latency", "predict_scale", "train_scale")


def _status_mb(key: str) -> float:
    """A memory figure of this process from /proc/self/status in MB: VmRSS (now) or VmHWM (peak).
    VmHWM belongs to the process image, so it starts afresh at exec; getrusage's maxrss would
    carry over the parent's high-water mark from the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_now_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


# ------------------------------------------------------------------ what the children run

def _latency(model: str, signatures: list, batch: int, requests: int, warmup: int) -> dict:
    import tensorflow as tf

    from tfganaug.stages.export import INFO_FILE, SIGNATURE
    baseline = _rss_now_mb()
    start = time.perf_counter()
    loaded = tf.saved_model.load(model)
    out = {"load_s": time.perf_counter() - start, "baseline_rss_mb": baseline}
    info = json.loads((Path(model) / "assets.extra" / INFO_FILE).read_text())
    rng = np.random.default_rng(0)
    for signature in signatures:
        fn = loaded.signatures[signature]
        specs = fn.structured_input_signature[1]
        if signature == SIGNATURE:
            example = {k: np.asarray(v) for k, v in info["example_request"]["inputs"].items()}
        else:
            example = {k: rng.uniform(0, 1, [2] + spec.shape.as_list()[1:]).astype(spec.dtype.as_numpy_dtype)
                       for k, spec in specs.items()}
        for rows in (1, batch):
            inputs = {k: tf.constant(np.resize(v, (rows,) + v.shape[1:]).astype(specs[k].dtype.as_numpy_dtype))
                      for k, v in example.items()}
            times = []
            for i in range(warmup + requests):
                t0 = time.perf_counter()
                {k: v.numpy() for k, v in fn(**inputs).items()}
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            ms = 1000 * np.asarray(times)
            out[f"{signature} {rows}"] = {"p50_ms": float(np.percentile(ms, 50)),
                                          "p95_ms": float(np.percentile(ms, 95)),
                                          "rows_per_s": float(rows * len(ms) / (ms.sum() / 1000)),
                                          "shape": list(next(iter(inputs.values())).shape)}
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _predict(model: str, scan: str, out: str, batch_size: int) -> dict:
    from tfganaug.stages.predict import load_segmenter_for_prediction, predict
    segmenter = load_segmenter_for_prediction(model)
    baseline = _rss_now_mb()
    start = time.perf_counter()
    record = predict(segmenter, [scan], out, overwrite=True, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "slices": int(min(record["shape"])), "baseline_rss_mb": baseline,
            "peak_rss_mb": _peak_rss_mb()}


def _train(config: dict, out: str) -> dict:
    from tfganaug import config as config_lib
    from tfganaug.runs import RunFolder
    from tfganaug.stages.train_seg import train_seg
    baseline = _rss_now_mb()
    start = time.perf_counter()
    run = train_seg(config_lib.from_dict(config, "bench"), out, overwrite=True, verbose=0)
    seconds = time.perf_counter() - start
    status = RunFolder(run.path).status()
    return {"seconds": seconds, "slices": int(status["n_train_real"]), "patients": int(status["n_train_patients"]),
            "baseline_rss_mb": baseline, "peak_rss_mb": _peak_rss_mb()}


TASKS = {"latency": _latency, "predict": _predict, "train": _train}


def _child(task: str, **kwargs) -> dict:
    """Run `task` in a fresh Python process; its JSON answer (the last line of its stdout)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "tfganaug.bench_serving", task, json.dumps(kwargs)],
                          capture_output=True, text=True, env=env, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench child '{task}' failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------ the parent

def _tiny_exports(root: Path, p: dict, names=("lesion_cnn", "acgan", "unet2d", "cyclegan")) -> dict:
    """Train each model type (of `names`) a few steps at the preset's tiny sizes and export it:
    {name: folder}."""
    from tfganaug import config
    from tfganaug.stages.export import export_run
    from tfganaug.stages.train_cls import train_classifier
    from tfganaug.stages.train_gan import train_gan
    from tfganaug.stages.train_seg import train_seg
    size, steps = p["serve_image"], {"epochs": 1, "steps_per_epoch": 2}
    runs = {
        "lesion_cnn": lambda out: train_classifier(config.preset(
            "cpu_cnn", data={"image_size": size, "n_phantom_patients": 30}, cls={**steps, "batch_size": 8}),
            out, verbose=0),
        "acgan": lambda out: train_gan(config.preset("cpu_acgan", data={"image_size": size, "n_phantom_patients": 30},
                                                     gan={**steps, "width": p["serve_width"], "batch_size": 8}),
                                       out, verbose=0),
        "unet2d": lambda out: train_seg(config.preset("cpu_unet_abdomen", data={
            "image_size": size, "phantom_size": size, "n_phantom_patients": 3},
            seg={**steps, "base_filters": 8, "depth": 3, "batch_size": 4, "augment": "none"}), out, verbose=0),
        "cyclegan": lambda out: train_gan(config.preset("cpu_cyclegan", data={
            "image_size": size, "phantom_size": size, "n_phantom_patients": 3},
            gan={**steps, "width": p["serve_width"], "n_res_blocks": 2, "batch_size": 2}), out, verbose=0),
    }
    folders = {}
    for name, train in ((n, runs[n]) for n in names):
        train(root / "runs" / name)
        folders[name] = export_run(root / "runs" / name, root / "saved_models" / name)
    return folders


def _ct_nifti(path: Path, slices: int, side: int) -> Path:
    """A CT-like NIfTI of `slices` slices: a body ellipse of soft tissue (40 HU, noise) in air."""
    import nibabel as nib
    rng = np.random.default_rng(slices)
    yy, xx = np.mgrid[:side, :side]
    body = ((yy - side / 2) / (side * 0.4)) ** 2 + ((xx - side / 2) / (side * 0.45)) ** 2 < 1
    volume = np.where(body[..., None], rng.normal(40, 60, (side, side, slices)), -1000.0).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 3.0, 1.0])), str(path))
    return path


def run_serving_bench(p: dict, log=None, kinds=SERVING_KINDS) -> list[dict]:
    """The serving and scaling rows of a bench preset `p` (its serve_* / predict_* / train_* keys),
    of the row kinds `kinds`."""
    from tfganaug.bench import _load1
    for key in ("serve_image", "serve_width", "serve_batch", "serve_requests", "predict_slices", "predict_side",
                "train_patients", "train_phantom", "train_image", "train_steps"):
        if key not in p:
            raise ConfigError(f"bench preset lacks '{key}'")
    unknown = sorted(set(kinds) - set(SERVING_KINDS))
    if unknown or not kinds:
        raise ConfigError(f"expected row kinds among {', '.join(SERVING_KINDS)}, got {', '.join(unknown) or 'none'}")
    rows = []

    def add(row):
        rows.append(row)
        if log:
            log(row)

    with tempfile.TemporaryDirectory(prefix="tfganaug-bench-") as tmp:
        root = Path(tmp)
        folders = (_tiny_exports(root, p) if "serve_latency" in kinds else
                   _tiny_exports(root, p, ("unet2d",)) if "predict_scale" in kinds else {})
        for name, folder in folders.items() if "serve_latency" in kinds else ():
            # the U-Net's preprocessed signature is what `predict --server` calls
            signatures = ["serving_default"] + (["preprocessed"] if name == "unet2d" else [])
            load_before = _load1()
            got = _child("latency", model=str(folder), signatures=signatures, batch=p["serve_batch"],
                         requests=p["serve_requests"], warmup=3)
            for signature, rows_per_request in ((s, n) for s in signatures for n in (1, p["serve_batch"])):
                m = got[f"{signature} {rows_per_request}"]
                add({"kind": "serve_latency", "model": name, "signature": signature, "image_size": p["serve_image"],
                     "rows": rows_per_request, "request_shape": m["shape"], "requests": p["serve_requests"],
                     "p50_ms": m["p50_ms"], "p95_ms": m["p95_ms"], "rows_per_s": m["rows_per_s"],
                     "load_s": got["load_s"], "baseline_rss_mb": got["baseline_rss_mb"],
                     "peak_rss_mb": got["peak_rss_mb"], "load_before": load_before, "load_after": _load1()})
        base = None
        for factor in (1, 10) if "predict_scale" in kinds else ():
            slices = p["predict_slices"] * factor
            scan = _ct_nifti(root / f"ct{slices}.nii", slices, p["predict_side"])
            load_before = _load1()
            got = _child("predict", model=str(folders["unet2d"]), scan=str(scan), out=str(root / f"m{slices}.nii.gz"),
                         batch_size=16)
            base = base or got
            add({"kind": "predict_scale", "model": "predict (unet2d export)", "image_size": p["serve_image"],
                 "factor": factor, "slices": got["slices"], "seconds": got["seconds"],
                 "slices_per_s": got["slices"] / got["seconds"], "data_mb": scan.stat().st_size / 2**20,
                 "baseline_rss_mb": got["baseline_rss_mb"], "peak_rss_mb": got["peak_rss_mb"],
                 "rss_ratio": got["peak_rss_mb"] / base["peak_rss_mb"],
                 "growth_ratio": (got["peak_rss_mb"] - got["baseline_rss_mb"])
                 / max(base["peak_rss_mb"] - base["baseline_rss_mb"], 1e-9),
                 "shape": f"{p['predict_side']}x{p['predict_side']}x{slices}",
                 "load_before": load_before, "load_after": _load1()})
        from tfganaug import config
        for stream, factor in ((s, f) for s in (False, True) for f in (1, 10)) if "train_scale" in kinds else ():
            patients = p["train_patients"] * factor
            data = {"image_size": p["train_image"], "phantom_size": p["train_phantom"], "n_phantom_patients": patients,
                    "stream": stream}
            cfg = config.preset("cpu_unet_abdomen", data=data,
                                seg={"epochs": 1, "steps_per_epoch": p["train_steps"], "batch_size": 8,
                                     "base_filters": 8, "depth": 3, "augment": "none"})
            load_before = _load1()
            got = _child("train", config=config.to_dict(cfg), out=str(root / f"train{patients}-{stream}"))
            base = got if factor == 1 else base
            how = "streamed" if stream else "in memory"
            add({"kind": "train_scale", "model": f"train-seg (unet2d, phantom-abdomen, {how})",
                 "stream": stream, "image_size": p["train_image"],
                 "factor": factor, "slices": got["slices"], "patients": got["patients"], "patients_total": patients,
                 "seconds": got["seconds"],
                 "steps": p["train_steps"], "baseline_rss_mb": got["baseline_rss_mb"],
                 "peak_rss_mb": got["peak_rss_mb"], "rss_ratio": got["peak_rss_mb"] / base["peak_rss_mb"],
                 "growth_ratio": (got["peak_rss_mb"] - got["baseline_rss_mb"])
                 / max(base["peak_rss_mb"] - base["baseline_rss_mb"], 1e-9),
                 "load_before": load_before, "load_after": _load1()})
    return rows


def format_serving_tables(rows: list[dict]) -> str:
    """The latency table and the scaling table (markdown); '' without serving rows."""
    latency = [r for r in rows if r["kind"] == "serve_latency"]
    scale = [r for r in rows if r["kind"] in ("predict_scale", "train_scale")]
    parts = []
    if latency:
        cols = ("model", "signature", "rows / request", "request shape", "requests", "p50 ms", "p95 ms", "rows/s",
                "load s", "peak RSS MB", "load 1m before→after")
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for r in latency:
            cells = (r["model"], r["signature"], r["rows"], "×".join(str(d) for d in r["request_shape"]),
                     r["requests"], f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['rows_per_s']:,.0f}",
                     f"{r['load_s']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['load_before']:.2f}→{r['load_after']:.2f}")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        parts.append("SavedModel latency, loaded in a fresh process (signature call, outputs read back):\n\n"
                     + "\n".join(lines))
    if scale:
        cols = ("run", "data", "slices", "seconds", "slices/s", "RSS after imports MB", "peak RSS MB",
                "peak vs 1x", "growth over baseline vs 1x", "load 1m before→after")
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for r in scale:
            data = (f"{r['factor']}x: CT {r['shape']} ({r['data_mb']:.0f} MB NIfTI)" if r["kind"] == "predict_scale"
                    else f"{r['factor']}x: {r['patients_total']} phantom patients ({r['patients']} in training), "
                         f"{r['steps']} steps")
            rate = f"{r['slices_per_s']:.1f}" if r["kind"] == "predict_scale" else "–"
            cells = (r["model"], data, r["slices"], f"{r['seconds']:.2f}", rate, f"{r['baseline_rss_mb']:.0f}",
                     f"{r['peak_rss_mb']:.0f}", f"{r['rss_ratio']:.2f}x", f"{r['growth_ratio']:.2f}x",
                     f"{r['load_before']:.2f}→{r['load_after']:.2f}")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        parts.append("`predict` throughput, and peak memory as the data grows 10x (each row a fresh process):\n\n"
                     + "\n".join(lines))
    return "\n\n".join(parts)


def main(argv=None) -> None:
    task, kwargs = (argv or sys.argv[1:])[:2]
    print(json.dumps(TASKS[task](**json.loads(kwargs))))


if __name__ == "__main__":
    main()


def serving_notes(rows: list[dict]) -> list[str]:
    """The report's notes under the serving tables (what was measured, and the memory verdict as
    measured)."""
    if not any(r["kind"] in SERVING_KINDS for r in rows):
        return []
    notes = [
        "- SavedModel latency: tiny runs of each exported type trained a few steps and exported; each "
        "model loaded in a fresh process with `tf.saved_model.load` (as TF Serving loads it) and its "
        "signature called with 1 row and with a batch, after 3 warm-up calls; p50 / p95 over the timed "
        "requests, rows/s = rows × requests / their total time. `serving_default` takes the export's own "
        "example request (U-Net and CycleGAN: raw HU slices of S+9 × S-3 px, preprocessing inside the graph); "
        "`preprocessed` takes [0, 1] slices at S px (what `predict --server` sends). No network in these "
        "numbers: add the REST (JSON) or gRPC round trip of a real server.",
        "- `predict`: the exported 2-D U-Net on synthetic CT NIfTI volumes; the clock covers reading, "
        "preprocessing, the network, mapping back to the input grid and writing the mask (model loaded "
        "before). RSS after imports: the child's resident memory with TensorFlow and the model loaded, "
        "before the measured call; growth over baseline = peak - that, relative to the 1x row."]
    from tfganaug.stages.predict import SLICE_CHUNK
    predict = [r for r in rows if r["kind"] == "predict_scale"]
    if len(predict) == 2:
        grown, more = predict[1]["peak_rss_mb"] - predict[0]["peak_rss_mb"], predict[1]["slices"] - predict[0]["slices"]
        side = int(predict[0]["shape"].split("x")[0])
        per_slice = grown / max(more, 1)
        notes.append(
            f"- `predict` with 10x the slices: peak RSS {predict[0]['peak_rss_mb']:.0f} → "
            f"{predict[1]['peak_rss_mb']:.0f} MB ({predict[1]['rss_ratio']:.2f}x), +{grown:.0f} MB for {more} more "
            f"slices: {per_slice:.2f} MB per {side}×{side} slice, {per_slice / (side * side / 2**20):.1f} bytes per "
            "voxel. The scan is streamed (read, prepared and run a block of slices at a time); what grows with "
            "its length is the uint8 label map on the input grid (1 byte per voxel), written slab by slab at the "
            "end." + (f" Most of the rest is the block buffers ({SLICE_CHUNK} slices), which the "
                      f"{predict[0]['slices']}-slice scan does not fill, so this rate overstates the growth of "
                      "longer scans." if predict[0]["slices"] < SLICE_CHUNK else "")
            + " A 512×512 CT of 600 slices holds a 0.15 GB label map (a float32 copy of the scan alone would be "
            "0.59 GB).")
    for stream in (False, True):
        train = [r for r in rows if r["kind"] == "train_scale" and bool(r.get("stream")) == stream]
        if len(train) == 2:
            grown, more = train[1]["peak_rss_mb"] - train[0]["peak_rss_mb"], train[1]["slices"] - train[0]["slices"]
            how = ("streamed (`data.stream`: cases made and prepared one at a time, slices on disk, read per "
                   "element by the tf.data chain)" if stream else
                   "in memory (the default: every case, then every slice and their tf.constant copies, held)")
            notes.append(
                f"- `train-seg` with 10x the patients, {how}: peak RSS {train[0]['peak_rss_mb']:.0f} → "
                f"{train[1]['peak_rss_mb']:.0f} MB ({train[1]['rss_ratio']:.2f}x), {grown:+.0f} MB for {more} more "
                f"training slices of {train[0]['image_size']} px.")
    return notes
