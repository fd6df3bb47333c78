"""KiTS sources: the real shared KiTS19 files (../shared/data/kits19), bad inputs, the kidney
phantom and the label-map perturbation."""
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tfganaug.data.cases import Case
from tfganaug.data.datasets import data_root
from tfganaug.data.kits import (CLASS_NAMES, kidney_phantom_cases, load_kits_cases, load_png_pairs,
                                perturb_label_map)
from tfganaug.errors import InputError

# From ../shared/data/kits19/MANIFEST.md: slices and spacing (z, y, x) mm.
MANIFEST = {"case_00007": (61, (3.0, 0.94, 0.94)), "case_00010": (50, (3.0, 0.76, 0.76))}
# The affine KiTS19 stores: array axes (z, y, x) -> ("I", "P", "L").
KITS_AFFINE = np.array([[0, 0, -0.8, 0], [0, -0.8, 0, 0], [-3.0, 0, 0, 0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def kits(shared_data):
    """The shared KiTS19 folder, found as the package finds it (shared_data skips when absent)."""
    assert data_root().resolve() == shared_data.resolve()
    return data_root() / "kits19"


@pytest.fixture(scope="module")
def label_cases(kits):
    return load_kits_cases(kits, case_ids=["case_00007", 10])


@pytest.fixture(scope="module")
def png_cases(kits):
    return load_png_pairs(kits / "png_slices")


def test_label_volumes_load_as_axial_zyx(label_cases):
    assert [c.patient_id for c in label_cases] == ["case_00007", "case_00010"]
    for case in label_cases:
        n_slices, spacing = MANIFEST[case.patient_id]
        assert isinstance(case, Case) and case.image is None and case.class_names == CLASS_NAMES
        assert case.mask.shape == (n_slices, 512, 512) and case.mask.dtype == np.uint8
        assert case.spacing_mm == pytest.approx(spacing, abs=0.01)
        assert set(np.unique(case.mask)) == {0, 1, 2}
        assert case.meta["orientation"] == ("S", "P", "L")
        assert case.meta["original_orientation"] == ("I", "P", "L")
        # Axial slices, radiological view: kidneys in the posterior half (rows increase towards
        # the back), one on each side of the midline, never at the edge of the field of view.
        z, y, x = np.nonzero(case.mask)
        assert 256 < y.mean() < 400 and y.min() > 150
        left, right = (x < 256).sum(), (x >= 256).sum()
        assert min(left, right) > 0.25 * max(left, right)
        # Some slices of each scan hold no kidney.
        assert (case.mask.reshape(n_slices, -1).max(axis=1) == 0).any()
        assert case.meta["clinical"]["case_id"] == case.patient_id


def test_kits_layout_with_imaging_aligns_image_and_mask(tmp_path):
    """case_XXXXX/{imaging,segmentation}.nii.gz stored as KiTS does: HU image, mask on it."""
    raw_hu = np.full((4, 6, 5), -1000, np.int16)
    raw_seg = np.zeros((4, 6, 5), np.uint8)
    raw_hu[0, 2, 1], raw_seg[0, 2, 1] = 180, 1  # first stored slice = most superior ("I" axis)
    raw_hu[3, 4, 3], raw_seg[3, 4, 3] = 60, 2
    folder = tmp_path / "case_00042"
    folder.mkdir()
    nib.save(nib.Nifti1Image(raw_hu, KITS_AFFINE), folder / "imaging.nii.gz")
    nib.save(nib.Nifti1Image(raw_seg, KITS_AFFINE), folder / "segmentation.nii.gz")
    (case,) = load_kits_cases(tmp_path)
    assert case.patient_id == "case_00042" and case.units == "HU" and case.channel_names == ("CT",)
    assert case.image.shape == (4, 6, 5, 1) and case.mask.shape == (4, 6, 5)
    assert case.spacing_mm == pytest.approx((3.0, 0.8, 0.8))
    np.testing.assert_array_equal(case.mask, raw_seg[::-1])  # z now runs feet -> head
    np.testing.assert_array_equal(case.image[..., 0], raw_hu[::-1])
    assert case.image[case.mask == 1, 0].tolist() == [180.0]
    assert case.image[case.mask == 2, 0].tolist() == [60.0]


def test_label_7_and_missing_cases_are_input_errors(tmp_path):
    folder = tmp_path / "segmentations" / "case_00003"
    folder.mkdir(parents=True)
    seg = np.zeros((3, 4, 4), np.uint8)
    seg[1, 1, 1] = 7
    nib.save(nib.Nifti1Image(seg, KITS_AFFINE), folder / "segmentation.nii.gz")
    with pytest.raises(InputError, match=r"segmentation\.nii\.gz.*unexpected values \[7\]") as err:
        load_kits_cases(tmp_path)
    assert err.value.path.endswith("case_00003/segmentation.nii.gz")
    with pytest.raises(InputError, match="missing"):
        load_kits_cases(tmp_path, case_ids=[4])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no cases") as err:
        load_kits_cases(tmp_path / "empty")
    assert err.value.path == str(tmp_path / "empty")
    with pytest.raises(InputError, match="nothing at that path"):
        load_kits_cases(tmp_path / "absent")


def test_png_pairs_group_by_case(png_cases):
    assert [(c.patient_id, c.num_slices) for c in png_cases] == [("10036", 16), ("10037", 3), ("10038", 1)]
    for case in png_cases:
        assert case.units == "grey8" and case.image.shape == (case.num_slices, 512, 512, 1)
        assert case.spacing_mm == (1.0, 1.0, 1.0) and case.meta["spacing_known"] is False
        assert case.meta["slice_numbers"] == sorted(case.meta["slice_numbers"])
        assert 0 <= case.image.min() and case.image.max() <= 255
    assert png_cases[1].meta["slice_numbers"] == [29, 35, 47]
    assert set(np.unique(np.concatenate([c.mask.ravel() for c in png_cases]))) == {0, 1, 2}
    # 10036_327 holds only tumour (red); 10036_103 only kidney (blue).
    first = png_cases[0]
    assert set(np.unique(first.mask[-1])) == {0, 2} and set(np.unique(first.mask[0])) == {0, 1}


def _copy_pair(kits, tmp_path, name="10037_29.png"):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir(exist_ok=True)
        shutil.copy(kits / "png_slices" / sub / name, tmp_path / sub / name)


def test_png_bad_colour_missing_mask_and_empty_folder(kits, tmp_path):
    _copy_pair(kits, tmp_path)
    mask_path = tmp_path / "masks" / "10037_29.png"
    rgb = np.array(Image.open(mask_path))
    rgb[:3, :3] = (0, 255, 0)
    Image.fromarray(rgb).save(mask_path)
    with pytest.raises(InputError, match=r"\(0, 0, 255\) blue kidney.*\(0, 255, 0\) x9") as err:
        load_png_pairs(tmp_path)
    assert err.value.path == str(mask_path)

    mask_path.unlink()
    with pytest.raises(InputError, match="masks/10037_29.png") as err:
        load_png_pairs(tmp_path)
    assert err.value.path == str(tmp_path / "images" / "10037_29.png")

    (tmp_path / "images" / "10037_29.png").unlink()
    with pytest.raises(InputError, match="no PNG files"):
        load_png_pairs(tmp_path)


def test_png_single_channel_integer_masks(kits, tmp_path):
    _copy_pair(kits, tmp_path)
    mask_path = tmp_path / "masks" / "10037_29.png"
    rgb = np.array(Image.open(mask_path))
    labels = np.zeros(rgb.shape[:2], np.uint8)
    labels[rgb[..., 2] == 255] = 1
    labels[rgb[..., 0] == 255] = 2
    Image.fromarray(labels).save(mask_path)
    (case,) = load_png_pairs(tmp_path)
    np.testing.assert_array_equal(case.mask[0], labels)
    labels[0, 0] = 5
    Image.fromarray(labels).save(mask_path)
    with pytest.raises(InputError, match=r"unexpected values \[5\]"):
        load_png_pairs(tmp_path)


def test_kidney_phantom_is_deterministic_and_plausible():
    cases = kidney_phantom_cases(n_patients=3, image_size=64, n_slices=16, seed=7)
    again = kidney_phantom_cases(n_patients=2, image_size=64, n_slices=16, seed=7)
    for a, b in zip(cases, again):  # patient p depends only on (seed, p)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.spacing_mm == b.spacing_mm
    other = kidney_phantom_cases(n_patients=1, image_size=64, n_slices=16, seed=8)[0]
    assert not np.array_equal(other.mask, cases[0].mask)
    for case in cases:
        assert case.units == "HU" and case.image.shape == (16, 64, 64, 1) and case.image.dtype == np.float32
        hu, mask = case.image[..., 0], case.mask
        assert np.median(hu[:, 0, :]) < -900  # air at the edge
        assert 120 < np.median(hu[mask == 1]) < 220  # enhancing kidney
        has_kidney = mask.reshape(16, -1).max(axis=1) > 0
        assert has_kidney.any() and not has_kidney.all()
    default = kidney_phantom_cases()
    assert len(default) == 8 and default[0].shape == (24, 128, 128)
    assert len({c.spacing_mm for c in default}) == 8  # sizes vary per patient
    tumours = [c for c in default if (c.mask == 2).any()]
    assert tumours, "some phantom patients carry a tumour"
    for case in tumours:
        assert 20 < np.median(case.image[case.mask == 2, 0]) < 110


def _touches(a, b):
    return bool(np.any(ndimage.binary_dilation(a, np.ones((3, 3), bool)) & b))


def test_perturb_label_map_valid_changed_deterministic(png_cases):
    maps = [png_cases[0].mask[5], png_cases[1].mask[0], png_cases[0].mask[-1]]
    for mask in maps:
        outs = [perturb_label_map(mask, np.random.default_rng(s)) for s in range(3)]
        for out in outs:
            assert out.shape == mask.shape and out.dtype == np.uint8
            assert set(np.unique(out)) <= {0, 1, 2}
            assert (out == 2).any() == (mask == 2).any()
            assert not np.array_equal(out, mask)
            if _touches(mask == 2, mask == 1):  # an attached tumour stays attached
                pieces, n = ndimage.label(out == 2, np.ones((3, 3), bool))
                assert all(_touches(pieces == i, out == 1) for i in range(1, n + 1))
        assert not np.array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], perturb_label_map(mask, np.random.default_rng(0)))
    with pytest.raises(InputError):
        perturb_label_map(np.full((8, 8), 3, np.uint8), np.random.default_rng(0))


def test_perturb_label_map_keeps_labels_inside_the_body(png_cases):
    """With a body mask, no label lands outside it (here a 'body' that is the left 300 columns)."""
    mask = png_cases[0].mask[5]
    assert (mask[:, 300:] > 0).any()
    body = np.zeros(mask.shape, bool)
    body[:, :300] = True
    out = perturb_label_map(mask, np.random.default_rng(0), body_mask=body, elastic_strength=0.0,
                            flip_prob=0.0)
    assert not out[:, 300:].any() and (out[:, :300] > 0).any()
    for s in range(3):  # warped with the map: the edge moves by a few displacement sigmas at most
        out = perturb_label_map(mask, np.random.default_rng(s), body_mask=body, flip_prob=0.0)
        assert not out[:, 360:].any()
