"""Medical image readers chosen by file suffix; each returns ``(array, meta)``.

Following MONAI's ``LoadImage``, the array is float32 and ``meta`` travels with it, so
spacing, geometry and patient id are never dropped. Every bad input (missing, truncated,
random bytes, pickled objects, NaN, absurd header sizes) raises :class:`InputError` naming
the file; sizes claimed by headers are checked against :data:`MAX_ARRAY_BYTES` before
anything is allocated.

Axis convention, recorded in ``meta["axes"]`` (``meta["spacing_mm"]`` follows the same
order):

* DICOM series (a folder, a ``.zip`` holding a series, or a single ``.dcm``): ``"zyx"`` —
  slices sorted by position along the slice normal (ascending), then rows, then columns,
  exactly as stored. For axial CT this is orientation ``("S", "P", "L")``: the radiological
  view, where a slice shows the patient's right on the left of the screen.
* NIfTI: ``"xyz"`` in nibabel's closest canonical RAS orientation, i.e. index order of
  ``nibabel.as_closest_canonical``. A 2-D NIfTI is read as ``(x, y, 1)``.
* PNG / JPEG: ``"yx"`` for greyscale, ``"yxc"`` for RGB.
* ``.npy`` / ``.npz``: ``None``; the file does not say.

Volumes carry ``meta["affine"]`` (4x4, array index -> RAS+ millimetres, also for DICOM)
and ``meta["orientation"]`` (``nibabel.aff2axcodes`` of that affine). :func:`to_zyx`
reorients any volume to ``("S", "P", "L")`` so NIfTI and DICOM volumes line up voxel for
voxel; NIfTI in RAS is mirrored in x and y with respect to that view.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from PIL import Image

from tfganaug.data.archives import Decoding, open_zip, read_member
from tfganaug.data.npz import MAX_ARRAY_BYTES, Member, npz_keys, read_npy, read_npz
from tfganaug.errors import InputError

ZYX_ORIENTATION = ("S", "P", "L")
"""Axis codes of :func:`to_zyx` output: the DICOM order of an axial CT series."""

SUPPORTED = ("a DICOM folder, .dcm, .zip (DICOM series), .nii, .nii.gz, .png, .jpg, .jpeg, "
             ".npy or .npz")

# What the libraries raise on truncated or random bytes. Caught only around library calls.
_DECODE_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                  RuntimeError, SyntaxError, struct.error, zlib.error, zipfile.BadZipFile,
                  nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError,
                  pydicom.errors.InvalidDicomError, Image.DecompressionBombError)

_PIL_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB"}


_Decoding = functools.partial(Decoding, errors=_DECODE_ERRORS)


def _check_size(shape, itemsize: int, path, what: str) -> None:
    """Refuse the array a header claims before allocating it (raw values or their float32 copy)."""
    n_bytes = int(np.prod(shape, dtype=np.float64)) * max(itemsize, 4)
    if n_bytes > MAX_ARRAY_BYTES:
        raise InputError(what, f"at most {MAX_ARRAY_BYTES} bytes in memory",
                         f"a header claiming shape {tuple(shape)} ({n_bytes} bytes)", path)


def read_image(path: str | os.PathLike, *, member: str | None = None,
               key: str | None = None) -> tuple[np.ndarray, dict]:
    """Read an image or volume as finite float32 plus its metadata (see the module docstring).

    ``member`` picks the folder inside a ``.zip`` (e.g. ``"liver"`` in IRCADb's
    ``MASKS_DICOM.zip``); ``key`` picks the array in a ``.npz``. A NIfTI or DICOM image of
    one value throughout (a rescale slope of 0, an empty export) is refused; a label map of
    one value is not (:func:`read_segmentation`).
    """
    out, meta = _read_finite(path, member, key)
    if meta["format"] in ("nifti", "dicom") and out.min() == out.max():
        raise InputError("image", "more than one intensity value",
                         f"every voxel {float(out.flat[0]):g} (shape {out.shape})", path)
    return out, meta


def _read_finite(path, member, key) -> tuple[np.ndarray, dict]:
    array, meta = _read_raw(Path(path), member, key)
    if array.size == 0:
        raise InputError("image", "at least one voxel", f"shape {array.shape}", path)
    out = array.astype(np.float32)
    n_bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if n_bad:
        raise InputError("image", "finite values", f"{n_bad} non-finite voxels (NaN/Inf)", path)
    return out, meta


def read_segmentation(path: str | os.PathLike, like_meta: dict | None = None,
                      labels=None, *, member: str | None = None,
                      key: str | None = None) -> tuple[np.ndarray, dict]:
    """Read an integer label map (uint8 when the values fit, else int32).

    ``labels`` is the set of allowed values. With ``like_meta`` (the image's meta) the mask is
    first put in the image's axis order (:func:`to_zyx` when the image is ``"zyx"``, so a
    NIfTI mask lines up with its DICOM series) and must then agree in shape, spacing
    (1e-3 relative) and orientation.
    """
    array, meta = _read_finite(path, member, key)
    if meta.get("axes") == "yxc":
        raise InputError("label map", "a single-channel image",
                         f"colour image of shape {array.shape} (map colours to labels first)", path)
    n_frac = int(np.count_nonzero(array != np.round(array)))
    if n_frac:
        raise InputError("label map", "integer values", f"{n_frac} non-integer voxels", path)
    if labels is not None:
        _check_labels(array, labels, path)
    if like_meta is not None:
        if like_meta.get("axes") == "zyx" and meta.get("axes") != "zyx":
            array, meta = to_zyx(array, meta)
        _check_like(meta, like_meta, path)
    fits_uint8 = array.min() >= 0 and array.max() <= 255
    return array.astype(np.uint8 if fits_uint8 else np.int32), meta


def to_zyx(array: np.ndarray, meta: dict) -> tuple[np.ndarray, dict]:
    """Reorient a volume to axes ``"zyx"`` = orientation ``("S", "P", "L")``; meta follows.

    A DICOM series whose slices had no position is already ``"zyx"`` by slice order and is
    returned unchanged; anything else without an affine is refused.
    """
    ornt = _zyx_ornt(meta)
    if ornt is None:
        return array, meta
    out = np.ascontiguousarray(apply_orientation(array, ornt))
    return out, _zyx_meta(meta, ornt, array.shape)


def _zyx_ornt(meta: dict) -> np.ndarray | None:
    """The orientation transform of :func:`to_zyx` (None: already zyx, no geometry)."""
    codes = meta.get("orientation")
    if codes is None or None in codes:
        if meta.get("axes") == "zyx":
            return None
        raise InputError("volume", "a NIfTI or DICOM volume with known orientation",
                         f"axes {meta.get('axes')!r} and orientation {codes}", meta.get("source"))
    return ornt_transform(axcodes2ornt(codes), axcodes2ornt(ZYX_ORIENTATION))


def _zyx_meta(meta: dict, ornt: np.ndarray, shape: tuple) -> dict:
    """`meta` of a volume of `shape` after reorienting it by `ornt` (:func:`to_zyx`)."""
    spacing, out_shape = [0.0] * 3, [0] * 3
    for i, (axis, _) in enumerate(ornt):
        spacing[int(axis)] = meta["spacing_mm"][i]
        out_shape[int(axis)] = shape[i]
    affine = np.asarray(meta["affine"]) @ inv_ornt_aff(ornt, shape[:3])
    return {**meta, "axes": "zyx" + meta["axes"][3:], "spacing_mm": tuple(spacing), "affine": affine.tolist(),
            "orientation": ZYX_ORIENTATION, "shape": tuple(out_shape) + tuple(shape[3:])}


def _check_labels(array: np.ndarray, labels, path) -> None:
    allowed = sorted(int(v) for v in labels)
    unexpected = np.setdiff1d(np.unique(array), allowed)
    if unexpected.size:
        more = f" and {unexpected.size - 10} more" if unexpected.size > 10 else ""
        raise InputError("label map", f"values in {allowed}",
                         f"unexpected values {[int(v) for v in unexpected[:10]]}{more}", path)


def _check_like(meta: dict, like: dict, path) -> None:
    image = like.get("source")
    if tuple(meta["shape"]) != tuple(like["shape"]):
        raise InputError("mask", f"the image's shape {tuple(like['shape'])} ({image})",
                         f"shape {tuple(meta['shape'])}", path)
    mine, theirs = meta.get("spacing_mm"), like.get("spacing_mm")
    if mine is not None and theirs is not None and not np.allclose(mine, theirs, rtol=1e-3, atol=0):
        raise InputError("mask", f"the image's spacing {tuple(theirs)} mm ({image})",
                         f"spacing {tuple(mine)} mm", path)
    if meta.get("orientation") and like.get("orientation") and \
            tuple(meta["orientation"]) != tuple(like["orientation"]):
        raise InputError("mask", f"the image's orientation {tuple(like['orientation'])} ({image})",
                         f"orientation {tuple(meta['orientation'])}", path)


def _read_raw(path: Path, member, key) -> tuple[np.ndarray, dict]:
    if not path.exists():
        raise InputError("image file", "an existing file or folder", "nothing at that path", path)
    if path.is_dir():
        return _read_dicom_folder(path)
    name = path.name.lower()
    for suffixes, reader in ((".nii.gz", _read_nifti), (".nii", _read_nifti),
                             (".zip", lambda p: _read_dicom_zip(p, member)),
                             (".dcm", _read_dicom_file), (".png", _read_pillow),
                             (".jpg", _read_pillow), (".jpeg", _read_pillow),
                             (".npy", _read_npy), (".npz", lambda p: _read_npz(p, key))):
        if name.endswith(suffixes):
            return reader(path)
    if _looks_like_dicom(path):
        return _read_dicom_file(path)
    raise InputError("image file", SUPPORTED, f"suffix {''.join(path.suffixes) or 'none'!r}", path)


def _looks_like_dicom(path: Path) -> bool:
    """DICOM files often have no suffix (``CT.1.3.12...``); their preamble says what they are."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


