"""`tfganaug predict`: run a trained segmenter on one new scan, write its label map as NIfTI on
the scan's own voxel grid and the volume of every structure in millilitres.

The model is a `train-seg` run folder or a SavedModel exported from one (`tfganaug export`;
its `tfganaug_export.json` names the run, whose config holds the preprocessing). The scan is
read with :func:`tfganaug.data.readers.read_image` (a DICOM series folder or zip, NIfTI, or an
8-bit PNG slice); MR runs take one file per contrast, in the run's channel order, or one 4-D
NIfTI. It is prepared exactly as training prepared its cases (:func:`segsets.network_slices`):
reoriented to the DICOM axis order (:func:`readers.to_zyx`), padded to square, CT windowed
with the run's WW / WL, MR z-scored inside the brain (voxels nonzero in any contrast, as the
BraTS reader does) and mapped by the run's `mr_norm`, PNG / 255, and resized to the training
size. The 2-D U-Net runs on batches of slices, the 3-D U-Net on windows of `patch_depth`
slices overlapping by half (:func:`data.volumes.sliding_window_probabilities`). Probabilities
are resized back (bilinear) to the padded slice, cropped, and only then decoded to labels, so
structure borders are not blocky at the scan's resolution.

A CT scan (NIfTI, DICOM folder or zip) is streamed: read a block of slices at a time
(:func:`readers.open_slices`), prepared, run and decoded while the next blocks wait on disk;
the 3-D U-Net keeps the probabilities of the windows in flight only (the overlap). What grows
with the scan's length is the uint8 label map on the input's grid (filled through a view in the
networks' axis order), written slab by slab through gzip: 1 byte per voxel against the 4+ of a
float32 copy of the scan. MR scans (one file per contrast) are read whole: the z-score and the
percentile window are the whole brain's; a PNG slice is one slice.

The mask is uint8 on the input's grid:

* NIfTI in: the file's own voxel order, affine and header (qform / sform codes kept);
* DICOM in: index (column, row, slice) with the affine built from ImagePositionPatient,
  ImageOrientationPatient, PixelSpacing and the slice positions (the layout ITK writes);
* PNG in: (row, column, 1), identity affine (1 mm pixels: a PNG has no spacing).

Volumes (voxel count x |det| of the affine's 3x3 part) go to stdout and to
`<name>.volumes.json` beside the mask. Both files are written atomically, and an existing one
is replaced only with `overwrite`.

A served segmenter (`served_segmenter`, `tfganaug predict --server URL --model NAME`, REST or
gRPC through `tfganaug.serving.connect`) runs the same reading, preprocessing, batching or
sliding windows, mapping back and writing; only the network calls go to the model server,
one request per batch of slices (per window for the 3-D U-Net), to the signature that takes
slices preprocessed as in training: `preprocessed` where the export has it, else (older
exports) `serving_default`. The facts the run folder would give come from two places:

* the served model's metadata (that signature's def): the training image size S and the
  number of channels C (input ``image [None, (Z,) S, S, C]``), 2-D or 3-D (its rank), and the
  number of output channels k (``probabilities``);
* explicit options: the class names (`--classes`; k names mean softmax outputs, k + 1 sigmoid
  ones after a background), the channel names (`--channels`, default ``CT``), the CT window
  (`--window WW,WL`, required for CT: the export's `tfganaug_export.json` states it), the MR
  normalisation (`--mr-norm`, default the run default) and the 3-D window depth
  (`--patch-depth`, required for a 3-D model).

TF Serving's metadata carries signatures only, not the export's `tfganaug_export.json`, hence
the options. The volumes JSON records which fact came from where.
"""
from __future__ import annotations

import contextlib
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import tensorflow as tf
from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

from tfganaug.data.readers import ZYX_ORIENTATION, SliceBlocks, open_slices, read_image, streamable, to_zyx
from tfganaug.errors import InputError, OutputExistsError, RunFolderError
from tfganaug.fsutil import atomic_write_json, atomic_write_with

SLICE_CHUNK = 32
"""Slices read and prepared at a time: a 600-slice CT never exists whole as float32."""


