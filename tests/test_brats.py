"""BraTS readers on the shared real cases (2015 FLAIR + T1c + GT, 2023 four contrasts) and the phantom."""
import nibabel as nib
import numpy as np
import pytest

from tfganaug.config import DataConfig
from tfganaug.data.brats import (CLASS_NAMES, brain_of, brain_phantom_cases, canonical_contrasts, load_brats_cases,
                                 percentile_to_unit, percentile_window, zscore_to_unit)
from tfganaug.data.cases import Case
from tfganaug.data.segsets import select_slices, slices_from_cases
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


# --- MR onto [0, 1] -----------------------------------------------------------------------------

def _reference_percentile_to_unit(image, brain, percentiles):
    """The mapping written out channel by channel with plain NumPy."""
    out = np.zeros(image.shape, np.float64)
    for k in range(image.shape[-1]):
        values = image[..., k][brain].astype(np.float64)
        low, high = np.percentile(values, percentiles)
        channel = np.zeros(brain.shape)
        channel[brain] = np.clip((values - low) / (high - low), 0, 1)
        out[..., k] = channel
    return out


def test_percentile_to_unit_by_hand_and_against_numpy():
    # By hand: brain voxels 0, 1, ..., 100 -> the 10th / 90th percentiles are 10 and 90, so
    # 50 -> 0.5, 30 -> 0.25, 5 -> 0 (clipped), 95 -> 1 (clipped); the background voxel (value
    # 500, outside the brain) -> 0.
    image = np.concatenate([np.arange(101.0), [500.0]]).reshape(1, 1, 102, 1)
    brain = np.ones((1, 1, 102), bool)
    brain[..., -1] = False
    unit = percentile_to_unit(image, brain, (10, 90))
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit[0, 0, [50, 30, 5, 95, 101], 0], [0.5, 0.25, 0.0, 1.0, 0.0], atol=1e-6)
    low, high = percentile_window(image, brain, (10, 90))
    np.testing.assert_allclose([low[0], high[0]], [10.0, 90.0])

    # Against NumPy on two contrasts of very different scales with outliers, and an irregular brain.
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(400, 80, (6, 20, 20)), rng.gamma(2.0, 3.0, (6, 20, 20))], axis=-1)
    image[0, 0, 0, 0], image[1, 1, 1, 1] = 32767, 1e4  # saturated voxels, as in BraTS 2018 TCIA10_639
    brain = rng.random((6, 20, 20)) < 0.6
    image[~brain] = 0
    unit = percentile_to_unit(image, brain, (0.5, 99.5))
    np.testing.assert_allclose(unit, _reference_percentile_to_unit(image, brain, [0.5, 99.5]), atol=1e-6)
    assert unit.min() == 0.0 and unit.max() == 1.0 and np.all(unit[~brain] == 0)
    for k in range(2):  # 0.5 % of the brain at each end is clipped
        inside = unit[..., k][brain]
        assert 0.003 < (inside == 0).mean() < 0.008 and 0.003 < (inside == 1).mean() < 0.008
    # Percentiles commute with an increasing affine map: z-scored and raw give the same [0, 1].
    z = np.where(brain[..., None], (image - image[brain].mean(0)) / image[brain].std(0), 0)
    np.testing.assert_allclose(percentile_to_unit(z, brain), unit, atol=1e-5)
    # A window from the whole volume applied to some slices = those slices of the whole mapping.
    window = percentile_window(image, brain)
    np.testing.assert_allclose(percentile_to_unit(image[2:4], brain[2:4], window=window), unit[2:4], atol=1e-6)
    # A contrast constant inside the brain: 0, not a division by zero.
    flat = percentile_to_unit(np.where(brain, 7.0, 0.0)[..., None], brain)
    assert np.all(flat == 0)
    with pytest.raises(InputError, match="at least one brain voxel"):
        percentile_to_unit(image, np.zeros(brain.shape, bool))
    # The older mapping: +-5 z onto [0, 1], 0 at 0.5.
    np.testing.assert_allclose(zscore_to_unit(np.array([-7.0, -5.0, 0.0, 2.5, 9.0])), [0, 0, 0.5, 0.75, 1])


def _brain_spread(images, brain):
    """Per contrast (std, 95th - 5th percentile) of the brain voxels of slices in [0, 1]."""
    out = []
    for k in range(images.shape[-1]):
        values = images[..., k][brain]
        p5, p95 = np.percentile(values, [5, 95])
        out.append((float(values.std()), float(p95 - p5)))
    return out


def _unit_slices(case, mr_norm):
    """The training path's slices of `case` at its own size (240 px: no padding, no resizing)."""
    cfg = DataConfig(name="brats", image_size=case.shape[1], mr_norm=mr_norm)
    slices = slices_from_cases([case], cfg, "test")
    keep = select_slices(case.mask, case.num_slices, cfg.empty_slice_fraction)
    np.testing.assert_array_equal(slices.slice_index, keep)
    return slices.images, brain_of(case.image[keep])