# --- NIfTI -----------------------------------------------------------------------------

def _open_nifti(path: Path, **load) -> tuple:
    """(image, shape, voxel dtype) of a NIfTI file whose header passed every check that needs no
    voxel: scaling, voxel type, at most 4 dimensions, size."""
    with _Decoding(path, "NIfTI image"):
        _check_nifti_scaling(path)
        img = nib.load(path, **load)
        shape, dtype = tuple(int(n) for n in img.shape), img.get_data_dtype()
        scaled = (img.dataobj.slope, img.dataobj.inter) != (1.0, 0.0)  # then values are float64
    _check_voxel_dtype(dtype, path, "NIfTI image")
    if len(shape) > 4:
        raise InputError("NIfTI image", "at most 4 dimensions", f"shape {shape}", path)
    _check_size(shape, 8 if scaled else dtype.itemsize, path, "NIfTI image")
    return img, shape, dtype


def _read_nifti(path: Path) -> tuple[np.ndarray, dict]:
    img, shape, dtype = _open_nifti(path)
    with _Decoding(path, "NIfTI image"):
        original = nib.aff2axcodes(img.affine)
        if len(shape) < 3:
            data = np.asanyarray(img.dataobj).reshape(shape + (1,) * (3 - len(shape)))
            img = nib.Nifti1Image(data, img.affine)
        canonical = nib.as_closest_canonical(img)
        array = np.asanyarray(canonical.dataobj)
    return array, {"format": "nifti", "source": str(path), "axes": "xyzt"[:array.ndim],
                   "shape": array.shape, "dtype": str(dtype),
                   "spacing_mm": tuple(float(z) for z in canonical.header.get_zooms()[:3]),
                   "affine": canonical.affine.tolist(),
                   "orientation": nib.aff2axcodes(canonical.affine),
                   "original_orientation": original}


