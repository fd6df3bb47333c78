"""Speed and memory benchmarks: training steps of the GANs, the lesion CNN and the segmentation
U-Nets (2-D and 3-D), and the input chains.

The project checks speed and memory with tables written into reports/, never with timed
assertions in tests. Each measurement builds the model, compiles it as training does, runs
`fit` on one synthetic batch repeated (no input cost) for `warmup` steps (tracing, first-call
allocations), then times `steps` more steps between two batch-end callbacks.

Numbers from a shared machine are only as good as its load: every row carries the 1-minute
load average before and after its measurement, and the report prints them beside the table.
Peak RSS is `getrusage` maxrss, the high-water mark of the whole process so far: rows run in
order, so a row's value is an upper bound for its own configuration.

Serving and scaling rows (issue 15, part 5; `bench_serving.py`): SavedModel latency p50 / p95
per exported model type, `predict` slices/s, and peak memory of `predict` and `train-seg` as
the data grows 10x, each measured in a fresh child process.

Paired rows (issue 13, part 7): at each CPU GAN preset, the project's train step with the
preset's tricks off, with DiffAugment, with the whole preset (DiffAugment + EMA) and with ADA
on top, beside a keras-io-style reference of the same networks (`bench_reference.py`: one D
pass over concat(real, fake)), all built in one session and timed interleaved (A B C ... then
... C B A, `pair_rounds` times), so load changes hit every row alike. Each row carries the
median over rounds of its time divided by the reference's in the same round, in wall time
and in process CPU time (all threads of this process; less sensitive to other processes on
a shared machine), and its tricks' share of the step: 1 - t(tricks off) / t(row). Printed,
never asserted.
"""
from __future__ import annotations

import gc
import json
import math
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfganaug.bench_serving import SERVING_KINDS, format_serving_tables, serving_notes
from tfganaug.config import PRESETS, GANConfig
from tfganaug.errors import ConfigError
from tfganaug.fsutil import atomic_write_text

PRECISIONS = ("float32", "mixed_bfloat16")
NUM_CLASSES = 3

# Serving and scaling rows (bench_serving.py): tiny exports at serve_image px (GAN width
# serve_width), serve_requests timed requests of 1 and of serve_batch rows; predict on CT of
# predict_slices and 10x as many slices of predict_side px; train-seg on train_patients and 10x
# as many phantom patients (phantom slices of train_phantom px, trained at train_image px), in memory and
# streamed, train_steps steps each. The serving rows are CPU-sized in every preset.
SERVING_SMOKE = {"serve_image": 32, "serve_width": 8, "serve_batch": 4, "serve_requests": 3, "predict_slices": 2,
                 "predict_side": 32, "train_patients": 3, "train_phantom": 32, "train_image": 32, "train_steps": 2}
SERVING_QUICK = {"serve_image": 32, "serve_width": 32, "serve_batch": 32, "serve_requests": 50,
                 "predict_slices": 24, "predict_side": 256, "train_patients": 3, "train_phantom": 128,
                 "train_image": 128, "train_steps": 10}

