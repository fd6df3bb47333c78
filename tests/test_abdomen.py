"""Abdominal CT sources of Sandfort et al. 2019 on the real shared files (numbers from the
MANIFESTs of ircadb/ and totalseg-examples/), their bad inputs, and the abdominal phantom."""
import shutil
import zipfile

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tfganaug.data.abdomen import (ABDOMEN_CLASSES, abdomen_phantom_cases, load_abdomen_sources,
                                   load_ircadb_patient, load_totalseg_example)
from tfganaug.data.cases import Case
from tfganaug.data.readers import read_image, read_segmentation, to_zyx
from tfganaug.errors import InputError

IRCADB = "ircadb/3Dircadb1.1"
TOTALSEG = "totalseg-examples"
LIVER, KIDNEY, SPLEEN = 1, 2, 3


def _ml(case: Case, label: int) -> float:
    return float(np.count_nonzero(case.mask == label) * np.prod(case.spacing_mm) / 1000.0)


def _mean_hu(case: Case, label: int) -> float:
    return float(case.image[..., 0][case.mask == label].mean())


def _centroid(case: Case, label: int) -> np.ndarray:
    """(z, y, x) centroid of a label as fractions of the volume's extent."""
    return np.argwhere(case.mask == label).mean(axis=0) / np.array(case.mask.shape)


