"""Export a trained run as a SavedModel in TF Serving layout: `<out>/<version>/`.

One run gives one servable with a `serving_default` signature (and, for some, named others):

* GAN runs: `z` float32 [None, latent_dim] (uniform in [-1, 1], as in training) and `label`
  int32 [None] -> `image` float32 [None, H, W, 1] in [0, 1] (the generator's tanh output
  mapped as `synthesize` maps it, so served images equal synthesized ones). A DCGAN run holds
  one generator per class: the served graph runs every class generator on the rows whose
  label is that class (`tf.dynamic_partition`) and stitches the rows back in request order
  (`tf.dynamic_stitch`), so each row is generated once, by its class's generator. An ACGAN
  run calls its conditional generator with [z, label]. A label outside [0, num_classes), or
  `z` and `label` of different lengths, fail inside the graph with INVALID_ARGUMENT (HTTP 400
  from TF Serving) rather than being clipped: a silently remapped class would put wrong
  labels on synthetic training data.
* Classifier runs: `image` float32 [None, H, W, 1] in [0, 1] -> `probabilities` float32
  [None, num_classes] and `class_id` int64 [None] (the argmax).
* Segmenter and CycleGAN runs take raw intensities at any slice size (CT in HU, MR as stored,
  8-bit PNG values): the run's window or MR normalisation, padding and resizing run inside the
  graph (`data/raw_input.py`) and outputs come back on the input's grid (the translator's in
  the input's units). Their training-preprocessed inputs stay available as the `preprocessed`
  (and `b_to_a_preprocessed`) signatures. Pix2Pix and StyleGAN2 runs: see their builders.

The version folder also holds `assets.extra/tf_serving_warmup_requests` (one PredictionLog
with a small example request, which TF Serving replays before it marks the model ready) and
`assets.extra/tfganaug_export.json` (source run, classes, signature, value ranges, an example
REST body). The folder is built under a temporary name, checked by reloading it and comparing
every signature's output with the Keras model's (and, for raw inputs, the training
preprocessing's) on its example request, and only then renamed into place.

The SavedModel is written with `keras.export.ExportArchive` with explicit TensorSpecs: a bare
`model.export` loses the input names and types an int label as float32, and signatures of a
bare `tf.Module` fail under `saved_model_cli run` (../shared/TF_KERAS_NOTES.md).
"""
from __future__ import annotations

import datetime
import functools
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug import __version__
from tfganaug.data.raw_input import to_input_grid_tf, to_unit_tf
from tfganaug.errors import InputError, OutputExistsError, TfganaugError
from tfganaug.fsutil import atomic_dir, atomic_write_json

SIGNATURE = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
INFO_FILE = "tfganaug_export.json"
VERIFY_ATOL = 1e-5


def export_run(run_dir, out, version: int | None = None, overwrite: bool = False) -> Path:
    """Export the run in `run_dir` to `<out>/<version>/` and return that folder.

    `version` defaults to one more than the highest integer version folder in `out` (1 if
    none). An existing version folder is refused unless `overwrite`; it is then replaced only
    once the new one is complete, and a failed export leaves `out` as it was.
    """
    from tfganaug.runs import RunFolder

    run, cfg = RunFolder.load(run_dir)
    out = Path(out)
    if out.exists():  # a model folder holds version folders only; anything else is not ours to add to
        stray = [p.name for p in out.iterdir() if not (p.is_dir() and p.name.isdigit()) and not p.name.startswith(".")] if out.is_dir() else []
        if not out.is_dir() or stray:
            raise InputError("--out", "a new folder or a model folder of version folders (1, 2, ...)",
                             "a file" if not out.is_dir() else f"a folder holding {', '.join(sorted(stray)[:3])}", out)
    if version is None:
        version = next_version(out)
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise InputError("--version", "a non-negative integer (TF Serving's version folder name)", repr(version))
    target = out / str(int(version))
    if target.exists() and not overwrite:
        raise OutputExistsError(target, "pass --overwrite to replace it, or leave --version out to add a new one")
    out_existed = out.exists()
    try:
        with atomic_dir(target, overwrite=overwrite) as tmp:
            # Models are restored inside the block: whatever fails (a missing checkpoint, a full
            # disk, a verification mismatch) removes the temporary folder with it.
            if cfg.kind == "gan":
                from tfganaug.gans import GANS
                servable = GAN_SERVABLES[GANS.get(cfg.gan.arch).synthesises_from](run_dir)
            elif cfg.kind == "seg":
                servable = _segmenter_servable(run, cfg)
            else:
                servable = _classifier_servable(run, cfg)
            _write(servable, tmp, model_name=out.resolve().name, version=int(version))
    except BaseException:
        if not out_existed:
            _remove_if_empty(out)
        raise
    return target


