"""BraTS brain-tumour MR as :class:`~tfganaug.data.cases.Case` records, and a four-contrast phantom.

The data of Son et al. (BraTS 2018: T1, T1-CE, T2, FLAIR + tumour labels; Menze et al. 2015,
Bakas et al. 2017 and 2018). :func:`load_brats_cases` reads three layouts, recognised per case
folder by its file names (case folders may sit directly under ``root`` or up to two levels
deeper, e.g. BraTS 2018's ``HGG/`` and ``LGG/``):

==================  ==================================================  =======================
layout              files in ``<id>/``                                  labels on disk
==================  ==================================================  =======================
``brats2018``       ``<id>_t1 / _t1ce / _t2 / _flair / _seg .nii.gz``  0, 1 NCR/NET, 2 ED, 4 ET
(BraTS 2017-2021)
``brats2023``       ``<id>-t1n / -t1c / -t2w / -t2f / -seg .nii.gz``   0, 1 NETC, 2 SNFH, 3 ET
``brats2015``       ``T1_* / T1c_* / T2_* / Flair_* .nii.gz``,          0, 1 necrosis, 2 oedema,
(DeepMedic copy)    ``OTMultiClass.nii.gz``, ``brainmask.nii.gz``       3 non-enhancing, 4 ET
==================  ==================================================  =======================

Contrast names are canonical ``t1``, ``t1ce``, ``t2``, ``flair``; BraTS 2023's ``t1n``, ``t1c``,
``t2w``, ``t2f`` (and ``t1gd``) are accepted as aliases of them.

Labels are mapped to one scheme, ``class_names`` = (background, necrosis, edema, enhancing):
BraTS 2017-2021 label 4 (enhancing) -> 3; BraTS 2023 is already 0-3; **BraTS 2015** labels
3 (non-enhancing tumour) -> 1 and 4 -> 3, i.e. non-enhancing tumour is merged into the
"necrotic and non-enhancing tumour core", as BraTS did itself from 2017 on (Bakas et al. 2018,
arXiv:1811.02629). The tumour core (1 + 3) and whole tumour (1 + 2 + 3) regions are thereby
the same as in the original labels.

Intensities: every contrast is z-scored inside the brain (mean 0, std 1 over brain voxels) and
set to 0 outside, the usual BraTS normalisation (e.g. Isensee et al. 2018): that is the
:class:`Case` (``units="zscore"``). The DeepMedic copy ships files already "subtrMeanDivStd",
but not over its own brain mask (there they have mean -0.2..0.15 and std 1.3..1.8), so they are
z-scored again like every other layout. The brain is the provided brain mask, else the voxels
nonzero in any of the contrasts read (BraTS volumes are skull-stripped with a zero background).

The networks see [0, 1], made per volume and per contrast by
:func:`tfganaug.data.segsets.slices_from_cases` as ``DataConfig.mr_norm`` says:
:func:`percentile_to_unit` (the default: brain voxels clipped at robust percentiles of their
own contrast, 0.5 / 99.5, mapped linearly, background 0, so a slice shows its anatomy; the
percentiles commute with the z-score, an increasing affine map, so this equals the mapping of
the raw intensities, and saturated cases such as BraTS 2018 TCIA10_639 are clipped too) or
:func:`zscore_to_unit` (runs from before ``mr_norm``: +-5 z onto [0, 1], brain tissue at
0.4-0.6 grey, background 0.5). Volumes are reoriented to ``"zyx"``
(:func:`tfganaug.data.readers.to_zyx`): axial slices first.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

from tfganaug.data.cases import Case
from tfganaug.data.readers import read_image, read_segmentation, to_zyx
from tfganaug.errors import InputError

CLASS_NAMES = ("background", "necrosis", "edema", "enhancing")
"""Label scheme of every BraTS case here: 0 background, 1 necrotic / non-enhancing tumour core,
2 peritumoural oedema, 3 enhancing tumour."""

CONTRASTS = ("t1", "t1ce", "t2", "flair")
CONTRAST_ALIASES = {"t1": "t1", "t1n": "t1", "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t2": "t2",
                    "t2w": "t2", "flair": "flair", "t2f": "flair"}

# Per layout: file-name pattern -> contrast, labels allowed on disk and their mapping to CLASS_NAMES.
_NII = r"\.nii(\.gz)?$"
LAYOUTS = {
    "brats2023": {"pattern": re.compile(r"-(t1n|t1c|t2w|t2f|seg)" + _NII, re.I),
                  "names": {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"},
                  "labels": {0: 0, 1: 1, 2: 2, 3: 3}},
    "brats2018": {"pattern": re.compile(r"_(t1|t1ce|t2|flair|seg)" + _NII, re.I),
                  "names": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"},
                  "labels": {0: 0, 1: 1, 2: 2, 4: 3}},
    "brats2015": {"pattern": re.compile(r"^(t1|t1c|t2|flair|ot|brainmask)(_[^/]*|multiclass)?" + _NII, re.I),
                  "names": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "ot": "seg"},
                  "labels": {0: 0, 1: 1, 2: 2, 3: 1, 4: 3}},
}


def canonical_contrasts(contrasts, where=None) -> tuple[str, ...]:
    """Contrast names (aliases allowed, any case) -> canonical names; InputError on unknown ones."""
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    out = []
    for c in contrasts:
        key = str(c).lower()
        if key not in CONTRAST_ALIASES:
            raise InputError("contrasts", f"names among {', '.join(CONTRASTS)} (or the BraTS 2023 names "
                             "t1n, t1c, t2w, t2f)", repr(c), where)
        out.append(CONTRAST_ALIASES[key])
    if not out or len(set(out)) != len(out):
        raise InputError("contrasts", "one or more distinct contrasts", repr(tuple(contrasts)), where)
    return tuple(out)


def _case_files(folder: Path) -> tuple[str, dict] | None:
    """(layout, {"t1": path, ..., "seg": path, "brainmask": path}) of a case folder, or None."""
    files = sorted(f for f in folder.iterdir() if f.is_file())
    for layout, spec in LAYOUTS.items():
        found = {}
        for f in files:
            match = spec["pattern"].search(f.name)
            if not match:
                continue
            key = match.group(1).lower()
            key = "brainmask" if key == "brainmask" else spec["names"].get(key, key)
            if key in found:
                raise InputError("BraTS case folder", f"one {key} file", f"{found[key].name} and {f.name}", folder)
            found[key] = f
        if any(k in CONTRASTS for k in found):
            return layout, found
    return None


def _find_cases(folder: Path, depth: int = 2) -> list[tuple[Path, str, dict]]:
    """Case folders at ``folder`` or up to ``depth`` levels below it."""
    here = _case_files(folder)
    if here:
        return [(folder, *here)]
    if depth == 0:
        return []
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [case for sub in subs for case in _find_cases(sub, depth - 1)]


def _zscore_in_brain(volume: np.ndarray, brain: np.ndarray, what: str, path) -> tuple[np.ndarray, float, float]:
    values = volume[brain].astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    if not std > 0:
        raise InputError(what, "varying intensities inside the brain", f"a constant {mean:g}", path)
    out = np.zeros(volume.shape, np.float32)
    out[brain] = ((values - mean) / std).astype(np.float32)
    return out, mean, std


def brain_of(image: np.ndarray) -> np.ndarray:
    """The brain of a reader's MR ``(..., C)``: voxels nonzero in any contrast (0 is outside)."""
    return np.any(image != 0, axis=-1)