# Per preset: GAN configurations (arch, image, width, batch), the classifier and input-chain sizes,
# and step counts. "paper" is Frid-Adar et al. 2018 (64 px, width 1024, batch 64): ~0.3 steps/s
# on a 2-core CPU, hence few steps.
BENCH_PRESETS: dict[str, dict] = {
    # Every row type at toy sizes, in seconds: checks that the benchmark itself runs (tests).
    "smoke": {"gans": [("dcgan", 16, 16, 8), ("acgan", 16, 16, 8)], "gan_steps": 2, "classifier": (16, 8),
              "cls_steps": 2, "input": (16, 8), "input_steps": 2, "warmup": 1,
              "segmenters": [(2, 16, 4, 2, 4, 1), (3, 16, 4, 2, 2, 4)], "seg_steps": 2,
              "seg_input": (16, 2, 4), "seg_input_steps": 2,
              "pairs": [("cpu_dcgan", 16, 16, 8), ("cpu_acgan", 16, 16, 8)], "pair_steps": 2, "pair_rounds": 2,
              **SERVING_SMOKE},
    "quick": {"gans": [(arch, 32, width, 32) for width in (32, 64) for arch in ("dcgan", "acgan")],
              "gan_steps": 20, "classifier": (32, 32), "cls_steps": 30, "input": (32, 32), "input_steps": 50,
              "warmup": 3,
              # (dims, image, base filters, depth, batch, slices per window): the study CPU budgets
              "segmenters": [(2, 64, 8, 3, 16, 1), (3, 64, 8, 3, 2, 16)], "seg_steps": 10,
              "seg_input": (64, 2, 16), "seg_input_steps": 10,
              # (CPU preset, image, width, batch): None = the preset's own (32 px, width 128, batch 32)
              "pairs": [("cpu_dcgan", None, None, None), ("cpu_acgan", None, None, None)], "pair_steps": 8,
              "pair_rounds": 6, **SERVING_QUICK},
    "paper": {"gans": [("dcgan", 64, 1024, 64), ("acgan", 64, 1024, 64)],
              "gan_steps": 5, "classifier": (64, 64), "cls_steps": 20, "input": (64, 64), "input_steps": 50,
              "warmup": 2,
              "segmenters": [(2, 128, 16, 4, 8, 1), (3, 128, 8, 3, 2, 16)], "seg_steps": 5,
              "seg_input": (128, 2, 16), "seg_input_steps": 10,
              "pairs": [("cpu_dcgan", None, None, None), ("cpu_acgan", None, None, None)], "pair_steps": 8,
              "pair_rounds": 6, **SERVING_QUICK},
}


def _peak_rss_mb() -> float:
    """Process peak resident set size in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _load1() -> float:
    return os.getloadavg()[0]


class _BatchClock(keras.callbacks.Callback):
    """Wall time at the end of every training batch (Keras converts logs to Python first, so the
    step has finished when the callback runs)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _build_gan(gan_cfg, image_size: int, seed: int):
    """The compiled GAN of `gan_cfg` at `image_size`, as train-gan builds it (its `from_config`)."""
    from tfganaug.config import DataConfig, RunConfig
    from tfganaug.gans import GANS
    cfg = RunConfig(kind="gan", data=DataConfig(image_size=image_size), gan=gan_cfg, seed=seed)
    return GANS.get(gan_cfg.arch).from_config(cfg, num_labels=NUM_CLASSES)


