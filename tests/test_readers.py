"""Readers on the real files of ../shared/data (numbers from each folder's MANIFEST.md), on
broken files of every format, and property tests (hypothesis) for round trips and random bytes."""
import shutil
import struct
import tempfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image

from tfganaug.data.readers import read_image, read_segmentation, to_zyx
from tfganaug.errors import InputError

IRCADB = "ircadb/3Dircadb1.1"
TOTALSEG = "totalseg-examples"


def _raises_input_error(path, *args, **kwargs) -> str:
    """Read `path`, expecting an InputError whose one-line message names the file."""
    with pytest.raises(InputError) as info:
        read_image(path, *args, **kwargs)
    message = str(info.value)
    assert Path(path).name in message and "expected" in message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def ircadb_ct(shared_data):
    return read_image(shared_data / IRCADB / "PATIENT_DICOM.zip", member="PATIENT_DICOM")


@pytest.fixture(scope="module")
def totalseg_dicom(shared_data):
    return read_image(shared_data / TOTALSEG / "example_ct_dicom")


# --- real data ------------------------------------------------------------------------------

def test_ircadb_zip_series_has_manifest_geometry_and_hu(ircadb_ct):
    ct, meta = ircadb_ct
    assert ct.shape == (129, 512, 512) and ct.dtype == np.float32
    assert meta["spacing_mm"] == pytest.approx((1.6, 0.57, 0.57), rel=1e-3)
    assert (ct.min(), ct.max()) == (-1024.0, 1023.0)
    assert meta["modality"] == "CT" and meta["n_slices"] == 129 and meta["series_uid"]
    assert meta["axes"] == "zyx" and meta["orientation"] == ("S", "P", "L")


def test_ircadb_liver_mask_mean_hu_is_contrast_enhanced(shared_data, ircadb_ct):
    ct, meta = ircadb_ct
    liver, _ = read_segmentation(shared_data / IRCADB / "MASKS_DICOM.zip", like_meta=meta,
                                 labels={0, 255}, member="liver")
    assert int(np.count_nonzero(liver)) == 2_865_131
    assert float(ct[liver > 0].mean()) == pytest.approx(110.6, abs=0.05)


def test_ircadb_masks_zip_without_member_lists_the_folders(shared_data):
    message = _raises_input_error(shared_data / IRCADB / "MASKS_DICOM.zip")
    assert "member=" in message and "MASKS_DICOM/liver" in message
    assert "'kidney'" in _raises_input_error(shared_data / IRCADB / "MASKS_DICOM.zip", member="kidney")