def percentile_window(image: np.ndarray, brain: np.ndarray, percentiles=(0.5, 99.5)) -> tuple[np.ndarray, np.ndarray]:
    """Per contrast ``(low, high)``, arrays of shape (C,): the ``percentiles`` (in percent,
    NumPy's linear interpolation) of that contrast's brain voxels of ``image`` ``(..., C)``."""
    brain = np.asarray(brain, bool)
    if brain.shape != image.shape[:-1]:
        raise InputError("brain mask", f"the image's shape {image.shape[:-1]}", f"shape {brain.shape}")
    if not brain.any():
        raise InputError("brain mask", "at least one brain voxel", "none")
    bounds = np.stack([np.percentile(image[..., k][brain].astype(np.float64), list(percentiles))
                       for k in range(image.shape[-1])])
    return bounds[:, 0], bounds[:, 1]


def percentile_to_unit(image: np.ndarray, brain: np.ndarray, percentiles=(0.5, 99.5),
                       window: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """MR ``(..., C)`` onto [0, 1] per contrast: brain voxels clipped at ``[low, high]`` and
    mapped linearly (``low`` -> 0, ``high`` -> 1), every voxel outside ``brain`` 0.

    ``(low, high)`` is ``window`` if given (e.g. :func:`percentile_window` of the whole volume
    when ``image`` holds some of its slices), else the ``percentiles`` of ``image``'s own brain
    voxels. A contrast with ``high == low`` maps to 1 above ``low``, else 0. float32.
    """
    brain = np.asarray(brain, bool)
    low, high = percentile_window(image, brain, percentiles) if window is None else (
        np.asarray(window[0], np.float64), np.asarray(window[1], np.float64))
    span = high - low
    flat = span <= 0
    x = image.astype(np.float64)
    unit = np.where(flat, (x > low).astype(np.float64), (x - low) / np.where(flat, 1.0, span))
    unit = np.clip(unit, 0.0, 1.0)
    unit[~brain] = 0.0
    return unit.astype(np.float32)


def zscore_to_unit(image: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """The older mapping (``mr_norm="zscore"``): z-scores clipped to +-``clip``, ``[-clip, clip]``
    onto [0, 1]; a z of 0 (the brain's mean, and the background) lands at 0.5."""
    clip = float(clip)
    return ((np.clip(image, -clip, clip) + clip) / (2 * clip)).astype(np.float32)


def _read_case(folder: Path, layout: str, files: dict, contrasts, require_mask: bool) -> Case:
    has = [c for c in CONTRASTS if c in files]
    missing = [c for c in contrasts if c not in files]
    if missing:
        raise InputError("BraTS case", f"the contrasts {list(contrasts)}",
                         f"no {', '.join(missing)} file; the case has {has} (layout {layout})", folder)
    if require_mask and "seg" not in files:
        raise InputError("BraTS case", "a tumour label map (seg / OTMultiClass file; pass require_mask=False "
                         "to read images only)", f"none among {sorted(p.name for p in files.values())}", folder)
    volumes, meta = [], None
    for c in contrasts:
        array, m = to_zyx(*read_image(files[c]))
        if meta is not None and array.shape != meta["shape"]:
            raise InputError(f"{c} volume", f"the shape {meta['shape']} of {list(contrasts)[0]}",
                             f"shape {array.shape}", files[c])
        volumes.append(array)
        meta = meta or m
    if "brainmask" in files:
        brain_array, brain_meta = to_zyx(*read_image(files["brainmask"]))
        if brain_array.shape != meta["shape"]:
            raise InputError("brain mask", f"the images' shape {meta['shape']}", f"shape {brain_array.shape}",
                             files["brainmask"])
        brain, brain_source = brain_array > 0.5, "brainmask"
    else:
        brain, brain_source = np.any(np.stack(volumes) != 0, axis=0), "nonzero in any contrast"
    if not brain.any():
        raise InputError("brain", "at least one brain voxel", f"none ({brain_source})", folder)
    image, stats = [], {}
    for c, v in zip(contrasts, volumes):
        z, mean, std = _zscore_in_brain(v, brain, f"{c} volume", files[c])
        image.append(z)
        stats[c] = {"mean": mean, "std": std}
    mask = None
    mapping = LAYOUTS[layout]["labels"]
    if "seg" in files:
        labels, _ = read_segmentation(files["seg"], like_meta=meta, labels=list(mapping))
        lookup = np.zeros(max(mapping) + 1, np.uint8)
        for raw, new in mapping.items():
            lookup[raw] = new
        mask = lookup[labels]
    return Case(patient_id=folder.name, image=np.stack(image, axis=-1), mask=mask,
                spacing_mm=meta["spacing_mm"], class_names=CLASS_NAMES, channel_names=tuple(contrasts),
                modality="MR", units="zscore", source=str(folder),
                meta={"layout": layout, "label_mapping": {int(k): int(v) for k, v in mapping.items()},
                      "files": {k: str(v) for k, v in files.items()}, "brain": brain_source,
                      "brain_voxels": int(brain.sum()), "zscore": stats, "orientation": meta["orientation"],
                      "affine": meta["affine"], "axes": "zyx"})


def load_brats_cases(root: str | os.PathLike, contrasts=CONTRASTS, case_ids=None,
                     require_mask: bool = True, lazy: bool = False) -> list[Case]:
    """Read the BraTS cases under ``root`` (see the module docstring for layouts and labels).

    ``root`` is a case folder or a folder of case folders (up to two levels deeper);
    ``contrasts`` the channels to read, in order (``channel_names`` of every case, canonical
    names); ``case_ids`` restricts to these folder names (in this order); ``require_mask``
    refuses cases without a label map (``False``: such cases get ``mask=None``); ``lazy``: a
    `LazyCases` reading each case when it is reached (streamed training, ``data.stream``).
    """
    root = Path(root)
    contrasts = canonical_contrasts(contrasts, root)
    if not root.is_dir():
        raise InputError("BraTS folder", "an existing folder", "nothing there" if not root.exists() else "a file",
                         root)
    found = _find_cases(root)
    if not found:
        raise InputError("BraTS folder", "case folders of BraTS 2015 (DeepMedic), 2017-2021 or 2023",
                         "no recognised case files", root)
    by_id = {folder.name: (folder, layout, files) for folder, layout, files in found}
    if case_ids is not None:
        case_ids = [case_ids] if isinstance(case_ids, str) else list(case_ids)
        unknown = [c for c in case_ids if c not in by_id]
        if unknown:
            shown = sorted(by_id)[:10]
            raise InputError("case ids", f"some of {shown}{' ...' if len(by_id) > 10 else ''}",
                             ", ".join(map(str, unknown)), root)
        selected = [by_id[c] for c in case_ids]
    else:
        selected = [by_id[c] for c in sorted(by_id)]
    if lazy:
        from tfganaug.data.cases import LazyCases
        return LazyCases(len(selected), lambda i: _read_case(*selected[i], contrasts, require_mask))
    return [_read_case(folder, layout, files, contrasts, require_mask) for folder, layout, files in selected]


# --- phantom -----------------------------------------------------------------------------------

# Relative signal of each tissue per sequence (arbitrary units; only contrasts between tissues
# matter after the z-score). As on real scans: CSF dark on T1 and FLAIR, bright on T2; white
# matter brighter than grey on T1, darker on T2; oedema bright on T2 and FLAIR; necrosis fluid-like
# (dark on T1, bright on T2); the enhancing rim bright on T1-CE only.
_TISSUES = ("wm", "gm", "csf", "necrosis", "edema", "enhancing")
_SIGNAL = {
    "t1":    {"wm": 1.00, "gm": 0.70, "csf": 0.25, "necrosis": 0.35, "edema": 0.55, "enhancing": 0.65},
    "t1ce":  {"wm": 1.00, "gm": 0.72, "csf": 0.27, "necrosis": 0.35, "edema": 0.58, "enhancing": 1.70},
    "t2":    {"wm": 0.45, "gm": 0.65, "csf": 1.50, "necrosis": 1.40, "edema": 1.20, "enhancing": 0.90},
    "flair": {"wm": 0.55, "gm": 0.72, "csf": 0.12, "necrosis": 0.50, "edema": 1.40, "enhancing": 1.00},
}


def _phantom_patient(rng: np.random.Generator, size: int, n_slices: int):
    """Tissue fractions (6, Z, H, W), label map (Z, H, W) and brain mask of one simulated patient."""
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, n_slices), np.linspace(-1, 1, size), np.linspace(-1, 1, size),
                             indexing="ij")
    ay, ax, az = rng.uniform(0.75, 0.88), rng.uniform(0.58, 0.70), rng.uniform(1.05, 1.2)
    angle = np.arctan2(yy, xx)
    gyri = 1 + 0.035 * np.sin(rng.integers(9, 14) * angle + rng.uniform(0, 2 * np.pi)) * (1 - zz ** 2)
    r_brain = np.sqrt((yy / ay) ** 2 + (xx / ax) ** 2 + (zz / az) ** 2)
    brain = r_brain < 1.0
    gm = brain & (r_brain * gyri > 0.80)
    csf = np.zeros_like(brain)
    for side in (-1, 1):  # lateral ventricles
        cx = side * rng.uniform(0.09, 0.14) * ax
        csf |= (((yy + 0.08) / (0.32 * ay)) ** 2 + ((xx - cx) / 0.075) ** 2 + (zz / 0.45) ** 2) < 1
    csf &= brain & ~gm
    wm = brain & ~gm & ~csf
    # Tumour in one hemisphere: irregular core (enhancing rim around necrosis) inside oedema.
    side = rng.choice([-1, 1])
    centre = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.3), side * rng.uniform(0.35, 0.5) * ax])
    radius = rng.uniform(0.14, 0.22)
    d = np.sqrt(((zz - centre[0]) / 1.3) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    around = np.arctan2(yy - centre[1], xx - centre[2])
    lobes = 1 + sum(rng.normal(0, 0.08) * np.cos(k * around + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    d = d / np.clip(lobes, 0.7, 1.3)
    labels = np.zeros(brain.shape, np.uint8)
    labels[brain & (d < radius * rng.uniform(1.6, 2.1))] = 2
    labels[brain & (d < radius)] = 3
    labels[brain & (d < radius * rng.uniform(0.45, 0.65))] = 1
    fractions = {"wm": wm & (labels == 0), "gm": gm & (labels == 0), "csf": csf & (labels == 0),
                 "necrosis": labels == 1, "edema": labels == 2, "enhancing": labels == 3}
    return np.stack([fractions[t].astype(np.float32) for t in _TISSUES]), labels, brain


def brain_phantom_cases(n_patients: int = 8, image_size: int = 64, n_slices: int = 16, contrasts=CONTRASTS,
                        seed: int = 0) -> list[Case]:
    """Simulated skull-stripped brain MR with a glioma, in the same form as :func:`load_brats_cases`.

    Per patient: an ellipsoidal brain with a gyral grey-matter ribbon, white matter and lateral
    ventricles, and a tumour in one hemisphere (necrotic core 1, enhancing rim 3, surrounding
    oedema 2, present in the middle slices only), in T1 / T1-CE / T2 / FLAIR contrast (see
    ``_SIGNAL``) with a smooth bias field, partial-volume blur and noise, then z-scored inside
    the brain like the reader (``units="zscore"``, so it reaches [0, 1] through the same
    ``DataConfig.mr_norm`` mapping as real cases). Deterministic in ``seed`` (patient p uses the stream
    ``(seed, p)``, so the first patients do not depend on ``n_patients``).
    """
    contrasts = canonical_contrasts(contrasts, "brain phantom")
    if n_patients < 1 or image_size < 8 or n_slices < 1:
        raise InputError("phantom size", "n_patients >= 1, image_size >= 8 and n_slices >= 1",
                         f"{n_patients}, {image_size}, {n_slices}")
    cases = []
    for p in range(n_patients):
        rng = np.random.default_rng([seed, p])
        tissues, labels, brain = _phantom_patient(rng, image_size, n_slices)
        smooth = ndimage.gaussian_filter(rng.normal(0, 1, (n_slices, 4, 4)), 1.0)
        bias = 1 + 0.1 * ndimage.zoom(smooth, (1, image_size / 4, image_size / 4), order=1)
        channels = []
        for c in contrasts:
            signal = np.tensordot(np.array([_SIGNAL[c][t] for t in _TISSUES], np.float32), tissues, axes=1)
            signal = ndimage.gaussian_filter(signal * rng.uniform(0.8, 1.2), (0, 0.6, 0.6))
            signal = signal * bias + rng.normal(0, 0.04, signal.shape)
            values = signal[brain]
            z = np.zeros(signal.shape, np.float32)
            z[brain] = (values - values.mean()) / values.std()
            channels.append(z)
        cases.append(Case(patient_id=f"brats-phantom-{p:03d}", image=np.stack(channels, axis=-1), mask=labels,
                          spacing_mm=(150.0 / n_slices, 180.0 / image_size, 180.0 / image_size),
                          class_names=CLASS_NAMES, channel_names=contrasts, modality="MR", units="zscore",
                          source="brain phantom", meta={"phantom": True, "seed": seed, "patient": p}))
    return cases