# Brats18_2013_20_1: a training case (its FLAIR covers only part of the brain); TCIA10_639_1:
# saturated at 32767 in all four contrasts as shipped.
@pytest.mark.parametrize("case_id", ["Brats18_2013_20_1", "Brats18_TCIA10_639_1"])
def test_brats2018_percentile_mapping_shows_the_anatomy(shared_data, case_id):
    """Raw int16 BraTS 2018: the brain spreads over [0, 1] (the z-score path kept it at 0.4-0.6)."""
    (case,) = load_brats_cases(shared_data / "brats" / "brats2018_4contrast", case_ids=[case_id])
    assert case.channel_names == ("t1", "t1ce", "t2", "flair")
    images, brain = _unit_slices(case, "percentile")
    assert images.min() >= 0 and images.max() <= 1 and np.all(images[~brain] == 0)
    for c, (std, spread) in zip(case.channel_names, _brain_spread(images, brain)):
        assert std > 0.12 and spread > 0.4, (c, std, spread)
    old, _ = _unit_slices(case, "zscore")
    assert np.all(old[~brain] == 0.5)  # the old background: mid grey
    for c, (std, spread) in zip(case.channel_names, _brain_spread(old, brain)):
        assert std < 0.12 and spread < 0.42, (c, std, spread)


def test_brats2015_zscored_on_disk_gets_the_same_spread(brats2015):
    """The DeepMedic copy (already z-scored on disk) comes out like the raw 2018 cases."""
    root, cases = brats2015
    case = {c.patient_id: c for c in cases}["brats_2013_pat0005_1"]
    images, brain = _unit_slices(case, "percentile")
    assert images.min() >= 0 and images.max() <= 1 and np.all(images[~brain] == 0)
    for c, (std, spread) in zip(case.channel_names, _brain_spread(images, brain)):
        assert std > 0.12 and spread > 0.4, (c, std, spread)
    old, _ = _unit_slices(case, "zscore")
    for c, (std, spread) in zip(case.channel_names, _brain_spread(old, brain)):
        assert std < 0.12 and spread < 0.42, (c, std, spread)


def test_phantom_goes_through_the_same_mapping():
    cases = brain_phantom_cases(n_patients=2, image_size=32, n_slices=12, seed=0)
    cfg = DataConfig(name="phantom-brain", image_size=32)
    assert cfg.mr_norm == "percentile" and cfg.mr_percentiles == [0.5, 99.5]
    slices = slices_from_cases(cases, cfg, "phantom")
    brain = np.concatenate([brain_of(c.image[select_slices(c.mask, c.num_slices, cfg.empty_slice_fraction)])
                            for c in cases])
    assert np.all(slices.images[~brain] == 0) and slices.images.max() <= 1
    for std, spread in _brain_spread(slices.images, brain):
        assert std > 0.12 and spread > 0.4
    flair = slices.images[..., 3]
    assert flair[slices.masks == 2].mean() > flair[brain & (slices.masks == 0)].mean() + 0.1  # oedema bright
    # The window is the whole volume's: a slice does not change with the slices kept beside it.
    few = slices_from_cases(cases[:1], DataConfig(name="phantom-brain", image_size=32, max_slices_per_case=2), "p")
    first = slices.subset(np.flatnonzero(slices.patient_ids == cases[0].patient_id))
    for image, z in zip(few.images, few.slice_index):
        np.testing.assert_array_equal(image, first.images[first.slice_index == z][0])


def test_named_brats2018_source_has_the_manifests_split_and_four_contrasts(shared_data, monkeypatch):
    """`--data brats2018`: the twelve 2018 cases, split 9 / 3 by patient as the shared MANIFEST says."""
    from tfganaug.data.segsets import load_segsets
    from tfganaug.data.sources.brats import BRATS2018_SPLIT
    monkeypatch.setenv("TFGANAUG_DATA", str(shared_data))
    sets = load_segsets(DataConfig(name="brats2018", image_size=32, max_slices_per_case=4))
    assert sorted(set(sets["train"].patient_ids)) == sorted(BRATS2018_SPLIT["train"])
    assert sorted(set(sets["val"].patient_ids)) == sorted(BRATS2018_SPLIT["val"])
    assert not set(sets["train"].patient_ids) & set(sets["val"].patient_ids)
    assert sets["train"].channel_names == ("t1", "t1ce", "t2", "flair") and sets["train"].images.shape[1:] == (32, 32, 4)
    assert sets["train"].class_names == CLASS_NAMES and set(np.unique(sets["train"].masks)) <= {0, 1, 2, 3}
