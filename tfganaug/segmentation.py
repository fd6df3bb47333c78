"""The segmentation stages: train a U-Net on real and/or synthetic slices, and score it.

`train_seg(cfg, out)` trains into a run folder like every other command (config.json first,
exact resume, divergence guard); `evaluate_seg(run)` writes `evaluation.json` with

* per-slice mean IoU and Dice per class (the KiTS capstone's numbers): the mean over the
  slices where the class is in the reference or the prediction; a slice where both are
  empty is left out (NaN), so empty slices neither inflate nor deflate the mean;
* per-case (volumetric) Dice per class (KiTS, Sandfort et al.): all slices of a patient
  stacked, Dice with s = 0; a class absent from a case in both reference and prediction
  is left out of that class's mean;
* relative volume error per class and case, from the voxel spacing of the slices;
* for BraTS labels: whole tumour, tumour core and enhancing tumour Dice per case, with the
  BraTS convention (:mod:`tfganaug.metrics.brats`: a region absent from both maps scores 1,
  and such cases stay in the mean; `brats_regions_absent` says how many there are);
* confidence intervals over seeds come from `tfganaug report` (mean_ci over runs).

Synthetic segmentation sets (written by `tfganaug synthesize` from Pix2Pix, CycleGAN or
StyleGAN2 runs) are folders with ``images.npz`` (images float32 (N,H,W,C) in [0,1], masks
uint8 (N,H,W), class_names, channel_names) and ``manifest.json`` (its sha256 checked).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug import __version__, config as config_lib
from tfganaug.data.pipeline import training_batches
from tfganaug.data.segsets import SegSet, all_slices_of, load_segsets
from tfganaug.data.synthetic import read_synthetic_pairs
from tfganaug.errors import InputError, RunFolderError
from tfganaug.fsutil import atomic_dir, atomic_write_json, sha256_file, slug
from tfganaug.gans.base import seed_generator_states
from tfganaug.metrics.brats import BRATS_LABELS, BRATS_REGION_KEYS, BRATS_REGIONS, brats_regions_dice
from tfganaug.metrics.segmentation import dice_per_class, iou_per_class, volume_error
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean
from tfganaug.schedules import ScaledCosineDecay
from tfganaug.tasks.segmenter import SegLoss, build_segmenter, decode, is_3d, unet_args
from tfganaug.train import RunFolder, fit_member, start_run, steps_for
from tfganaug.viz import png_bytes


# ------------------------------------------------------------------ synthetic sets

def write_seg_synthetic(out, images: np.ndarray, masks: np.ndarray, class_names, channel_names,
                        info: dict, overwrite: bool = False, previews: int = 16, extra=None,
                        origin: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write a synthetic segmentation set atomically (folder renamed into place when complete);
    `extra(tmp_folder) -> dict` may add files (e.g. NIfTI volumes) and manifest entries;
    `origin` = (patient ids, slice indices) of the real slices each sample was made from."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    masks = np.asarray(masks, np.uint8)
    arrays = {}
    if origin is not None:
        arrays = {"patient_ids": np.array([str(p).split("#z")[0] for p in origin[0]]),
                  "slice_index": np.asarray(origin[1], np.int64)}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.savez_compressed(tmp / "images.npz", images=images, masks=masks, class_names=np.array(class_names),
                            channel_names=np.array(channel_names), **arrays)
        for i in range(min(previews, len(masks))):
            grey = (images[i, ..., 0] * 255).round().astype(np.uint8)
            label = (masks[i].astype(np.float32) * (255.0 / max(1, len(class_names) - 1))).round().astype(np.uint8)
            path = tmp / "png" / f"{i:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(np.concatenate([grey, label], axis=1)))
        if extra is not None:
            info = {**info, **extra(tmp)}
        atomic_write_json(tmp / "manifest.json", {
            **info, "kind": "segmentation", "count": int(len(masks)), "class_names": list(class_names),
            "channel_names": list(channel_names), "image_size": int(images.shape[1]), "value_range": [0.0, 1.0],
            "label_counts": np.bincount(masks.ravel(), minlength=len(class_names)).tolist(),
            "images_sha256": sha256_file(tmp / "images.npz"), "tfganaug": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return Path(out)


def _seg_synthetic_manifest(folder, like: SegSet | None, image_size: int) -> dict:
    """The manifest of a synthetic segmentation set, checked against the real training set."""
    from tfganaug.synthesize import read_synthetic_manifest
    expect = {} if like is None else {
        key: (key, want, f"{want} like the real training data")
        for key, want in (("class_names", list(like.class_names)), ("channel_names", list(like.channel_names)),
                          ("image_size", image_size))}
    return read_synthetic_manifest(folder, "segmentation", expect)


def _same_patients(patient_ids: np.ndarray, slice_index: np.ndarray, like: SegSet) -> np.ndarray:
    """Indices of the synthetic slices made from training cases of `like` (z-blocks for data split along z)."""
    from tfganaug.data.segsets import z_block_ids
    raw = np.array([str(p).split("#z")[0] for p in patient_ids])
    ids = z_block_ids(raw, slice_index) if any("#z" in p for p in like.patients()) else raw
    return np.flatnonzero(np.isin(ids, like.patient_ids))


def load_seg_synthetic(folder, like: SegSet, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks) of a synthetic segmentation set, checked against the real training set.

    Sets made from real slices (CycleGAN: labels carried over) record each slice's patient and
    position; only slices of `like`'s training cases are used, so that a set written under one
    split never brings copies of another split's validation or test cases into training.
    """
    _seg_synthetic_manifest(folder, like, image_size)
    z = read_synthetic_pairs(folder)
    images, masks = z["images"].astype(np.float32), z["masks"].astype(np.int32)
    if "patient_ids" in z:
        keep = _same_patients(z["patient_ids"].astype(str), z["slice_index"], like)
        if not len(keep):
            raise InputError("synthetic set", f"copies of the training cases {like.patients()[:4]}",
                             f"cases {sorted(set(z['patient_ids'].astype(str).tolist()))[:4]}", folder)
        images, masks = images[keep], masks[keep]
    return images, masks