@dataclass
class Segmenter:
    """A trained segmenter and the preprocessing of the run that trained it."""

    source: str
    data: object                    # the run's DataConfig: window, MR normalisation, image_size
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    output: str                     # softmax | sigmoid (tasks/segmenter.py decode)
    patch_depth: int | None         # 3-D U-Net: slices per window; None for the 2-D U-Net
    probabilities: Callable         # float32 (B, [Z,] S, S, C) -> (B, [Z,] S, S, k)
    facts: dict | None = None       # served: which preprocessing facts came from where

    @property
    def modality(self) -> str:
        """CT, MR, or "unit" for runs on prepared [0, 1] slices (an .npz): what a scan must be."""
        from tfganaug.data.brats import CONTRAST_ALIASES
        if tuple(self.channel_names) == ("CT",):
            return "CT"
        if all(c.lower() in CONTRAST_ALIASES for c in self.channel_names):
            return "MR"
        return "unit"


@dataclass
class Scan:
    """A scan in the networks' axis order, and how to put a label map back on its own grid."""

    volume: SliceBlocks             # float32 (Z, H, W, C), axes "zyx", read a block of slices at a time
    units: str                      # HU | grey8 | zscore (Case.units)
    spacing_mm: tuple               # (z, y, x)
    native_shape: tuple             # the label map's shape on the input's grid
    zyx_view: Callable              # that label map -> a writable view of it in the networks' axis order
    affine: np.ndarray              # 4x4 of the native grid
    header: object                  # nibabel header to keep (NIfTI input) or None
    sources: list
    geometry: str


def load_segmenter_for_prediction(path) -> Segmenter:
    """A `train-seg` run folder, or a SavedModel exported from one (the version folder or the
    model folder, whose highest version is used as TF Serving would)."""
    from tfganaug.runs import RunFolder
    path = Path(path)
    if (path / "config.json").exists():
        run, cfg = RunFolder.load(path)
        if cfg.kind != "seg":
            raise RunFolderError(f"{path}: expected a segmentation run (train-seg), got a '{cfg.kind}' run")
        from tfganaug.stages.evaluate import load_segmenter
        model = load_segmenter(run)
        status = run.status()
        return _segmenter(str(path), cfg, status, status.get("output", "softmax"),
                          lambda x: np.asarray(model(x, training=False), np.float32))
    version = _saved_model_version(path)
    from tfganaug.stages.export import INFO_FILE, SIGNATURE
    info_path = version / "assets.extra" / INFO_FILE
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("SavedModel", f"an export of tfganaug with assets.extra/{INFO_FILE}",
                         f"{type(exc).__name__} reading it", info_path) from None
    if info.get("kind") != "seg":
        raise InputError("SavedModel", "an exported segmentation run (train-seg)", f"a '{info.get('kind')}' export",
                         version)
    source_run = info.get("source_run")
    if not source_run or not (Path(source_run) / "config.json").exists():
        raise InputError("source_run (the run exported, whose config.json holds the preprocessing)",
                         "a run folder that still exists", f"nothing at {source_run}; pass the run folder instead",
                         info_path)
    _, cfg = RunFolder.load(source_run)
    signatures = tf.saved_model.load(str(version)).signatures
    # predict preprocesses as the run did, so it calls the signature that takes slices preprocessed as in
    # training: `preprocessed` where serving_default takes raw intensities (exports since raw-input serving),
    # serving_default in older exports.
    serve = signatures["preprocessed"] if "preprocessed" in signatures else signatures[SIGNATURE]
    status = {"class_names": info["class_names"], "channel_names": info.get("channel_names")}
    return _segmenter(str(version), cfg, status, info.get("output", "softmax"),
                      lambda x: serve(image=tf.constant(x, tf.float32))["probabilities"].numpy())


