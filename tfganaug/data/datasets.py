"""Named data sets as lesion-ROI records with patient ids, and patient-level splits.

`load_rois(cfg)` returns a :class:`RoiSet` per split. Sources:

* `phantom`: the built-in procedural lesion ROIs (no files needed; the default).
* `organamnist`: MedMNIST v2 OrganAMNIST from the shared data folder. Its official
  train/val split is already patient-disjoint (MedMNIST splits LiTS by patient); patient ids
  are not published, so within a split each image counts as its own "patient".
* a path to an `.npz` with `images` (N,H,W) or (N,H,W,1), `labels` (N,), optional
  `patient_ids` (N,) and `class_names`: the user's own ROIs.
* a path to a folder laid out `<root>/<class>/<patient>_<anything>.png`: the user's own ROIs;
  the patient id is the file-name part before the first underscore.

Splits never put ROIs of one patient on both sides (`split_by_patient`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfganaug.data import ct, phantom
from tfganaug.data.npz import INTEGER, NUMERIC, TEXT, Member, read_npz
from tfganaug.errors import InputError

ORGANAMNIST_CLASSES = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
                       "liver", "lung-left", "lung-right", "pancreas", "spleen")


@dataclass
class RoiSet:
    """Lesion ROIs of one split: images float32 (N,H,W,1) in [0,1], int labels, patient ids."""

    images: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "RoiSet":
        return RoiSet(self.images[index], self.labels[index], self.patient_ids[index],
                      self.class_names, self.source)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.class_names)).tolist()


def data_root() -> Path:
    """The shared data folder: $TFGANAUG_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("TFGANAUG_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in list(here.parents)[:5]:
        candidate = parent.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def split_by_patient(patient_ids, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> list[np.ndarray]:
    """Index arrays for each fraction, with every patient's ROIs on one side only.

    Patients are shuffled with `seed` and assigned greedily so that the ROI counts come as
    close to the fractions as whole patients allow.
    """
    patient_ids = np.asarray(patient_ids)
    fractions = np.asarray(fractions, float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise InputError("split fractions", "non-negative numbers summing to 1", str(fractions.tolist()))
    patients, counts = np.unique(patient_ids, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(patients))
    targets = fractions * len(patient_ids)
    filled = np.zeros(len(fractions))
    side = {}
    for i in order:
        k = int(np.argmax(targets - filled))
        side[patients[i]] = k
        filled[k] += counts[i]
    sides = np.array([side[p] for p in patient_ids])
    return [np.flatnonzero(sides == k) for k in range(len(fractions))]


def kfold_by_patient(patient_ids, k: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a patient-level k-fold split (the paper used 3-fold CV)."""
    folds = split_by_patient(patient_ids, [1.0 / k] * k, seed)
    return [(np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), folds[i])
            for i in range(k)]


def subsample_per_class(labels, n_per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `n_per_class` examples of every class (low-data regime)."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def _select_classes(images, labels, names, wanted, where):
    """Keep `wanted` classes (names) and relabel them 0..k-1 in the given order."""
    if not wanted:
        return images, labels, tuple(names)
    lookup = {n.lower(): i for i, n in enumerate(names)}
    unknown = [w for w in wanted if w.lower() not in lookup]
    if unknown:
        raise InputError("class names", f"some of {', '.join(names)}", ", ".join(unknown), where)
    ids = [lookup[w.lower()] for w in wanted]
    keep = np.isin(labels, ids)
    remap = {old: new for new, old in enumerate(ids)}
    return images[keep], np.array([remap[int(v)] for v in labels[keep]], np.int32), tuple(names[i] for i in ids)


def _to_rois(images, size: int, where) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise InputError("ROI images", "an array (N, H, W) or (N, H, W, 1)", f"shape {images.shape}", where)
    images = images.astype(np.float32)
    if not np.isfinite(images).all():
        raise InputError("ROI images", "finite values", f"{int((~np.isfinite(images)).sum())} NaN/Inf pixels", where)
    if images.max(initial=0) > 1.0 or images.min(initial=0) < 0.0:
        images = ct.normalize_minmax(images)
    if images.shape[1:] != (size, size):
        images = np.stack([ct.resize_bicubic(im, (size, size)) for im in images])
    return np.clip(images, 0.0, 1.0)[..., None].astype(np.float32)


def _organamnist(cfg, root: Path):
    path = root / "organamnist" / "organamnist_trainval.npz"
    if not path.exists():
        raise InputError("OrganAMNIST", f"the file {path} (set TFGANAUG_DATA to the shared data folder)",
                         "no such file", path)
    parts = {}
    for s in ("train", "val"):
        z = read_npz(path, {f"{s}_images": Member(NUMERIC, (3,)), f"{s}_labels": Member(INTEGER, (1, 2))},
                     "OrganAMNIST")
        parts[s] = (z[f"{s}_images"], z[f"{s}_labels"].ravel().astype(np.int32))
    out = {}
    for split, (x, y) in parts.items():
        x, y, names = _select_classes(x, y, ORGANAMNIST_CLASSES, cfg.classes, path)
        ids = np.array([f"organamnist-{split}-{i}" for i in range(len(y))])
        out[split] = RoiSet(_to_rois(x, cfg.image_size, path), y, ids, names, "organamnist")
    # No official test split here (it is held back): `test` is the val split.
    out["test"] = out["val"]
    return out


ROI_ARRAYS = {"images": Member(NUMERIC, (3, 4)), "labels": Member(INTEGER, (1, 2)),
              "patient_ids": Member(TEXT, (1,), required=False),
              "class_names": Member(TEXT, (1,), required=False, per_item=False)}
"""The arrays of a user's ROI archive: images (N,H,W[,1]), labels (N,), patient ids (N,), names."""


def _read_user_npz(path: Path):
    z = read_npz(path, ROI_ARRAYS, "an ROI archive")
    images, labels = z["images"], z["labels"].ravel()
    pids = z["patient_ids"].astype(str) if "patient_ids" in z else None
    names = tuple(str(n) for n in z["class_names"]) if "class_names" in z else None
    if len(labels) != len(images):
        raise InputError("labels", f"one per image ({len(images)})", f"{len(labels)} labels", path)
    if (labels < 0).any():
        raise InputError("labels", "non-negative integers", f"min {labels.min()}", path)
    labels = labels.astype(np.int32)
    names = names or tuple(f"class{c}" for c in range(int(labels.max()) + 1))
    if labels.max() >= len(names):
        raise InputError("labels", f"values below {len(names)} (the number of class names)",
                         f"max {labels.max()}", path)
    if pids is None:
        pids = np.array([f"roi-{i}" for i in range(len(labels))])
    return images, labels, pids, names


def _read_user_png_tree(root: Path):
    from tfganaug.data.readers import read_image
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise InputError("an ROI folder", "one sub-folder per class holding PNG files", "no sub-folders", root)
    images, labels, pids = [], [], []
    for c, d in enumerate(class_dirs):
        files = sorted(d.glob("*.png"))
        if not files:
            raise InputError("a class folder", "PNG files", "none", d)
        for f in files:
            img, _ = read_image(f)
            if img.ndim != 2:
                raise InputError("an ROI", "a grey-scale 2-D PNG", f"shape {img.shape}", f)
            if images and img.shape != images[0].shape:
                raise InputError("an ROI", f"the shape of the others {images[0].shape}", f"{img.shape}", f)
            images.append(img)
            labels.append(c)
            pids.append(f.stem.split("_")[0])
    return np.stack(images), np.array(labels, np.int32), np.array(pids), tuple(d.name for d in class_dirs)


def _user_rois(cfg, path: Path):
    if not path.exists():
        raise InputError("data", "phantom, organamnist, an .npz file or a class-per-folder PNG tree",
                         "no such file or folder", path)
    x, y, pids, names = _read_user_npz(path) if path.is_file() else _read_user_png_tree(path)
    x, keep_y, names2 = _select_classes(x, y, names, cfg.classes, path)
    pids = pids[np.isin(y, [names.index(n) for n in names2])] if cfg.classes else pids
    return _patient_split(_to_rois(x, cfg.image_size, path), keep_y, pids, names2, str(path), cfg)


def _patient_split(x, y, pids, names, source, cfg):
    test = cfg.test_fraction
    fractions = (1 - cfg.val_fraction - test, cfg.val_fraction, test)
    parts = split_by_patient(pids, fractions, cfg.seed)
    return {s: RoiSet(x[i], y[i], pids[i], names, source) for s, i in zip(("train", "val", "test"), parts)}


def load_rois(cfg) -> dict[str, RoiSet]:
    """Train/val/test `RoiSet`s for a `DataConfig`, the training split subsampled per class
    when `cfg.train_per_class` is set (seeded by `cfg.seed`)."""
    if cfg.name == "phantom":
        x, y, pids = phantom.make_lesion_rois(cfg.n_phantom_patients, cfg.image_size, seed=1234)
        x, y2, names = _select_classes(x, y, phantom.CLASS_NAMES, cfg.classes, "phantom")
        pids = pids[np.isin(y, [phantom.CLASS_NAMES.index(n) for n in names])] if cfg.classes else pids
        # The phantom population is fixed (seed 1234); cfg.seed varies the split and subsample.
        sets = _patient_split(x, y2, pids, names, "phantom", cfg)
    elif cfg.name == "organamnist":
        sets = _organamnist(cfg, data_root())
    else:
        sets = _user_rois(cfg, Path(cfg.name))
    if cfg.train_per_class:
        sets["train"] = sets["train"].subset(subsample_per_class(sets["train"].labels, cfg.train_per_class, cfg.seed))
    for split, s in sets.items():
        if len(s) == 0:
            raise InputError(f"the {split} split", "at least one ROI", "none", s.source)
    return sets
