"""A hostile corpus: truncated, random-byte, oversized-header and inconsistent files for every
reader (NPZ, NIfTI, DICOM file/folder/zip, PNG, synthetic sets), read through the public API
and the `tfganaug` command line in one subprocess under an address-space cap, so a reader that
tries to allocate gigabytes fails the test (MemoryError) instead of taking the machine.

Every case must end in one of our error classes (the CLI: exit code 2 and one stderr line)
naming the file; a few valid files and an allocation past the cap are controls, showing that
the harness reads real files and that the cap is in force.
"""
import hashlib
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import traceback
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

MEMORY_CAP = 3 * 2**30  # importing TensorFlow and the CLI peaks at 1.66 GB of address space (VmPeak)
TIME_LIMIT = 120        # seconds per case: a case that starts training instead of failing is cut off


# --- files -------------------------------------------------------------------------------------

def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _zip(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _patch_central_directory(data: bytes, field: str, value: int, index: int = 0) -> bytes:
    """Rewrite the CRC or the declared unpacked size of one member, in the central directory."""
    at = -1
    for _ in range(index + 1):
        at = data.index(b"PK\x01\x02", at + 1)
    offset = {"crc": 16, "file_size": 24}[field]
    return data[:at + offset] + struct.pack("<L", value) + data[at + offset + 4:]


def _zip_claiming_members(count: int) -> bytes:
    """End records listing `count` members (ZIP64, as more than 65535 need) and nothing else."""
    zip64_end = b"PK\x06\x06" + struct.pack("<Q2H2L4Q", 44, 45, 45, 0, 0, count, count, 0, 0)
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, 0, 1)
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return zip64_end + locator + end


def _nifti(array, slope=None, inter=None, gz=False) -> bytes:
    import nibabel as nib
    image = nib.Nifti1Image(array, np.eye(4))
    data = image.to_bytes()
    if slope is not None:
        data = data[:112] + struct.pack("<ff", slope, inter) + data[120:]
    return _gzip(data) if gz else data


def _gzip(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data)


def _huge_nifti2() -> bytes:
    import nibabel as nib
    header = nib.Nifti2Header()
    header.set_data_shape((100_000,) * 3)
    header.set_data_dtype(np.int16)
    buffer = io.BytesIO()
    header.write_to(buffer)
    return buffer.getvalue() + b"\0" * 4


def _dicom(pixels=None, **fields) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.Modality, ds.PatientID = "1.2.3", "CT", "p1"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
    ds.PhotometricInterpretation = "MONOCHROME2" if pixels.ndim == 2 else "RGB"
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.InstanceNumber = 1
    ds.PixelData = pixels.tobytes()
    for key, value in fields.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _png(width, height, data=b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + (chunk(b"IDAT", data) if data else b"") + chunk(b"IEND", b""))


