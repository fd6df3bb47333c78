"""Segmentation data sets: cases (volumes + label maps) -> 2-D slices, split by patient.

`load_segsets(cfg)` returns a :class:`SegSet` per split for a `DataConfig` whose `name` is

* a built-in phantom: ``phantom-kidney`` (KiTS-like CT), ``phantom-abdomen`` /
  ``phantom-abdomen-native`` (contrast / non-contrast CT with liver, kidney, spleen),
  ``phantom-brain`` (four MR contrasts with tumour labels);
* a shared real data set (../shared/data or $TFGANAUG_DATA): ``kits19`` (the paired CT-slice /
  colour-mask PNGs), ``kits19-labels`` (official label volumes without CT: inputs for
  label -> CT synthesis), ``ircadb`` (contrast CT, manual masks), ``totalseg-contrast`` /
  ``totalseg-native`` (TotalSegmentator examples), ``curvas`` / ``curvas-val`` (contrast CT
  PNG slices of 12 patients, liver and kidney; estimated HU), ``brats``; named sources joined
  by "+" (``ircadb+curvas``), each split on its own and the splits joined;
* a path: a KiTS19 folder (``case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``), a folder
  with ``images/`` and ``masks/`` PNGs, a BraTS folder of case folders, or an ``.npz`` with
  ``images`` (N,H,W[,C]) in [0,1], ``masks`` (N,H,W), optional ``patient_ids`` and
  ``class_names`` (slices already prepared).

Intensities go to [0, 1] by the case's units: CT in HU through the window (``window_width``
/ ``window_level``, KiTS capstone WW 400 / WL 0) then clipped (the window *is* a min-max
scaling onto the window's range); already windowed 8-bit slices / 255; MR (the readers'
z-scores, 0 outside the brain) by ``mr_norm``, per case and per contrast over the whole volume:
``"percentile"`` (default) clips the brain at the ``mr_percentiles`` (0.5 / 99.5) of its own
voxels and maps that range linearly, background 0 (:func:`tfganaug.data.brats.percentile_to_unit`);
``"zscore"`` (runs from before ``mr_norm``) clips at +-``zscore_clip`` and maps [-clip, clip]
linearly (background 0.5). Slices are padded to square (air / background)
and resized to ``image_size`` (bilinear for images, nearest for masks); in-plane spacing is
rescaled with them so volumes stay right. Every slice with foreground is kept and empty
slices are added up to ``empty_slice_fraction`` of a case's slices, evenly spread (models
must learn to predict nothing, but a volume is mostly empty). Splits never put one
patient's slices on both sides: 70/20/10 by default, the source's fixed split where it has
one, or k-fold by patient (`folds`, `fold`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfganaug.data import ct
from tfganaug.data.brats import brain_of, percentile_to_unit, percentile_window, zscore_to_unit
from tfganaug.data.cases import Case
from tfganaug.data.datasets import split_by_patient
from tfganaug.data.npz import INTEGER, NUMERIC, TEXT, Member, read_npz
from tfganaug.errors import InputError


@dataclass
class SegSet:
    """2-D slices of one split: images float32 (N,H,W,C) in [0,1], masks uint8 (N,H,W)."""

    images: np.ndarray
    masks: np.ndarray
    patient_ids: np.ndarray
    slice_index: np.ndarray
    spacing_mm: np.ndarray          # (N, 3): z, y, x after resizing
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    source: str
    domain: str = ""
    unlabelled: dict = field(default_factory=dict)  # patient id -> classes its source does not annotate

    def __len__(self) -> int:
        return len(self.masks)

    def subset(self, index) -> "SegSet":
        return SegSet(self.images[index], self.masks[index], self.patient_ids[index], self.slice_index[index],
                      self.spacing_mm[index], self.class_names, self.channel_names, self.source, self.domain,
                      self.unlabelled)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def patients(self) -> list[str]:
        return sorted(set(self.patient_ids.tolist()))


def to_unit(image: np.ndarray, units: str, cfg) -> np.ndarray:
    if units == "HU":
        return ct.window_hu(image, cfg.window_width, cfg.window_level)
    if units == "grey8":
        return np.clip(image / 255.0, 0.0, 1.0).astype(np.float32)
    if cfg.mr_norm == "percentile":
        raise ValueError("percentile MR needs the whole volume: use _case_to_unit")
    return zscore_to_unit(image, cfg.zscore_clip)


def _case_to_unit(case: Case, keep: np.ndarray, cfg) -> np.ndarray:
    """Slices `keep` of `case` in [0, 1], padded to square (module docstring). Percentile MR
    takes its window from the whole volume, so a slice does not depend on which others are kept."""
    if case.units == "zscore" and cfg.mr_norm == "percentile":
        brain = brain_of(case.image)
        if not brain.any():
            raise InputError("MR case", "brain voxels (nonzero in some contrast)", "an all-zero image",
                             case.source or case.patient_id)
        window = percentile_window(case.image, brain, cfg.mr_percentiles)
        return square_pad(percentile_to_unit(case.image[keep], brain[keep], window=window), 0.0)
    return to_unit(square_pad(case.image[keep], background_value(case.units, cfg)), case.units, cfg)


def background_value(units: str, cfg) -> float:
    return {"HU": -1024.0, "grey8": 0.0}.get(units, 0.0)


def square_pad(array: np.ndarray, fill) -> np.ndarray:
    """Pad (Z, H, W, ...) to (Z, S, S, ...) with `fill`, centred."""
    h, w = array.shape[1:3]
    side = max(h, w)
    if h == w:
        return array
    pad = [(0, 0), ((side - h) // 2, side - h - (side - h) // 2), ((side - w) // 2, side - w - (side - w) // 2)]
    pad += [(0, 0)] * (array.ndim - 3)
    return np.pad(array, pad, constant_values=fill)


def select_slices(mask: np.ndarray | None, num_slices: int, empty_fraction: float,
                  max_slices: int | None = None) -> np.ndarray:
    """Indices of the slices to keep: all with foreground, plus evenly spread empty ones so
    that they make up at most `empty_fraction` of the result; at most `max_slices`, evenly
    spaced (volumes sampled at 0.5 mm repeat themselves slice to slice)."""
    if mask is None:
        keep = np.arange(num_slices)
    else:
        has = mask.reshape(num_slices, -1).any(axis=1)
        fg, empty = np.flatnonzero(has), np.flatnonzero(~has)
        n_empty = 0
        if empty_fraction > 0 and len(empty):
            n_empty = min(len(empty), int(round(empty_fraction / (1 - empty_fraction) * max(len(fg), 1))))
        pick = empty[np.linspace(0, len(empty) - 1, n_empty).round().astype(int)] if n_empty else empty[:0]
        keep = np.unique(np.concatenate([fg, pick]))
    if max_slices and len(keep) > max_slices:
        keep = keep[np.linspace(0, len(keep) - 1, max_slices).round().astype(int)]
    return keep


def network_slices(case: Case, keep: np.ndarray, cfg) -> np.ndarray:
    """Slices `keep` of `case` as the networks see them: float32 (N, S, S, C) in [0, 1] at
    `cfg.image_size` (module docstring); `tfganaug predict` prepares a new scan with it too."""
    img = _case_to_unit(case, keep, cfg)
    side, size = img.shape[1], cfg.image_size
    if side != size:
        img = tf.image.resize(img, (size, size), "bilinear", antialias=side > size).numpy()
    return np.clip(img, 0, 1).astype(np.float32)


def slices_from_cases(cases, cfg, source: str, all_slices: bool = False, stream: bool = False) -> SegSet:
    """2-D slices of `cases` (any iterable, consumed once) at `cfg.image_size`, intensities in
    [0, 1] (module docstring); `all_slices` keeps every slice of every case (whole volumes, for
    the 3-D U-Net). `stream` writes each case's slices to disk as it is prepared
    (`data.slicestore`): the SegSet's images and masks are then `DiskRows`, read a row at a time."""
    size = cfg.image_size
    images, masks, pids, index, spacing = [], [], [], [], []
    class_names = channel_names = domain = None
    unlabelled = {}
    for case in cases:
        if case.image is None or case.mask is None:
            raise InputError("case", "an image and a label map", "a case without "
                             + ("an image" if case.image is None else "a label map"), case.source or source)
        if class_names is None:
            class_names, channel_names = case.class_names, case.channel_names
        elif case.class_names != class_names or case.channel_names != channel_names:
            raise InputError("case", f"classes {class_names} and channels {channel_names} like the others",
                             f"{case.class_names} and {case.channel_names}", case.source or source)
        keep = (np.arange(case.num_slices) if all_slices else
                select_slices(case.mask, case.num_slices, cfg.empty_slice_fraction, cfg.max_slices_per_case))
        msk = square_pad(case.mask[keep], 0)
        if msk.shape[1] != size:
            msk = tf.image.resize(msk[..., None], (size, size), "nearest").numpy()[..., 0]
        img, msk = network_slices(case, keep, cfg), msk.astype(np.uint8)
        if stream:
            if not images:
                from tfganaug.data.slicestore import SliceStore
                images, masks = [SliceStore(np.float32, img.shape[1:])], [SliceStore(np.uint8, msk.shape[1:])]
            images[0].append(img)
            masks[0].append(msk)
        else:
            images.append(img)
            masks.append(msk)
        if domain is None:
            domain = case.domain
        if case.unlabelled:
            unlabelled[case.patient_id] = case.unlabelled
        pids += [case.patient_id] * len(keep)
        index.append(keep)
        zyx = np.array(case.spacing_mm, float)
        zyx[1:] *= max(case.shape[1:]) / size  # padding to square keeps the pixel size
        spacing.append(np.repeat(zyx[None], len(keep), axis=0))
    if not images:
        raise InputError("data", "at least one case with an image and a label map", "none", source)
    if stream:
        images, masks = images[0].view(), masks[0].view()
    else:
        images, masks = np.concatenate(images), np.concatenate(masks)
    return SegSet(images, masks, np.array(pids), np.concatenate(index), np.concatenate(spacing),
                  tuple(class_names), tuple(channel_names), source, domain, unlabelled)