def served_segmenter(server: str, model: str, *, class_names, channel_names=("CT",), window=None,
                     mr_norm: str | None = None, patch_depth: int | None = None, version: int | None = None,
                     batch_size: int = 16, timeout_s: float = 60.0) -> Segmenter:
    """A segmenter served by TF Serving (REST or gRPC), with the preprocessing facts of its
    metadata and of the options (module docstring)."""
    from tfganaug.config import DataConfig
    from tfganaug.serving import connect
    from tfganaug.stages.export import SIGNATURE
    client = connect(server, model, version=version, batch_size=batch_size, timeout_s=timeout_s)
    defs = client.signatures()
    name = "preprocessed" if "preprocessed" in defs else SIGNATURE
    image = defs.get(name, {}).get("inputs", {}).get("image")
    probs = defs.get(name, {}).get("outputs", {}).get("probabilities")
    shape = image[1] if image else None
    if not (shape and probs and probs[1] and len(shape) in (4, 5) and None not in shape[-3:]
            and shape[-3] == shape[-2] and probs[1][-1] is not None):
        raise InputError("served model", "a segmenter exported by `tfganaug export` (a signature 'preprocessed' or "
                         "'serving_default' taking image [None, (Z,) S, S, C], answering probabilities)",
                         f"signatures {sorted(defs)}" + (f", '{name}' taking image {shape}" if image else ""),
                         client.base)
    size, channels, k = int(shape[-2]), int(shape[-1]), int(probs[1][-1])
    volumes = len(shape) == 5
    names, channel_names = tuple(class_names or ()), tuple(channel_names or ("CT",))
    if len(names) not in (k, k + 1) or len(set(names)) != len(names):
        raise InputError("--classes", f"the served model's class names in label order, without repeats: {k} "
                         f"(softmax outputs) or {k + 1} (background, then {k} sigmoid outputs)",
                         f"{len(names)} ({', '.join(names) or 'none'})", client.base)
    if len(channel_names) != channels:
        raise InputError("--channels", f"{channels} channel name(s) in the run's order (CT, or MR contrasts "
                         "such as flair,t1ce)", f"{len(channel_names)} ({', '.join(channel_names)})", client.base)
    if volumes and not patch_depth:
        raise InputError("--patch-depth", "the slices per window the 3-D U-Net was trained on (patch_depth in "
                         "the run's config)", "nothing", client.base)
    overrides = {"image_size": size}
    if mr_norm:
        overrides["mr_norm"] = mr_norm
    if window is not None:
        overrides["window_width"], overrides["window_level"] = (float(v) for v in window)
    segmenter = Segmenter(source=client.base, data=DataConfig(**overrides), class_names=names,
                          channel_names=channel_names, output="softmax" if len(names) == k else "sigmoid",
                          patch_depth=int(patch_depth) if volumes else None,
                          probabilities=lambda x: client.predict({"image": x})["probabilities"])
    if segmenter.modality == "CT" and window is None:
        raise InputError("--window", "the run's CT window as WW,WL in HU (e.g. 400,50: the 'preprocessed' "
                         "signature in its tfganaug_export.json states it)", "nothing", client.base)
    client.signature = name
    segmenter.facts = {
        "server": client.base, "transport": client.transport, "signature": name,
        "from the served model's metadata": {"image_size": size, "channels": channels, "outputs": k,
                                             "model": "3-D U-Net" if volumes else "2-D U-Net"},
        "from options": {"class_names": list(names), "output": segmenter.output, "channel_names": list(channel_names),
                         **({"window": [overrides["window_width"], overrides["window_level"]]} if window else {}),
                         **({"mr_norm": mr_norm} if mr_norm else {}),
                         **({"patch_depth": int(patch_depth)} if volumes else {})}}
    return segmenter


def _segmenter(source, cfg, status, output, probabilities) -> Segmenter:
    from tfganaug.tasks.segmenter import is_3d
    return Segmenter(source=source, data=cfg.data, class_names=tuple(status["class_names"]),
                     channel_names=tuple(status.get("channel_names") or ("CT",)), output=output,
                     patch_depth=cfg.seg.patch_depth if is_3d(cfg.seg) else None, probabilities=probabilities)


def _saved_model_version(path: Path) -> Path:
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists()),
                      key=lambda p: int(p.name)) if path.is_dir() else []
    if not versions:
        raise InputError("model", "a segmentation run folder (with config.json) or an exported SavedModel "
                         "(with saved_model.pb, or version folders holding one)",
                         "nothing at that path" if not path.exists() else "neither", path)
    return versions[-1]


# ---------------------------------------------------------------------------- reading the scan

