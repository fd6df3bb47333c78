"""`tfganaug predict`: masks on the input's grid (affine, voxel order) for NIfTI, DICOM and PNG
input, the same mask from a DICOM series and a NIfTI copy of it, the preprocessing of training
(predictions equal `evaluate`'s on the training cases), volumes in the JSON, a liver volume
within a stated tolerance on real data, SavedModels, and one-line errors."""
import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from cli.main import main
from tfganaug import config
from tfganaug.data.readers import read_image, read_segmentation
from tfganaug.data.segsets import all_slices_of
from tfganaug.runs import RunFolder
from tfganaug.stages.evaluate import load_segmenter, predict_labels, predict_labels_3d
from tfganaug.stages.predict import predict, volumes_path
from tfganaug.stages.train_seg import train_seg

TINY = {"base_filters": 4, "depth": 2, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "augment": "none"}
PHANTOM = {"image_size": 32, "phantom_size": 32, "n_phantom_patients": 3}


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def zyx_nifti(path, volume_zyx, spacing_zyx):
    """A volume in the readers' "zyx" axes (orientation S, P, L) written as NIfTI with its geometry."""
    dz, dy, dx = spacing_zyx
    affine = np.array([[0, 0, -dx, 0], [0, -dy, 0, 0], [dz, 0, 0, 0], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(np.asarray(volume_zyx, np.float32), affine), path)
    return path


def as_zyx(labels_native, affine):
    """A mask read back from its file into "zyx" order, to compare with `evaluate`'s slices."""
    from tfganaug.data.readers import to_zyx
    out, _ = to_zyx(labels_native, {"orientation": nib.aff2axcodes(affine), "spacing_mm": (1, 1, 1),
                                    "affine": affine.tolist(), "axes": "xyz"})
    return out


def mask_of(path):
    image = nib.load(path)
    assert image.get_data_dtype() == np.uint8
    return np.asarray(image.dataobj), image.affine


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seg2d"
    train_seg(config.preset("cpu_unet_abdomen", data=PHANTOM, seg=TINY), out, verbose=0)
    return out


def test_predict_prepares_a_scan_as_training_did(phantom_run, tmp_path):
    """A training case written as NIfTI gets the labels `evaluate` gives its slices."""
    run, cfg = RunFolder.load(phantom_run)
    whole = all_slices_of(cfg.data, whole_volumes=True)
    pid = whole.patients()[0]
    sel = np.flatnonzero(whole.patient_ids == pid)
    from tfganaug.data.segsets import source_cases
    case = next(c for c in source_cases(cfg.data.name, cfg.data)[0] if c.patient_id == pid)
    scan = zyx_nifti(tmp_path / "case.nii.gz", case.image[..., 0], case.spacing_mm)
    record = predict(phantom_run, [scan], tmp_path / "mask.nii.gz")
    labels, affine = mask_of(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(affine, nib.load(scan).affine)
    want = predict_labels(load_segmenter(run), whole.images[sel], "softmax")
    got = as_zyx(labels, affine)
    assert got.shape == want.shape
    assert np.mean(got == want) > 0.999
    assert len(np.unique(got)) > 1  # a model that labels everything alike would prove nothing here
    voxel_ml = float(np.prod(case.spacing_mm)) / 1000
    for k, name in enumerate(record["class_names"][1:], start=1):
        assert record["voxels"][name] == int(np.sum(labels == k))
        assert record["volumes_ml"][name] == pytest.approx(np.sum(labels == k) * voxel_ml, rel=1e-9)
    assert json.loads(volumes_path(tmp_path / "mask.nii.gz").read_text()) == json.loads(json.dumps(record))


def test_png_slice_gets_an_identity_affine_and_its_own_shape(phantom_run, tmp_path, capsys):
    grey = np.clip(np.linspace(0, 255, 40 * 30).reshape(40, 30), 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "slice.png")
    code, out, err = run_cli(capsys, "predict", phantom_run, tmp_path / "slice.png", "--out", tmp_path / "m.nii")
    assert code == 0, err
    assert "liver" in out and "volume (ml)" in out
    labels, affine = mask_of(tmp_path / "m.nii")
    assert labels.shape == (40, 30, 1) and np.array_equal(affine, np.eye(4))
    record = json.loads((tmp_path / "m.volumes.json").read_text())
    assert record["voxel_volume_ml"] == 0.001
    assert sum(record["voxels"].values()) == int(np.count_nonzero(labels))


def test_exported_savedmodel_gives_the_runs_mask(phantom_run, tmp_path, capsys):
    from tfganaug.stages.export import export_run
    run = shutil.copytree(phantom_run, tmp_path / "run")
    export_run(run, tmp_path / "sm")
    scan = tmp_path / "scan.nii.gz"
    rng = np.random.default_rng(0)
    zyx_nifti(scan, rng.normal(40, 300, (5, 24, 36)), (3.0, 0.8, 0.8))  # non-square slices: padded, resized
    predict(run, [scan], tmp_path / "run.nii.gz")
    predict(tmp_path / "sm", [scan], tmp_path / "sm.nii.gz")  # the model folder: its highest version
    a, b = mask_of(tmp_path / "run.nii.gz"), mask_of(tmp_path / "sm.nii.gz")
    assert np.mean(a[0] == b[0]) > 0.999 and np.array_equal(a[1], b[1])
    shutil.rmtree(run)  # the preprocessing lives in the run's config: without it, one line
    code, _, err = run_cli(capsys, "predict", tmp_path / "sm", scan, "--out", tmp_path / "gone.nii.gz")
    assert code == 2 and "tfganaug_export.json" in err and "pass the run folder" in err, err


def test_3d_unet_slides_windows_along_z_as_evaluate_does(tmp_path, capsys):
    cfg = config.preset("cpu_unet3d_abdomen", data=PHANTOM,
                        seg={**TINY, "batch_size": 1, "patch_depth": 8, "unet": "sandfort3d"})
    run_dir = train_seg(cfg, tmp_path / "seg3d", verbose=0).path
    whole = all_slices_of(cfg.data, whole_volumes=True)
    pid = whole.patients()[1]
    from tfganaug.data.segsets import source_cases
    case = next(c for c in source_cases(cfg.data.name, cfg.data)[0] if c.patient_id == pid)
    assert case.num_slices > 8  # several overlapping windows
    scan = zyx_nifti(tmp_path / "case.nii.gz", case.image[..., 0], case.spacing_mm)
    predict(run_dir, [scan], tmp_path / "mask.nii.gz")
    labels, affine = mask_of(tmp_path / "mask.nii.gz")
    sel = np.flatnonzero(whole.patient_ids == pid)
    want = predict_labels_3d(load_segmenter(RunFolder(run_dir)), whole.subset(sel), "softmax", 8)
    assert np.mean(as_zyx(labels, affine) == want) > 0.999
    # served (REST stub): the same windows, one request each, give the export's own mask byte for byte
    from tf_serving_stub import served
    from tfganaug.stages.export import export_run
    export_run(run_dir, tmp_path / "sm" / "unet")
    predict(tmp_path / "sm" / "unet", [scan], tmp_path / "export.nii.gz")
    with served({"unet": tmp_path / "sm" / "unet"}) as (url, log):
        code, _, err = run_cli(capsys, "predict", scan, "--out", tmp_path / "served.nii.gz",
                               *served_args(url, "--patch-depth", "8"))
    assert code == 0, err
    assert (tmp_path / "served.nii.gz").read_bytes() == (tmp_path / "export.nii.gz").read_bytes()
    windows = [json.loads(body)["inputs"]["image"] for method, _, body in log if method == "POST"]
    assert len(windows) >= 2 and all(np.asarray(w).shape == (1, 8, 32, 32, 1) for w in windows)


def test_mr_run_takes_one_file_per_contrast(tmp_path, capsys):
    cfg = config.preset("cpu_unet_brats", data={**PHANTOM, "contrasts": ["flair", "t1ce"]}, seg=TINY)
    run_dir = train_seg(cfg, tmp_path / "brain", verbose=0).path
    whole = all_slices_of(cfg.data, whole_volumes=True)
    from tfganaug.data.segsets import source_cases
    case = source_cases(cfg.data.name, cfg.data)[0][0]
    files = [zyx_nifti(tmp_path / f"{c}.nii.gz", case.image[..., k] * 120 + 400 * (case.image[..., k] != 0),
                       case.spacing_mm) for k, c in enumerate(("flair", "t1ce"))]
    predict(run_dir, files, tmp_path / "mask.nii.gz")
    labels, affine = mask_of(tmp_path / "mask.nii.gz")
    sel = np.flatnonzero(whole.patient_ids == case.patient_id)
    want = predict_labels(load_segmenter(RunFolder(run_dir)), whole.images[sel], "softmax")
    assert np.mean(as_zyx(labels, affine) == want) > 0.999  # raw intensities: z-scored in the brain again
    code, _, err = run_cli(capsys, "predict", run_dir, files[0], "--out", tmp_path / "one.nii.gz")
    assert code == 2 and "2 files, one per channel" in err and "flair, t1ce" in err
    assert not (tmp_path / "one.nii.gz").exists()


def test_bad_input_gets_one_line_and_writes_nothing(phantom_run, tmp_path, capsys):
    grey = np.zeros((8, 8), np.uint8)
    grey[2:5] = 200
    Image.fromarray(grey).save(tmp_path / "s.png")
    cases = [
        ((phantom_run, tmp_path / "missing.nii.gz", "--out", tmp_path / "a.nii.gz"), ["missing.nii.gz", "nothing"]),
        ((phantom_run, tmp_path / "s.png", "--out", tmp_path / "a.png"), ["a.png", ".nii.gz"]),
        ((tmp_path, tmp_path / "s.png", "--out", tmp_path / "a.nii.gz"), [str(tmp_path), "saved_model.pb"]),
    ]
    for args, fragments in cases:
        code, _, err = run_cli(capsys, "predict", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        for fragment in fragments:
            assert fragment in err, err
    assert not (tmp_path / "a.nii.gz").exists() and not (tmp_path / "a.volumes.json").exists()
    (tmp_path / "b.nii.gz").write_bytes(b"keep")
    code, _, err = run_cli(capsys, "predict", phantom_run, tmp_path / "s.png", "--out", tmp_path / "b.nii.gz")
    assert code == 2 and "--overwrite" in err and (tmp_path / "b.nii.gz").read_bytes() == b"keep"
    code, _, err = run_cli(capsys, "predict", phantom_run, tmp_path / "s.png", "--out", tmp_path / "b.nii.gz",
                           "--overwrite")
    assert code == 0, err
    assert mask_of(tmp_path / "b.nii.gz")[0].shape == (8, 8, 1)


# ---------------------------------------------------------------------------- real shared data

LIVER_TOLERANCE = 0.25
"""Largest relative error of the predicted liver volume of IRCADb patient 1 allowed here (a 2-D
U-Net of 8 base filters, 32 px, 200 steps on that scan). Kidney and spleen are not learned at
this budget (reports/sandfort-cyclegan), so only the liver's volume is checked."""


@pytest.fixture(scope="module")
def ircadb(shared_data, tmp_path_factory):
    """A U-Net trained on IRCADb patient 1, and its mask of the patient's DICOM zip."""
    tmp = tmp_path_factory.mktemp("ircadb")
    cfg = config.preset("cpu_unet_abdomen", data={"name": "ircadb", "image_size": 32},
                        seg={"base_filters": 8, "depth": 3, "epochs": 8, "steps_per_epoch": 25, "augment": "none"})
    run = train_seg(cfg, tmp / "run", verbose=0).path
    series = shared_data / "ircadb" / "3Dircadb1.1" / "PATIENT_DICOM.zip"
    record = predict(run, [series], tmp / "dicom.nii.gz")
    return {"run": run, "series": series, "record": record, "mask": tmp / "dicom.nii.gz", "tmp": tmp}


def dicom_affine_from_headers(series):
    """Index (column, row, slice) -> RAS mm from the DICOM tags themselves, independently of the
    readers, for a series folder or zip."""
    import io
    import zipfile
    if series.is_dir():
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.iterdir()) if f.is_file()]
    else:
        with zipfile.ZipFile(series) as z:
            headers = [pydicom.dcmread(io.BytesIO(z.read(n)), stop_before_pixels=True)
                       for n in z.namelist() if not n.endswith("/")]
    iop = np.array(headers[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    headers.sort(key=lambda h: float(np.dot(np.array(h.ImagePositionPatient, float), normal)))
    positions = [np.array(h.ImagePositionPatient, float) for h in headers]
    dy, dx = (float(v) for v in headers[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = iop[:3] * dx, iop[3:] * dy
    lps[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, (int(headers[0].Columns), int(headers[0].Rows), len(headers))


def test_dicom_mask_has_the_series_affine(ircadb, shared_data, tmp_path):
    labels, affine = mask_of(ircadb["mask"])  # a zip (IRCADb: positions from 0)
    want, shape = dicom_affine_from_headers(ircadb["series"])
    assert labels.shape == shape
    np.testing.assert_allclose(affine, want, atol=1e-4)
    folder = shared_data / "totalseg-examples" / "example_ct_dicom"  # a folder, patient coordinates off 0
    predict(ircadb["run"], [folder], tmp_path / "folder.nii.gz")
    labels, affine = mask_of(tmp_path / "folder.nii.gz")
    want, shape = dicom_affine_from_headers(folder)
    assert labels.shape == shape and np.abs(want[:3, 3]).max() > 1
    np.testing.assert_allclose(affine, want, atol=1e-4)


def test_nifti_mask_has_the_files_affine_and_voxel_order(ircadb, shared_data, tmp_path):
    source = shared_data / "totalseg-examples" / "example_ct_sm.nii.gz"
    predict(ircadb["run"], [source], tmp_path / "ras.nii.gz")
    labels, affine = mask_of(tmp_path / "ras.nii.gz")
    original = nib.load(source)
    assert labels.shape == original.shape
    np.testing.assert_array_equal(affine, original.affine)
    out = nib.load(tmp_path / "ras.nii.gz").header
    assert (int(out["qform_code"]), int(out["sform_code"])) == (int(original.header["qform_code"]),
                                                                int(original.header["sform_code"]))
    assert len(np.unique(labels)) > 1
    # The same scan stored in another voxel order (axes permuted and flipped): the same mask in space.
    ornt = np.array([[1, -1], [2, 1], [0, -1]])
    data = nib.orientations.apply_orientation(np.asarray(original.dataobj), ornt)
    moved = original.affine @ nib.orientations.inv_ornt_aff(ornt, original.shape)
    nib.save(nib.Nifti1Image(data, moved), tmp_path / "moved.nii.gz")
    predict(ircadb["run"], [tmp_path / "moved.nii.gz"], tmp_path / "moved-mask.nii.gz")
    moved_labels, moved_affine = mask_of(tmp_path / "moved-mask.nii.gz")
    np.testing.assert_allclose(moved_affine, moved, atol=1e-5)
    assert np.array_equal(moved_labels, nib.orientations.apply_orientation(labels, ornt))


def test_dicom_and_its_nifti_copy_give_the_same_mask(ircadb):
    ct, meta = read_image(ircadb["series"])  # (slice, row, column), HU
    affine = np.asarray(meta["affine"])[:, [2, 1, 0, 3]]
    copy = ircadb["tmp"] / "copy.nii"  # uncompressed: gzip of 135 MB of float32 is slow
    nib.save(nib.Nifti1Image(ct.transpose(2, 1, 0), affine), copy)
    predict(ircadb["run"], [copy], ircadb["tmp"] / "copy-mask.nii.gz")
    dicom_labels, dicom_affine = mask_of(ircadb["mask"])
    nifti_labels, nifti_affine = mask_of(ircadb["tmp"] / "copy-mask.nii.gz")
    np.testing.assert_allclose(nifti_affine, dicom_affine, atol=1e-5)
    assert np.array_equal(nifti_labels, dicom_labels)
    assert json.loads(volumes_path(ircadb["tmp"] / "copy-mask.nii.gz").read_text())["volumes_ml"] == \
        pytest.approx(ircadb["record"]["volumes_ml"])


def test_liver_volume_within_tolerance_of_the_reference(ircadb, shared_data):
    _, meta = read_image(ircadb["series"])
    liver, _ = read_segmentation(shared_data / "ircadb" / "3Dircadb1.1" / "MASKS_DICOM.zip", like_meta=meta,
                                 member="liver")
    reference_ml = np.count_nonzero(liver) * float(np.prod(meta["spacing_mm"])) / 1000
    predicted_ml = ircadb["record"]["volumes_ml"]["liver"]
    assert abs(predicted_ml - reference_ml) <= LIVER_TOLERANCE * reference_ml, (predicted_ml, reference_ml)


# ---------------------------------------------------------------------------- served (--server)

def served_args(url, *extra, classes="background,liver,kidney,spleen", window="400,50"):
    args = ["--server", url, "--model", "unet"]
    args += ["--classes", classes] if classes else []
    args += ["--window", window] if window else []
    return [*args, *extra]


@pytest.fixture(scope="module")
def ircadb_export(ircadb):
    from tfganaug.stages.export import export_run
    root = ircadb["tmp"] / "saved_models"
    export_run(ircadb["run"], root / "unet")
    return {"unet": root / "unet"}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_served_mask_equals_local_byte_for_byte(ircadb, ircadb_export, shared_data, tmp_path, capsys, transport):
    """The IRCADb U-Net exported and served (REST stub or gRPC stub): `predict --server` on a real
    TotalSegmentator CT writes the same mask file, byte for byte, as local `predict` of the same
    SavedModel, and the same volumes."""
    from tf_serving_stub import served
    scan = shared_data / "totalseg-examples" / "example_ct_sm.nii.gz"
    local = predict(ircadb_export["unet"], [scan], tmp_path / "local.nii.gz")
    classes = ",".join(local["class_names"])
    window = "{:g},{:g}".format(*(RunFolder.load(ircadb["run"])[1].data.window_width,
                                  RunFolder.load(ircadb["run"])[1].data.window_level))
    if transport == "grpc":
        from tf_serving_grpc_stub import served_grpc as serve
    else:
        serve = served
    with serve(ircadb_export) as (url, log):
        code, out, err = run_cli(capsys, "predict", scan, "--out", tmp_path / "served.nii.gz",
                                 *served_args(url, classes=classes, window=window))
    assert code == 0, err
    assert "liver" in out and "volume (ml)" in out
    assert (tmp_path / "served.nii.gz").read_bytes() == (tmp_path / "local.nii.gz").read_bytes()
    labels, _ = mask_of(tmp_path / "served.nii.gz")
    assert len(np.unique(labels)) > 1  # a constant mask would make the equality prove little
    record = json.loads(volumes_path(tmp_path / "served.nii.gz").read_text())
    differ = {"mask", "model", "served"}
    assert {k: v for k, v in record.items() if k not in differ} == \
        json.loads(json.dumps({k: v for k, v in local.items() if k not in differ}))
    assert record["served"]["signature"] == "preprocessed"
    assert record["served"]["transport"] == {"rest": "REST", "grpc": "gRPC"}[transport]
    assert record["served"]["from the served model's metadata"]["image_size"] == 32
    predict_calls = [entry for entry in log if entry[0] in ("POST", "Predict")]
    assert len(predict_calls) == -(-nib.load(scan).shape[2] // 16)  # one request per batch of 16 slices


def test_served_predict_needs_the_facts_the_metadata_lacks(phantom_run, tmp_path, capsys, monkeypatch):
    """--classes, --window (CT) and a matching class count are one line and exit 2; so is grpc://
    without the serving extra; nothing is written."""
    import sys
    from tf_serving_stub import served
    from tfganaug.stages.export import export_run
    export_run(phantom_run, tmp_path / "sm" / "unet")
    scan = zyx_nifti(tmp_path / "scan.nii.gz", np.random.default_rng(0).normal(40, 300, (3, 20, 24)), (3, 1, 1))
    out = tmp_path / "m.nii.gz"
    with served({"unet": tmp_path / "sm" / "unet"}) as (url, _):
        cases = [(served_args(url, classes=None), ["--classes", "4 (softmax outputs) or 5", "none"]),
                 (served_args(url, classes="background,liver"), ["--classes", "got 2 (background, liver)"]),
                 (served_args(url, window=None), ["--window", "WW,WL"]),
                 (served_args(url, "--channels", "flair,t1ce"), ["--channels", "1 channel"]),
                 (["--server", url, "--model", "nope"], ["HTTP 404", "Latest(nope)"])]
        for args, fragments in cases:
            code, _, err = run_cli(capsys, "predict", scan, "--out", out, *args)
            assert code == 2 and len(err.strip().splitlines()) == 1, err
            assert all(f in err for f in fragments), err
        code, _, err = run_cli(capsys, "predict", scan, "--out", out, *served_args(url))
        assert code == 0, err
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    code, _, err = run_cli(capsys, "predict", scan, "--out", tmp_path / "g.nii.gz",
                           *served_args("grpc://127.0.0.1:8500"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install tfganaug[serving]" in err, err
    assert not (tmp_path / "g.nii.gz").exists() and not (tmp_path / "g.volumes.json").exists()