# ---------------------------------------------------------------------------- sources

def source_cases(name: str, cfg, lazy: bool = False) -> tuple[list[Case], dict | None]:
    """Cases of a named source (`data.sources`), plus its fixed split by patient id (or None);
    a combination such as ``ircadb+curvas`` gives the cases of all its parts (no split: each part
    is split on its own by `load_segsets`); any other name is a path to a KiTS19 folder, PNG
    pairs, a BraTS folder or an .npz. `lazy`: a source that can make its cases one at a time
    (the kidney and abdomen phantoms, a folder of KiTS19-layout or BraTS cases: the user's own
    scans) gives a `LazyCases`; the others (the small shared sets, PNG pairs) their list."""
    import inspect

    from tfganaug.data.sources import SOURCES, parts_of
    if len(parts_of(name)) > 1:
        return [case for part in parts_of(name) for case in source_cases(part, cfg)[0]], None
    if name in SOURCES:
        source = SOURCES.get(name)
        return source(cfg, lazy=True) if lazy and "lazy" in inspect.signature(source).parameters else source(cfg)
    path = Path(name)
    if not path.exists():
        raise InputError("data", "a built-in source (" + ", ".join(SOURCES.names()) + ") or a path to a KiTS19 "
                         "folder, an images/ + masks/ PNG folder, a BraTS folder or an .npz", "no such file "
                         "or folder", path)
    if path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
        from tfganaug.data.kits import load_png_pairs
        return load_png_pairs(path), None
    if path.is_dir() and (any(path.glob("case_*/segmentation.nii*")) or (path / "segmentations").is_dir()):
        from tfganaug.data.kits import load_kits_cases
        return load_kits_cases(path, lazy=lazy), None
    if path.is_dir():
        from tfganaug.data.brats import load_brats_cases
        return load_brats_cases(path, contrasts=tuple(cfg.contrasts or ("t1", "t1ce", "t2", "flair")),
                                lazy=lazy), None
    raise InputError("data", "a folder of cases (KiTS19, PNG pairs, BraTS) or an .npz", f"a {path.suffix} file",
                     path)