def _check_nifti_scaling(path: Path) -> None:
    """Refuse an infinite scl_slope, or a finite one with a NaN/Inf scl_inter.

    A slope of 0 or NaN means "not scaled" (the NIfTI standard; nibabel writes NaN), which
    nibabel would also assume for an infinite one, silently reading unscaled values.
    """
    with nib.openers.ImageOpener(path) as f:
        block = f.read(nib.Nifti2Header.template_dtype.itemsize)
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        size = klass.template_dtype.itemsize
        if len(block) < size:
            continue
        header = klass(block[:size], check=False)
        if int(header["sizeof_hdr"]) != size:
            continue
        slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
        if np.isinf(slope) or (np.isfinite(slope) and slope != 0 and not np.isfinite(inter)):
            raise InputError("NIfTI scaling", "a finite scl_slope and scl_inter (or slope 0/NaN: "
                             "unscaled)", f"scl_slope {slope}, scl_inter {inter}", path)
        return


def _check_voxel_dtype(dtype: np.dtype, path, what: str) -> None:
    if dtype.kind == "c":
        raise InputError(what, "real voxel values (complex data is not supported)",
                         f"complex dtype {dtype}", path)
    if dtype.fields is not None or dtype.kind not in "biuf":
        if dtype.names and set(dtype.names) <= set("RGBA"):
            got = f"{''.join(dtype.names)} colour voxels ({dtype})"
        else:
            got = f"{'structured ' if dtype.fields else ''}dtype {dtype}"
        raise InputError(what, "one real number per voxel (int, uint or float)", got, path)