def read_scan(paths, segmenter: Segmenter) -> Scan:
    """The scan(s) as one (Z, H, W, C) volume in the networks' axis order (module docstring):
    streamed for a CT scan, in memory otherwise."""
    paths = [Path(p) for p in paths]
    channels = segmenter.channel_names
    if len(paths) == 1 and segmenter.modality == "CT" and streamable(paths[0]):
        volume = open_slices(paths[0])
        scan = _volume_scan(paths[0], volume, "HU")
        if volume.shape[-1] != 1:
            raise InputError("scan", "one single-channel scan", f"{volume.shape[-1]} channel(s) in 1 file(s)",
                             paths[0])
        return scan
    parts = [_read_one(p, segmenter.modality) for p in paths]
    # one contrast: no copy
    arrays = [part.volume.slices(0, part.volume.shape[0]) for part in parts]
    image = arrays[0] if len(parts) == 1 else np.concatenate(arrays, axis=-1)
    first = parts[0]
    for p, part in zip(paths[1:], parts[1:]):
        if part.volume.shape[:3] != first.volume.shape[:3] or not np.allclose(part.affine, first.affine, atol=1e-3):
            raise InputError("contrast", f"the voxel grid of {paths[0]} (shape {first.volume.shape[:3]})",
                             f"shape {part.volume.shape[:3]} with another affine or shape", p)
    if image.shape[-1] != len(channels):
        want = (f"{len(channels)} files, one per channel in the run's order ({', '.join(channels)}), or one "
                f"4-D NIfTI with {len(channels)} channels" if len(channels) > 1 else "one single-channel scan")
        raise InputError("scan", want, f"{image.shape[-1]} channel(s) in {len(paths)} file(s)", paths[0])
    if segmenter.modality == "MR":
        image = _zscore_in_brain(image, paths[0])
    return Scan(volume=SliceBlocks.of_array(image, first.volume.meta),
                units="zscore" if segmenter.modality == "MR" else first.units, spacing_mm=first.spacing_mm,
                native_shape=first.native_shape, zyx_view=first.zyx_view, affine=first.affine, header=first.header,
                sources=[str(p) for p in paths], geometry=first.geometry)


def _read_one(path: Path, modality: str) -> Scan:
    array, meta = read_image(path)
    kind = meta["format"]
    if kind in ("npy", "npz"):
        raise InputError("scan", "a DICOM series (folder or .zip), a NIfTI file or a PNG slice",
                         f"a .{kind} array (it carries no geometry)", path)
    if kind in ("png", "jpg", "jpeg"):
        from tfganaug.data.kits import read_png_slice
        grey = read_png_slice(path).astype(np.float32)
        return Scan(SliceBlocks.of_array(grey[None, ..., None], meta), "grey8", (1.0, 1.0, 1.0),
                    grey.shape + (1,), lambda labels: labels.transpose(2, 0, 1), np.eye(4), None, [str(path)],
                    "PNG: identity affine, 1 mm pixels (a PNG carries no spacing)")
    if modality == "unit":
        raise InputError("scan", "an 8-bit PNG slice (the run was trained on prepared [0, 1] slices, whose units "
                         "a CT or MR volume cannot be mapped to)", f"a {kind} volume", path)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise InputError("scan", "a 3-D volume or a 4-D NIfTI of channels", f"shape {array.shape}", path)
    zyx, zmeta = to_zyx(array, meta)
    return _volume_scan(path, SliceBlocks.of_array(zyx.astype(np.float32, copy=False), zmeta, meta),
                        "HU" if modality == "CT" else "zscore")


def _volume_scan(path: Path, volume: SliceBlocks, units: str) -> Scan:
    """A NIfTI or DICOM volume and the way back to its own voxel grid."""
    if volume.stored_meta["format"] == "nifti":
        native = nib.load(path)  # the file's own voxel order, before the reader's RAS reorientation
        codes = nib.aff2axcodes(native.affine)
        affine, header, geometry = native.affine, native.header, "the NIfTI file's own affine and voxel order"
    else:
        codes, affine, geometry = _dicom_native_grid(volume.stored_meta)
        header = None
    zyx_shape = volume.shape[:3]
    if None in codes:  # a DICOM series without geometry: (column, row, slice) as stored
        native_shape, zyx_view = zyx_shape[::-1], lambda labels: labels.transpose(2, 1, 0)
    else:
        back = ornt_transform(axcodes2ornt(ZYX_ORIENTATION), axcodes2ornt(codes))
        native_shape = [0] * 3
        for axis, (to, _) in enumerate(back):
            native_shape[int(to)] = zyx_shape[axis]
        forward = ornt_transform(axcodes2ornt(codes), axcodes2ornt(ZYX_ORIENTATION))

        def zyx_view(labels):  # flips and a transpose: a view, written through
            return apply_orientation(labels, forward)
    return Scan(volume, units, tuple(volume.meta["spacing_mm"]), tuple(native_shape), zyx_view,
                np.asarray(affine, float), header, [str(path)], geometry)


def _dicom_native_grid(meta) -> tuple[tuple, np.ndarray, str]:
    """Axis codes and affine of the (column, row, slice) grid of a DICOM series (meta from the reader)."""
    if meta.get("affine") is None:
        dz, dy, dx = meta["spacing_mm"]
        return (None, None, None), np.diag([dx, dy, dz, 1.0]), ("DICOM without ImagePositionPatient / "
                                                               "ImageOrientationPatient: spacing only, no position")
    affine = np.asarray(meta["affine"], float)[:, [2, 1, 0, 3]]  # the reader's (slice, row, column) -> (c, r, s)
    return nib.aff2axcodes(affine), affine, ("DICOM: ImagePositionPatient, ImageOrientationPatient, PixelSpacing "
                                             "and slice positions, index (column, row, slice)")