Z_BLOCK = 16

SEG_ARRAYS = {"images": Member(NUMERIC, (3, 4)), "masks": Member(INTEGER, (3,)),
              "patient_ids": Member(TEXT, (1,), required=False),
              "class_names": Member(TEXT, (1,), required=False, per_item=False)}
"""The arrays of a user's segmentation archive: images (N,H,W[,C]), masks (N,H,W), ids, names."""


def _read_npz(path: Path, cfg) -> SegSet:
    z = read_npz(path, SEG_ARRAYS, "segmentation .npz")
    images, masks = z["images"].astype(np.float32), z["masks"]
    pids = z["patient_ids"].astype(str) if "patient_ids" in z else np.arange(len(masks)).astype(str)
    names = tuple(str(n) for n in z["class_names"].astype(str)) if "class_names" in z else tuple(
        ["background"] + [f"class{i}" for i in range(1, int(masks.max()) + 1)])
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[:3] != masks.shape or images.ndim != 4:
        raise InputError("segmentation .npz", "images (N,H,W[,C]) and masks (N,H,W) of one size",
                         f"{images.shape} and {masks.shape}", path)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise InputError("segmentation .npz images", "finite values in [0, 1]",
                         f"range [{np.nanmin(images):.3g}, {np.nanmax(images):.3g}]", path)
    if masks.min() < 0 or masks.max() >= len(names):
        raise InputError("segmentation .npz masks", f"labels 0..{len(names) - 1}", f"up to {masks.max()}", path)
    if images.shape[1:3] != (cfg.image_size, cfg.image_size):
        images = tf.image.resize(images, (cfg.image_size,) * 2, "bilinear").numpy()
        masks = tf.image.resize(masks[..., None], (cfg.image_size,) * 2, "nearest").numpy()[..., 0]
    n = len(masks)
    return SegSet(images, masks.astype(np.uint8), pids, np.arange(n), np.ones((n, 3)), names,
                  tuple(f"c{i}" for i in range(images.shape[-1])), str(path))