def _noise(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


# --- the corpus ----------------------------------------------------------------------------------

ROIS = {"images": np.random.default_rng(1).random((6, 16, 16)).astype(np.float32),
        "labels": np.array([0, 1, 0, 1, 0, 1])}
SEG = {"images": np.random.default_rng(2).random((6, 16, 16)).astype(np.float32),
       "masks": np.zeros((6, 16, 16), np.uint8)}


def _bad_npz() -> dict[str, bytes]:
    """NPZ files every .npz reader must refuse (keys as the ROI and segmentation readers expect)."""
    valid = _npz(**ROIS, masks=SEG["masks"])
    huge = _npy_header((100_000, 1000, 1000)) + b"\0" * 64          # 1e11 elements claimed
    images_npy = _member(valid, "images.npy")
    labels_npy = _member(valid, "labels.npy")
    return {
        "random.npz": _noise(4096),
        "empty-file.npz": b"",
        "cut-in-header.npz": valid[:200],
        "cut-in-data.npz": valid[:len(valid) // 2],
        "npy-renamed.npz": images_npy,
        "text-in-zip.npz": _zip({"readme.txt": b"not arrays"}),
        "huge-header.npz": _zip({"images.npy": huge, "labels.npy": labels_npy, "masks.npy": huge}),
        "huge-labels.npz": _zip({"images.npy": images_npy, "labels.npy": _npy_header((10**11,), "<i8"),
                                 "masks.npy": _npy_header((10**11,), "<u1")}),
        # 1.6 GB claimed, within the limits, 64 bytes there: refused before the allocation
        "truncated-member.npz": _zip({"images.npy": _npy_header((400, 1000, 1000)) + b"\0" * 64,
                                      "labels.npy": labels_npy, "masks.npy": _npy_header((400, 1000, 1000), "|u1")}),
        "objects.npz": _npz(images=np.array([{"evil": 1}, None], dtype=object), labels=ROIS["labels"][:2],
                            masks=np.array([None, None], dtype=object)),
        "complex.npz": _npz(images=ROIS["images"] * 1j, labels=ROIS["labels"], masks=SEG["masks"] * 1j),
        "structured.npz": _npz(images=np.zeros((6, 16, 16), [("r", "u1"), ("g", "u1")]), labels=ROIS["labels"],
                               masks=np.zeros((6, 16, 16), [("r", "u1")])),
        "no-images.npz": _npz(images=np.zeros((0, 16, 16), np.float32), labels=np.zeros(0, int),
                              masks=np.zeros((0, 16, 16), np.uint8)),
        "more-ids.npz": _npz(**ROIS, masks=SEG["masks"], patient_ids=np.array([f"p{i}" for i in range(9)])),
        "fewer-masks.npz": _npz(images=ROIS["images"], labels=ROIS["labels"][:4], masks=SEG["masks"][:4]),
        "nan.npz": _npz(images=np.full((6, 16, 16), np.nan, np.float32), labels=ROIS["labels"],
                        masks=SEG["masks"]),
        "1d-images.npz": _npz(images=np.zeros(6, np.float32), labels=ROIS["labels"], masks=np.zeros(6, np.uint8)),
        "float-labels.npz": _npz(images=ROIS["images"], labels=ROIS["labels"] + 0.5, masks=SEG["masks"] + 0.5),
        "bzip2.npz": _zip({"images.npy": images_npy, "labels.npy": labels_npy}, zipfile.ZIP_BZIP2),
        "claims-70000-members.npz": _zip_claiming_members(70_000),
        "claims-8-gib.npz": _patch_central_directory(_patch_central_directory(
            _zip({"images.npy": images_npy, "labels.npy": labels_npy}), "file_size", 0xFFFFFFF0, 0),
            "file_size", 0xFFFFFFF0, 1),
        "bad-crc.npz": _patch_central_directory(valid, "crc", 0x12345678),
    }


def _member(npz: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(npz)) as z:
        return z.read(name)


def _bad_nifti() -> dict[str, bytes]:
    volume = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    valid = _nifti(volume)
    nan = np.zeros((4, 4, 4), np.float32)
    nan[0, 0, 0] = np.nan
    return {
        "random.nii": _noise(4096), "random.nii.gz": _noise(4096, 1),
        "gzip-of-noise.nii.gz": _gzip(_noise(4096, 2)),
        "cut-header.nii": valid[:100], "cut-data.nii": valid[:400], "cut.nii.gz": _gzip(valid)[:60],
        "huge-nifti2.nii": _huge_nifti2(),
        "rgb24.nii": _nifti(np.zeros((4, 4, 4), [("R", "u1"), ("G", "u1"), ("B", "u1")])),
        "complex.nii.gz": _nifti(np.ones((4, 4, 4), np.complex64) * (1 + 2j), gz=True),
        "inf-slope.nii": _nifti(volume, slope=np.inf, inter=0.0),
        "nan-intercept.nii": _nifti(volume, slope=2.0, inter=np.nan),
        "constant.nii.gz": _nifti(np.full((4, 4, 4), 7, np.int16), gz=True),
        "nan-voxel.nii": _nifti(nan),
        "five-d.nii": _nifti(np.arange(64, dtype=np.int16).reshape(2, 2, 2, 2, 4)),
    }


def _bad_dicom_files() -> dict[str, bytes]:
    valid = _dicom()
    return {
        "random.dcm": _noise(4096),
        "cut.dcm": valid[:len(valid) - 40],
        "rgb.dcm": _dicom(np.zeros((8, 8, 3), np.uint8)),
        "nan-slope.dcm": _dicom(RescaleSlope="NaN", RescaleIntercept="0"),
        "inf-intercept.dcm": _dicom(RescaleSlope="1", RescaleIntercept="Inf"),
        "zero-slope.dcm": _dicom(RescaleSlope="0", RescaleIntercept="-1024"),
        "huge-rows.dcm": _dicom(Rows=65535, Columns=65535),
        "huge-frames.dcm": _dicom(NumberOfFrames=100_000_000),
    }


def _bad_dicom_zips() -> dict[str, bytes]:
    slice_a = _dicom(ImagePositionPatient=[0, 0, 0], ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    slice_b = _dicom(ImagePositionPatient=[0, 0, 1], ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    series = _zip({"S/a": slice_a, "S/b": slice_b}, zipfile.ZIP_DEFLATED)
    return {
        "random.zip": _noise(4096), "cut.zip": series[:len(series) // 2],
        "npy-renamed.zip": _npy_header((8, 8)) + b"\0" * 256,
        "claims-70000-members.zip": _zip_claiming_members(70_000),
        "claims-8-gib.zip": _patch_central_directory(_patch_central_directory(
            series, "file_size", 0xFFFFFFF0, 0), "file_size", 0xFFFFFFF0, 1),
        # the streams unpack to more than the central directory declares (CRC made to match)
        "stream-longer-than-declared.zip": _patch_central_directory(_patch_central_directory(
            series, "file_size", 200, 0), "crc", zlib.crc32(slice_a[:200]), 0),
        "bzip2.zip": _zip({"S/a": slice_a}, zipfile.ZIP_BZIP2),
        "bomb.zip": _zip({"S/a": bytes(64 * 2**20)}, zipfile.ZIP_DEFLATED),  # 64 kB -> 64 MB of zeros
        "bad-crc.zip": _patch_central_directory(series, "crc", 0x12345678),
    }


def _bad_pngs() -> dict[str, bytes]:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, "PNG")
    valid = buffer.getvalue()
    return {"random.png": _noise(4096), "cut.png": valid[:len(valid) // 2],
            "huge-header.png": _png(100_000, 100_000),
            "idat-bomb.png": _png(30_000, 30_000, zlib.compress(bytes(2**20)))}


def _corpus(root: Path) -> list[dict]:
    """Files under `root` and the cases reading them: (call, path, extra arguments)."""
    cases = []

    def add(call, path, expect="error", **kwargs):
        cases.append({"id": f"{call}:{Path(path).name}", "call": call, "path": str(path), "expect": expect,
                      "kwargs": kwargs})

    def write(name, data):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # these break only how arrays agree, which read_image(key=) does not look at
    consistent_images = {"huge-labels.npz", "more-ids.npz", "fewer-masks.npz", "1d-images.npz", "float-labels.npz"}
    for name, data in _bad_npz().items():
        write(f"npz/{name}", data)
        if name not in consistent_images:
            add("read_image", root / "npz" / name, key="images")
        add("load_rois", root / "npz" / name)
        add("load_segsets", root / "npz" / name)
    for name, data in {**_bad_nifti(), **_bad_dicom_files(), **_bad_pngs()}.items():
        add("read_image", write(f"single/{name}", data))
    for name, data in _bad_dicom_zips().items():
        add("read_image", write(f"zips/{name}", data))
    folder = root / "dicom-folder"
    write("dicom-folder/a", _dicom(ImagePositionPatient=[0, 0, 0], ImageOrientationPatient=[1, 0, 0, 0, 1, 0]))
    write("dicom-folder/b", _dicom(ImagePositionPatient=[0, 0, 0], ImageOrientationPatient=[1, 0, 0, 0, 1, 0]))
    add("read_image", folder)  # two slices at one position
    write("dicom-noise/a", _noise(2048))
    write("dicom-noise/b", _dicom()[:300])
    add("read_image", root / "dicom-noise")
    write("dicom-rgb/a", _dicom(np.zeros((8, 8, 3), np.uint8)))
    add("read_image", root / "dicom-rgb")
    write("single/empty-mask.nii.gz", _nifti(np.zeros((4, 4, 4), np.uint8), gz=True))
    add("read_segmentation", root / "single/empty-mask.nii.gz", expect="ok")  # a mask may be empty

    # controls: valid files read, and an allocation past the cap fails
    add("read_image", write("valid/volume.nii.gz", _nifti(np.arange(64, dtype=np.int16).reshape(4, 4, 4), gz=True)),
        expect="ok")
    add("read_image", write("valid/slice.dcm", _dicom()), expect="ok")
    add("load_rois", write("valid/rois.npz", _npz(**ROIS)), expect="ok")
    add("allocate", root / "memory-cap", expect="MemoryError")  # a stable id: xdist workers must collect the same tests

    cases += _synthetic_cases(root / "synthetic", write)
    cases += _cli_cases(root)
    return cases


def _synthetic_folder(folder: Path, npz: bytes, kind: str, manifest: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images.npz").write_bytes(npz)
    if manifest is None:
        manifest = json.dumps({"kind": kind, "class_names": ["a", "b"], "image_size": 16,
                               "images_sha256": hashlib.sha256(npz).hexdigest()}).encode()
    (folder / "manifest.json").write_bytes(manifest)
    return folder


def _synthetic_cases(root: Path, write) -> list[dict]:
    rois = {**ROIS, "images": ROIS["images"][..., None]}
    pairs = {"images": SEG["images"][..., None], "masks": SEG["masks"]}
    npz_rois = {
        "no-labels": _npz(images=rois["images"]),
        "more-labels": _npz(images=rois["images"], labels=np.zeros(9, int)),
        "nan": _npz(images=np.full((6, 16, 16, 1), np.inf, np.float32), labels=rois["labels"]),
        "huge": _zip({"images.npy": _npy_header((10**6, 1000, 100, 1)), "labels.npy": _member(_npz(**rois), "labels.npy")}),
        "random": _noise(4096, 3),
    }
    npz_pairs = {
        "more-ids": _npz(**pairs, patient_ids=np.array(["p"] * 7), slice_index=np.arange(7)),
        "ids-without-slices": _npz(**pairs, patient_ids=np.array(["p"] * 6)),
        "masks-of-other-size": _npz(images=pairs["images"], masks=np.zeros((6, 8, 8), np.uint8)),
        "float-masks": _npz(images=pairs["images"], masks=pairs["masks"] + 0.5),
        "cut": _npz(**pairs)[:500],
    }
    cases = []
    for name, npz in npz_rois.items():
        folder = _synthetic_folder(root / f"rois-{name}", npz, "classification")
        cases.append({"id": f"load_synthetic:{name}", "call": "load_synthetic", "path": str(folder / "images.npz"),
                      "folder": str(folder), "expect": "error", "kwargs": {}})
    for name, npz in npz_pairs.items():
        folder = _synthetic_folder(root / f"pairs-{name}", npz, "segmentation")
        cases.append({"id": f"load_seg_synthetic:{name}", "call": "load_seg_synthetic",
                      "path": str(folder / "images.npz"), "folder": str(folder), "expect": "error", "kwargs": {}})
    for name, manifest in {"not-json": b"{\"kind\": ", "a-list": b"[1, 2]", "binary": _noise(512, 4),
                           "deep": b"[" * 100_000 + b"]" * 100_000, "huge": b" " * (17 * 2**20) + b"{}"}.items():
        folder = _synthetic_folder(root / f"manifest-{name}", _npz(**rois), "classification", manifest)
        cases.append({"id": f"load_synthetic:manifest-{name}", "call": "load_synthetic",
                      "path": str(folder / "manifest.json"), "folder": str(folder), "expect": "error", "kwargs": {}})
    folder = _synthetic_folder(root / "rois-valid", _npz(**rois), "classification")
    cases.append({"id": "load_synthetic:valid", "call": "load_synthetic", "path": str(folder), "folder": str(folder),
                  "expect": "ok", "kwargs": {}})
    return cases


def _cli_cases(root: Path) -> list[dict]:
    """A few files through the command line: exit 2, one line naming the file, no --out written."""
    npz = root / "npz"
    runs = [(["train-gan", "--data", npz / "huge-header.npz"], npz / "huge-header.npz"),
            (["train-cls", "--data", npz / "npy-renamed.npz"], npz / "npy-renamed.npz"),
            (["train-seg", "--data", npz / "more-ids.npz"], npz / "more-ids.npz"),
            (["train-cls", "--synthetic", root / "synthetic" / "manifest-not-json"],
             root / "synthetic" / "manifest-not-json" / "manifest.json")]
    return [{"id": f"cli:{args[0]}:{Path(args[-1]).name}", "call": "cli", "path": str(path), "expect": "exit 2",
             "kwargs": {"argv": [str(a) for a in args] + ["--out", str(root / "out" / str(i)), "--quiet"],
                        "out": str(root / "out" / str(i))}}
            for i, (args, path) in enumerate(runs)]


# --- the subprocess --------------------------------------------------------------------------------

def _run_case(case: dict) -> dict:
    from tfganaug.errors import TfganaugError
    kwargs, path = case["kwargs"], case["path"]
    try:
        if case["call"] == "cli":
            return _run_cli(kwargs["argv"], kwargs["out"], kwargs.get("watch"))
        if case["call"] == "parse":
            return _parse(kwargs["argv"])
        _call(case["call"], case.get("folder", path), kwargs)
    except TfganaugError as exc:
        return {"outcome": "ours", "type": type(exc).__name__, "message": str(exc)}
    except MemoryError:
        return {"outcome": "MemoryError", "traceback": traceback.format_exc()}
    except Exception:
        return {"outcome": "other", "traceback": traceback.format_exc()}
    return {"outcome": "ok"}


def _call(call: str, path: str, kwargs: dict):
    from tfganaug.config import DataConfig
    if call == "read_image":
        from tfganaug.data.readers import read_image
        return read_image(path, **kwargs)
    if call == "read_segmentation":
        from tfganaug.data.readers import read_segmentation
        return read_segmentation(path, **kwargs)
    if call == "load_rois":
        from tfganaug.data.datasets import load_rois
        return load_rois(DataConfig(name=path, image_size=16, val_fraction=0.34, test_fraction=0.33))
    if call == "load_segsets":
        from tfganaug.data.segsets import load_segsets
        return load_segsets(DataConfig(name=path, image_size=16))
    if call == "load_synthetic":
        from tfganaug.synthetic import load_synthetic
        return load_synthetic(path, ["a", "b"], 16)
    if call == "load_seg_synthetic":
        from tfganaug.synthetic import load_seg_synthetic
        return load_seg_synthetic(path, None, 16)
    if call == "allocate":
        return np.ones(MEMORY_CAP // 8 * 2, np.float64)
    raise AssertionError(call)


def _run_cli(argv: list[str], out: str, watch: str | None = None) -> dict:
    """The command in this process; `watch`: a folder in which nothing may be created, changed or removed."""
    from contextlib import redirect_stderr, redirect_stdout
    from cli.main import main
    err = io.StringIO()
    code = None
    before = _snapshot(watch)
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            main(argv)
    except SystemExit as exc:
        code = exc.code
    after = _snapshot(watch)
    return {"outcome": f"exit {code}", "stderr": err.getvalue(), "out_exists": os.path.exists(out),
            "written": sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))}


def _snapshot(folder: str | None) -> dict:
    """Every file and folder below `folder` with its size and modification time."""
    if folder is None:
        return {}
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(parent, name)
            stat = os.lstat(path)
            found[path] = (stat.st_size if name in files else -1, stat.st_mtime_ns)
    return found


def _parse(argv: list[str]) -> dict:
    """Only Click's parsing and conversion of the options (the control of a value the option accepts)."""
    from contextlib import redirect_stderr
    from cli.main import app
    import click
    err = io.StringIO()
    try:
        with redirect_stderr(err):
            ctx = app.commands[argv[0]].make_context(argv[0], list(argv[1:]), parent=click.Context(app))
    except click.UsageError as exc:
        return {"outcome": "refused", "message": exc.format_message()}
    return {"outcome": "ok", "params": {k: repr(v) for k, v in ctx.params.items()}}


def _worker(cases_path: str, results_path: str) -> None:
    """Run the cases not yet in `results_path`; a case past TIME_LIMIT is recorded as a timeout
    and ends the process (TensorFlow cannot be interrupted safely), for `run_cases` to go on."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings
    warnings.simplefilter("ignore")
    results = json.loads(Path(results_path).read_text()) if Path(results_path).exists() else {}
    current = {}

    def on_alarm(signum, frame):
        results[current["id"]] = {"outcome": "timeout", "stack": "".join(traceback.format_stack(frame))[-3000:]}
        Path(results_path).write_text(json.dumps(results))
        os._exit(3)

    signal.signal(signal.SIGALRM, on_alarm)
    for case in json.loads(Path(cases_path).read_text()):
        if case["id"] in results:
            continue
        current["id"] = case["id"]
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
        t0 = time.monotonic()
        results[case["id"]] = {**_run_case(case), "seconds": round(time.monotonic() - t0, 3)}
        signal.setitimer(signal.ITIMER_REAL, 0)
        Path(results_path).write_text(json.dumps(results))  # what ran survives a crash


def run_cases(cases: list[dict], folder: Path, results_path: Path, cwd: Path, timeout: float) -> dict:
    """The cases in subprocesses of this file, a new one after each timeout; {id: result}."""
    (folder / "cases.json").write_text(json.dumps(cases))
    results_path.unlink(missing_ok=True)
    for _ in range(10):
        proc = subprocess.run([sys.executable, __file__, str(folder / "cases.json"), str(results_path)],
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        if proc.returncode != 3:  # 3: a case timed out; the others go on in a new process
            break
    assert proc.returncode == 0 and len(results) == len(cases), proc.stderr[-3000:]
    return results


@pytest.fixture(scope="module")
def outcomes():
    results = run_cases(CASES, ROOT, ROOT / "results.json", Path(__file__).resolve().parents[1], 600)
    return {c["id"]: (c, results[c["id"]]) for c in CASES}


def _build_corpus() -> tuple[Path, list[dict]]:
    """Built once at collection, so that every case is a test of its own."""
    import atexit
    import shutil
    import tempfile
    import warnings
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    atexit.register(shutil.rmtree, root, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the NaN and Inf it is asked to write
        return root, _corpus(root)


ROOT, CASES = _build_corpus() if __name__ != "__main__" else (None, [])
CASE_IDS = [c["id"] for c in CASES]


SAYS = {  # what the message of a case must say, by file or folder name
    "empty-file.npz": "a zip archive", "npy-renamed.npz": "a .npy file renamed", "npy-renamed.zip": ".npy",
    "huge-header.npz": "100000000000 elements", "huge-labels.npz": "100000000000 elements",
    "truncated-member.npz": "truncated", "objects.npz": "pickled", "complex.npz": "complex64",
    "no-images.npz": "at least one element", "more-ids.npz": "9 in 'patient_ids'", "fewer-masks.npz": "4 in",
    "nan.npz": "NaN/Inf", "1d-images.npz": "shape (6,)", "float-labels.npz": "float64",
    "bzip2.npz": "compression method 12", "bzip2.zip": "compression method 12",
    "claims-70000-members.npz": "70000 members", "claims-70000-members.zip": "70000 members",
    "claims-8-gib.npz": "8589934560 bytes", "claims-8-gib.zip": "8589934560 bytes",
    "stream-longer-than-declared.zip": "unpacks to more", "bad-crc.zip": "another CRC", "bad-crc.npz": "CRC",
    "huge-nifti2.nii": "bytes in memory", "rgb24.nii": "RGB colour voxels", "complex.nii.gz": "complex data",
    "inf-slope.nii": "scl_slope inf", "nan-intercept.nii": "scl_inter nan", "constant.nii.gz": "every voxel 7",
    "nan-voxel.nii": "non-finite", "five-d.nii": "4 dimensions", "rgb.dcm": "3 samples per pixel",
    "nan-slope.dcm": "slope nan", "inf-intercept.dcm": "intercept inf", "zero-slope.dcm": "slope 0",
    "huge-rows.dcm": "bytes in memory", "huge-frames.dcm": "bytes in memory", "dicom-rgb": "samples per pixel",
    "dicom-folder": "distinct positions", "manifest-a-list": "JSON list", "manifest-huge": "at most 16777216 bytes",
    "manifest-deep": "RecursionError", "pairs-ids-without-slices": "only patient_ids",
    "pairs-masks-of-other-size": "of one size", "rois-huge": "100000000000 elements",
}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_hostile_input(outcomes, case_id):
    case, result = outcomes[case_id]
    details = json.dumps(result, indent=1)[-3000:]
    if case["expect"] == "ok":
        assert result["outcome"] == "ok", details
    elif case["expect"] == "MemoryError":
        assert result["outcome"] == "MemoryError", details
    elif case["expect"] == "exit 2":
        assert result["outcome"] == "exit 2", details
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), details
        assert Path(case["path"]).name in lines[0] and "expected" in lines[0], details
        assert not result["out_exists"], details
    else:
        assert result["outcome"] == "ours", details
        message = result["message"]
        assert "\n" not in message and "expected" in message, details
        names = [Path(case["path"]).name, Path(case.get("folder", "-")).name]
        assert any(name in message for name in names), details
        for name in names:
            assert SAYS.get(name, "") in message, details


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