def _fresh(precision: str, seed: int) -> None:
    """Release the previous model and set the policy (clear_session resets it to float32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"expected precision one of {', '.join(PRECISIONS)}, got {precision!r}")
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(precision)


def _timed_fit(model, dataset, steps: int, warmup: int) -> float:
    """Seconds taken by `steps` training steps after `warmup` untimed ones."""
    if steps < 1 or warmup < 1:
        raise ConfigError(f"expected steps >= 1 and warmup >= 1, got steps={steps}, warmup={warmup}")
    clock = _BatchClock()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[clock], shuffle=False,
              verbose=0)
    return clock.times[warmup + steps - 1] - clock.times[warmup - 1]


def _row(kind: str, model: str, *, image_size, width, batch_size, precision, steps, warmup, seconds,
         load_before, **extra) -> dict:
    steps_per_s = steps / seconds
    return {"kind": kind, "model": model, "image_size": image_size, "width": width, "batch_size": batch_size,
            "precision": precision, "steps": steps, "warmup": warmup, "seconds": seconds,
            "steps_per_s": steps_per_s, "images_per_s": steps_per_s * batch_size, **extra,
            "peak_rss_mb": _peak_rss_mb(), "load_before": load_before, "load_after": _load1(),
            "tensorflow": tf.__version__, "keras": keras.__version__}


def _synthetic_batch(image_size: int, batch_size: int, seed: int, low: float):
    rng = np.random.default_rng(seed)
    images = rng.uniform(low, 1.0, (batch_size, image_size, image_size, 1)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


def bench_gan(arch: str, image_size: int, width: int, batch_size: int, steps: int, precision: str = "float32",
              warmup: int = 3, seed: int = 0) -> dict:
    """Training steps/s of one GAN (ACGAN with 3 classes; one DCGAN member) at the paper's kernel sizes,
    dropout and Adam; `images_per_s` counts real images through D (batch * steps/s)."""
    paper = PRESETS.get(f"frid_adar_{arch}", {}).get("gan", {})
    cfg = GANConfig(arch=arch, width=width, batch_size=batch_size,
                    **{k: paper[k] for k in ("kernel_size", "d_dropout", "lr") if k in paper})
    load_before = _load1()
    try:
        _fresh(precision, seed)
        gan = _build_gan(cfg, image_size, seed)
        seconds = _timed_fit(gan, _synthetic_batch(image_size, batch_size, seed, -1.0), steps, warmup)
        g_params, d_params = gan.generator.count_params(), gan.discriminator.count_params()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return _row("gan", arch, image_size=image_size, width=width, batch_size=batch_size, precision=precision,
                steps=steps, warmup=warmup, seconds=seconds, load_before=load_before,
                g_params=g_params, d_params=d_params, params=g_params + d_params)


# ------------------------------------------------------------------ paired reference rows
def _pair_variants(gan: dict) -> list[tuple[str, dict | None]]:
    """(label, GANConfig overrides) of one CPU preset's paired rows; None marks a reference
    (`bench_reference.py`; "project layers": with `fused_resize=True`). Tricks off = no
    DiffAugment, no EMA, no ADA; the networks (upsampling, conditioning, kernels, widths) stay
    the preset's."""
    off = {"diffaug": "none", "g_ema_beta": 0.0, "ada_target": None}
    policy = gan.get("diffaug", "none")
    rows = [("ref keras-io", None)]
    if gan.get("upsample") == "resize":
        rows.append(("ref keras-io, project layers", None))
    rows.append(("tricks off", off))
    if policy != "none":
        rows.append((f"DiffAugment {policy}", {**off, "diffaug": policy}))
    rows += [("cpu preset", {"ada_target": None}), ("cpu preset + ADA 0.6", {"ada_target": 0.6})]
    return rows