def _at_least_one_patient_each(parts: list[np.ndarray], patient_ids: np.ndarray) -> list[np.ndarray]:
    """Give an empty split one patient of the split with the most patients (few-patient data)."""
    parts = [np.asarray(p) for p in parts]
    for k, part in enumerate(parts):
        if len(part):
            continue
        donor = max(range(len(parts)), key=lambda j: len(set(patient_ids[parts[j]].tolist())))
        if len(set(patient_ids[parts[donor]].tolist())) < 2:
            break
        moved = patient_ids[parts[donor]][-1]
        parts[k] = parts[donor][patient_ids[parts[donor]] == moved]
        parts[donor] = parts[donor][patient_ids[parts[donor]] != moved]
    return parts


def z_block_ids(patient_ids: np.ndarray, slice_index: np.ndarray) -> np.ndarray:
    """Pseudo-patient ids for few-patient data: one per block of `Z_BLOCK` slices of a case."""
    return np.array([f"{p}#z{i // Z_BLOCK:03d}" for p, i in zip(patient_ids, slice_index)])


def load_segsets(cfg, all_slices: bool = False, stream: bool = False) -> dict[str, SegSet]:
    """train / val / test `SegSet`s for a `DataConfig` (see the module docstring); `all_slices`
    keeps whole cases (the 3-D U-Net) instead of the foreground slices and a share of empty ones.
    A combination of named sources (``ircadb+curvas``) splits each part as it would be split
    alone and joins the splits, so every part's patients stay on their own side. `stream`: the
    cases are made (where the source can) and prepared one at a time and their slices kept on
    disk (:func:`slices_from_cases`); the splits are the same."""
    from tfganaug.data.sources import parts_of
    if len(parts_of(cfg.name)) > 1:
        sets = [load_segsets(replace(cfg, name=part), all_slices, stream) for part in parts_of(cfg.name)]
        joined = {}
        for split in ("train", "val", "test"):
            joined[split] = sets[0][split]
            for other in sets[1:]:
                joined[split] = concat_segsets(joined[split], other[split])
            joined[split].source = cfg.name
        return joined
    if cfg.name.endswith(".npz"):
        if all_slices:
            raise InputError("3-D data", "cases with whole volumes (a named source or a folder of cases)",
                             "an .npz of prepared 2-D slices", cfg.name)
        whole = _read_npz(Path(cfg.name), cfg)
        fixed = None
    else:
        cases, fixed = source_cases(cfg.name, cfg, lazy=stream)
        whole = slices_from_cases(cases, cfg, cfg.name, all_slices=all_slices, stream=stream)
    if fixed and fixed.get("train"):
        sets = {split: whole.subset(np.flatnonzero(np.isin(whole.patient_ids, ids)))
                for split, ids in fixed.items()}
        sets.setdefault("test", sets["val"])
    else:
        # 70/20/10 by patient (KiTS capstone); with very few patients every split still gets one.
        fractions = (1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
        n_patients = len(set(whole.patient_ids.tolist()))
        if n_patients < 3:
            # One or two patients (e.g. the shared IRCADb case): split along z in blocks of
            # Z_BLOCK slices, each block a pseudo-patient, so neighbouring slices stay together.
            blocks = z_block_ids(whole.patient_ids, whole.slice_index)
            if len(set(blocks.tolist())) < 3:
                raise InputError("data", f"at least 3 patients, or {3 * Z_BLOCK} slices to split along z",
                                 f"{n_patients} patient(s) with {len(whole)} slices", whole.source)
            whole.patient_ids = blocks
            whole.source += f" (split along z in blocks of {Z_BLOCK} slices: {n_patients} patient(s))"
        if cfg.folds:
            from tfganaug.data.datasets import kfold_by_patient
            rest, test = kfold_by_patient(whole.patient_ids, cfg.folds, cfg.seed)[cfg.fold]
            share = cfg.val_fraction / max(1e-9, 1.0 - 1.0 / cfg.folds)
            train, val = split_by_patient(whole.patient_ids[rest], (1 - share, share), cfg.seed)
            parts = [rest[train], rest[val], test]
        elif cfg.test_fraction == 0:  # train/test only (Son et al.: 90/10): the held-out part serves as both
            parts = split_by_patient(whole.patient_ids, fractions[:2], cfg.seed)
            parts = _at_least_one_patient_each(parts, whole.patient_ids) + [None]
            parts[2] = parts[1]
        else:
            parts = split_by_patient(whole.patient_ids, fractions, cfg.seed)
        parts = _at_least_one_patient_each(parts, whole.patient_ids)
        sets = dict(zip(("train", "val", "test"), (whole.subset(p) for p in parts)))
    if cfg.train_patients:
        keep = sets["train"].patients()[: cfg.train_patients]
        sets["train"] = sets["train"].subset(np.flatnonzero(np.isin(sets["train"].patient_ids, keep)))
    for split, s in sets.items():
        if len(s) == 0:
            raise InputError(f"the {split} split", "at least one slice", "none", whole.source)
    return sets


def concat_segsets(a: SegSet, b: SegSet) -> SegSet:
    """`a` followed by the slices of `b` whose patients are not in `a` (same classes and channels)."""
    if b is a:
        return a
    if (a.class_names, a.channel_names) != (b.class_names, b.channel_names):
        raise InputError("data", f"classes {a.class_names} and channels {a.channel_names} in every part",
                         f"{b.class_names} and {b.channel_names}", b.source)
    b = b.subset(np.flatnonzero(~np.isin(b.patient_ids, a.patient_ids)))
    return SegSet(_join(a.images, b.images), _join(a.masks, b.masks),
                  np.concatenate([a.patient_ids, b.patient_ids]), np.concatenate([a.slice_index, b.slice_index]),
                  np.concatenate([a.spacing_mm, b.spacing_mm]), a.class_names, a.channel_names, a.source, a.domain,
                  {**a.unlabelled, **b.unlabelled})


def all_slices_of(cfg, whole_volumes: bool = False) -> SegSet:
    """Every case of data set `cfg.name` (a `DataConfig`), no split: another data set used as a
    whole (a test set, a histogram reference, a CycleGAN domain). `whole_volumes` keeps every
    slice (3-D); else the foreground slices and a share of empty ones."""
    if cfg.name.endswith(".npz"):
        sets = load_segsets(cfg, all_slices=whole_volumes)
        return concat_segsets(concat_segsets(sets["train"], sets["val"]), sets["test"])
    return slices_from_cases(source_cases(cfg.name, cfg)[0], cfg, cfg.name, all_slices=whole_volumes)


def _join(a, b):
    """np.concatenate of two arrays, or of two streamed `DiskRows` without reading them."""
    from tfganaug.data.slicestore import DiskRows
    if isinstance(a, DiskRows) and isinstance(b, DiskRows):
        return DiskRows.join(a, b)
    return np.concatenate([a, b])
