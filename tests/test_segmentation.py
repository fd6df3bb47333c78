"""Segmentation stages: slices from cases, Son et al.'s settings, scores against hand counts,
train-seg / evaluate / export end to end on a tiny real-format data set (an .npz written
here), and bad synthetic sets refused before a run folder exists."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli.main import main
from tfganaug import config
from tfganaug.data.cases import Case
from tfganaug.data.segsets import SegSet, load_segsets, select_slices, slices_from_cases
from tfganaug.errors import ConfigError, InputError
from tfganaug.stages.export import export_run
from tfganaug.fsutil import slug
from tfganaug.stages.evaluate import (evaluate_seg, evaluation_name, format_seg_summary, score_segmentation,
                                      summarize_seg)
from tfganaug.stages.train_seg import train_seg
from tfganaug.synthetic import load_seg_synthetic, write_seg_synthetic
from tfganaug.tasks.segmenter import SegLoss, build_segmenter, decode

NAMES = ("background", "kidney", "tumour")


def blobs(n=40, size=16, seed=0):
    """Bright discs (kidney) with a brighter core (tumour) on noise; 4 slices per patient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 1), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(5, size - 5, 2)
        r = rng.uniform(2.5, 4.5)
        d = (yy - cy) ** 2 + (xx - cx) ** 2
        masks[i][d < r * r] = 1
        masks[i][d < (r / 2) ** 2] = 2
        images[i, ..., 0] = 0.2 + 0.4 * (d < r * r) + 0.3 * (d < (r / 2) ** 2) + rng.normal(0, 0.03, (size, size))
    return np.clip(images, 0, 1), masks, np.array([f"p{i // 4:02d}" for i in range(n)])


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "seg.npz"
    images, masks, pids = blobs()
    np.savez(path, images=images, masks=masks, patient_ids=pids, class_names=np.array(NAMES))
    return path


SEG = {"unet": "kits_light", "base_filters": 4, "depth": 2, "padding": "same", "epochs": 2, "batch_size": 8,
       "steps_per_epoch": 3}


def seg_cfg(npz, **seg):
    return config.preset("cpu_unet_kits", data={"name": str(npz), "image_size": 16}, seg={**SEG, **seg})


def test_select_slices_keeps_all_foreground_and_a_share_of_empty():
    mask = np.zeros((20, 4, 4), np.uint8)
    mask[5:11, 1, 1] = 1  # 6 slices with foreground
    keep = select_slices(mask, 20, 0.25)
    assert set(range(5, 11)) <= set(keep.tolist())
    assert len(keep) == 8  # 6 foreground + 2 empty = 25 % empty
    assert len(select_slices(mask, 20, 0.0)) == 6
    assert len(select_slices(mask, 20, 0.25, max_slices=4)) == 4


def test_slices_from_cases_windows_hu_pads_to_square_and_rescales_spacing():
    image = np.full((3, 8, 16, 1), -1000.0, np.float32)
    image[:, 2:6, 4:12] = 200.0  # 200 HU: the top of the WW 400 / WL 0 window
    mask = np.zeros((3, 8, 16), np.uint8)
    mask[:, 3:5, 6:10] = 1
    case = Case("p1", image, mask, (2.0, 0.5, 0.5), NAMES)
    s = slices_from_cases([case], config.DataConfig(image_size=16, empty_slice_fraction=0.0), "test")
    assert s.images.shape == (3, 16, 16, 1) and s.masks.shape == (3, 16, 16)
    assert s.images.max() == 1.0 and s.images.min() == 0.0
    # padded rows (top and bottom quarter) are air and background; the organ moved down by 4 rows
    assert s.masks[:, :4].max() == 0 and s.images[:, :4].max() == 0 and s.masks[0, 7, 6] == 1
    np.testing.assert_allclose(s.spacing_mm[0], [2.0, 0.5, 0.5])
    small = slices_from_cases([case], config.DataConfig(image_size=8, empty_slice_fraction=0.0), "test")
    np.testing.assert_allclose(small.spacing_mm[0], [2.0, 1.0, 1.0])  # 16 px -> 8 px: pixels twice as large
    assert small.masks.max() == 1 and small.masks.dtype == np.uint8


def test_son_settings_parse():
    assert config.parse_setting("300F+100R") == {"R": 1.0, "F": 3.0, "A": 0.0}
    assert config.parse_setting("100%F") == {"R": 0.0, "F": 1.0, "A": 0.0}
    assert config.parse_setting("300%A+100%R") == {"R": 1.0, "F": 0.0, "A": 3.0}
    for bad in ("300X", "F", "300A", ""):
        with pytest.raises(ValueError):
            config.parse_setting(bad)
    with pytest.raises(ConfigError, match="seg.setting"):
        config.preset("cpu_unet_brats", seg={"setting": "12Q"})