def _paired_clock(model, dataset, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds of `steps` fit steps after one untimed step."""
    clock = _BatchClock()
    cpu: list[float] = []
    tick = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs=None: cpu.append(time.process_time()))
    model.fit(dataset, epochs=1, steps_per_epoch=1 + steps, callbacks=[clock, tick], shuffle=False, verbose=0)
    return clock.times[steps] - clock.times[0], cpu[steps] - cpu[0]


def _median_ratio(values, reference) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios values[i] / reference[i]."""
    ratios = np.array(values) / np.array(reference)
    return tuple(float(q) for q in np.quantile(ratios, [0.5, 0.25, 0.75]))


def bench_gan_pairs(preset_name: str, image_size: int | None = None, width: int | None = None,
                    batch_size: int | None = None, steps: int = 8, rounds: int = 6, precision: str = "float32",
                    warmup: int = 3, seed: int = 0) -> list[dict]:
    """The paired rows of one CPU GAN preset (module docstring): the references first, then the
    project's variants, each with `vs_reference` (wall), `cpu_vs_reference`,
    `cpu_vs_same_layers` (against the reference with the project's layers, when there is one)
    and `tricks_share` (CPU time)."""
    from tfganaug.bench_reference import ReferenceACGAN, ReferenceDCGAN
    if steps < 1 or warmup < 1 or rounds < 1:
        raise ConfigError(f"expected steps, warmup and rounds >= 1, got {steps}, {warmup}, {rounds}")
    spec = PRESETS[preset_name]
    gan = dict(spec["gan"], **({"width": width} if width else {}), **({"batch_size": batch_size} if batch_size else {}))
    image_size = image_size or spec["data"]["image_size"]
    base_cfg = GANConfig(**gan)
    arch, batch = base_cfg.arch, base_cfg.batch_size
    load_before = _load1()
    rows, models = [], {}
    try:
        _fresh(precision, seed)
        for label, overrides in _pair_variants(gan):
            if overrides is None:
                fused = label.endswith("project layers")
                if arch == "dcgan":
                    model = ReferenceDCGAN(base_cfg.latent_dim, base_cfg.width, image_size, 1, base_cfg.kernel_size,
                                           base_cfg.upsample, fused_resize=fused, seed=seed,
                                           g_layout=base_cfg.g_layout)
                else:
                    model = ReferenceACGAN(NUM_CLASSES, base_cfg.latent_dim, base_cfg.width, image_size, 1,
                                           d_kernel_size=base_cfg.kernel_size, dropout=base_cfg.d_dropout,
                                           upsample=base_cfg.upsample, conditioning=base_cfg.conditioning,
                                           fused_resize=fused, seed=seed, g_layout=base_cfg.g_layout)
                model.compile(d_optimizer=keras.optimizers.Adam(base_cfg.lr, beta_1=base_cfg.beta_1),
                              g_optimizer=keras.optimizers.Adam(base_cfg.lr, beta_1=base_cfg.beta_1))
            else:
                model = _build_gan(GANConfig(**{**gan, **overrides}), image_size, seed)
            models[label] = model
        dataset = _synthetic_batch(image_size, batch, seed, -1.0)
        for model in models.values():  # tracing and first-call allocations
            model.fit(dataset, epochs=1, steps_per_epoch=warmup, shuffle=False, verbose=0)
        wall = {label: [] for label in models}
        cpu = {label: [] for label in models}
        for r in range(rounds):
            for label in (list(models) if r % 2 == 0 else list(models)[::-1]):
                w, c = _paired_clock(models[label], dataset, steps)
                wall[label].append(w)
                cpu[label].append(c)
        params = {label: (m.generator.count_params(), m.discriminator.count_params()) for label, m in models.items()}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    labels = list(models)
    ref, same = labels[0], next((lb for lb in labels if lb.endswith("project layers")), labels[0])
    off = next(lb for lb in labels if lb == "tricks off")
    for label in labels:
        ratio, low, high = _median_ratio(wall[label], wall[ref])
        g_params, d_params = params[label]
        row = _row("gan_pair", f"{arch} {label}", image_size=image_size, width=base_cfg.width, batch_size=batch,
                   precision=precision, steps=steps * rounds, warmup=warmup, seconds=float(sum(wall[label])),
                   load_before=load_before, g_params=g_params, d_params=d_params, params=g_params + d_params,
                   preset=preset_name, variant=label, reference=f"{arch} {ref}", rounds=rounds,
                   vs_reference=ratio, vs_reference_iqr=(low, high),
                   cpu_vs_reference=_median_ratio(cpu[label], cpu[ref])[0],
                   cpu_vs_same_layers=_median_ratio(cpu[label], cpu[same])[0],
                   tricks_share=(1.0 - _median_ratio(cpu[off], cpu[label])[0]
                                 if not label.startswith("ref") and label != off else None),
                   cpu_seconds=float(sum(cpu[label])))
        rows.append(row)
    del models
    return rows


def bench_classifier(image_size: int, batch_size: int, steps: int, precision: str = "float32", warmup: int = 3,
                     filters=(32, 64, 128), dense_units: int = 256, seed: int = 0) -> dict:
    """Training steps/s of the lesion CNN (SGD with momentum, as `train-cls`)."""
    load_before = _load1()
    try:
        _fresh(precision, seed)
        from tfganaug.tasks.classifier import build_lesion_cnn
        model = build_lesion_cnn(NUM_CLASSES, image_size, filters=tuple(filters), dense_units=dense_units, seed=seed)
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        seconds = _timed_fit(model, _synthetic_batch(image_size, batch_size, seed, 0.0), steps, warmup)
        params = model.count_params()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return _row("cls", "lesion_cnn", image_size=image_size, width="-".join(str(f) for f in filters),
                batch_size=batch_size, precision=precision, steps=steps, warmup=warmup, seconds=seconds,
                load_before=load_before, params=params)


def _time_batches(dataset, steps: int, warmup: int) -> float:
    """Seconds to draw `steps` batches from `dataset` after `warmup` untimed ones."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)[0].numpy()
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)[0].numpy()
    return time.perf_counter() - start


def bench_input_pipeline(image_size: int, batch_size: int, steps: int, warmup: int = 3, n_images: int = 512,
                         augment: str = "classic", seed: int = 0) -> dict:
    """Batches/s of `training_batches` with classic augmentation, consumed with no training beside it:
    if this is not well above a training row's steps/s, the input chain could starve training."""
    from tfganaug.data.pipeline import training_batches
    if steps < 1 or warmup < 1:
        raise ConfigError(f"expected steps >= 1 and warmup >= 1, got steps={steps}, warmup={warmup}")
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, (n_images, image_size, image_size, 1)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n_images).astype(np.int32)
    load_before = _load1()
    dataset = training_batches(images, labels, batch_size=batch_size, steps_per_epoch=warmup + steps, epochs=1,
                               seed=seed, augment=augment)
    seconds = _time_batches(dataset, steps, warmup)
    return _row("input", f"input ({augment} aug)", image_size=image_size, width=None, batch_size=batch_size,
                precision=None, steps=steps, warmup=warmup, seconds=seconds, load_before=load_before)


