"""`tfganaug evaluate`: score classifier and segmentation runs, and summarise seed runs.

Classifier runs (`evaluate_classifier`): per-class sensitivity, specificity, accuracy and the
confusion matrix on the run's evaluation split. Segmentation runs (`evaluate_seg`) write
`evaluation.json` with

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
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug import config as config_lib
from tfganaug.data.datasets import load_rois
from tfganaug.data.pipeline import eval_batches
from tfganaug.data.segsets import SegSet, all_slices_of, load_segsets
from tfganaug.errors import ConfigError, InputError, RunFolderError
from tfganaug.fsutil import atomic_write_json, slug
from tfganaug.metrics.brats import BRATS_LABELS, BRATS_REGION_KEYS, BRATS_REGIONS, brats_regions_dice
from tfganaug.metrics.classification import per_class_metrics
from tfganaug.metrics.segmentation import dice_per_class, iou_per_class, volume_error
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean
from tfganaug.runs import RunFolder
from tfganaug.tasks.segmenter import decode, is_3d, unet_args

METRICS = ("macro_sensitivity", "macro_specificity", "accuracy")


def load_classifier(run: RunFolder) -> keras.Model:
    from tfganaug.tasks import classifier  # noqa: F401  registers its layers before the model is read
    return run.load_final_model("cls", "classifier", "train-cls")


def load_segmenter(run: RunFolder) -> keras.Model:
    from tfganaug import schedules  # noqa: F401  registers the saved optimizer's schedule,
    from tfganaug.tasks import losses, segmenter  # noqa: F401  the losses and layers
    return run.load_final_model("seg", "segmentation", "train-seg")


def evaluate_classifier(run_dir, split: str | None = None) -> dict:
    """Score a classifier run on its evaluation split; writes `<run>/evaluation.json`."""
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "cls":
        raise RunFolderError(f"{run.path}: expected a classifier run (train-cls), got a '{cfg.kind}' run")
    split = split or cfg.data.eval_split
    data = load_rois(cfg.data)[split]
    model = load_classifier(run)
    probs = model.predict(eval_batches(data.images, data.labels), verbose=0)
    result = per_class_metrics(data.labels, probs.argmax(-1), len(data.class_names), list(data.class_names))
    result.update({"split": split, "n": len(data), "data": cfg.data.name, "seed": cfg.seed,
                   "augment": cfg.cls.augment, "synthetic": cfg.cls.synthetic,
                   "synthetic_ratio": cfg.cls.synthetic_ratio})
    atomic_write_json(run.path / "evaluation.json", result)
    return result


def run_folders(folder) -> list[Path]:
    """A run folder itself (classifier or segmentation), or every run folder below it (one per seed)."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return [folder]
    runs = sorted(p.parent for p in folder.glob("*/config.json"))
    if not runs:
        raise RunFolderError(f"{folder}: expected a run folder or a folder of run folders, got neither")
    return runs


def percent(stat: dict) -> str:
    """Mean [95% CI] in %; the t-interval is clipped to [0, 100], where a proportion lives."""
    return format_ci(stat, scale=100.0, digits=1, clip=(0.0, 1.0))


def summarize_evaluations(results: list[dict]) -> dict:
    """Mean and 95% Student-t CI over seed runs of every headline and per-class metric."""
    out = {"n_runs": len(results), "seeds": [r.get("seed") for r in results],
           "class_names": results[0]["class_names"] if results else []}
    for m in METRICS:
        out[m] = mean_ci([r[m] for r in results])
    out["per_class"] = {name: {k: mean_ci([r["per_class"][name][k] for r in results])
                               for k in ("sensitivity", "specificity")}
                        for name in out["class_names"]}
    out["confusion_matrix"] = np.sum([r["confusion_matrix"] for r in results], axis=0).tolist()
    return out


def format_summary(summary: dict) -> str:
    lines = [f"runs: {summary['n_runs']} (seeds {summary['seeds']}); mean [95% CI] in %"]
    for m in METRICS:
        lines.append(f"  {m:<18} {percent(summary[m])}")
    lines.append("  per class            sensitivity            specificity")
    for name, stats in summary["per_class"].items():
        lines.append(f"  {name:<18} {percent(stats['sensitivity']):<22} {percent(stats['specificity'])}")
    lines.append("  confusion matrix (rows true, columns predicted; summed over runs):")
    for name, row in zip(summary["class_names"], summary["confusion_matrix"]):
        lines.append(f"  {name:<18} {row}")
    return "\n".join(lines)




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
        # A class the case's source does not annotate (CURVAS: spleen) reads as background in the
        # reference, so a predicted organ there may be right: its scores are unknown (NaN), not 0.
        for name in test.unlabelled.get(pid, ()):
            slice_dice[sel, fg.index(name)] = slice_iou[sel, fg.index(name)] = np.nan
            for key in ("dice", "iou", "volume_true_ml", "relative_volume_error_percent"):
                row[key][name] = float("nan")
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
    if test.unlabelled:
        result["unlabelled"] = {pid: list(names) for pid, names in test.unlabelled.items() if pid in cases}
        result["unlabelled_handling"] = ("a class a case's source does not annotate (`unlabelled`) is left out of "
                                         "that case's scores (NaN), not scored 0")
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
                 whole_volumes: bool | None = None, into: Path | None = None) -> dict:
    """Score a segmentation run on a split of its data or on another data set (`test_data`,
    e.g. non-contrast CT for a model trained on contrast CT); writes `<run>/evaluation[-<name>].json`.

    2-D runs are scored on the slices training uses (every foreground slice and a share of empty
    ones) unless `whole_volumes`; 3-D runs always on whole volumes, where false positives on
    empty slices count too. `whole_volumes=True` scores a 2-D run the same way. Whole-volume
    scores go to `evaluation[-<test>]-volumes.json` (:func:`evaluation_name`); `into`: that file
    in another folder (one run scoring many synthetic sets of the same file name).
    """
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "seg":
        raise RunFolderError(f"{run.path}: expected a segmentation run (train-seg), got a '{cfg.kind}' run")
    status = run.status()
    three_d = is_3d(cfg.seg)
    whole = bool(three_d or whole_volumes)
    # sources with a fixed train/val split have no test part of their own: val is scored
    split = split or ("val" if cfg.data.name in ("kits19", "brats", "brats2018") else "test")
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
    atomic_write_json(Path(into or run.path) / evaluation_name(test_data, whole), result)
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


def evaluate(run_dir, split: str | None = None, test_data: str | None = None,
             whole_volumes: bool | None = None) -> str:
    """Score a classifier or segmentation run, or every seed run below a folder; the summary
    (mean and 95% CI over runs) as text."""
    runs = run_folders(run_dir)
    kind = RunFolder.load(runs[0])[1].kind
    if kind != "seg" and (test_data or whole_volumes):
        raise ConfigError(f"{'--test' if test_data else '--whole-volumes'}: expected a segmentation run (the option "
                          f"scores U-Nets), got a {kind} run in {run_dir}")
    if kind == "seg":
        return format_seg_summary([evaluate_seg(r, split, test_data, whole_volumes) for r in runs])
    return format_summary(summarize_evaluations([evaluate_classifier(r, split) for r in runs]))