def next_version(out) -> int:
    """1 + the highest integer-named folder in `out` (TF Serving serves the highest), or 1."""
    out = Path(out)
    versions = [int(p.name) for p in out.iterdir() if p.is_dir() and p.name.isdigit()] if out.is_dir() else []
    return max(versions, default=0) + 1


class _Servable:
    """What one export needs: the models, the served function and its contract."""

    def __init__(self, *, models, fn, input_specs, outputs, example, reference, info, extra=None, scale=None):
        self.extra = extra or {}        # further signatures: {name: _Servable} (same models)
        self.scale = scale or {}        # {output: its value range's width} when not 1 (e.g. HU: the window)
        self.models = models            # Keras models whose variables the function reads
        self.fn = fn                    # positional args in the order of input_specs -> dict
        self.input_specs = input_specs  # [tf.TensorSpec(name=...)]
        self.outputs = outputs          # {name: (dtype name, shape with None)}
        self.example = example          # {input name: np.ndarray}: warmup and verification
        self.reference = reference      # {output name: np.ndarray}: the Keras models' answer
        self.info = info                # source-specific fields for tfganaug_export.json


def _gan_servable(run_dir) -> _Servable:
    from tfganaug.stages.train_gan import load_gan

    run, cfg, status, gans = load_gan(run_dir)
    names = tuple(status["class_names"])
    num_classes = len(names)
    generators = [gan.sampler() for _, gan, _ in gans]  # the EMA generators when trained with them
    conditional = cfg.gan.arch != "dcgan"
    latent_dim = int(gans[0][1].latent_dim)
    image_shape = tuple(int(d) for d in generators[0].output_shape[1:])

    def generate(z, label):
        checks = [
            tf.debugging.assert_equal(tf.shape(label)[0], tf.shape(z)[0],
                                      message="expected z and label with the same number of rows"),
            tf.debugging.assert_greater_equal(label, 0, message=f"expected label in [0, {num_classes})",
                                              summarize=16),
            tf.debugging.assert_less(label, num_classes, message=f"expected label in [0, {num_classes})",
                                     summarize=16),
        ]
        with tf.control_dependencies(checks):
            label = tf.identity(label)
            z = tf.identity(z)
        if conditional:
            image = generators[0]([z, label], training=False)
        else:
            rows = tf.dynamic_partition(tf.range(tf.shape(z)[0]), label, num_classes)
            parts = tf.dynamic_partition(z, label, num_classes)
            image = tf.dynamic_stitch(rows, [g(p, training=False) for g, p in zip(generators, parts)])
        image = tf.ensure_shape(tf.cast(image, tf.float32), (None,) + image_shape)
        return {"image": tf.clip_by_value((image + 1.0) / 2.0, 0.0, 1.0)}

    n = max(2, num_classes)
    z = np.random.default_rng(2018).uniform(-1.0, 1.0, (n, latent_dim)).astype(np.float32)
    label = (np.arange(n) % num_classes).astype(np.int32)
    return _Servable(
        models=generators, fn=generate,
        input_specs=[tf.TensorSpec([None, latent_dim], tf.float32, name="z"),
                     tf.TensorSpec([None], tf.int32, name="label")],
        outputs={"image": ("float32", [None, *image_shape])},
        example={"z": z, "label": label},
        reference={"image": _keras_images(gans, z, label, conditional)},
        info={"source_run": str(Path(run.path).resolve()), "kind": "gan", "arch": cfg.gan.arch,
              "class_names": list(names), "checkpoints": {m: str(c) for m, _, c in gans},
              "value_range": {"z": [-1.0, 1.0], "label": [0, num_classes - 1], "image": [0.0, 1.0]},
              "label_out_of_range": "INVALID_ARGUMENT (graph assertion); labels are never clipped",
              "generator_per_class": not conditional})