def test_totalseg_dicom_spacing_comes_from_positions_not_thickness(shared_data, totalseg_dicom):
    ct, meta = totalseg_dicom
    files = sorted((shared_data / TOTALSEG / "example_ct_dicom").iterdir())
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert {float(h.SliceThickness) for h in headers} == {3.0}
    assert ct.shape == (20, 512, 512) and meta["spacing_mm"] == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert (ct.min(), ct.max()) == (-1024.0, 1839.0)
    lowest = min(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    reference = pydicom.dcmread(lowest)
    np.testing.assert_array_equal(ct[0], reference.pixel_array.astype(np.float32) - 1024.0)
    assert meta["affine"][2][3] == pytest.approx(float(reference.ImagePositionPatient[2]))


def test_totalseg_nifti_ct_and_native_liver_hu(shared_data):
    ct, meta = read_image(shared_data / TOTALSEG / "example_ct_sm.nii.gz")
    seg, _ = read_segmentation(shared_data / TOTALSEG / "example_seg.nii.gz", like_meta=meta,
                               labels=range(118))
    assert ct.shape == (122, 101, 30) and meta["spacing_mm"] == (3.0, 3.0, 3.0)
    assert meta["orientation"] == ("R", "A", "S") == meta["original_orientation"]
    assert int(np.count_nonzero(seg == 5)) == 38_634
    assert float(ct[seg == 5].mean()) == pytest.approx(45.3, abs=0.05)


def test_las_nifti_is_flipped_along_x_to_ras(shared_data):
    path = shared_data / TOTALSEG / "example_seg_dicom.nii.gz"
    seg, meta = read_segmentation(path)
    raw = np.asanyarray(nib.load(path).dataobj)
    assert meta["original_orientation"] == ("L", "A", "S") and meta["orientation"] == ("R", "A", "S")
    np.testing.assert_array_equal(seg, raw[::-1])
    assert not np.array_equal(seg, raw)


def test_nifti_mask_lines_up_with_its_dicom_series_after_to_zyx(shared_data, totalseg_dicom):
    ct, meta = totalseg_dicom
    seg, seg_meta = read_segmentation(shared_data / TOTALSEG / "example_seg_dicom.nii.gz",
                                      like_meta=meta)
    assert seg.shape == ct.shape and seg_meta["axes"] == "zyx"
    np.testing.assert_allclose(seg_meta["affine"], meta["affine"], atol=1e-3)
    # contrast-enhanced liver; any flip of x or y puts label 5 on other tissue (< 15 HU)
    assert 80 < float(ct[seg == 5].mean()) < 100


def test_to_zyx_reverses_nifti_axes_and_spacing(shared_data):
    seg, meta = read_segmentation(shared_data / "kits19/segmentations/case_00010/segmentation.nii.gz",
                                  labels={0, 1, 2})
    assert meta["original_orientation"] == ("I", "P", "L") and seg.shape == (512, 512, 50)
    zyx, zyx_meta = to_zyx(seg, meta)
    assert zyx.shape == (50, 512, 512) and zyx_meta["spacing_mm"][0] == pytest.approx(3.0)
    raw = np.asanyarray(nib.load(meta["source"]).dataobj)  # stored as (z, y, x) = I, P, L
    np.testing.assert_array_equal(zyx, raw[::-1])


def test_to_zyx_refuses_arrays_without_geometry(shared_data):
    image, meta = read_image(shared_data / "kits19/png_slices/images/10036_127.png")
    with pytest.raises(InputError, match="known orientation"):
        to_zyx(image, meta)


def test_kits_png_slice_and_rgb_mask(shared_data):
    image, meta = read_image(shared_data / "kits19/png_slices/images/10036_127.png")
    mask_path = shared_data / "kits19/png_slices/masks/10036_127.png"
    mask, mask_meta = read_image(mask_path)
    assert image.shape == (512, 512) and meta["axes"] == "yx" and meta["dtype"] == "uint8"
    assert 0 <= image.min() < image.max() <= 255
    assert mask.shape == (512, 512, 3) and mask_meta["axes"] == "yxc"
    with pytest.raises(InputError, match="single-channel"):
        read_segmentation(mask_path)


@pytest.mark.parametrize("key, shape", [("train_images", (34561, 28, 28)), ("train_labels", (34561, 1)),
                                        ("val_images", (6491, 28, 28)), ("val_labels", (6491, 1))])
def test_organamnist_npz_keys_and_shapes(shared_data, key, shape):
    array, meta = read_image(shared_data / "organamnist/organamnist_trainval.npz", key=key)
    assert array.shape == shape and meta["dtype"] == "uint8"
    assert meta["keys"] == ["train_images", "train_labels", "val_images", "val_labels"]


# --- bad inputs -----------------------------------------------------------------------------

def _copy_dicoms(shared_data, folder: Path, n_ircadb: int, n_totalseg: int) -> None:
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(shared_data / IRCADB / "PATIENT_DICOM.zip") as z:
        for i in range(n_ircadb):
            (folder / f"ircadb_{i}").write_bytes(z.read(f"PATIENT_DICOM/image_{i}"))
    for f in sorted((shared_data / TOTALSEG / "example_ct_dicom").iterdir())[:n_totalseg]:
        shutil.copy(f, folder / f.name)


def test_two_series_in_one_folder(shared_data, tmp_path):
    _copy_dicoms(shared_data, tmp_path / "mixed", 2, 2)
    message = _raises_input_error(tmp_path / "mixed")
    assert "expected DICOM folder as one DICOM series, got 2 series" in message


def test_dicom_slices_of_different_shapes(shared_data, tmp_path):
    _copy_dicoms(shared_data, tmp_path / "series", 2, 0)
    ds = pydicom.dcmread(tmp_path / "series/ircadb_1")
    ds.PixelData, ds.Rows, ds.Columns = ds.pixel_array[:256, :256].tobytes(), 256, 256
    ds.save_as(tmp_path / "series/ircadb_1")
    assert "slices of one shape" in _raises_input_error(tmp_path / "series")


def test_dicom_slices_at_the_same_position(shared_data, tmp_path):
    _copy_dicoms(shared_data, tmp_path / "series", 1, 0)
    shutil.copy(tmp_path / "series/ircadb_0", tmp_path / "series/copy_of_0")
    assert "distinct positions" in _raises_input_error(tmp_path / "series")


def test_empty_folder_and_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "empty folder" in _raises_input_error(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("no images here")
    assert "no DICOM files" in _raises_input_error(tmp_path / "notes")


def test_truncated_nifti(shared_data, tmp_path):
    source = shared_data / TOTALSEG / "example_ct_sm.nii.gz"
    (tmp_path / "head.nii.gz").write_bytes(source.read_bytes()[:100])
    _raises_input_error(tmp_path / "head.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "body.nii")
    (tmp_path / "body.nii").write_bytes((tmp_path / "body.nii").read_bytes()[:400])
    _raises_input_error(tmp_path / "body.nii")  # header intact, voxel data cut short


@pytest.mark.parametrize("name", ["noise.nii.gz", "noise.nii", "noise.png", "noise.jpg",
                                  "noise.dcm", "noise.npz", "noise.npy", "noise.zip"])
def test_random_bytes(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(4096))
    _raises_input_error(tmp_path / name)


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "objects.npz", images=np.array([{"evil": 1}, None], dtype=object))
    assert "allow_pickle" in _raises_input_error(tmp_path / "objects.npz", key="images")


def test_nan_voxels(tmp_path):
    volume = np.zeros((4, 4, 4), np.float32)
    volume[0, 0, :3] = [np.nan, np.inf, -np.inf]
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "nan.nii.gz")
    assert "expected image as finite values, got 3 non-finite voxels" in _raises_input_error(
        tmp_path / "nan.nii.gz")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def _peak_bytes_while(call) -> int:
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_absurd_nifti_header_is_refused_unread(tmp_path):
    header = nib.Nifti2Header()  # NIfTI-1 dims are int16; NIfTI-2 can claim 100000^3
    header.set_data_shape((100_000,) * 3)
    header.set_data_dtype(np.int16)
    with open(tmp_path / "huge.nii", "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4)
    peak = _peak_bytes_while(lambda: _raises_input_error(tmp_path / "huge.nii"))
    assert peak < 10 * 2**20


@pytest.mark.parametrize("pillow_limit", ["default", "disabled"])
def test_absurd_png_size_is_refused_unread(tmp_path, monkeypatch, pillow_limit):
    if pillow_limit == "disabled":  # then our own header check must catch it
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    (tmp_path / "huge.png").write_bytes(_png_header(100_000, 100_000))
    peak = _peak_bytes_while(lambda: _raises_input_error(tmp_path / "huge.png"))
    assert peak < 10 * 2**20


def test_absurd_npy_header_is_refused_unread(tmp_path):
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (100_000,) * 3})
    peak = _peak_bytes_while(lambda: _raises_input_error(tmp_path / "huge.npy"))
    assert peak < 10 * 2**20


