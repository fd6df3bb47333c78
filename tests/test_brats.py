"""BraTS readers on the shared real cases (2015 FLAIR + T1c + GT, 2023 four contrasts) and the phantom."""
import nibabel as nib
import numpy as np
import pytest

from tfganaug.data.brats import CLASS_NAMES, brain_phantom_cases, canonical_contrasts, load_brats_cases
from tfganaug.data.cases import Case
from tfganaug.errors import InputError

CASES_2015 = ("brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1", "brats_2013_pat0006_1")


@pytest.fixture(scope="module")
def brats2015(shared_data):
    root = shared_data / "brats" / "brats2015_deepmedic_examples"
    return root, load_brats_cases(root, contrasts=("flair", "t1ce"))


def test_brats2015_cases(brats2015):
    root, cases = brats2015
    assert [c.patient_id for c in cases] == list(CASES_2015)
    for case in cases:
        assert isinstance(case, Case) and case.meta["layout"] == "brats2015"
        assert case.image.shape == (155, 240, 240, 2) and case.image.dtype == np.float32
        assert case.mask.shape == (155, 240, 240) and case.mask.dtype == np.uint8
        assert case.channel_names == ("flair", "t1ce") and case.class_names == CLASS_NAMES
        assert case.units == "zscore" and case.modality == "MR" and case.spacing_mm == (1.0, 1.0, 1.0)
        assert set(np.unique(case.mask)) <= {0, 1, 2, 3}
        brain = case.image[..., 0] != 0
        assert case.meta["brain"] == "brainmask" and abs(brain.sum() - case.meta["brain_voxels"]) < 100
        for k in range(2):
            inside = case.image[..., k][brain].astype(np.float64)
            assert abs(inside.mean()) < 1e-3 and abs(inside.std() - 1.0) < 1e-3
            assert np.all(case.image[..., k][~brain] == 0)
        # Image and label map line up: the tumour lies inside the brain, oedema is FLAIR-bright
        # (z 1.4-1.8 on these cases) and the enhancing tumour T1c-bright (1.3-3.3).
        assert brain[case.mask > 0].mean() > 0.99
        assert case.image[..., 0][case.mask == 2].mean() > 1.0
        assert case.image[..., 1][case.mask == 3].mean() > 1.0


def test_brats2015_label_mapping_against_the_raw_file(brats2015):
    """3 (non-enhancing) joins 1 (necrosis), 4 (enhancing) becomes 3; counts are preserved."""
    root, cases = brats2015
    case = cases[0]
    raw = np.rint(nib.load(root / case.patient_id / "OTMultiClass.nii.gz").get_fdata()).astype(np.uint8)
    raw_counts = np.bincount(raw.ravel(), minlength=5)
    assert raw_counts[3] > 0 and raw_counts[4] > 0  # the mapping is exercised
    counts = np.bincount(case.mask.ravel(), minlength=4)
    assert counts.tolist() == [raw_counts[0], raw_counts[1] + raw_counts[3], raw_counts[2], raw_counts[4]]
    # Reoriented to zyx ("S", "P", "L") from the file's LPS x-y-z: a transpose, here with no flips.
    assert case.meta["orientation"] == ("S", "P", "L")
    np.testing.assert_array_equal(case.mask == 3, np.transpose(raw == 4, (2, 1, 0)))


def test_brats2023_case_with_four_contrasts(shared_data):
    root = shared_data / "brats" / "brats2023_gli_brainlesion_example"
    (case,) = load_brats_cases(root, require_mask=False)
    assert case.patient_id == "BraTS-GLI-00001-000" and case.meta["layout"] == "brats2023"
    assert case.image.shape == (155, 240, 240, 4) and case.mask is None
    assert case.channel_names == ("t1", "t1ce", "t2", "flair")
    assert case.meta["brain"] == "nonzero in any contrast"
    brain = np.any(case.image != 0, axis=-1)
    for k in range(4):
        inside = case.image[..., k][brain].astype(np.float64)
        assert abs(inside.mean()) < 1e-3 and abs(inside.std() - 1.0) < 1e-3
    # The raw int16 intensities were normalised: t1c 0..15 500 before.
    assert case.meta["zscore"]["t1ce"]["mean"] > 100 and np.abs(case.image).max() < 50
    # BraTS 2023 names select the same channels, in the order asked.
    (again,) = load_brats_cases(root, contrasts=("t2f", "t1n"), require_mask=False)
    assert again.channel_names == ("flair", "t1")
    np.testing.assert_array_equal(again.image[..., 1], case.image[..., 0])