def bench_segmenter(dims: int, image_size: int, base_filters: int, depth: int, batch_size: int, steps: int,
                    patch_depth: int = 16, precision: str = "float32", warmup: int = 3, num_classes: int = 4,
                    seed: int = 0) -> dict:
    """Training steps/s of the segmentation U-Net as `train-seg` builds and compiles it: the 2-D
    Sandfort preset (group norm, leaky ReLU, same padding) or the 3-D one on windows of
    `patch_depth` slices; `images_per_s` counts slices (batch * slices per sample * steps/s)."""
    from tfganaug.config import SegConfig
    from tfganaug.tasks.segmenter import SegLoss, build_segmenter
    seg = SegConfig(unet="sandfort3d" if dims == 3 else "sandfort", base_filters=base_filters, depth=depth,
                    patch_depth=patch_depth, loss="dice_ce")
    load_before = _load1()
    try:
        _fresh(precision, seed)
        model = build_segmenter(seg, num_classes, image_size, 1, seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegLoss(num_classes, "softmax", "dice_ce"))
        rng = np.random.default_rng(seed)
        shape = (batch_size,) + ((patch_depth,) if dims == 3 else ()) + (image_size, image_size)
        images = rng.uniform(0.0, 1.0, shape + (1,)).astype(np.float32)
        labels = rng.integers(0, num_classes, shape).astype(np.int32)
        seconds = _timed_fit(model, tf.data.Dataset.from_tensors((images, labels)).repeat(), steps, warmup)
        params = model.count_params()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    slices = patch_depth if dims == 3 else 1
    row = _row("seg", f"unet{dims}d", image_size=image_size, width=base_filters, batch_size=batch_size,
               precision=precision, steps=steps, warmup=warmup, seconds=seconds, load_before=load_before,
               params=params, depth=depth, slices_per_sample=slices)
    row["images_per_s"] = row["steps_per_s"] * batch_size * slices
    return row


def bench_window_input(image_size: int, batch_size: int, patch_depth: int, steps: int, warmup: int = 3,
                       seed: int = 0) -> dict:
    """Batches/s of the 3-D input chain (windows of slices, Sandfort et al.'s standard augmentation
    in SciPy through tf.numpy_function), with no training beside it."""
    from tfganaug.data.pipeline import training_batches
    from tfganaug.data.volumes import Volume, standard_augment_3d_tf, window_stack
    if steps < 1 or warmup < 1:
        raise ConfigError(f"expected steps >= 1 and warmup >= 1, got steps={steps}, warmup={warmup}")
    rng = np.random.default_rng(seed)
    vols = [Volume(f"p{i}", rng.uniform(0, 1, (48, image_size, image_size, 1)).astype(np.float32),
                   rng.integers(0, 4, (48, image_size, image_size)).astype(np.uint8), np.ones(3), np.arange(48))
            for i in range(2)]
    x, y, starts = window_stack(vols, patch_depth)
    load_before = _load1()
    dataset = training_batches(x, y, batch_size=batch_size, steps_per_epoch=warmup + steps, epochs=1, seed=seed,
                               augment=standard_augment_3d_tf, window=patch_depth, starts=starts)
    seconds = _time_batches(dataset, steps, warmup)
    row = _row("input", f"input 3-D windows ({patch_depth} slices, standard aug)", image_size=image_size, width=None,
               batch_size=batch_size, precision=None, steps=steps, warmup=warmup, seconds=seconds,
               load_before=load_before)
    row["images_per_s"] = row["steps_per_s"] * batch_size * patch_depth
    row["feeds"] = "unet3d"
    return row