# --- DICOM -----------------------------------------------------------------------------

def _read_dicom_file(path: Path) -> tuple[np.ndarray, dict]:
    with _Decoding(path, "DICOM file"):
        ds = pydicom.dcmread(path)
    return _dicom_volume([ds], path)


def _read_dicom_folder(path: Path) -> tuple[np.ndarray, dict]:
    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise InputError("DICOM series folder", "at least one DICOM file", "an empty folder", path)
    return _dicom_volume(_parse_dicoms(((f.name, f) for f in files), path), path)


def _read_dicom_zip(path: Path, member: str | None) -> tuple[np.ndarray, dict]:
    what = "zip of a DICOM series"
    with _Decoding(path, what), open_zip(path, what) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        folders = sorted({i.filename.rpartition("/")[0] for i in infos})
        if member is None and len(folders) > 1:
            raise InputError("zip member", f"member= naming one of the folders {folders}",
                             "no member", path)
        infos = [i for i in infos if member is None or _in_folder(i.filename, member)]
        if member is not None and not infos:
            raise InputError("zip member", f"one of the folders {folders}", repr(member), path)
        unpacked = sum(i.file_size for i in infos)
        if unpacked > MAX_ARRAY_BYTES:  # far more than one series
            raise InputError(what, f"a series of at most {MAX_ARRAY_BYTES} bytes unpacked",
                             f"{unpacked} bytes in {len(infos)} members", path)
        slices = _parse_dicoms(((i.filename, io.BytesIO(read_member(archive, i, what))) for i in infos),
                               path)
    array, meta = _dicom_volume(slices, path)
    return array, {**meta, "member": member}


def _in_folder(name: str, folder: str) -> bool:
    parent = name.rpartition("/")[0]
    return parent == folder.strip("/") or parent.endswith("/" + folder.strip("/"))


def _parse_dicoms(named_sources, path, headers_only: bool = False) -> list:
    """Parse every source; files that are not DICOM at all (no preamble) are skipped.
    `headers_only` stops before the pixel data and returns (name, dataset) pairs."""
    slices = []
    for name, source in named_sources:
        try:
            ds = pydicom.dcmread(source, stop_before_pixels=headers_only)
            slices.append((name, ds) if headers_only else ds)
        except pydicom.errors.InvalidDicomError:
            continue
        except _DECODE_ERRORS as exc:
            raise InputError("DICOM file", "a readable file", f"{type(exc).__name__} in {name}",
                             path) from exc
    if not slices:
        raise InputError("DICOM series", "at least one DICOM file", "no DICOM files", path)
    return slices