def load_seg_synthetic_volumes(folder, like: SegSet, data_cfg) -> SegSet:
    """Whole synthetic volumes of the training patients of `like` (3-D training).

    Only a CycleGAN set has volumes: `synthesize --from` writes every source case as NIfTI in
    Hounsfield units with its labels. They go through the real data's preprocessing (window,
    square, resize), and only the cases (or, for data split along z, the z-blocks) of the
    real training split are kept: synthetic copies of validation or test patients would leak.
    """
    from tfganaug.data.cases import Case
    from tfganaug.data.segsets import slices_from_cases, z_block_ids
    import nibabel as nib
    folder = Path(folder)
    manifest = _seg_synthetic_manifest(folder, like, data_cfg.image_size)
    entries = [e for e in manifest.get("nifti") or [] if e.get("labels")]
    if not entries:
        raise InputError("synthetic set for the 3-D U-Net", "whole volumes (a cyclegan set written with --from)",
                         f"{manifest.get('arch', 'a')} set of 2-D slices only", folder)
    cases = []
    for e in entries:
        image = np.asarray(nib.load(str(folder / e["image"])).dataobj, np.float32)
        labels = np.asarray(nib.load(str(folder / e["labels"])).dataobj)
        if image.shape != tuple(e["shape"]) or labels.shape != image.shape:
            raise InputError("synthetic volume", f"shape {tuple(e['shape'])} from the manifest",
                             f"image {image.shape}, labels {labels.shape}", folder / e["image"])
        cases.append(Case(str(e["patient_id"]), image[..., None], labels.astype(np.uint8), tuple(e["spacing_mm"]),
                          tuple(manifest["class_names"]), tuple(manifest["channel_names"]), units="HU",
                          domain="synthetic", source=str(folder / e["image"])))
    fake = slices_from_cases(cases, data_cfg, str(folder), all_slices=True)
    keep = _same_patients(fake.patient_ids, fake.slice_index, like)
    if any("#z" in p for p in like.patients()):
        fake.patient_ids = z_block_ids(fake.patient_ids, fake.slice_index)
    if not len(keep):
        raise InputError("synthetic volumes", f"copies of the training cases {like.patients()[:4]}",
                         f"cases {sorted(set(fake.patient_ids.tolist()))[:4]}", folder)
    return fake.subset(keep)


# ------------------------------------------------------------------ training