def test_missing_path_and_unknown_suffix(tmp_path):
    _raises_input_error(tmp_path / "absent.nii.gz")
    (tmp_path / "volume.mha").write_bytes(b"ObjectType = Image\n")
    assert ".nii.gz" in _raises_input_error(tmp_path / "volume.mha")


def test_mask_shape_mismatch_names_both_files(shared_data):
    _, meta = read_image(shared_data / TOTALSEG / "example_ct_sm.nii.gz")
    with pytest.raises(InputError) as info:
        read_segmentation(shared_data / TOTALSEG / "example_seg_dicom.nii.gz", like_meta=meta)
    assert "example_seg_dicom.nii.gz" in str(info.value) and "example_ct_sm.nii.gz" in str(info.value)
    assert "(122, 101, 30)" in str(info.value)


def test_label_values_outside_the_set(shared_data):
    with pytest.raises(InputError, match=r"values in \[0, 1\], got unexpected values \[2\]"):
        read_segmentation(shared_data / "kits19/segmentations/case_00010/segmentation.nii.gz",
                          labels={0, 1})


# --- properties -------------------------------------------------------------------------------

FINITE_F32 = st.floats(-1e6, 1e6, width=32)
PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(arrays(np.float32, array_shapes(min_dims=2, max_dims=3, max_side=8), elements=FINITE_F32))
def test_npy_round_trip(array):
    """30 examples: .npy keeps every float32 value, the shape and the dtype."""
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "a.npy", array)
        back, meta = read_image(Path(folder) / "a.npy")
    np.testing.assert_array_equal(back, array)
    assert meta["shape"] == array.shape and meta["dtype"] == "float32" and meta["axes"] is None