def _keras_images(gans, z, label, conditional) -> np.ndarray:
    """The generators' answer computed the way `stages.synthesize.sample_images` computes it."""
    if conditional:
        raw = gans[0][1].generate(z, label).numpy()
    else:
        raw = np.zeros((len(label),) + tuple(gans[0][1].generator.output_shape[1:]), np.float32)
        for c, (_, gan, _) in enumerate(gans):
            if (label == c).any():
                raw[label == c] = gan.generate(z[label == c]).numpy()
    return np.clip((raw + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)


def _classifier_servable(run, cfg) -> _Servable:
    from tfganaug.stages.evaluate import load_classifier

    model = load_classifier(run)
    names = list(run.status().get("class_names") or [])
    image_shape = tuple(int(d) for d in model.input_shape[1:])
    num_classes = int(model.output_shape[-1])
    if len(names) != num_classes:
        raise TfganaugError(f"{run.path}: expected {num_classes} class names in status.json (the model's "
                            f"output width), got {names}")

    def classify(image):
        probabilities = tf.cast(model(image, training=False), tf.float32)
        return {"probabilities": probabilities,
                "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    image = np.random.default_rng(2018).uniform(0.0, 1.0, (2,) + image_shape).astype(np.float32)
    probabilities = np.asarray(model(image, training=False), np.float32)
    return _Servable(
        models=[model], fn=classify,
        input_specs=[tf.TensorSpec([None, *image_shape], tf.float32, name="image")],
        outputs={"probabilities": ("float32", [None, num_classes]), "class_id": ("int64", [None])},
        example={"image": image},
        reference={"probabilities": probabilities, "class_id": probabilities.argmax(-1).astype(np.int64)},
        info={"source_run": str(Path(run.path).resolve()), "kind": "cls", "arch": "lesion_cnn",
              "class_names": names, "model_file": str(run.final_model("cls").resolve()),
              "value_range": {"image": [0.0, 1.0], "probabilities": [0.0, 1.0],
                              "class_id": [0, num_classes - 1]},
              "preprocessing": "none outside the graph: the training-set mean is subtracted inside it"})


def _segmenter_servable(run, cfg) -> _Servable:
    """serving_default: raw intensities at any slice size (`data.raw_input`) -> probabilities and
    label map on the input's grid; `preprocessed`: slices as in training -> the same at S px."""
    from tfganaug.data.raw_input import raw_description, request_to_unit, source_units, to_input_grid
    from tfganaug.stages.evaluate import load_segmenter
    from tfganaug.tasks.segmenter import decode

    model = load_segmenter(run)
    status = run.status()
    names, output = list(status.get("class_names") or []), status.get("output", "softmax")
    # 2-D: (S, S, C) slices; 3-D: (Z, S, S, C) volumes of any number of slices Z
    image_shape = tuple(None if d is None else int(d) for d in model.input_shape[1:])
    spatial = list(image_shape[:-1])
    volumes = len(spatial) == 3
    k, c = int(model.output_shape[-1]), image_shape[-1]
    units = source_units(cfg.data)

    def segment(image):
        probabilities = tf.cast(model(image, training=False), tf.float32)
        return {"probabilities": probabilities, "label_map": decode(probabilities, output)}

    def segment_raw(image):
        unit, top, left = to_unit_tf(image, units, cfg.data, volumes)
        probabilities = tf.cast(model(unit, training=False), tf.float32)
        shape = tf.shape(image)
        probabilities = to_input_grid_tf(probabilities, shape[-3], shape[-2], top, left)
        return {"probabilities": probabilities, "label_map": decode(probabilities, output)}

    rng = np.random.default_rng(2018)
    depth = [cfg.seg.patch_depth + 3] if volumes else []
    raw = _raw_example(units, [2, *depth, cfg.data.image_size + 9, cfg.data.image_size - 3, c], rng)
    raw_probabilities = to_input_grid(model(request_to_unit(raw, units, cfg.data, volumes), training=False),
                                      raw.shape[-3], raw.shape[-2])
    image = rng.uniform(0.0, 1.0, (2,) + tuple(depth or []) + tuple(image_shape[len(depth):])).astype(np.float32)
    probabilities = np.asarray(model(image, training=False), np.float32)
    grid = [None] * len(spatial)
    info = {"source_run": str(Path(run.path).resolve()), "kind": "seg", "arch": f"unet:{cfg.seg.unet}",
            "class_names": names, "output": output, "channel_names": status.get("channel_names"), "units": units,
            "value_range": {"probabilities": [0.0, 1.0], "label_map": [0, len(names) - 1]},
            "signatures": {SIGNATURE: "raw intensities at any slice size: " + raw_description(units, cfg.data),
                           "preprocessed": "slices preprocessed as in training: " + (
                               f"CT: window WW {cfg.data.window_width:g} / WL {cfg.data.window_level:g} HU onto "
                               f"[0, 1]; MR: {_mr_preprocessing(cfg.data)}; slices resized to {image_shape[-2]} px"
                               + ("; 3-D: whole volumes (batch, slices, H, W, C), any number of slices; the "
                                  "run was trained on windows of " f"{cfg.seg.patch_depth} slices"
                                  if volumes else ""))}}
    preprocessed = _Servable(
        models=[model], fn=segment,
        input_specs=[tf.TensorSpec([None, *image_shape], tf.float32, name="image")],
        outputs={"probabilities": ("float32", [None, *spatial, k]), "label_map": ("int32", [None, *spatial])},
        example={"image": image},
        reference={"probabilities": probabilities, "label_map": decode(probabilities, output).numpy()},
        info=info)
    return _Servable(
        models=[model], fn=segment_raw,
        input_specs=[tf.TensorSpec([None, *grid, c], tf.float32, name="image")],
        outputs={"probabilities": ("float32", [None, *grid, k]), "label_map": ("int32", [None, *grid])},
        example={"image": raw},
        reference={"probabilities": raw_probabilities, "label_map": decode(raw_probabilities, output).numpy()},
        info=info, extra={"preprocessed": preprocessed})


def _raw_example(units: str, shape, rng) -> np.ndarray:
    """A small request in the data's own units (warmup and verification): not square, not S px."""
    if units == "HU":
        return rng.uniform(-1100.0, 1600.0, shape).astype(np.float32)
    if units == "grey8":
        return rng.integers(0, 256, shape).astype(np.float32)
    if units == "zscore":  # MR as stored: a brain (a disc of positive values) on a zero background
        h, w = shape[-3], shape[-2]
        yy, xx = np.mgrid[:h, :w]
        brain = ((yy - h / 2) / (h / 2.5)) ** 2 + ((xx - w / 2) / (w / 2.5)) ** 2 < 1
        return (rng.uniform(20.0, 900.0, shape) * brain[..., None]).astype(np.float32)
    return rng.uniform(0.0, 1.0, shape).astype(np.float32)


def _mr_preprocessing(data_cfg) -> str:
    """How the run's MR reached [0, 1] (`DataConfig.mr_norm`), in words for tfganaug_export.json."""
    if data_cfg.mr_norm == "percentile":
        low, high = data_cfg.mr_percentiles
        return (f"per volume and contrast, brain voxels clipped at their percentiles {low:g} and {high:g} and "
                "mapped linearly onto [0, 1], background (outside the brain) 0")
    return (f"z-score inside the brain clipped to +-{data_cfg.zscore_clip:g} onto [0, 1] "
            "(background, z = 0, at 0.5)")


def _image_gan_setup(run_dir):
    """What every image-GAN servable starts from: the restored GAN, its sizes, the export info
    and the seeded generator of the verification examples."""
    from tfganaug.stages.train_gan import load_gan

    run, cfg, status, gans = load_gan(run_dir)
    _, gan, ckpt = gans[0]
    names, channels = list(status["class_names"]), list(status["channel_names"])
    k, c, size = len(names), len(channels), cfg.data.image_size
    rng = np.random.default_rng(2018)
    info = {"source_run": str(Path(run.path).resolve()), "kind": "gan", "arch": cfg.gan.arch, "checkpoint": ckpt,
            "class_names": names, "channel_names": channels,
            "weights": (f"exponential moving average of the generator (beta {cfg.gan.g_ema_beta:g})" if gan.ema
                        else "the trained generator")}

    return cfg, gan, names, k, c, size, rng, info


def _unit(x):
    return tf.clip_by_value((tf.cast(x, tf.float32) + 1.0) / 2.0, 0.0, 1.0)


def _pix2pix_servable(run_dir) -> _Servable:
    """label_map [N, S, S] int32 -> image [N, S, S, C] in [0, 1]."""
    cfg, gan, names, k, c, size, rng, info = _image_gan_setup(run_dir)

    def render(label_map):
        checks = [tf.debugging.assert_greater_equal(label_map, 0, message=f"expected labels in [0, {k})"),
                  tf.debugging.assert_less(label_map, k, message=f"expected labels in [0, {k})")]
        with tf.control_dependencies(checks):
            label_map = tf.identity(label_map)
        return {"image": _unit(gan.sampler()(tf.one_hot(label_map, k), training=False))}

    label_map = rng.integers(0, k, (2, size, size)).astype(np.int32)
    return _Servable(
        models=[gan.sampler()], fn=render,
        input_specs=[tf.TensorSpec([None, size, size], tf.int32, name="label_map")],
        outputs={"image": ("float32", [None, size, size, c])}, example={"label_map": label_map},
        reference={"image": np.clip((gan.generate(tf.one_hot(label_map, k)).numpy() + 1) / 2, 0, 1)},
        info={**info, "value_range": {"label_map": [0, k - 1], "image": [0.0, 1.0]},
              "dropout": "off when served (training=False)"})


def _cyclegan_servable(run_dir) -> _Servable:
    """serving_default: A -> B on raw domain-A slices at any size (e.g. CT in HU), answered on the
    input's grid in its units; `b_to_a` the same for B -> A; `preprocessed` and
    `b_to_a_preprocessed`: image [N, S, S, C] in [0, 1] -> image in [0, 1], as in training."""
    from tfganaug import config as config_lib
    from tfganaug.data.raw_input import from_unit, raw_description, source_units
    from tfganaug.stages.synthesize import translate_slices
    cfg, gan, names, k, c, size, rng, info = _image_gan_setup(run_dir)
    domains = {"A": cfg.data, "B": config_lib.with_data(cfg, cfg.gan.domain_b).data}
    units = {d: source_units(data_cfg) for d, data_cfg in domains.items()}
    info = {**info, "domains": {d: {"data": data_cfg.name, "units": units[d]} for d, data_cfg in domains.items()},
            "signatures": {SIGNATURE: "A -> B (e.g. contrast -> non-contrast) on raw domain-A slices: "
                           + raw_description(units["A"], domains["A"]) + "; answered in the input's units",
                           "b_to_a": "B -> A on raw domain-B slices: " + raw_description(units["B"], domains["B"]),
                           "preprocessed": "A -> B, image in [0, 1] (the window mapped to [0, 1]) at "
                                           f"{size} px", "b_to_a_preprocessed": "B -> A, the same"}}

    def direction(generator, translate, source):
        def fn(image):
            return {"image": _unit(generator(tf.cast(image, tf.float32) * 2.0 - 1.0, training=False))}

        data_cfg, u = domains[source], units[source]

        def raw_fn(image):
            unit, top, left = to_unit_tf(image, u, data_cfg)
            fake = _unit(generator(unit * 2.0 - 1.0, training=False))
            shape = tf.shape(image)
            return {"image": from_unit(to_input_grid_tf(fake, shape[-3], shape[-2], top, left), u, data_cfg)}

        image = rng.uniform(0, 1, (2, size, size, c)).astype(np.float32)
        raw = _raw_example(u, (2, size + 9, size - 3, c), rng)
        preprocessed = _Servable(
            models=[generator], fn=fn,
            input_specs=[tf.TensorSpec([None, size, size, c], tf.float32, name="image")],
            outputs={"image": ("float32", [None, size, size, c])}, example={"image": image},
            reference={"image": np.clip((translate(image * 2 - 1).numpy() + 1) / 2, 0, 1)}, info=info)
        served = _Servable(
            models=[generator], fn=raw_fn,
            input_specs=[tf.TensorSpec([None, None, None, c], tf.float32, name="image")],
            outputs={"image": ("float32", [None, None, None, c])}, example={"image": raw},
            reference={"image": translate_slices(translate, raw, u, data_cfg).astype(np.float32)}, info=info,
            scale={"image": {"HU": data_cfg.window_width, "grey8": 255.0}.get(u, 1.0)})
        return served, preprocessed

    # the EMA generators when trained with them (translate_ab/translate_ba use them too)
    g_ab, g_ba = gan.sampler("g_ab"), gan.sampler("g_ba")
    ab, ab_preprocessed = direction(g_ab, gan.translate_ab, "A")
    ba, ba_preprocessed = direction(g_ba, gan.translate_ba, "B")
    ab.extra = {"preprocessed": ab_preprocessed, "b_to_a": ba, "b_to_a_preprocessed": ba_preprocessed}
    ab.models = [g_ab, g_ba]
    return ab


def _stylegan2_servable(run_dir) -> _Servable:
    """z [N, z_dim], truncation [N] -> images, mask probabilities and label map."""
    cfg, gan, names, k, c, size, rng, info = _image_gan_setup(run_dir)
    z_dim = cfg.gan.latent_dim

    def sample(z, truncation):
        images, probs = gan.generate(z, truncation_psi=truncation[:, None], use_ema=True, noise_mode="const")
        probs = tf.cast(probs, tf.float32)
        return {"images": _unit(images), "mask_probabilities": probs,
                "label_map": tf.argmax(probs, axis=-1, output_type=tf.int32)}

    z = rng.standard_normal((2, z_dim)).astype(np.float32)
    psi = np.array([1.0, 0.7], np.float32)
    images, probs = gan.generate(z, truncation_psi=psi[:, None], use_ema=True, noise_mode="const")
    probs = np.asarray(probs, np.float32)
    return _Servable(
        models=[gan.sampler()], fn=sample,  # G_ema: the only network the signature runs
        input_specs=[tf.TensorSpec([None, z_dim], tf.float32, name="z"),
                     tf.TensorSpec([None], tf.float32, name="truncation")],
        outputs={"images": ("float32", [None, size, size, c]), "mask_probabilities": ("float32", [None, size, size, k]),
                 "label_map": ("int32", [None, size, size])},
        example={"z": z, "truncation": psi},
        reference={"images": np.clip((np.asarray(images) + 1) / 2, 0, 1).astype(np.float32),
                   "mask_probabilities": probs, "label_map": probs.argmax(-1).astype(np.int32)},
        info={**info, "value_range": {"z": "standard normal", "truncation": [0.0, 1.0], "images": [0.0, 1.0]},
              "noise": "constant (noise_mode='const'): served samples are a pure function of z and truncation",
              "weights": "exponential moving average of the generator"})



# What a GAN synthesises from (its class's `synthesises_from`) -> how it is served.
GAN_SERVABLES = {"labels": _gan_servable, "label_maps": _pix2pix_servable,
                 "source": _cyclegan_servable, "noise": _stylegan2_servable}


def _write(servable: _Servable, folder: Path, model_name: str, version: int) -> None:
    archive = keras.export.ExportArchive()
    for model in servable.models:
        archive.track(model)
    archive.add_endpoint(SIGNATURE, servable.fn, input_signature=servable.input_specs)
    for name, other in servable.extra.items():
        archive.add_endpoint(name, other.fn, input_signature=other.input_specs)
    archive.write_out(str(folder), verbose=False)

    max_diff = max([_verify(folder, servable)] + [_verify(folder, other, name) for name, other in servable.extra.items()])
    extra = folder / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
        writer.write(prediction_log_bytes(model_name, servable.example, SIGNATURE))
    atomic_write_json(extra / INFO_FILE, {
        **servable.info,
        "model_name": model_name, "version": version, "signature_name": SIGNATURE,
        "inputs": {s.name: {"dtype": s.dtype.name, "shape": s.shape.as_list()} for s in servable.input_specs},
        "outputs": {k: {"dtype": d, "shape": s} for k, (d, s) in servable.outputs.items()},
        "other_signatures": {name: {"inputs": {sp.name: {"dtype": sp.dtype.name, "shape": sp.shape.as_list()}
                                               for sp in other.input_specs},
                                    "outputs": {k: {"dtype": d, "shape": sh} for k, (d, sh) in other.outputs.items()}}
                             for name, other in servable.extra.items()},
        "example_request": rest_request_body(servable.example),
        "rest_predict_url": f"http://localhost:8501/v1/models/{model_name}:predict",
        "verified_max_abs_diff": max_diff, "verify_atol": VERIFY_ATOL,
        "tfganaug": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})


def _verify(folder: Path, servable: _Servable, signature: str = SIGNATURE) -> float:
    """Reload the written SavedModel and compare it with the Keras models on the example; the
    worst |difference| as a share of each output's value range (1 for [0, 1] outputs)."""
    loaded = tf.saved_model.load(str(folder))
    got = loaded.signatures[signature](**{k: tf.constant(v) for k, v in servable.example.items()})
    diffs = {}
    for name, want in servable.reference.items():
        have = got[name].numpy()
        if have.shape != want.shape or have.dtype != want.dtype:
            raise TfganaugError(f"{folder}: expected output '{name}' {want.dtype}{list(want.shape)} from the "
                                f"exported signature, got {have.dtype}{list(have.shape)}")
        diffs[name] = (float(np.max(np.abs(have.astype(np.float64) - want), initial=0.0))
                       / servable.scale.get(name, 1.0))
    worst = max(diffs.values())
    if worst > VERIFY_ATOL:
        raise TfganaugError(f"{folder}: expected the SavedModel to reproduce the Keras outputs within "
                            f"{VERIFY_ATOL} of their value range, got max |difference| {diffs}")
    return worst


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


# --- TF Serving warmup records: protobuf wire format written by hand -----------------------
# PredictionLog{predict_log = 6: PredictLog{request = 1: PredictRequest{model_spec = 1:
# ModelSpec{name = 1, signature_name = 3}, inputs = 2: map<string, TensorProto>}}}
# (tensorflow_serving/apis/{prediction_log,predict,model}.proto). A map is a repeated entry
# message {key = 1, value = 2}. TensorProto comes from TensorFlow itself, so
# tensorflow-serving-api is not needed; keys are written sorted, as deterministic
# serialization does, which gives the official package's bytes.

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(model_name: str, inputs: dict, signature_name: str = SIGNATURE) -> bytes:
    """A serialized `tensorflow.serving.PredictionLog` holding one PredictRequest."""
    spec = (_field(1, model_name.encode()) if model_name else b"") + _field(3, signature_name.encode())
    entries = b"".join(
        _field(2, _field(1, key.encode()) + _field(2, tf.make_tensor_proto(np.asarray(value)).SerializeToString()))
        for key, value in sorted(inputs.items()))
    return _field(6, _field(1, _field(1, spec) + entries))


# --- TF Serving REST bodies ---------------------------------------------------------------

def rest_request_body(inputs: dict, signature_name: str = SIGNATURE) -> dict:
    """The columnar REST body `{"signature_name": ..., "inputs": {name: nested lists}}`.

    POST it as JSON to `http://<host>:8501/v1/models/<name>:predict`.
    """
    return {"signature_name": signature_name,
            "inputs": {name: np.asarray(value).tolist() for name, value in inputs.items()}}


def predict_with_rest_body(saved_model_dir, body) -> dict:
    """Answer a TF Serving REST predict body from the SavedModel, as the model server would.

    `body` is a dict or JSON text in the columnar form (`"inputs"`, answered with
    `"outputs"`) or the row form (`"instances"`, answered with `"predictions"`). Lists become
    tensors of the signature's dtypes. As in TF Serving, a signature with a single output
    answers with its value alone (`{"outputs": [[...]]}`); several outputs give a mapping by
    name. Where TF Serving would answer HTTP 400 `{"error": ...}` (a malformed body or an
    INVALID_ARGUMENT from the graph, e.g. a label out of range) this raises `InputError`.
    """
    where = os.fspath(saved_model_dir)
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InputError("request body", "JSON", f"unparsable text ({exc})", where) from None
    if not isinstance(body, dict) or ("inputs" in body) == ("instances" in body):
        raise InputError("request body", 'a JSON object with exactly one of "inputs" or "instances"',
                         repr(sorted(body)) if isinstance(body, dict) else type(body).__name__, where)
    name = body.get("signature_name", SIGNATURE)
    signatures = _signatures(Path(where).resolve(), _mtime_ns(Path(where) / "saved_model.pb"))
    if name not in signatures:
        raise InputError("signature_name", f"one of {sorted(signatures)}", repr(name), where)
    fn = signatures[name]
    specs = fn.structured_input_signature[1]
    columnar = "inputs" in body
    values = body["inputs"] if columnar else _columns(body["instances"], specs, where)
    if not isinstance(values, dict):
        if len(specs) != 1:
            raise InputError("inputs", f"a mapping with the inputs {sorted(specs)}", type(values).__name__, where)
        values = {next(iter(specs)): values}
    if set(values) != set(specs):
        raise InputError("inputs", f"exactly {sorted(specs)}", f"{sorted(values)}", where)
    tensors = {key: _tensor(key, values[key], spec, where) for key, spec in specs.items()}
    try:
        result = fn(**tensors)
    except tf.errors.InvalidArgumentError as exc:
        raise InputError("request", "inputs the served graph accepts",
                         f"INVALID_ARGUMENT: {_graph_error(exc.message, specs)}", where) from None
    result = {key: value.numpy() for key, value in result.items()}
    if columnar:
        outputs = {key: value.tolist() for key, value in result.items()}
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(result) == 1:
        return {"predictions": next(iter(result.values())).tolist()}
    n = len(next(iter(result.values())))
    return {"predictions": [{key: value[i].tolist() for key, value in result.items()} for i in range(n)]}


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        raise InputError("a SavedModel folder", "a folder with saved_model.pb", "no such file", path) from None


@functools.lru_cache(maxsize=4)
def _signatures(folder: Path, mtime_ns: int):
    """Loaded once per folder and version of its saved_model.pb, as a model server keeps it loaded."""
    return tf.saved_model.load(str(folder)).signatures


def _graph_error(message: str, specs) -> str:
    """The informative part of a graph error: the failed assertion's message and what it saw.

    TF formats a failed assertion as one line:
    `assertion failed: [message] [Condition ...] [x (label:0) = ] [0 1 5] [y ...] [3]`.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("assertion failed: ["):
            parts = line[len("assertion failed: ["):].rstrip("]").split("] [")
            seen = [f" ({name} = [{value}])" for part, value in zip(parts, parts[1:])
                    if part.startswith("x (") and (name := part[3:].split(":")[0]) in specs]
            return parts[0] + "".join(seen[:1])
    return next((line for line in lines if not line.startswith(("Graph execution error", "Detected at"))),
                message)[:300]


def _columns(instances, specs, where) -> dict:
    """Row form -> columns: a list of {input: value} objects, or bare values for one input."""
    if not isinstance(instances, list):
        raise InputError("instances", "a list with one entry per example", type(instances).__name__, where)
    if len(specs) == 1 and not all(isinstance(row, dict) for row in instances):
        return {next(iter(specs)): instances}
    if not all(isinstance(row, dict) and set(row) == set(specs) for row in instances):
        raise InputError("instances", f"objects with exactly the inputs {sorted(specs)}", "other rows", where)
    return {key: [row[key] for row in instances] for key in specs}


def _tensor(key, value, spec: tf.TensorSpec, where) -> tf.Tensor:
    try:
        array = np.asarray(value)
    except ValueError:
        raise InputError(f"input '{key}'", "a rectangular nested list", "ragged lists", where) from None
    if spec.dtype.is_integer and array.size and array.dtype.kind not in "iu":
        raise InputError(f"input '{key}'", f"integers ({spec.dtype.name})", f"values of type {array.dtype}", where)
    if array.dtype == object or (array.size and array.dtype.kind not in "iuf"):
        raise InputError(f"input '{key}'", f"numbers ({spec.dtype.name})", f"values of type {array.dtype}", where)
    array = array.astype(spec.dtype.as_numpy_dtype)
    if not spec.shape.is_compatible_with(array.shape):
        raise InputError(f"input '{key}'", f"shape {spec.shape.as_list()} (None: any length)",
                         f"shape {list(array.shape)}", where)
    return tf.constant(array)