def _augment_fn(cfg, train: SegSet):
    """The training augmentation: a name `training_batches` knows, or `(image, label, seed)` callable."""
    seg, three_d = cfg.seg, is_3d(cfg.seg)
    if seg.augment == "none" or (seg.augment == "flip" and not three_d):
        return seg.augment
    from tfganaug.data.volumes import flip_3d_tf, standard_augment_3d_tf
    if seg.augment == "flip":
        return flip_3d_tf
    # Sandfort et al.'s elastic sigma of 8 px belongs to slices of about 256 px (volumes of 192
    # slices); it is scaled with the slice size (8 px on a 32 px slice folds a third of the warp
    # over itself) and, in 3-D, with the window's depth.
    sigma_px = 8.0 * cfg.data.image_size / 256.0
    if three_d:
        from tfganaug.data.volumes import PAPER_VOLUME_SIDE
        sigmas = (8.0 * seg.patch_depth / PAPER_VOLUME_SIDE, sigma_px, sigma_px)

        def geometric(image, label, seed):
            return standard_augment_3d_tf(image, label, seed, sigma_px=sigmas)
    else:
        from tfganaug.data.elastic import standard_augment_tf

        def geometric(image, label, seed):
            return standard_augment_tf(image, label, seed, sigma_px=sigma_px)
    if seg.augment == "standard":
        return geometric
    # histeq: half the samples get the histogram of the non-contrast reference, then standard.
    from tfganaug.data.histeq import random_histeq_tf, reference_histogram
    reference = all_slices_of(config_lib.with_data(cfg, seg.histeq_reference).data).images  # all of it: only its histogram is used
    ref_hist = reference_histogram(reference, 256, (0.0, 1.0))

    def histeq(image, label, seed):
        return geometric(random_histeq_tf(image, seed, ref_hist, (0.0, 1.0)), label, seed)
    return histeq


def _training_pool(cfg, train: SegSet):
    """(real images, real masks, synthetic (images, masks) or None, synthetic ratio, augmented copies)."""
    seg = cfg.seg
    synthetic = None
    if seg.synthetic and (seg.synthetic_ratio > 0 or seg.setting):
        synthetic = load_seg_synthetic(seg.synthetic, train, cfg.data.image_size)
    real_x, real_y, ratio = train.images, train.masks.astype(np.int32), seg.synthetic_ratio
    if seg.setting:
        parts = config_lib.parse_setting(seg.setting)
        n_real = len(train)
        pools_x, pools_y = [], []
        if parts["A"]:  # flip-augmented copies of the real slices (Son et al.'s "A")
            n_a = int(round(parts["A"] * n_real))
            idx = np.arange(n_a) % n_real
            pools_x.append(real_x[idx][:, :, ::-1])
            pools_y.append(real_y[idx][:, :, ::-1])
        if parts["F"]:
            n_f = int(round(parts["F"] * n_real))
            if synthetic is None or len(synthetic[1]) < n_f:
                have = 0 if synthetic is None else len(synthetic[1])
                raise InputError("synthetic set", f"at least {n_f} slices for setting {seg.setting} "
                                 f"({parts['F']:.0%} of {n_real} real)", f"{have}", seg.synthetic)
            pools_x.append(synthetic[0][:n_f])
            pools_y.append(synthetic[1][:n_f])
        extra = (np.concatenate(pools_x), np.concatenate(pools_y)) if pools_x else None
        n_extra = 0 if extra is None else len(extra[1])
        if parts["R"] == 0:  # fake only: the "real" pool is the synthetic one
            return extra[0], extra[1], None, 0.0, n_extra
        return real_x, real_y, extra, n_extra / (n_extra + n_real), n_extra
    return real_x, real_y, synthetic, ratio, 0


def _volume_pool(cfg, train: SegSet):
    """3-D: (stacked volumes, labels, window starts, synthetic (volumes, labels, starts) or None,
    synthetic ratio, synthetic volumes' slice count)."""
    from tfganaug.data.volumes import volumes_of, window_stack
    depth = cfg.seg.patch_depth
    x, y, starts = window_stack(volumes_of(train), depth)
    extra, n_extra = None, 0
    if cfg.seg.synthetic and cfg.seg.synthetic_ratio > 0:
        fake = load_seg_synthetic_volumes(cfg.seg.synthetic, train, cfg.data)
        extra, n_extra = window_stack(volumes_of(fake), depth), len(fake)
    return x, y, starts, extra, cfg.seg.synthetic_ratio, n_extra