@pytest.fixture
def scratch(tmp_path):
    """tmp_path, emptied afterwards: IRCADb is CC BY-NC-ND, so no copied slices are left behind."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def sources(shared_data):
    return load_abdomen_sources(shared_data)


@pytest.fixture(scope="module")
def ircadb(sources):
    return sources["contrast"][0]


@pytest.fixture(scope="module")
def native(sources):
    return sources["non-contrast"][0]


@pytest.fixture(scope="module")
def enhanced_totalseg(sources):
    return sources["contrast"][1]


# --- real data ------------------------------------------------------------------------------

def test_sources_by_domain(sources):
    assert [c.meta["dataset"] for c in sources["contrast"]] == ["3D-IRCADb-01", "TotalSegmentator example"]
    assert [c.patient_id for c in sources["non-contrast"]] == ["totalseg-example_ct_sm"]
    for domain, cases in sources.items():
        for case in cases:
            assert case.domain == domain and case.modality == "CT" and case.units == "HU"
            assert case.class_names == ABDOMEN_CLASSES and case.channel_names == ("CT",)
            assert case.image.dtype == np.float32 and case.mask.dtype == np.uint8
            assert case.image.shape == case.mask.shape + (1,)


def test_ircadb_patient_geometry_labels_and_contrast_hu(ircadb):
    assert ircadb.patient_id == "liver_01^patient"  # PatientName; IRCADb's PatientID is empty
    assert ircadb.image.shape == (129, 512, 512, 1)
    assert ircadb.spacing_mm == pytest.approx((1.6, 0.57, 0.57), rel=1e-3)
    assert set(np.unique(ircadb.mask).tolist()) == {0, 1, 2, 3}
    assert ircadb.meta["structure_voxels"] == {"liver": 2_865_131, "leftkidney": 280_405,
                                               "rightkidney": 215_358, "spleen": 222_773}
    assert ircadb.meta["overlap_voxels"] == 0 and ircadb.meta["missing_structures"] == []
    counts = np.bincount(ircadb.mask.ravel(), minlength=4)
    assert counts[1:].tolist() == [2_865_131, 280_405 + 215_358, 222_773]
    assert _mean_hu(ircadb, LIVER) == pytest.approx(110.6, abs=0.05)  # MANIFEST: venous phase
    assert _mean_hu(ircadb, KIDNEY) > _mean_hu(ircadb, SPLEEN) > 100  # enhanced kidney brightest
    assert 1000 < _ml(ircadb, LIVER) < 2500
    assert 150 < _ml(ircadb, KIDNEY) < 600 and 80 < _ml(ircadb, SPLEEN) < 500


def test_totalseg_native_nifti(native):
    assert native.image.shape == (30, 101, 122, 1) and native.spacing_mm == (3.0, 3.0, 3.0)
    assert native.meta["original_orientation"] == ("R", "A", "S") and native.meta["orientation"] == ("S", "P", "L")
    assert np.bincount(native.mask.ravel(), minlength=4)[1:].tolist() == [38_634, 3_947 + 3_676, 9_452]
    assert _mean_hu(native, LIVER) == pytest.approx(45.3, abs=0.05)  # MANIFEST: unenhanced liver
    assert 1000 < _ml(native, LIVER) < 2500


def test_totalseg_contrast_dicom(enhanced_totalseg):
    case = enhanced_totalseg
    assert case.image.shape == (20, 512, 512, 1)
    assert case.spacing_mm == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert case.meta["contrast_bolus_agent"] == "APPLIED"
    assert set(np.unique(case.mask).tolist()) == {0, LIVER, SPLEEN}  # no kidney in these 20 slices
    assert 80 < _mean_hu(case, LIVER) < 100


def test_contrast_liver_is_brighter_than_native_liver(ircadb, enhanced_totalseg, native):
    assert min(_mean_hu(ircadb, LIVER), _mean_hu(enhanced_totalseg, LIVER)) > _mean_hu(native, LIVER) + 30


def test_organ_sides_agree_between_dicom_and_nifti(ircadb, enhanced_totalseg, native):
    """("S", "P", "L"): liver on the patient's right = low column, spleen on the left = high
    column and posterior to the liver, in the DICOM (IRCADb, TotalSegmentator) and the RAS
    NIfTI after to_zyx."""
    for case in (ircadb, enhanced_totalseg, native):
        liver, spleen = _centroid(case, LIVER), _centroid(case, SPLEEN)
        assert liver[2] < 0.45 and spleen[2] > 0.6, case.source
        assert spleen[1] > liver[1], case.source


def test_nifti_kidneys_right_and_left_land_on_the_dicom_sides(shared_data, ircadb):
    """TotalSegmentator's kidney_right (2) lies on the liver's side, kidney_left (3) on the
    spleen's, as IRCADb's rightkidney / leftkidney masks do in the DICOM series."""
    ct, meta = to_zyx(*read_image(shared_data / TOTALSEG / "example_ct_sm.nii.gz"))
    seg, _ = read_segmentation(shared_data / TOTALSEG / "example_seg.nii.gz", like_meta=meta)
    right, left = (np.argwhere(seg == k)[:, 2].mean() / seg.shape[2] for k in (2, 3))
    assert right < 0.5 < left
    columns = {}
    for name in ("rightkidney", "leftkidney"):  # DICOM masks carry their own geometry ("zyx")
        organ, meta = read_image(shared_data / IRCADB / "MASKS_DICOM.zip", member=name)
        assert meta["orientation"] == ("S", "P", "L")
        columns[name] = np.argwhere(organ[::8] > 0)[:, 2].mean() / organ.shape[2]
    assert columns["rightkidney"] < 0.5 < columns["leftkidney"]
    # Without to_zyx the RAS array would put the right kidney on the other side.
    raw = np.asanyarray(nib.load(shared_data / TOTALSEG / "example_seg.nii.gz").dataobj)
    assert np.argwhere(raw == 2)[:, 0].mean() / raw.shape[0] > 0.5


# --- bad inputs -----------------------------------------------------------------------------


def _fake_patient(tmp_path, shared_data, masks: dict[str, list[int]] | None, n_ct_slices: int | None = None):
    """Patient folder: the real CT (or its first slices) and a MASKS_DICOM.zip with the given
    structures (all slices each), or the real masks zip when `masks` is None."""
    folder = tmp_path / "3Dircadb1.99"
    folder.mkdir()
    real = shared_data / IRCADB
    if n_ct_slices is None:
        (folder / "PATIENT_DICOM.zip").symlink_to(real / "PATIENT_DICOM.zip")
    else:
        with zipfile.ZipFile(real / "PATIENT_DICOM.zip") as src, \
                zipfile.ZipFile(folder / "PATIENT_DICOM.zip", "w") as dst:
            for i in range(n_ct_slices):
                dst.writestr(f"PATIENT_DICOM/image_{i}", src.read(f"PATIENT_DICOM/image_{i}"))
    if masks is None:
        (folder / "MASKS_DICOM.zip").symlink_to(real / "MASKS_DICOM.zip")
    else:
        with zipfile.ZipFile(real / "MASKS_DICOM.zip") as src, \
                zipfile.ZipFile(folder / "MASKS_DICOM.zip", "w") as dst:
            dst.writestr("MASKS_DICOM/README.txt", "no organ masks here")
            for name, slices in masks.items():
                for i in slices:
                    dst.writestr(f"MASKS_DICOM/{name}/image_{i}", src.read(f"MASKS_DICOM/{name}/image_{i}"))
    return folder


def test_unpacked_patient_folder_reads_like_the_zips(scratch, shared_data, ircadb):
    """PATIENT_DICOM/ and MASKS_DICOM/<structure>/ as folders (first 6 slices): same arrays."""
    folder = scratch / "3Dircadb1.1"
    with zipfile.ZipFile(shared_data / IRCADB / "PATIENT_DICOM.zip") as z:
        for i in range(6):
            z.extract(f"PATIENT_DICOM/image_{i}", folder)
    with zipfile.ZipFile(shared_data / IRCADB / "MASKS_DICOM.zip") as z:
        for name in ("liver", "leftkidney", "rightkidney", "spleen", "skin"):
            for i in range(6):
                z.extract(f"MASKS_DICOM/{name}/image_{i}", folder)
    (case,) = load_ircadb_patient(folder)
    np.testing.assert_array_equal(case.image, ircadb.image[:6])
    np.testing.assert_array_equal(case.mask, ircadb.mask[:6])
    assert case.patient_id == ircadb.patient_id and KIDNEY in case.mask  # right kidney starts at z=2


def test_masks_zip_without_organ_masks(scratch, shared_data):
    folder = _fake_patient(scratch, shared_data, {"skin": [0, 1]})
    with pytest.raises(InputError) as info:
        load_ircadb_patient(folder)
    message = str(info.value)
    assert "MASKS_DICOM.zip" in message and "liver, leftkidney, rightkidney, spleen" in message
    assert "skin" in message and "\n" not in message


def test_patient_folder_without_masks(scratch, shared_data):
    folder = _fake_patient(scratch, shared_data, {})
    (folder / "MASKS_DICOM.zip").unlink()
    with pytest.raises(InputError, match="MASKS_DICOM.zip or a folder MASKS_DICOM/") as info:
        load_ircadb_patient(folder)
    assert str(folder) in str(info.value)


def test_mask_of_other_shape_names_the_mask_file(scratch, shared_data):
    folder = _fake_patient(scratch, shared_data, None, n_ct_slices=6)
    with pytest.raises(InputError) as info:
        load_ircadb_patient(folder)
    message = str(info.value)
    assert "MASKS_DICOM.zip" in message and "PATIENT_DICOM.zip" in message
    assert "(6, 512, 512)" in message and "(129, 512, 512)" in message


def test_totalseg_mask_of_another_scan(shared_data):
    with pytest.raises(InputError) as info:
        load_totalseg_example(shared_data / TOTALSEG / "example_ct_sm.nii.gz",
                              shared_data / TOTALSEG / "example_seg_dicom.nii.gz", "non-contrast")
    assert "example_seg_dicom.nii.gz" in str(info.value) and "(30, 101, 122)" in str(info.value)


def test_totalseg_unknown_domain(shared_data):
    with pytest.raises(InputError, match="'contrast' or 'non-contrast', got 'native'"):
        load_totalseg_example(shared_data / TOTALSEG / "example_ct_sm.nii.gz",
                              shared_data / TOTALSEG / "example_seg.nii.gz", "native")


def test_sources_absent(tmp_path):
    (tmp_path / "totalseg-examples").mkdir()
    with pytest.raises(InputError) as info:
        load_abdomen_sources(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "ircadb/3Dircadb1.*/" in message
    assert "totalseg-examples/example_ct_sm.nii.gz" in message and "TFGANAUG_DATA" in message


# --- phantom ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantoms():
    return {phase: abdomen_phantom_cases(n_patients=4, image_size=96, n_slices=20, contrast=phase, seed=3)
            for phase in (False, True)}


def test_phantom_is_deterministic_and_paired(phantoms):
    again = abdomen_phantom_cases(n_patients=2, image_size=96, n_slices=20, contrast=True, seed=3)
    for a, b in zip(phantoms[True], again):  # patient p depends on (seed, p) only
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.patient_id == b.patient_id
    for native, enhanced in zip(phantoms[False], phantoms[True]):  # same anatomy in both phases
        np.testing.assert_array_equal(native.mask, enhanced.mask)
        assert native.patient_id == enhanced.patient_id
    other = abdomen_phantom_cases(n_patients=1, image_size=96, n_slices=20, contrast=True, seed=4)[0]
    assert not np.array_equal(other.mask, phantoms[True][0].mask)
    assert not np.array_equal(phantoms[True][0].mask, phantoms[True][1].mask)  # patients differ


def test_phantom_cases_labels_and_organ_z_ranges(phantoms):
    for case in phantoms[True]:
        assert isinstance(case, Case) and case.class_names == ABDOMEN_CLASSES
        assert case.image.shape == (20, 96, 96, 1) and case.mask.dtype == np.uint8
        assert case.spacing_mm == pytest.approx((12.0, 400 / 96, 400 / 96))
        assert case.domain == "contrast" and case.units == "HU" and case.modality == "CT"
        assert set(np.unique(case.mask).tolist()) == {0, 1, 2, 3}
        slices = {label: np.flatnonzero((case.mask == label).any(axis=(1, 2))) for label in (1, 2, 3)}
        for label, z in slices.items():  # each organ in a z-range, not everywhere
            assert 2 <= len(z) < case.mask.shape[0] and np.all(np.diff(z) == 1), (label, z)
        assert slices[KIDNEY].mean() < slices[LIVER].mean()  # kidneys below the liver (z = S)
        assert 800 < _ml(case, LIVER) < 2500 and 150 < _ml(case, KIDNEY) < 600
        assert 50 < _ml(case, SPLEEN) < 500
    assert phantoms[False][0].domain == "non-contrast"


def test_phantom_organ_hu_native_and_portal_venous(phantoms):
    for native, enhanced in zip(phantoms[False], phantoms[True]):
        n = {label: _mean_hu(native, label) for label in (1, 2, 3)}
        c = {label: _mean_hu(enhanced, label) for label in (1, 2, 3)}
        assert n[LIVER] > n[SPLEEN] > n[KIDNEY] and 40 < n[LIVER] < 65 and 15 < n[KIDNEY] < 40
        assert c[KIDNEY] > c[SPLEEN] > c[LIVER] and 95 < c[LIVER] < 130 and c[KIDNEY] > 160
        assert all(c[label] > n[label] + 40 for label in (1, 2, 3))


def test_phantom_kidney_cortex_enhances_more_than_medulla():
    """At 2 mm pixels: a rim 1-3 px inside the kidney (cortex, ~7 mm) is brighter than its core."""
    case = abdomen_phantom_cases(n_patients=1, image_size=192, n_slices=12, contrast=True)[0]
    kidney = case.mask == KIDNEY
    inner = ndimage.binary_erosion(kidney, np.ones((1, 3, 3), bool), iterations=1)
    deep = ndimage.binary_erosion(kidney, np.ones((1, 3, 3), bool), iterations=4)
    rim, core = inner & ~ndimage.binary_erosion(inner, np.ones((1, 3, 3), bool), iterations=2), deep
    assert core.sum() > 50 and rim.sum() > 50
    hu = case.image[..., 0]
    assert hu[rim].mean() > hu[core].mean() + 25


def test_phantom_sides_match_the_real_scans(phantoms):
    """Same orientation as the real data after to_zyx: liver low column, spleen high."""
    for case in phantoms[True]:
        liver, spleen = _centroid(case, LIVER), _centroid(case, SPLEEN)
        assert liver[2] < 0.45 and spleen[2] > 0.6 and spleen[1] > liver[1]


def test_phantom_rejects_tiny_sizes():
    with pytest.raises(InputError):
        abdomen_phantom_cases(n_patients=0)
