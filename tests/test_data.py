import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from tfganaug.config import DataConfig
from tfganaug.data import phantom
from tfganaug.data.datasets import kfold_by_patient, load_rois, split_by_patient, subsample_per_class
from tfganaug.errors import InputError


def test_phantom_is_deterministic_and_has_three_distinct_classes():
    a = phantom.make_lesion_rois(30, 32, seed=5)
    b = phantom.make_lesion_rois(30, 32, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    images, labels, pids = a
    assert images.shape[1:] == (32, 32, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels) == {0, 1, 2}
    # Each patient carries one lesion type.
    for p in set(pids):
        assert len(set(labels[pids == p])) == 1
    # Class appearance differs: cysts are the darkest centres, hemangiomas have the brightest spots.
    centre = images[:, 12:20, 12:20, 0].mean(axis=(1, 2))
    peak = images[..., 0].max(axis=(1, 2))
    assert centre[labels == 0].mean() < centre[labels == 1].mean()
    assert peak[labels == 2].mean() > peak[labels == 0].mean()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=5, max_size=200), st.integers(0, 10_000))
def test_split_by_patient_never_shares_a_patient(pids, seed):
    pids = np.array([f"p{p}" for p in pids])
    parts = split_by_patient(pids, (0.6, 0.2, 0.2), seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(pids)))
    sides = [set(pids[p]) for p in parts]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_kfold_by_patient_covers_every_roi_once():
    pids = np.repeat(np.arange(20), 3)
    folds = kfold_by_patient(pids, k=3, seed=1)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests.tolist()) == list(range(60))
    for train, test in folds:
        assert not set(pids[train]) & set(pids[test])


def test_subsample_per_class():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 30)
    keep = subsample_per_class(labels, 10, seed=0)
    assert np.bincount(labels[keep]).tolist() == [10, 5, 10]


def test_phantom_splits_are_patient_disjoint_and_subsampled():
    sets = load_rois(DataConfig(image_size=16, n_phantom_patients=60, train_per_class=5, seed=2))
    assert sets["train"].class_counts() == [5, 5, 5]
    train_p, test_p = set(sets["train"].patient_ids), set(sets["test"].patient_ids)
    assert not train_p & test_p and not train_p & set(sets["val"].patient_ids)


def test_organamnist_classes_are_selected_and_relabelled(shared_data, monkeypatch):
    monkeypatch.setenv("TFGANAUG_DATA", str(shared_data))
    sets = load_rois(DataConfig(name="organamnist", classes=["liver", "kidney-left", "spleen"],
                                image_size=32, train_per_class=20))
    assert sets["train"].class_names == ("liver", "kidney-left", "spleen")
    assert sets["train"].class_counts() == [20, 20, 20]
    # Official val split counts (MANIFEST): liver 1033, kidney-left 568, spleen 511.
    assert sets["val"].class_counts() == [1033, 568, 511]
    assert sets["val"].images.shape[1:] == (32, 32, 1)
    with pytest.raises(InputError, match="expected class names as some of bladder"):
        load_rois(DataConfig(name="organamnist", classes=["livr"]))


def test_user_npz_and_png_tree(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((12, 20, 20)).astype(np.float32)
    labels = np.arange(12) % 2
    np.savez(tmp_path / "rois.npz", images=images, labels=labels, patient_ids=np.arange(12) // 2,
             class_names=np.array(["benign", "malignant"]))
    sets = load_rois(DataConfig(name=str(tmp_path / "rois.npz"), image_size=16, val_fraction=0.25,
                                test_fraction=0.25))
    assert sets["train"].class_names == ("benign", "malignant")
    assert sets["train"].images.shape[1:] == (16, 16, 1)
    tree = tmp_path / "tree"
    for c in ("cyst", "hemangioma"):
        (tree / c).mkdir(parents=True)
        for p in range(4):
            Image.fromarray((rng.random((24, 24)) * 255).astype(np.uint8)).save(tree / c / f"pt{p}{c}_a.png")
    sets = load_rois(DataConfig(name=str(tree), image_size=16, val_fraction=0.25, test_fraction=0.25))
    assert sets["train"].class_names == ("cyst", "hemangioma")


def test_user_data_errors_name_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", pictures=np.zeros((3, 8, 8)))
    with pytest.raises(InputError, match=r"bad.npz: expected an ROI archive as arrays 'images', 'labels', got no images, labels"):
        load_rois(DataConfig(name=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "nan.npz", images=np.full((4, 8, 8), np.nan), labels=np.zeros(4, int))
    with pytest.raises(InputError, match="finite values"):
        load_rois(DataConfig(name=str(tmp_path / "nan.npz")))
    with pytest.raises(InputError, match="no such file or folder"):
        load_rois(DataConfig(name=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="one sub-folder per class"):
        load_rois(DataConfig(name=str(tmp_path / "empty")))