def _zscore_in_brain(image: np.ndarray, path) -> np.ndarray:
    """Each contrast z-scored over the brain (voxels nonzero in any contrast), 0 outside: the
    units of the BraTS reader's cases, which the run's `mr_norm` then maps onto [0, 1]."""
    from tfganaug.data.brats import brain_of
    from tfganaug.data.ct import normalize_zscore
    brain = brain_of(image)
    if not brain.any():
        raise InputError("MR scan", "brain voxels (nonzero in some contrast)", "an all-zero image", path)
    out = np.zeros(image.shape, np.float32)
    for k in range(image.shape[-1]):
        out[..., k][brain] = normalize_zscore(image[..., k][brain])
    return out


# ---------------------------------------------------------------------------- prediction

def predict_labels(segmenter: Segmenter, scan: Scan, batch_size: int = 16, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """uint8 label map (Z, H, W) of `scan` in the networks' axis order, at the scan's resolution,
    written into `out` where given (`predict`: a view of the mask on the input's grid).

    Streamed (module docstring): the network sees the batches (2-D: slices [0, b), [b, 2b), ...;
    3-D: the windows) it would see on the whole volume at once, so the labels are the same."""
    from tfganaug.tasks.segmenter import decode
    z, h, w = scan.volume.shape[:3]
    slices = _SlicesInFlight(_preparer(segmenter, scan), z)
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2  # as segsets.square_pad centred the slice
    labels = np.zeros((z, h, w), np.uint8) if out is None else out

    def put(s, probs):
        p = tf.image.resize(probs, (side, side), "bilinear")[:, top:top + h, left:left + w]
        labels[s:s + len(probs)] = decode(p, segmenter.output).numpy().astype(np.uint8)

    if segmenter.patch_depth is not None:
        from tfganaug.data.volumes import sliding_window_probabilities
        for s, probs in sliding_window_probabilities(lambda x, training=False: segmenter.probabilities(x), slices,
                                                     z, segmenter.patch_depth):
            put(s, probs)
    else:
        for s in range(0, z, batch_size):
            put(s, segmenter.probabilities(slices(s, min(z, s + batch_size))))
    scan.volume.check_not_constant()
    return labels


def _preparer(segmenter: Segmenter, scan: Scan) -> Callable:
    """(z0, z1) -> slices z0..z1-1 as the network takes them (`segsets.network_slices`)."""
    from tfganaug.data.cases import Case
    from tfganaug.data.segsets import network_slices

    def case_of(image):
        return Case("scan", image, None, scan.spacing_mm, segmenter.class_names,
                    channel_names=segmenter.channel_names, modality="MR" if scan.units == "zscore" else "CT",
                    units=scan.units, source=scan.sources[0])

    if scan.units == "zscore":  # MR: the percentile window is the whole brain's (in memory: read_scan)
        whole = case_of(scan.volume.slices(0, scan.volume.shape[0]))
        return lambda z0, z1: network_slices(whole, np.arange(z0, z1), segmenter.data)
    return lambda z0, z1: network_slices(case_of(scan.volume.slices(z0, z1)), np.arange(z1 - z0), segmenter.data)


class _SlicesInFlight:
    """Prepared slices [a, b) for ranges that never move back, read `SLICE_CHUNK` slices at a
    time; slices before the last range asked for are let go."""

    def __init__(self, prepare: Callable, z: int):
        self.prepare, self.z, self.lo, self.held = prepare, z, 0, None

    def __call__(self, a: int, b: int) -> np.ndarray:
        if self.held is not None and a > self.lo:
            self.held, self.lo = self.held[a - self.lo:], a
        end = self.lo + (0 if self.held is None else len(self.held))
        new = [] if self.held is None else [self.held]
        while end < b:
            new.append(self.prepare(end, min(self.z, end + SLICE_CHUNK)))
            end = min(self.z, end + SLICE_CHUNK)
        self.held = new[0] if len(new) == 1 else np.concatenate(new)
        return self.held[a - self.lo:b - self.lo]


def volumes_ml(labels: np.ndarray, affine: np.ndarray, class_names) -> tuple[dict, dict, float]:
    """({structure: voxels}, {structure: ml}, ml per voxel) of every foreground class."""
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0
    flat, n = labels.reshape(-1), len(class_names)
    step = 1 << 18  # bincount works on intp: 8 bytes per voxel, so a block at a time
    counts = sum(np.bincount(flat[s:s + step], minlength=n)[:n] for s in range(0, flat.size, step))
    voxels = {name: int(counts[i]) for i, name in enumerate(class_names) if i > 0}
    return voxels, {name: n * voxel_ml for name, n in voxels.items()}, voxel_ml


def volumes_path(out) -> Path:
    """`<name>.volumes.json` beside the mask `<name>.nii[.gz]`."""
    out = Path(out)
    stem = out.name[: -len(".nii.gz")] if out.name.lower().endswith(".nii.gz") else out.stem
    return out.with_name(stem + ".volumes.json")


def write_mask(out: Path, labels: np.ndarray, affine: np.ndarray, header) -> None:
    """The uint8 mask as NIfTI (gzip level 6, mtime 0 for .nii.gz), written atomically slab by
    slab (nibabel writes an array a slice at a time), never as one bytes object."""
    if header is not None:
        header = header.copy()
        header.set_data_dtype(np.uint8)
        header.set_slope_inter(1.0, 0.0)
    image = nib.Nifti1Image(labels.astype(np.uint8, copy=False), affine, header=header)
    if header is None:
        image.header.set_qform(affine, code=1)
        image.header.set_sform(affine, code=1)
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))

    def write(tmp):
        with open(tmp, "wb") as raw, (gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0)
                                      if out.name.lower().endswith(".gz") else contextlib.nullcontext(raw)) as f:
            image.to_file_map({"image": nib.FileHolder(fileobj=f)})
    atomic_write_with(out, write)