@PROPERTY
@given(arrays(np.float32, array_shapes(min_dims=2, max_dims=3, max_side=8), elements=FINITE_F32),
       st.tuples(*[st.sampled_from([-1, 1])] * 3), st.tuples(*[st.sampled_from([0.5, 0.8, 2.5, 3.0])] * 3))
def test_nifti_round_trip_reorients_to_ras(array, signs, spacing):
    """30 examples: values, spacing and the flips that bring any axis-aligned affine to RAS."""
    assume(array.min() != array.max())  # a volume of one value is refused (test_hostile_inputs)
    affine = np.diag([s * d for s, d in zip(signs, spacing)] + [1.0])
    with tempfile.TemporaryDirectory() as folder:
        nib.save(nib.Nifti1Image(array, affine), Path(folder) / "a.nii.gz")
        back, meta = read_image(Path(folder) / "a.nii.gz")
    expected = array.reshape(array.shape + (1,) * (3 - array.ndim))
    expected = expected[tuple(slice(None, None, sign) for sign in signs)]
    np.testing.assert_array_equal(back, expected)
    assert meta["spacing_mm"] == pytest.approx(spacing) and meta["orientation"] == ("R", "A", "S")
    assert meta["original_orientation"] == tuple(c[s < 0] for c, s in zip(("RL", "AP", "SI"), signs))


@PROPERTY
@given(st.sampled_from([np.uint8, np.uint16]).flatmap(
    lambda dtype: arrays(dtype, array_shapes(min_dims=2, max_dims=2, max_side=16))))
def test_png_round_trip_keeps_8_and_16_bit_values(array):
    """30 examples: greyscale PNG, 8 or 16 bit, read back value for value as (H, W)."""
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(array).save(Path(folder) / "a.png")
        back, meta = read_image(Path(folder) / "a.png")
    np.testing.assert_array_equal(back, array.astype(np.float32))
    assert meta["axes"] == "yx" and meta["dtype"] == str(array.dtype)


SUFFIXES = [".nii", ".nii.gz", ".dcm", ".zip", ".png", ".jpg", ".npy", ".npz", ""]


@pytest.fixture(scope="module")
def small_files(shared_data, tmp_path_factory) -> dict[str, bytes]:
    """One small valid file per format, for cutting at random places."""
    folder = tmp_path_factory.mktemp("small")
    volume = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "a.nii")
    nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / "a.nii.gz")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(folder / "a.png")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(folder / "a.jpg")
    np.save(folder / "a.npy", volume)
    np.savez(folder / "a.npz", volume=volume)
    dicom = sorted((shared_data / TOTALSEG / "example_ct_dicom").iterdir())[0]  # JPEG 2000 coded
    shutil.copy(dicom, folder / "a.dcm")
    with zipfile.ZipFile(folder / "a.zip", "w") as z:
        z.write(dicom, "S/a")
    return {f.name: f.read_bytes() for f in folder.iterdir()}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SUFFIXES), st.binary(max_size=2048))
def test_random_bytes_raise_only_input_error(suffix, data):
    """60 examples: any bytes under any suffix give an InputError, nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"x{suffix}").write_bytes(data)
        _raises_input_error(Path(folder) / f"x{suffix}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns before it fails on cut files
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cut_real_files_raise_only_input_error(small_files, data):
    """60 examples: a valid file cut anywhere (plus a few random bytes) reads or says why not."""
    name = data.draw(st.sampled_from(sorted(small_files)))
    content = small_files[name]
    cut = data.draw(st.integers(0, len(content) - 1))
    tail = data.draw(st.binary(max_size=16))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).write_bytes(content[:cut] + tail)
        try:
            read_image(Path(folder) / name)
        except InputError as exc:
            assert name in str(exc) and "expected" in str(exc)