def run_bench(preset: str, precision: str = "float32", *, steps: int | None = None, warmup: int | None = None,
              log: Callable[[dict], None] | None = None, serving: bool = True,
              only: tuple[str, ...] | None = None) -> list[dict]:
    """Every row of a preset ("quick": ~1 minute; "paper": the paper's sizes), for `precision`
    float32, mixed_bfloat16 or all, then (`serving`) the serving and scaling rows; `only`: just
    those serving row kinds (`SERVING_KINDS`). `steps`/`warmup` override the preset's training
    steps (e.g. for tests)."""
    if preset not in BENCH_PRESETS:
        raise ConfigError(f"unknown bench preset '{preset}' (known: {', '.join(BENCH_PRESETS)})")
    if precision == "all":
        precisions = PRECISIONS
    elif precision in PRECISIONS:
        precisions = (precision,)
    else:
        raise ConfigError(f"expected precision float32, mixed_bfloat16 or all, got {precision!r}")
    p = BENCH_PRESETS[preset]
    warmup = warmup or p["warmup"]
    if only:
        from tfganaug.bench_serving import run_serving_bench
        return run_serving_bench(p, log, kinds=tuple(only))
    rows = []

    def add(row):
        rows.append(row)
        if log:
            log(row)

    add(bench_input_pipeline(*p["input"], steps=steps or p["input_steps"], warmup=warmup))
    for image_size, batch_size in [p["classifier"]]:
        for prec in precisions:
            add(bench_classifier(image_size, batch_size, steps or p["cls_steps"], prec, warmup))
    for arch, image_size, width, batch_size in p["gans"]:
        for prec in precisions:
            add(bench_gan(arch, image_size, width, batch_size, steps or p["gan_steps"], prec, warmup))
    for name, image_size, width, batch_size in p.get("pairs", []):
        for prec in precisions:
            for row in bench_gan_pairs(name, image_size, width, batch_size, steps or p["pair_steps"],
                                       p["pair_rounds"], prec, warmup):
                add(row)
    add(bench_window_input(*p["seg_input"], steps=steps or p["seg_input_steps"], warmup=warmup))
    for dims, image_size, base, depth, batch_size, patch in p["segmenters"]:
        add(bench_segmenter(dims, image_size, base, depth, batch_size, steps or p["seg_steps"], patch, "float32",
                            warmup))
    if serving:
        from tfganaug.bench_serving import run_serving_bench
        for row in run_serving_bench(p, log):
            rows.append(row)
    return rows


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"


def _params(value) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


COLUMNS = ("model", "precision", "image", "width", "batch", "steps", "seconds", "steps/s", "images/s",
           "params G", "params D / CNN", "peak RSS MB", "load 1m before→after")


PAIR_COLUMNS = ("model", "precision", "image", "width", "batch", "timed steps", "ms/step", "vs reference",
                "vs reference, CPU time", "vs same-layer reference, CPU time", "tricks' share, CPU time",
                "load 1m before→after")


def _ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}x"