def test_missing_contrast_or_mask_is_an_input_error(shared_data):
    root = shared_data / "brats"
    with pytest.raises(InputError, match=r"no t1, t2 file; the case has \['t1ce', 'flair'\]"):
        load_brats_cases(root / "brats2015_deepmedic_examples", case_ids=["brats_2013_pat0003_1"])
    with pytest.raises(InputError, match="tumour label map"):
        load_brats_cases(root / "brats2023_gli_brainlesion_example")
    with pytest.raises(InputError, match="case ids"):
        load_brats_cases(root / "brats2015_deepmedic_examples", contrasts=("flair",), case_ids=["nope"])
    with pytest.raises(InputError, match="contrasts"):
        canonical_contrasts(("t1", "pd"))


def _write_nifti(path, array):
    nib.save(nib.Nifti1Image(array, np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))


def test_brats2018_layout_and_label_4(tmp_path):
    """BraTS 2017-2021 naming; 4 -> 3; the brain from nonzero voxels; HGG/ sub-folder found."""
    rng = np.random.default_rng(0)
    case = tmp_path / "HGG" / "Brats18_TCIA_001_1"
    case.mkdir(parents=True)
    brain = np.zeros((6, 5, 4), bool)
    brain[1:5, 1:4, 1:3] = True
    for c in ("t1", "t1ce", "t2", "flair"):
        _write_nifti(case / f"{case.name}_{c}.nii.gz", (rng.uniform(100, 200, brain.shape) * brain).astype(np.int16))
    seg = np.zeros(brain.shape, np.uint8)
    seg[2, 2, 1], seg[3, 2, 1], seg[2, 3, 2] = 1, 2, 4
    _write_nifti(case / f"{case.name}_seg.nii.gz", seg)
    (loaded,) = load_brats_cases(tmp_path, contrasts=("t1ce", "flair"))
    assert loaded.meta["layout"] == "brats2018" and loaded.patient_id == case.name
    assert np.bincount(loaded.mask.ravel(), minlength=4).tolist() == [seg.size - 3, 1, 1, 1]
    assert loaded.meta["brain_voxels"] == brain.sum()
    seg[0, 0, 0] = 3  # not a BraTS 2018 label
    _write_nifti(case / f"{case.name}_seg.nii.gz", seg)
    with pytest.raises(InputError, match="unexpected values"):
        load_brats_cases(tmp_path)


def test_phantom_is_deterministic_with_labels_in_some_slices():
    a = brain_phantom_cases(n_patients=3, image_size=32, n_slices=12, seed=5)
    b = brain_phantom_cases(n_patients=2, image_size=32, n_slices=12, seed=5)
    for x, y in zip(a, b):  # patient p does not depend on n_patients
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.mask, y.mask)
    other = brain_phantom_cases(n_patients=1, image_size=32, n_slices=12, seed=6)[0]
    assert not np.array_equal(other.mask, a[0].mask)
    for case in a:
        assert case.image.shape == (12, 32, 32, 4) and case.channel_names == ("t1", "t1ce", "t2", "flair")
        assert case.units == "zscore" and case.class_names == CLASS_NAMES
        assert set(np.unique(case.mask)) == {0, 1, 2, 3}
        with_tumour = (case.mask > 0).any(axis=(1, 2))
        assert 0 < with_tumour.sum() < len(with_tumour)
        brain = np.any(case.image != 0, axis=-1)
        inside = case.image[brain]
        np.testing.assert_allclose(inside.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(inside.std(axis=0), 1, atol=1e-3)


def test_phantom_contrasts_behave_like_mr():
    cases = brain_phantom_cases(n_patients=4, image_size=48, n_slices=12, seed=0)
    image = np.concatenate([c.image.reshape(-1, 4) for c in cases])
    mask = np.concatenate([c.mask.ravel() for c in cases])
    brain = np.any(image != 0, axis=-1)
    t1, t1ce, t2, flair = (image[:, k] for k in range(4))
    normal = brain & (mask == 0)
    edema, enhancing, necrosis = mask == 2, mask == 3, mask == 1
    assert flair[edema].mean() > flair[normal].mean() + 1.0 and t2[edema].mean() > t2[normal].mean() + 1.0
    assert t1ce[enhancing].mean() > 2.0 and t1ce[enhancing].mean() > t1[enhancing].mean() + 2.0
    assert t1[necrosis].mean() < t1[normal].mean() - 1.0 and t2[necrosis].mean() > t2[normal].mean() + 1.0
    # CSF (the ventricles, the darkest normal T1 voxels) is bright on T2 and dark on FLAIR.
    csf = normal & (t1 < np.percentile(t1[normal], 3))
    assert t2[csf].mean() > t2[normal].mean() + 1.0 and flair[csf].mean() < flair[normal].mean() - 1.0