def train_seg(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the segmentation U-Net of `cfg` into run folder `out` (resuming it if it holds the same config)."""
    three_d = is_3d(cfg.seg)
    sets = load_segsets(cfg.data, all_slices=three_d)  # bad data fails here, before a run folder exists
    train, val = sets["train"], sets["val"]
    window = starts = None
    if three_d:
        x, y, starts, extra, ratio, n_extra = _volume_pool(cfg, train)
        window, samples = cfg.seg.patch_depth, max(1, round(len(y) / cfg.seg.patch_depth))
    else:
        x, y, extra, ratio, n_extra = _training_pool(cfg, train)
        samples = len(y)
    augment = _augment_fn(cfg, train)
    with start_run(cfg, out, overwrite) as (run, strategy):
        if strategy is None:
            return run
        args = unet_args(cfg.seg, train.num_classes)
        steps = steps_for(round(samples / (1.0 - ratio)) if ratio < 1 else samples, cfg.seg.batch_size,
                          cfg.seg.steps_per_epoch)
        with strategy.scope():
            model = build_segmenter(cfg.seg, train.num_classes, cfg.data.image_size, train.images.shape[-1],
                                    seed=cfg.seed)
            lr = cfg.seg.lr
            if cfg.seg.lr_schedule == "cosine":
                lr = ScaledCosineDecay(cfg.seg.lr, steps * cfg.seg.epochs)
            optimizer = keras.optimizers.Adam(lr)
            model.compile(optimizer=optimizer, loss=SegLoss(train.num_classes, args["output"], cfg.seg.loss,
                                                            cfg.seg.dice_smooth, cfg.seg.batch_dice))
            optimizer.build(model.trainable_variables)

        def batches(start):
            return training_batches(x, y, batch_size=cfg.seg.batch_size, steps_per_epoch=steps,
                                    epochs=cfg.seg.epochs, start_epoch=start, seed=cfg.seed, augment=augment,
                                    synthetic=extra, synthetic_ratio=ratio, window=window, starts=starts)

        if three_d:
            from tfganaug.data.volumes import volume_chunks, volumes_of
            vx, vy = volume_chunks(volumes_of(val), cfg.seg.patch_depth)
            validation = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(2)
        else:
            validation = tf.data.Dataset.from_tensor_slices((val.images, val.masks.astype(np.int32))).batch(32)
        items = {"model": model, "optimizer": optimizer, "seed_states": seed_generator_states(model)}
        fit_member(run, "seg", model, items, batches, epochs=cfg.seg.epochs, steps_per_epoch=steps,
                   keep=cfg.keep_checkpoints, validation=validation, verbose=verbose,
                   check_weights=lambda: [w.numpy() for w in model.weights], on_divergence=cfg.on_divergence,
                   max_rollbacks=cfg.max_rollbacks)
        final = run.final_model("seg")
        final.parent.mkdir(parents=True, exist_ok=True)
        from tfganaug.experiments import _save_keras
        _save_keras(model, final)
        run.set_status(state="complete", class_names=list(train.class_names),
                       channel_names=list(train.channel_names), members={"seg": cfg.seg.epochs},
                       n_train_real=int(len(train)), n_train_patients=len(train.patients()),
                       n_synthetic=int(n_extra if cfg.seg.setting else (0 if extra is None else len(extra[1]))),
                       synthetic_ratio=float(ratio), output=args["output"], dims=3 if three_d else 2,
                       patch_depth=cfg.seg.patch_depth if three_d else None)
    return run


def load_segmenter(run: RunFolder) -> keras.Model:
    return run.load_final_model("seg", "segmentation", "train-seg")


# ------------------------------------------------------------------ evaluation

BRATS_CLASS_NAMES = ("background", *BRATS_LABELS)
"""Class names of a data set scored with the BraTS regions (:mod:`tfganaug.metrics.brats`) too."""


def score_segmentation(test: SegSet, pred: np.ndarray) -> dict:
    """Per-slice, per-case and volume scores of label maps `pred` against `test.masks`."""
    k, names = test.num_classes, list(test.class_names)
    fg = names[1:]
    slice_dice = np.array([dice_per_class(t, p, k) for t, p in zip(test.masks, pred)])
    slice_iou = np.array([iou_per_class(t, p, k) for t, p in zip(test.masks, pred)])
    cases = {}
    for pid in test.patients():
        sel = np.flatnonzero(test.patient_ids == pid)
        sel = sel[np.argsort(test.slice_index[sel])]
        t, p = test.masks[sel], pred[sel]
        spacing = test.spacing_mm[sel[0]]
        vol = volume_error(t, p, spacing, k)
        row = {"slices": int(len(sel)),
               "dice": dict(zip(fg, map(float, dice_per_class(t, p, k)))),
               "iou": dict(zip(fg, map(float, iou_per_class(t, p, k)))),
               "volume_true_ml": dict(zip(fg, map(float, vol["volume_true_ml"]))),
               "volume_pred_ml": dict(zip(fg, map(float, vol["volume_pred_ml"]))),
               "relative_volume_error_percent": dict(zip(fg, map(float, vol["relative_difference_percent"])))}
        if tuple(names) == BRATS_CLASS_NAMES:  # the BraTS convention: a region empty in both scores 1
            regions = brats_regions_dice(t, p)
            row["brats_regions"] = {key: regions[r] for r, key in BRATS_REGION_KEYS.items()}
            row["brats_regions_in_reference"] = {key: bool(np.isin(t, BRATS_REGIONS[r]).any())
                                                 for r, key in BRATS_REGION_KEYS.items()}
        cases[pid] = row

    def case_mean(key, name):
        return nan_mean([c[key][name] for c in cases.values()])

    result = {
        "classes": fg, "n_slices": int(len(pred)), "n_cases": len(cases),
        "per_slice": {"dice": dict(zip(fg, (nan_mean(slice_dice[:, i]) for i in range(len(fg))))),
                      "iou": dict(zip(fg, (nan_mean(slice_iou[:, i]) for i in range(len(fg))))),
                      "n_scored": dict(zip(fg, (int(np.isfinite(slice_dice[:, i]).sum()) for i in range(len(fg)))))},
        "per_case": {"dice": {n: case_mean("dice", n) for n in fg}, "iou": {n: case_mean("iou", n) for n in fg},
                     "abs_relative_volume_error_percent": {
                         n: nan_mean([abs(c["relative_volume_error_percent"][n]) for c in cases.values()])
                         for n in fg}},
        "cases": cases,
        "empty_handling": "a class empty in both reference and prediction is left out of its mean (NaN)",
    }
    result["per_slice"]["mean_dice"] = nan_mean(list(result["per_slice"]["dice"].values()))
    result["per_case"]["mean_dice"] = nan_mean(list(result["per_case"]["dice"].values()))
    if any("brats_regions" in c for c in cases.values()):
        result["per_case"]["brats_regions"] = {key: nan_mean([c["brats_regions"][key] for c in cases.values()])
                                               for key in BRATS_REGION_KEYS.values()}
        result["per_case"]["brats_regions_absent"] = {
            key: sum(not c["brats_regions_in_reference"][key] for c in cases.values())
            for key in BRATS_REGION_KEYS.values()}
        result["brats_empty_handling"] = ("BraTS regions: a region absent from both reference and prediction of a "
                                          "case scores 1, from the reference only 0; such cases stay in the "
                                          "per-case mean (brats_regions_absent counts them)")
    return result


def predict_labels(model: keras.Model, images: np.ndarray, output: str, batch_size: int = 32) -> np.ndarray:
    probs = model.predict(tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(batch_size),
                          verbose=0)
    return decode(probs, output).numpy().astype(np.uint8)


def predict_labels_3d(model: keras.Model, test: SegSet, output: str, depth: int) -> np.ndarray:
    """Label maps for every slice of `test` (whole volumes), in `test`'s order, by sliding windows
    of `depth` slices overlapping by half (`data.volumes.predict_volume`)."""
    from tfganaug.data.volumes import predict_volume, volumes_of
    pred = np.zeros(test.masks.shape, np.uint8)
    for volume in volumes_of(test):
        sel = np.flatnonzero(test.patient_ids == volume.patient_id)
        sel = sel[np.argsort(test.slice_index[sel], kind="stable")]
        pred[sel] = decode(predict_volume(model, volume.images, depth), output).numpy().astype(np.uint8)
    return pred


def evaluate_seg(run_dir, split: str | None = None, test_data: str | None = None,
                 whole_volumes: bool | None = None) -> dict:
    """Score a segmentation run on a split of its data or on another data set (`test_data`,
    e.g. non-contrast CT for a model trained on contrast CT); writes `<run>/evaluation[-<name>].json`.

    2-D runs are scored on the slices training uses (every foreground slice and a share of empty
    ones) unless `whole_volumes`; 3-D runs always on whole volumes, where false positives on
    empty slices count too. `whole_volumes=True` scores a 2-D run the same way. Whole-volume
    scores go to `evaluation[-<test>]-volumes.json` (:func:`evaluation_name`).
    """
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "seg":
        raise RunFolderError(f"{run.path}: expected a segmentation run (train-seg), got a '{cfg.kind}' run")
    status = run.status()
    three_d = is_3d(cfg.seg)
    whole = bool(three_d or whole_volumes)
    split = split or ("val" if cfg.data.name in ("kits19", "brats") else "test")
    if test_data:
        # Another data set: its patients were never seen, so all of it is test data.
        test = all_slices_of(config_lib.with_data(cfg, test_data).data, whole_volumes=whole)
        if list(test.class_names) != status.get("class_names"):
            raise InputError("test data classes", f"{status.get('class_names')} like the training data",
                             f"{list(test.class_names)}", test_data)
    else:
        test = load_segsets(cfg.data, all_slices=whole)[split]
    model = load_segmenter(run)
    output = status.get("output", unet_args(cfg.seg, test.num_classes)["output"])
    pred = (predict_labels_3d(model, test, output, cfg.seg.patch_depth) if three_d
            else predict_labels(model, test.images, output))
    result = score_segmentation(test, pred)
    result.update({"split": "all" if test_data else split, "data": test_data or cfg.data.name,
                   "seed": cfg.seed, "augment": cfg.seg.augment, "synthetic": cfg.seg.synthetic,
                   "synthetic_ratio": cfg.seg.synthetic_ratio, "setting": cfg.seg.setting,
                   "n_train_real": status.get("n_train_real"), "n_synthetic": status.get("n_synthetic"),
                   "dims": 3 if three_d else 2,
                   "slices_scored": "whole volumes" if whole else "foreground slices + a share of empty ones"})
    atomic_write_json(run.path / evaluation_name(test_data, whole), result)
    return result


def evaluation_name(test_data: str | None = None, whole_volumes: bool = False) -> str:
    """File of an evaluation in the run folder: `evaluation[-<test data>][-volumes].json`."""
    suffix = f"-{slug(Path(test_data).name, keep='-', strip=False)}" if test_data else ""
    return "evaluation" + suffix + ("-volumes" if whole_volumes else "") + ".json"


def summarize_seg(results: list[dict]) -> dict:
    """Mean and 95% CI over runs (seeds) of every per-slice and per-case score."""
    out = {"n_runs": len(results), "classes": results[0]["classes"], "per_slice": {}, "per_case": {}}
    for level in ("per_slice", "per_case"):
        for metric in ("dice", "iou"):
            out[level][metric] = {c: mean_ci([r[level][metric][c] for r in results]) for c in results[0]["classes"]}
        out[level]["mean_dice"] = mean_ci([r[level]["mean_dice"] for r in results])
    out["per_case"]["abs_relative_volume_error_percent"] = {
        c: mean_ci([r["per_case"]["abs_relative_volume_error_percent"][c] for r in results])
        for c in results[0]["classes"]}
    if "brats_regions" in results[0]["per_case"]:
        out["per_case"]["brats_regions"] = {reg: mean_ci([r["per_case"]["brats_regions"][reg] for r in results])
                                            for reg in results[0]["per_case"]["brats_regions"]}
    return out


def format_seg_summary(results: list[dict]) -> str:
    s = summarize_seg(results)
    r0 = results[0]
    lines = [f"data {r0['data']} ({r0['split']}), {r0['n_slices']} slices of {r0['n_cases']} cases; "
             f"{s['n_runs']} run(s): mean [95% CI over seeds]",
             f"{'class':<18}{'slice Dice':>26}{'slice IoU':>26}{'case Dice':>26}{'|vol. error| %':>26}"]
    for c in s["classes"]:
        lines.append(f"{c:<18}{format_ci(s['per_slice']['dice'][c]):>26}{format_ci(s['per_slice']['iou'][c]):>26}"
                     f"{format_ci(s['per_case']['dice'][c]):>26}"
                     f" {format_ci(s['per_case']['abs_relative_volume_error_percent'][c]):>25}")
    lines.append(f"{'mean':<18}{format_ci(s['per_slice']['mean_dice']):>26}{'':>26}{format_ci(s['per_case']['mean_dice']):>26}")
    for reg, stat in s["per_case"].get("brats_regions", {}).items():
        lines.append(f"{reg:<18}{'':>26}{'':>26}{format_ci(stat):>26}")
    return "\n".join(lines)
