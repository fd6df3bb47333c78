"""The one home of synthetic data sets: written by `tfganaug synthesize`, read by train-cls and
train-seg, each checked against its manifest before use.

A ROI set (DCGAN / ACGAN)::

    images.npz      images float32 (N, H, W, 1) in [0, 1], labels int32 (N,), class_names
    png/<class>/000001.png
    manifest.json   generator run, checkpoints, seed, counts, sha256 of images.npz

A segmentation set (Pix2Pix, CycleGAN, StyleGAN2; manifest kind "segmentation")::

    images.npz      images float32 (N, H, W, C) in [0, 1], masks uint8 (N, H, W), class_names,
                    channel_names[, patient_ids, slice_index: the real slice each was made from]
    png/000001.png  previews (image | label map)
    nifti/          CycleGAN: whole translated volumes with their labels (3-D training)
    manifest.json

Each is built under a temporary name and renamed when complete, so a folder that has a
manifest is complete; readers check the images' sha256 against it.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import numpy as np

from tfganaug import __version__
from tfganaug.data.npz import INTEGER, NUMERIC, TEXT, Member, read_npz
from tfganaug.data.segsets import SegSet
from tfganaug.errors import InputError
from tfganaug.fsutil import atomic_dir, atomic_write_json, sha256_file
from tfganaug.viz import png_bytes


# ------------------------------------------------------------------ checked reading of a set's files
# A synthetic set comes back from the user as a folder, so its files are input like any other.

MAX_MANIFEST_BYTES = 16 * 2**20
"""Largest manifest.json read (one lists a few hundred volumes in a few kB)."""

CLASSIFICATION_ARRAYS = {"images": Member(NUMERIC, (3, 4)), "labels": Member(INTEGER, (1,)),
                         "class_names": Member(TEXT, (1,), required=False, per_item=False)}
"""images float32 (N, H, W, 1) in [0, 1], labels (N,), class names."""

SEGMENTATION_ARRAYS = {"images": Member(NUMERIC, (4,)), "masks": Member(INTEGER, (3,)),
                       "patient_ids": Member(TEXT, (1,), required=False),
                       "slice_index": Member(INTEGER, (1,), required=False),
                       "class_names": Member(TEXT, (1,), required=False, per_item=False),
                       "channel_names": Member(TEXT, (1,), required=False, per_item=False)}
"""images float32 (N, H, W, C) in [0, 1], label maps (N, H, W), the source slice of each."""


def read_manifest_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; anything else (cut, not JSON, a list) is an InputError."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise InputError("a manifest", f"a JSON file of at most {MAX_MANIFEST_BYTES} bytes", f"{size} bytes", path)
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise InputError("a manifest", "a readable JSON object", reason, path) from exc
    if not isinstance(manifest, dict):
        raise InputError("a manifest", "a JSON object", f"a JSON {type(manifest).__name__}", path)
    return manifest


def read_synthetic_rois(folder) -> tuple[np.ndarray, np.ndarray]:
    """(images float32, labels int32) of a classification set's images.npz."""
    arrays = read_npz(Path(folder) / "images.npz", CLASSIFICATION_ARRAYS, "a synthetic ROI set")
    return arrays["images"].astype(np.float32), arrays["labels"].astype(np.int32)


def read_synthetic_pairs(folder) -> dict[str, np.ndarray]:
    """The arrays of a segmentation set's images.npz (see :data:`SEGMENTATION_ARRAYS`)."""
    path = Path(folder) / "images.npz"
    arrays = read_npz(path, SEGMENTATION_ARRAYS, "a synthetic segmentation set")
    if arrays["images"].shape[:3] != arrays["masks"].shape:
        raise InputError("a synthetic segmentation set", "images (N, H, W, C) and masks (N, H, W) of one size",
                         f"{arrays['images'].shape} and {arrays['masks'].shape}", path)
    if ("patient_ids" in arrays) != ("slice_index" in arrays):
        raise InputError("a synthetic segmentation set", "patient_ids and slice_index together",
                         f"only {'patient_ids' if 'patient_ids' in arrays else 'slice_index'}", path)
    return arrays


# ------------------------------------------------------------------ writing and loading sets

def write_roi_synthetic(out, images: np.ndarray, labels: np.ndarray, class_names, info: dict,
                        overwrite: bool = False, png: bool = True) -> Path:
    """Write a synthetic ROI set (images in [0, 1], class labels) atomically: the folder is
    renamed into place when complete, so a folder with a manifest is complete."""
    names = list(class_names)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.savez_compressed(tmp / "images.npz", images=images, labels=labels, class_names=np.array(names))
        if png:
            for i, (img, lab) in enumerate(zip(images, labels)):
                path = tmp / "png" / names[lab] / f"{i:06d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png_bytes((img[..., 0] * 255).round().astype(np.uint8)))
        atomic_write_json(tmp / "manifest.json", {
            **info, "count": int(len(labels)),
            "class_names": names, "class_counts": np.bincount(labels, minlength=len(names)).tolist(),
            "image_size": int(images.shape[1]), "value_range": [0.0, 1.0],
            "images_sha256": sha256_file(tmp / "images.npz"), "tfganaug": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return Path(out)


def read_manifest(folder) -> dict:
    """The manifest.json of a synthetic set, read as a JSON object (not checked against its
    images: see read_synthetic_manifest)."""
    return read_manifest_json(Path(folder) / "manifest.json")


def read_synthetic_manifest(folder, kind: str, expect: dict) -> dict:
    """The manifest of a synthetic set written by `synthesize`, checked: its images.npz against the
    recorded sha256, its kind ("classification": ROIs with class labels; "segmentation": image +
    label-map pairs) and every `expect` entry `{key: (what, wanted value, description)}`."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise InputError("a synthetic set", "a folder written by `tfganaug synthesize` (with manifest.json)",
                         "no manifest.json" if folder.exists() else "no such folder", folder)
    manifest = read_manifest_json(manifest_path)
    kinds = {"classification": "ROIs with class labels (a dcgan/acgan set)",
             "segmentation": "image + label-map pairs (from a pix2pix, cyclegan or stylegan2 run)"}
    got = manifest.get("kind", "classification")
    if got != kind:
        raise InputError("a synthetic set", kinds[kind], kinds.get(got, repr(got)), folder)
    npz = folder / "images.npz"
    if not npz.exists() or sha256_file(npz) != manifest.get("images_sha256"):
        raise InputError("images.npz", f"sha256 {manifest.get('images_sha256')} from the manifest",
                         "a missing or changed file", npz)
    for key, (what, want, description) in expect.items():
        if manifest.get(key) != want:
            raise InputError(f"synthetic {what}", description, f"{manifest.get(key)}", manifest_path)
    return manifest


def load_synthetic(folder, class_names, image_size: int):
    """(images, labels) of a synthetic set, checked against the classifier's classes and size."""
    read_synthetic_manifest(folder, "classification", {
        "class_names": ("classes", list(class_names), f"the training classes {list(class_names)}"),
        "image_size": ("image size", image_size, f"{image_size} px (data.image_size)")})
    return read_synthetic_rois(folder)


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