def predict(model, scans, out, overwrite: bool = False, batch_size: int = 16) -> dict:
    """Segment `scans` with `model` (a run folder, an exported SavedModel, or a `Segmenter` such
    as `served_segmenter` gives); write the mask `out` (.nii / .nii.gz) and its volumes JSON.

    Returns the volumes record written to :func:`volumes_path` (`out`).
    """
    out = Path(out)
    name = out.name.lower()
    if not name.endswith((".nii.gz", ".nii")):
        raise InputError("--out", "a file name ending in .nii.gz or .nii", repr(out.name), out)
    record_path = volumes_path(out)
    for target in (out, record_path):
        if target.exists() and not overwrite:
            raise OutputExistsError(target)
    if not scans:
        raise InputError("scan", "at least one file", "none", None)
    segmenter = model if isinstance(model, Segmenter) else load_segmenter_for_prediction(model)
    scan = read_scan(scans, segmenter)
    labels = np.zeros(scan.native_shape, np.uint8)  # the one label map, written through its zyx view
    predict_labels(segmenter, scan, batch_size, out=scan.zyx_view(labels))
    voxels, volumes, voxel_ml = volumes_ml(labels, scan.affine, segmenter.class_names)
    write_mask(out, labels, scan.affine, scan.header)
    record = {"mask": str(out), "scans": scan.sources, "model": segmenter.source,
              "class_names": list(segmenter.class_names), "shape": list(labels.shape),
              "affine": np.asarray(scan.affine).tolist(), "geometry": scan.geometry,
              "voxel_volume_ml": voxel_ml, "voxels": voxels, "volumes_ml": volumes,
              "preprocessing": _preprocessing(segmenter, scan),
              **({"served": segmenter.facts} if segmenter.facts else {})}
    atomic_write_json(record_path, record)
    return record


def _preprocessing(segmenter: Segmenter, scan: Scan) -> str:
    data = segmenter.data
    how = {"HU": f"CT window WW {data.window_width:g} / WL {data.window_level:g} HU",
           "grey8": "8-bit slice / 255",
           "zscore": f"MR z-scored in the brain, then mr_norm {data.mr_norm}"}[scan.units]
    model = (f"3-D U-Net on windows of {segmenter.patch_depth} slices overlapping by half"
             if segmenter.patch_depth else "2-D U-Net slice by slice")
    return f"{how}; slices padded to square and resized to {data.image_size} px; {model}"


def format_volumes(record: dict) -> str:
    """The volumes as a small table for the terminal."""
    lines = [f"{'structure':<16}{'voxels':>12}{'volume (ml)':>14}"]
    for name, ml in record["volumes_ml"].items():
        lines.append(f"{name:<16}{record['voxels'][name]:>12}{ml:>14.2f}")
    return "\n".join(lines)