def test_scores_against_hand_counts():
    truth = np.zeros((3, 4, 4), np.uint8)
    pred = np.zeros((3, 4, 4), np.uint8)
    truth[0, :2, :2] = 1          # 4 px kidney
    pred[0, :2, :1] = 1           # 2 px, all inside: Dice 2*2/(4+2) = 2/3
    truth[1, 0, 0] = 2            # tumour missed: tumour Dice 0 in slice 1
    # slice 2: empty in both -> left out of the per-slice means
    s = SegSet(np.zeros((3, 4, 4, 1), np.float32), truth, np.array(["a", "a", "b"]), np.array([0, 1, 0]),
               np.array([[2.0, 1.0, 1.0]] * 3), NAMES, ("CT",), "hand")
    r = score_segmentation(s, pred)
    assert r["per_slice"]["dice"]["kidney"] == pytest.approx(2 / 3)
    assert r["per_slice"]["n_scored"] == {"kidney": 1, "tumour": 1}
    assert r["per_slice"]["dice"]["tumour"] == 0.0
    # case a: kidney 4 px true, 2 px predicted, 2 mm^3 voxels -> volumes 8 and 4 mm^3
    a = r["cases"]["a"]
    assert a["dice"]["kidney"] == pytest.approx(2 / 3)
    assert a["volume_true_ml"]["kidney"] == pytest.approx(0.008)
    assert a["relative_volume_error_percent"]["kidney"] == pytest.approx(-50.0)
    assert np.isnan(r["cases"]["b"]["dice"]["kidney"])  # empty in both: not scored
    assert r["per_case"]["dice"]["kidney"] == pytest.approx(2 / 3)


def test_brats_regions_per_case_follow_the_brats_convention():
    """Case a: oedema 4 px found, enhancing 1 of 2 px; case b: oedema only, found exactly, so
    tumour core and enhancing are absent from both maps there: 1 (BraTS), not left out."""
    truth, pred = np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 4), np.uint8)
    truth[0, 0, :] = pred[0, 0, :] = 2
    truth[0, 1, :2] = 3
    pred[0, 1, 0] = 3
    truth[1, 2, :3] = pred[1, 2, :3] = 2
    s = SegSet(np.zeros((2, 4, 4, 1), np.float32), truth, np.array(["a", "b"]), np.array([0, 0]),
               np.ones((2, 3)), ("background", "necrosis", "edema", "enhancing"), ("flair",), "hand")
    r = score_segmentation(s, pred)
    # a: WT 6 true, 5 predicted, 5 overlap -> 10/11; TC = ET: 2 true, 1 predicted, 1 overlap -> 2/3
    assert r["cases"]["a"]["brats_regions"] == pytest.approx(
        {"whole_tumour": 10 / 11, "tumour_core": 2 / 3, "enhancing_tumour": 2 / 3})
    assert r["cases"]["b"]["brats_regions"] == {"whole_tumour": 1.0, "tumour_core": 1.0, "enhancing_tumour": 1.0}
    assert r["per_case"]["brats_regions"] == pytest.approx(
        {"whole_tumour": (10 / 11 + 1) / 2, "tumour_core": (2 / 3 + 1) / 2, "enhancing_tumour": (2 / 3 + 1) / 2})
    assert r["per_case"]["brats_regions_absent"] == {"whole_tumour": 0, "tumour_core": 1, "enhancing_tumour": 1}
    assert r["per_case"]["dice"]["enhancing"] == pytest.approx(2 / 3)  # per label: absent in both is left out
    summary = summarize_seg([r, r])["per_case"]["brats_regions"]
    assert summary["tumour_core"]["mean"] == pytest.approx(5 / 6) and summary["tumour_core"]["n"] == 2
    assert "tumour_core" in format_seg_summary([{**r, "data": "hand", "split": "test"}])


def test_folder_and_file_names_keep_their_spelling():
    """Existing study and run folders are found again: condition folders and evaluation files."""
    assert [slug(c) for c in ("light, real+fake 0.2", "cyclegan, 3-D", "300F+100R")] == \
        ["light__real+fake_0.2", "cyclegan__3-D", "300F+100R"]
    assert evaluation_name() == "evaluation.json"
    assert evaluation_name("totalseg-native", True) == "evaluation-totalseg-native-volumes.json"
    assert evaluation_name("/data/my set.v2.npz") == "evaluation-my_set_v2_npz.json"
    assert evaluation_name("/data/_x_") == "evaluation-_x_.json"