def format_pair_table(rows: list[dict]) -> str:
    """Markdown table of the paired rows (`kind == "gan_pair"`); '' when there are none."""
    pairs = [r for r in rows if r["kind"] == "gan_pair"]
    if not pairs:
        return ""
    lines = ["| " + " | ".join(PAIR_COLUMNS) + " |", "|" + "|".join("---" for _ in PAIR_COLUMNS) + "|"]
    for r in pairs:
        low, high = r["vs_reference_iqr"]
        share = r["tricks_share"]
        cells = (r["model"], r["precision"], f"{r['image_size']} px", _num(r["width"]), r["batch_size"],
                 f"{r['rounds']} × {r['steps'] // r['rounds']}", f"{1000 * r['seconds'] / r['steps']:.1f}",
                 f"{_ratio(r['vs_reference'])} ({low:.2f}–{high:.2f})", _ratio(r["cpu_vs_reference"]),
                 _ratio(r["cpu_vs_same_layers"]), "–" if share is None else f"{100 * share:.0f}%",
                 f"{r['load_before']:.2f}→{r['load_after']:.2f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """Markdown table; for input rows `steps` are batches and `steps/s` batches/s. Paired GAN
    rows follow in their own table (`format_pair_table`)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in (r for r in rows if r["kind"] not in ("gan_pair",) + SERVING_KINDS):
        d_params = r.get("d_params", r.get("params"))
        cells = (r["model"], r["precision"] or "–", f"{r['image_size']} px", _num(r["width"]), r["batch_size"],
                 r["steps"], _num(r["seconds"]), _num(r["steps_per_s"]), _num(r["images_per_s"]),
                 _params(r.get("g_params")), _params(d_params), f"{r['peak_rss_mb']:.0f}",
                 f"{r['load_before']:.2f}→{r['load_after']:.2f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    pairs = format_pair_table(rows)
    serving = format_serving_tables(rows)
    return ("\n".join(lines) + (f"\n\nTrain step beside a keras-io-style reference (paired, interleaved):\n\n{pairs}"
                                if pairs else "") + (f"\n\n{serving}" if serving else ""))


def row_summary(r: dict) -> str:
    """One progress line per row."""
    if r["kind"] == "serve_latency":
        return f"{r['model']} {r['signature']} x{r['rows']}: p50 {r['p50_ms']:.2f} ms"
    if r["kind"] in SERVING_KINDS:
        return f"{r['model']} {r['factor']}x: peak RSS {r['peak_rss_mb']:.0f} MB"
    return f"{r['model']} {r['precision'] or ''}: {r['steps_per_s']:.3g} steps/s"


def machine_facts() -> dict:
    cpu_model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu_model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {"platform": platform.platform(), "cpu": cpu_model, "cpus_usable": cpus,
            "vector_isa": " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})) or "unknown",
            "bfloat16": "native (AVX-512 BF16/AMX)" if flags & {"avx512_bf16", "amx_bf16"} else
            "no AVX-512 BF16/AMX: TensorFlow falls back to Eigen for bfloat16; mixed_bfloat16 may be slower",
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "onednn": f"TF_ENABLE_ONEDNN_OPTS={onednn}" if onednn is not None
            else "TF_ENABLE_ONEDNN_OPTS not set (TensorFlow's default: oneDNN on for x86 Linux)"}


def _headroom(rows: list[dict]) -> list[str]:
    lines = []
    for inp in (r for r in rows if r["kind"] == "input"):
        # the 3-D window chain feeds the 3-D U-Net; the 2-D chain the GANs and the CNN
        feeds = inp.get("feeds")
        trained = [r for r in rows if r["image_size"] == inp["image_size"]
                   and (r["model"] == feeds if feeds else r["kind"] in ("gan", "cls"))]
        if trained:
            fastest = max(trained, key=lambda r: r["images_per_s"])
            lines.append(f"- Input chain at {inp['image_size']} px: {inp['images_per_s']:,.0f} images/s alone vs "
                         f"{fastest['images_per_s']:,.0f} images/s for the fastest training row "
                         f"({fastest['model']}, {fastest['precision']}): "
                         f"{inp['images_per_s'] / fastest['images_per_s']:.1f}x headroom. During training both "
                         "share the same cores, so below ~2x the input chain could slow training.")
    return lines


def _pair_notes(rows: list[dict]) -> list[str]:
    if not any(r["kind"] == "gan_pair" for r in rows):
        return []
    return [
        "- Paired rows (second table): each CPU GAN preset's networks in one session, every row timed "
        "in turn, the order reversed every round. `ref keras-io`: keras-io's `dcgan_overriding_train_step` "
        "idiom (one D pass over concat(real, fake), plain mean losses, a Mean tracker per loss) with the "
        "textbook layers (UpSampling2D + Conv2D); `ref keras-io, project layers`: the same step with the "
        "project's `ResizeConv2D` (same function and weights). `tricks off`: the project's step without "
        "DiffAugment / EMA / ADA; `cpu preset`: with the preset's DiffAugment and EMA; `+ ADA 0.6`: ADA on top.",
        "- vs reference: median over rounds of (row time / reference time in the same round), quartiles in "
        "brackets; CPU time: the same with this process's CPU time (all its threads), steadier than wall "
        "time when other processes share the cores. tricks' share: 1 - t(tricks off) / t(row), CPU time: "
        "the part of the row's step spent on its augmentation (and EMA)."]


def write_bench_report(rows: list[dict], out_dir, command: str | None = None) -> Path:
    """`<out_dir>/bench.md`: machine facts, load averages, the table and the command that made it;
    `<out_dir>/bench.json`: the rows."""
    facts = machine_facts()
    command = command or shlex.join(["tfganaug", *sys.argv[1:]])
    start = rows[0]["load_before"] if rows else math.nan
    end = rows[-1]["load_after"] if rows else math.nan
    text = "\n".join([
        "# Benchmark: training, input, serving and memory", "",
        f"Command: {command if command.startswith('`') else f'`{command}`'}", "",
        "## Machine", "",
        *(f"- {k}: {v}" for k, v in facts.items()), "",
        "## Results", "",
        f"Measured on a shared machine: 1-minute load average {start:.2f} at the start and {end:.2f} at the "
        f"end (against {facts['cpus_usable']} usable CPUs); each row shows the load before and after its own "
        "measurement. Judge contention from these before comparing numbers across reports.", "",
        format_table(rows), "",
        "- steps/s: training steps after the warm-up steps (tracing excluded); one batch repeated, so no "
        "input cost. GAN steps are one D and one G update; images/s = batch × steps/s (real images through D).",
        "- DCGAN trains one GAN per class: a 3-class DCGAN run costs about 3× a row.",
        "- Input rows: `training_batches` with classic augmentation (2-D) or windows of slices with Sandfort "
        "et al.'s standard augmentation in SciPy (3-D), alone; steps are batches.",
        "- U-Net rows (`unet2d`, `unet3d`): the Sandfort presets as `train-seg` compiles them (Adam, Dice + CE, "
        "4 classes); width = base filters; images/s counts slices (a 3-D sample is a window of slices).",
        "- Peak RSS: the process's high-water mark so far (rows run in table order), an upper bound for a row.",
        *_pair_notes(rows), *_headroom(rows), *serving_notes(rows), ""])
    # the rows themselves, for tools and tests (tuples become lists)
    atomic_write_text(Path(out_dir) / "bench.json", json.dumps(rows, indent=1, default=str) + "\n")
    return atomic_write_text(Path(out_dir) / "bench.md", text)


def merge_rows(previous_dir, rows: list[dict], kinds) -> tuple[list[dict], str | None]:
    """(the rows of `previous_dir`/bench.json whose kind is not in `kinds`, then `rows`; the
    command of that report or None): a rerun of some row kinds replaces those rows only."""
    previous, command = [], None
    report = Path(previous_dir) / "bench.json"
    if report.exists():
        previous = [r for r in json.loads(report.read_text()) if r["kind"] not in kinds]
        for line in (Path(previous_dir) / "bench.md").read_text().splitlines():
            if line.startswith("Command: `"):
                command = line[len("Command: "):]
                break
    return previous + rows, command


def bench_command(preset: str, precision: str, out, steps: int | None = None, warmup: int | None = None) -> str:
    """The command line that reproduces a bench run (written into the report)."""
    args = ["tfganaug", "bench", "--preset", preset, "--precision", precision, "--out", str(out)]
    args += ["--steps", str(steps)] if steps else []
    args += ["--warmup", str(warmup)] if warmup else []
    return shlex.join(args)