def _dicom_volume(slices: list, path) -> tuple[np.ndarray, dict]:
    with _Decoding(path, "DICOM series"):
        slices, positions = _series_order(slices, path)
        array = np.stack([_slice_hu(ds, path) for ds in slices])
    return array, _dicom_meta(slices, positions, array.shape, str(slices[0].pixel_array.dtype), path)


def _series_order(slices: list, path) -> tuple[list, np.ndarray | None]:
    """The datasets (headers suffice) of one series of one slice shape, sorted along z, and
    their positions; the pixels they claim checked against the memory bound first."""
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in slices})
    if len(uids) > 1:
        raise InputError("DICOM folder", "one DICOM series", f"{len(uids)} series (uids "
                         + ", ".join(u or "<empty>" for u in uids) + ")", path)
    with _Decoding(path, "DICOM series"):
        shapes = sorted({(int(ds.Rows), int(ds.Columns)) for ds in slices})
        if len(shapes) > 1:
            raise InputError("DICOM series", "slices of one shape", f"shapes {shapes}", path)
        # frames and samples per pixel multiply what pixel_array allocates for each file
        n_planes = sum(int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("SamplesPerPixel", 1) or 1)
                       for ds in slices)
        _check_size((n_planes,) + shapes[0], 4, path, "DICOM series")
        return _sort_slices(slices, path)


def _sort_slices(slices: list, path) -> tuple[list, np.ndarray | None]:
    """Sort by position along the slice normal; without geometry, by InstanceNumber."""
    try:
        iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        positions = np.array([np.dot(np.asarray(ds.ImagePositionPatient, float), normal)
                              for ds in slices])
    except (AttributeError, TypeError, ValueError):
        return sorted(slices, key=lambda ds: int(ds.InstanceNumber)), None
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    steps = np.diff(positions)
    if steps.size and (steps.min() <= 1e-6 or steps.max() - steps.min() > 1e-2 * steps.max()):
        raise InputError("DICOM series", "evenly spaced slices at distinct positions",
                         f"slice steps from {steps.min():.4g} to {steps.max():.4g} mm", path)
    return [slices[i] for i in order], positions