def test_valid_padding_segmenter_covers_the_image_and_decodes_sigmoid():
    model = build_segmenter(config.SegConfig(unet="kits_light", base_filters=4, depth=2), 3, 20, 1)
    assert model.output_shape == (None, 20, 20, 2)
    probs = np.zeros((1, 2, 2, 2), np.float32)
    probs[0, 0, 0] = [0.9, 0.2]
    probs[0, 0, 1] = [0.7, 0.8]
    probs[0, 1, 0] = [0.4, 0.3]
    assert decode(probs, "sigmoid").numpy().tolist() == [[[1, 2], [0, 0]]]
    loss = SegLoss(3, "sigmoid")
    perfect = np.stack([(np.arange(4) == 1), (np.arange(4) == 2)], -1).reshape(1, 2, 2, 2).astype(np.float32)
    assert float(loss(np.array([[[0, 1], [2, 3 - 3]]]), perfect)) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def seg_run(npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seg"
    train_seg(seg_cfg(npz, epochs=6, steps_per_epoch=6), out, verbose=0)
    return out


def test_train_and_evaluate_learns_the_blobs(seg_run):
    result = evaluate_seg(seg_run)
    assert json.loads((seg_run / "evaluation.json").read_text())["per_slice"]["dice"] == result["per_slice"]["dice"]
    rows = [json.loads(l) for l in (seg_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["loss"] < rows[0]["loss"]  # soft Dice goes down on an easy task
    assert result["per_slice"]["dice"]["kidney"] > 0.2


def test_synthetic_sets_mix_and_son_settings(npz, tmp_path):
    images, masks, _ = blobs(40, seed=3)
    synth = write_seg_synthetic(tmp_path / "synth", images, masks, NAMES, ("c0",), {"arch": "test"})
    like = load_segsets(seg_cfg(npz).data)["train"]
    x, y = load_seg_synthetic(synth, like, 16)
    assert x.shape == (40, 16, 16, 1) and y.dtype == np.int32
    run = train_seg(seg_cfg(npz, synthetic=str(synth), setting="100F+100R", epochs=1), tmp_path / "mix", verbose=0)
    status = run.status()
    assert status["n_synthetic"] == status["n_train_real"] and status["synthetic_ratio"] == pytest.approx(0.5)
    # 300F needs three times the real set: refused, before any run folder exists
    with pytest.raises(InputError, match="at least"):
        train_seg(seg_cfg(npz, synthetic=str(synth), setting="300F+100R"), tmp_path / "no", verbose=0)
    assert not (tmp_path / "no").exists()


def test_synthetic_set_of_other_classes_is_refused(npz, tmp_path):
    images, masks, _ = blobs(4)
    synth = write_seg_synthetic(tmp_path / "s", images, masks, ("background", "liver", "spleen"), ("c0",), {})
    with pytest.raises(InputError, match="class_names"):
        train_seg(seg_cfg(npz, synthetic=str(synth), synthetic_ratio=0.3), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
    (tmp_path / "s" / "images.npz").write_bytes(b"changed")
    with pytest.raises(InputError, match="sha256"):
        load_seg_synthetic(tmp_path / "s", None, 16)


def test_cli_train_seg_evaluate_and_bad_data(npz, tmp_path, capsys):
    def cli(*args):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        return info.value.code, *capsys.readouterr()

    code, out, err = cli("train-seg", "--data", npz, "--image-size", 16, "--epochs", 1, "--batch-size", 8,
                         "--seeds", "0,1", "--quiet", "--out", tmp_path / "runs")
    assert code == 0, err
    code, out, err = cli("evaluate", tmp_path / "runs")
    assert code == 0, err
    assert "kidney" in out and "2 run(s)" in out
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 8, 8)), masks=np.full((2, 8, 8), 5), class_names=np.array(NAMES))
    code, out, err = cli("train-seg", "--data", bad, "--out", tmp_path / "x")
    assert code == 2 and "labels 0..2" in err and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_export_segmenter_fresh_process(seg_run, tmp_path):
    """serving_default takes slices of any size (this run trained on an .npz already in [0, 1]:
    padding and resizing only) and answers on their grid; `preprocessed` takes 16 px slices."""
    from tfganaug.data.raw_input import request_to_unit, to_input_grid
    from tfganaug.stages.evaluate import load_segmenter
    from tfganaug.runs import RunFolder
    folder = export_run(seg_run, tmp_path / "sm")
    info = json.loads((folder / "assets.extra" / "tfganaug_export.json").read_text())
    assert info["units"] == "unit" and list(info["other_signatures"]) == ["preprocessed"]
    assert info["inputs"]["image"]["shape"] == [None, None, None, 1]
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    raw = rng.uniform(0, 1, (2, 23, 11, 1)).astype(np.float32)
    np.savez(tmp_path / "x.npz", preprocessed=image, serving_default=raw)
    code = ("import numpy as np, tensorflow as tf, sys\n"
            f"m = tf.saved_model.load({str(folder)!r})\n"
            "x, out = np.load(sys.argv[1]), {}\n"
            "for sig in ('preprocessed', 'serving_default'):\n"
            "    r = m.signatures[sig](image=tf.constant(x[sig]))\n"
            "    out.update({f'{sig}/{k}': v.numpy() for k, v in r.items()})\n"
            "np.savez(sys.argv[2], **out)\n")
    subprocess.run([sys.executable, "-c", code, tmp_path / "x.npz", tmp_path / "out.npz"],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    got = np.load(tmp_path / "out.npz")
    run, cfg = RunFolder.load(seg_run)
    model = load_segmenter(run)
    want = np.asarray(model(image), np.float32)
    np.testing.assert_allclose(got["preprocessed/probabilities"], want, atol=1e-5)
    assert np.array_equal(got["preprocessed/label_map"], decode(want, "sigmoid").numpy())
    want = to_input_grid(model(request_to_unit(raw, "unit", cfg.data)), 23, 11)
    assert got["serving_default/probabilities"].shape == (2, 23, 11, 2)
    np.testing.assert_allclose(got["serving_default/probabilities"], want, atol=1e-5)
    assert np.array_equal(got["serving_default/label_map"], decode(want, "sigmoid").numpy())


def test_batch_dice_does_not_reward_predicting_nothing():
    """Per-image soft Dice scores an empty channel as perfect when nothing is predicted; over a
    batch where one image has the structure, predicting nothing must cost almost the full loss."""
    masks = np.zeros((2, 8, 8), np.int32)
    masks[0, 2:5, 2:5] = 1
    masks[0, 6, 6] = 2
    nothing = np.zeros((2, 8, 8, 2), np.float32)
    per_image = float(np.mean(SegLoss(3, "sigmoid", batch_dice=False)(masks, nothing)))
    batch = float(np.mean(SegLoss(3, "sigmoid", batch_dice=True)(masks, nothing)))
    assert batch > 0.6 > 0.5 > per_image  # per image: image 1 is "perfect" on both channels


def test_kfold_by_patient_covers_every_patient_once_as_test(npz):
    tests = []
    for fold in range(3):
        cfg = config.preset("cpu_unet_kits", data={"name": str(npz), "image_size": 16, "folds": 3, "fold": fold})
        sets = load_segsets(cfg.data)
        train, val, test = (set(sets[s].patient_ids.tolist()) for s in ("train", "val", "test"))
        assert not (train & test) and not (val & test) and not (train & val) and val
        tests.append(test)
    assert set().union(*tests) == {f"p{i:02d}" for i in range(10)} and sum(map(len, tests)) == 10
    with pytest.raises(ConfigError, match="data.fold"):
        config.preset("cpu_unet_kits", data={"folds": 3, "fold": 3})


def test_train_test_only_split_as_son_et_al(npz):
    cfg = config.preset("cpu_unet_kits", data={"name": str(npz), "image_size": 16, "val_fraction": 0.1,
                                               "test_fraction": 0.0})
    sets = load_segsets(cfg.data)
    assert sets["test"] is sets["val"] or np.array_equal(sets["test"].patient_ids, sets["val"].patient_ids)
    assert not set(sets["train"].patient_ids) & set(sets["test"].patient_ids)
    assert len(set(sets["test"].patient_ids)) == 1  # 10 % of 10 patients


def test_every_data_source_states_its_licence_and_where_its_test_patients_come_from(tmp_path):
    """Report figures follow the data's licence (studies.base.figure_home): only permissively
    licensed sources' images may be committed; a path (the user's data) is never assumed free."""
    from tfganaug.data.sources import ROI_SOURCES, SOURCES, licence, permissive, test_patients
    from tfganaug.studies.base import figure_home, figure_link
    for name in (*SOURCES.names(), *ROI_SOURCES):
        assert licence(name) and test_patients(name)
    # a joined source names each part's statement (each part is split on its own)
    assert test_patients("ircadb+curvas") == f"`ircadb`: {test_patients('ircadb')}; `curvas`: {test_patients('curvas')}"
    assert [n for n in (*SOURCES.names(), *ROI_SOURCES) if not permissive(n)] == [
        "kits19", "kits19-labels", "ircadb", "curvas", "curvas-val", "brats", "brats2018"]
    assert not permissive(str(tmp_path / "my-scans"))
    report = tmp_path / "report"
    assert figure_home(tmp_path, report, ["organamnist", None]) == (report, [])
    home, note = figure_home(tmp_path, report, ["phantom-kidney", "brats2018"])
    assert home == tmp_path / "figures" and home.is_dir() and "brats2018 (BraTS data terms" in note[0]
    assert figure_link("a.png", home, report).startswith(f"`{home}") and figure_link("a.png", report, report) == \
        "![a.png](a.png)"