def _slice_hu(ds, path) -> np.ndarray:
    """Stored values -> modality units (Hounsfield units for CT) via RescaleSlope/Intercept."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise InputError("DICOM slice", "one greyscale sample per pixel",
                         f"{samples} samples per pixel ({ds.get('PhotometricInterpretation', '?')})", path)
    pixels = ds.pixel_array
    _check_voxel_dtype(pixels.dtype, path, "DICOM slice")
    if pixels.ndim != 2:
        raise InputError("DICOM slice", "one greyscale 2-D frame per file",
                         f"pixel array of shape {pixels.shape}", path)
    slope, intercept = (ds.get(key) for key in ("RescaleSlope", "RescaleIntercept"))
    slope = 1.0 if slope in (None, "") else float(slope)  # absent: stored values are the units
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    if not (np.isfinite(slope) and slope != 0 and np.isfinite(intercept)):
        raise InputError("DICOM rescale", "a finite non-zero RescaleSlope and a finite RescaleIntercept",
                         f"slope {slope:g}, intercept {intercept:g}", path)
    if slope == 1 and intercept == 0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _dicom_meta(slices: list, positions, shape: tuple, dtype: str, path) -> dict:
    first = slices[0]
    dy, dx = (float(v) for v in first.get("PixelSpacing", (1.0, 1.0)))  # 1 mm if not stated
    if positions is not None and len(positions) > 1:
        dz = float(np.median(np.diff(positions)))
    else:  # one slice, or no positions: the thickness is all there is
        dz = float(first.get("SliceThickness", 1.0) or 1.0)
    affine = _dicom_affine(first, (dz, dy, dx)) if positions is not None else None
    return {"format": "dicom", "source": str(path), "axes": "zyx", "shape": tuple(shape),
            "dtype": dtype, "spacing_mm": (dz, dy, dx),
            "affine": None if affine is None else affine.tolist(),
            "orientation": None if affine is None else nib.aff2axcodes(affine),
            "patient_id": str(first.get("PatientID", "")),
            "series_uid": str(first.get("SeriesInstanceUID", "")),
            "modality": str(first.get("Modality", "")), "n_slices": len(slices)}


def _dicom_affine(first, spacing_zyx) -> np.ndarray:
    """(slice, row, column) index -> RAS+ mm; DICOM patient coordinates are LPS+."""
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    lps = np.eye(4)
    lps[:3, 0] = np.cross(row_dir, col_dir) * spacing_zyx[0]
    lps[:3, 1] = col_dir * spacing_zyx[1]   # moving down the rows follows the column direction
    lps[:3, 2] = row_dir * spacing_zyx[2]
    lps[:3, 3] = np.asarray(first.ImagePositionPatient, dtype=float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# --- PNG / JPEG, NumPy ---------------------------------------------------------------------

def _read_pillow(path: Path) -> tuple[np.ndarray, dict]:
    with _Decoding(path, "PNG/JPEG image"), Image.open(path) as im:
        width, height = im.size
        _check_size((height, width, len(im.getbands())), 4, path, "PNG/JPEG image")
        if im.mode == "P":  # a palette is an encoding of colours, not data
            im = im.convert("RGB")
        if im.mode not in _PIL_MODES:
            raise InputError("PNG/JPEG image", f"one of the modes {sorted(_PIL_MODES)} or P",
                             f"mode {im.mode}", path)
        array = np.asarray(im)
    return array, {"format": path.suffix.lower().lstrip("."), "source": str(path),
                   "axes": "yx" if array.ndim == 2 else "yxc", "shape": array.shape,
                   "dtype": str(array.dtype), "spacing_mm": None, "mode": im.mode}


def _read_npy(path: Path) -> tuple[np.ndarray, dict]:
    with _Decoding(path, "NumPy array"), open(path, "rb") as f:
        array = read_npy(f, os.fstat(f.fileno()).st_size, Member(), path, "NumPy array")
    return array, {"format": "npy", "source": str(path), "axes": None, "shape": array.shape,
                   "dtype": str(array.dtype), "spacing_mm": None}


def _read_npz(path: Path, key: str | None) -> tuple[np.ndarray, dict]:
    keys = npz_keys(path, "NumPy archive")
    if key is None and len(keys) != 1:
        raise InputError("key", f"one of {keys} (pass key=)", "no key", path)
    key = keys[0] if key is None else key
    if key not in keys:
        raise InputError("key", f"one of {keys}", repr(key), path)
    array = read_npz(path, {key: Member()}, "NumPy archive")[key]
    return array, {"format": "npz", "source": str(path), "axes": None, "shape": array.shape,
                   "dtype": str(array.dtype), "spacing_mm": None, "key": key, "keys": keys}


# --- streamed volumes ---------------------------------------------------------------------

class SliceBlocks:
    """A volume in :func:`to_zyx` order read a block of slices at a time: `tfganaug predict`'s
    input, whose memory must not grow with the scan's length.

    ``shape`` is (Z, H, W, C), ``meta`` what :func:`read_image` then :func:`to_zyx` would
    give and ``stored_meta`` the meta of the array as stored (DICOM: what :func:`read_image`
    gives; NIfTI: the file's own voxel order, before the reader's RAS reordering). :meth:`slices`
    returns finite float32 slices (the values :func:`read_image` gives, voxel for voxel);
    :meth:`check_not_constant`, called once every slice was read, refuses a volume of one value
    as :func:`read_image` does.

    * NIfTI: slices of the file's array proxy along the axis that becomes z, the file kept open,
      so a ``.nii.gz`` read in ascending order is decompressed once (a z axis stored flipped or
      not last costs a restart of the decompression per block: correct, slower); a ``.nii`` is
      read by seeking. Measured on 240 slices of 256² px (float32 .nii.gz, blocks of 32 slices,
      loaded 2-core machine): 1.6 s in ascending blocks with the file kept open, 5.4 s reopening
      it per block, 4.2 s in descending blocks, 2.7 s for the whole array at once.
    * DICOM folder or zip: the headers alone (``stop_before_pixels``) sort the files, then each
      block reads the pixels of its files only. A series whose slice axis is not z after
      reorientation (sagittal or coronal acquisitions) is read whole.
    """

    def __init__(self, path, shape, meta: dict, read, stored_meta: dict | None = None):
        self.path, self.shape, self.meta, self._read = path, tuple(int(n) for n in shape), meta, read
        self.stored_meta = meta if stored_meta is None else stored_meta
        self._range = (np.inf, -np.inf)

    @classmethod
    def of_array(cls, array: np.ndarray, meta: dict, stored_meta: dict | None = None) -> "SliceBlocks":
        """An array already in memory (zyx, with channels), behind the same interface."""
        return cls(meta.get("source"), array.shape, meta, lambda z0, z1: array[z0:z1], stored_meta)

    def slices(self, z0: int, z1: int) -> np.ndarray:
        what = {"nifti": "NIfTI image", "dicom": "DICOM series"}.get(self.meta.get("format"), "image")
        with _Decoding(self.path, what):
            out = np.asarray(self._read(z0, z1)).astype(np.float32, copy=False)
        n_bad = out.size - int(np.count_nonzero(np.isfinite(out)))
        if n_bad:
            raise InputError("image", "finite values", f"{n_bad} non-finite voxels (NaN/Inf) in slices "
                             f"{z0}..{z1 - 1}", self.path)
        if out.size:
            self._range = (min(self._range[0], float(out.min())), max(self._range[1], float(out.max())))
        return out

    def check_not_constant(self) -> None:
        lo, hi = self._range
        if lo == hi:
            raise InputError("image", "more than one intensity value", f"every voxel {lo:g} (shape {self.shape})",
                             self.path)


def streamable(path) -> bool:
    """Whether :func:`open_slices` reads `path` a block at a time (NIfTI, DICOM folder or zip)."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith((".nii", ".nii.gz", ".zip"))


def open_slices(path: str | os.PathLike) -> SliceBlocks:
    """A NIfTI file, DICOM folder or DICOM zip as :class:`SliceBlocks` (nothing but headers read)."""
    path = Path(path)
    if not path.exists():
        raise InputError("image file", "an existing file or folder", "nothing at that path", path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise InputError("DICOM series folder", "at least one DICOM file", "an empty folder", path)
        return _dicom_blocks(_parse_dicoms(((f.name, f) for f in files), path, headers_only=True), path,
                             lambda names: [pydicom.dcmread(path / name) for name in names])
    if path.name.lower().endswith(".zip"):
        return _dicom_zip_blocks(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return _nifti_blocks(path)
    raise InputError("image file", "a NIfTI file, a DICOM folder or a .zip of a DICOM series",
                     f"suffix {''.join(path.suffixes) or 'none'!r}", path)


def _nifti_blocks(path: Path) -> SliceBlocks:
    img, shape, dtype = _open_nifti(path, keep_file_open=True)  # one gzip stream for all blocks
    if len(shape) < 3:  # a 2-D image: one slice, read whole
        array, stored = _read_finite(path, None, None)
        array, meta = to_zyx(array, stored)
        return SliceBlocks.of_array(array if array.ndim == 4 else array[..., None], meta, stored)
    with _Decoding(path, "NIfTI image"):
        codes = nib.aff2axcodes(img.affine)
        zooms = img.header.get_zooms()[:3]
    meta = {"format": "nifti", "source": str(path), "axes": "xyzt"[:len(shape)], "shape": shape,
            "dtype": str(dtype), "spacing_mm": tuple(float(z) for z in zooms), "affine": img.affine.tolist(),
            "orientation": codes, "original_orientation": codes}
    return _oriented_blocks(path, shape, meta, _zyx_ornt(meta),
                            lambda axis, lo, hi: img.dataobj[(slice(None),) * axis + (slice(lo, hi),)])


def _oriented_blocks(path, shape, meta, ornt, read_native) -> SliceBlocks:
    """Blocks of z after :func:`to_zyx` by `ornt`, from `read_native(axis, lo, hi)`: the stored
    array sliced along the axis that becomes z (its other axes whole)."""
    axis = int(np.flatnonzero(ornt[:, 0] == 0)[0])
    flipped, n = ornt[axis, 1] < 0, shape[axis]
    zyx = _zyx_meta(meta, ornt, shape)

    def read(z0, z1):
        block = apply_orientation(np.asarray(read_native(axis, n - z1, n - z0) if flipped else
                                             read_native(axis, z0, z1)), ornt)
        return block if block.ndim == 4 else block[..., None]
    return SliceBlocks(path, zyx["shape"][:3] + (shape[3] if len(shape) > 3 else 1,), zyx, read, meta)


def _dicom_blocks(headers: list, path, parse) -> SliceBlocks:
    """`headers`: (file name, dataset without pixels) pairs; `parse(names)` the datasets of
    those files with their pixels."""
    source_of = {id(ds): source for source, ds in headers}
    with _Decoding(path, "DICOM series"):
        slices, positions = _series_order([ds for _, ds in headers], path)
        sources = [source_of[id(ds)] for ds in slices]
        dtype = str(parse(sources[:1])[0].pixel_array.dtype)
    meta = _dicom_meta(slices, positions, (len(slices), int(slices[0].Rows), int(slices[0].Columns)), dtype, path)

    def read_native(lo, hi):
        return np.stack([_slice_hu(ds, path) for ds in parse(sources[lo:hi])])

    ornt = _zyx_ornt(meta)
    if ornt is None:  # no geometry: zyx in slice order
        return SliceBlocks(path, meta["shape"] + (1,), meta, lambda z0, z1: read_native(z0, z1)[..., None])
    if ornt[0, 0] != 0:  # the slice axis is not z after reorientation: read the series whole
        array, zyx = to_zyx(read_native(0, len(sources))[..., None], {**meta, "axes": "zyxc"})
        return SliceBlocks.of_array(array, zyx, meta)
    return _oriented_blocks(path, meta["shape"], meta, ornt, lambda _axis, lo, hi: read_native(lo, hi))


def _dicom_zip_blocks(path: Path) -> SliceBlocks:
    what = "zip of a DICOM series"
    with _Decoding(path, what), open_zip(path, what) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        folders = sorted({i.filename.rpartition("/")[0] for i in infos})
        if len(folders) > 1:
            raise InputError("zip member", f"member= naming one of the folders {folders}", "no member", path)
        unpacked = sum(i.file_size for i in infos)
        if unpacked > MAX_ARRAY_BYTES:  # far more than one series
            raise InputError(what, f"a series of at most {MAX_ARRAY_BYTES} bytes unpacked",
                             f"{unpacked} bytes in {len(infos)} members", path)
        headers = _parse_dicoms(((i.filename, io.BytesIO(read_member(archive, i, what))) for i in infos), path,
                                headers_only=True)
    by_name = {i.filename: i for i in infos}

    def parse(names):
        with _Decoding(path, what), open_zip(path, what) as archive:
            return [pydicom.dcmread(io.BytesIO(read_member(archive, by_name[n], what))) for n in names]
    return _dicom_blocks(headers, path, parse)
