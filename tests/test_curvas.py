"""The CURVAS source (tfganaug/data/sources/curvas.py) on the real shared PNG pairs, read in place:
colours -> labels, split by case id over the three rater folders, shapes and meta, estimated HU,
malformed pairs, the unscored spleen and the ``ircadb+curvas``-style combination of sources."""
import numpy as np
import pytest
from PIL import Image

from tfganaug.config import DataConfig
from tfganaug.data.abdomen import ABDOMEN_CLASSES
from tfganaug.data.segsets import load_segsets, slices_from_cases
from tfganaug.data.sources import SOURCES, parts_of
from tfganaug.data.sources.curvas import SPLIT, display_to_hu, load_curvas
from tfganaug.errors import InputError
from tfganaug.stages.evaluate import score_segmentation

COLOURS = {"liver": (255, 0, 255), "kidney": (255, 255, 0), "pancreas": (0, 255, 255)}


@pytest.fixture(scope="module")
def curvas(shared_data):
    return shared_data / "curvas"


@pytest.fixture(scope="module")
def cases(curvas):
    return load_curvas(curvas)


@pytest.fixture
def data_root(shared_data, monkeypatch):
    monkeypatch.setenv("TFGANAUG_DATA", str(shared_data))


def test_labels_follow_the_exact_mask_colours(curvas, cases):
    by_id = {c.patient_id: c for c in cases}
    case = by_id["10005"]  # slices with liver, kidney and pancreas
    for z, path in enumerate(case.meta["files"]):
        rgb = np.array(Image.open(path.replace("/images/", "/masks/")).convert("RGB"))
        is_ = {name: (rgb == colour).all(-1) for name, colour in COLOURS.items()}
        np.testing.assert_array_equal(case.mask[z] == 1, is_["liver"])
        np.testing.assert_array_equal(case.mask[z] == 2, is_["kidney"])
        assert (case.mask[z][is_["pancreas"]] == 0).all()
    assert any((np.array(Image.open(p.replace("/images/", "/masks/")).convert("RGB")) == COLOURS["pancreas"])
               .all(-1).any() for p in case.meta["files"])  # the pancreas really was there, and became background


def test_cases_shapes_and_meta(cases):
    assert [c.patient_id for c in cases] == sorted(SPLIT["train"] + SPLIT["val"])
    assert sum(c.num_slices for c in cases) == 88
    for c in cases:
        assert c.image.shape == (c.num_slices, 512, 512, 1) and c.image.dtype == np.float32
        assert c.mask.shape == (c.num_slices, 512, 512) and c.mask.dtype == np.uint8
        assert c.class_names == ABDOMEN_CLASSES and c.units == "HU" and c.domain == "contrast"
        assert c.unlabelled == ("spleen",) and not (c.mask == 3).any()
        assert c.meta["hu_estimated"] and not c.meta["spacing_known"]
        numbers = c.meta["slice_numbers"]
        assert numbers == sorted(numbers) and len(numbers) == c.num_slices
        assert set(c.meta["raters"]) <= {1, 2, 3}
        assert all(f"/annotation-{r}/images/{c.patient_id}_{n}.png" in f
                   for r, n, f in zip(c.meta["raters"], numbers, c.meta["files"]))
    by_id = {c.patient_id: c for c in cases}
    assert sorted(set(by_id["10001"].meta["raters"])) == [1, 2, 3]  # one patient, three rater folders
    liver = np.concatenate([c.image[..., 0][c.mask == 1] for c in cases])
    assert 80 < np.median(liver) < 120  # estimated HU of contrast-enhanced liver (101 when fitted)


def test_split_by_case_id_keeps_each_patient_on_one_side(data_root):
    sets = load_segsets(DataConfig(name="curvas", image_size=32))
    train, val, test = (set(sets[s].patients()) for s in ("train", "val", "test"))
    assert train == set(SPLIT["train"]) and val == test == {"10010", "10013", "10014"}
    assert not train & val
    assert len(sets["train"]) + len(sets["val"]) == 88
    assert sets["train"].images.shape[1:] == (32, 32, 1) and 0 <= sets["train"].images.min() <= 1
    held_out = load_segsets(DataConfig(name="curvas-val", image_size=32))
    assert set(held_out["train"].patients()) | set(held_out["val"].patients()) | set(
        held_out["test"].patients()) == val


def test_display_grey_back_to_estimated_hu():
    grey = np.zeros((64, 64), np.uint8)
    grey[16:48, 16:48] = 100                       # a body ...
    grey[16:48, 16] = grey[16:48, 47] = 0          # ... whose outline has gaps
    grey[28:36, 28:36] = 0                         # fat inside it, clipped to 0 by the display window
    grey[20, 20], grey[40, 40] = 255, 1
    hu = display_to_hu(grey)
    assert hu[0, 0] == -1024.0 and hu[32, 32] == -89.0
    np.testing.assert_allclose([hu[20, 20], hu[40, 40], hu[24, 24]],
                               [290.0, -20.0 + 310.0 / 255, -20.0 + 100 * 310.0 / 255], rtol=1e-6)


def _pair(root, name, grey, rgb, rater=1):
    for sub, array in (("images", grey), ("masks", rgb)):
        (root / f"annotation-{rater}" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / f"annotation-{rater}" / sub / name)


def test_malformed_pairs_are_one_line_naming_the_file(tmp_path):
    grey = np.full((8, 8), 90, np.uint8)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[2:4, 2:4] = COLOURS["liver"]
    _pair(tmp_path, "10001_5.png", grey, rgb)
    assert load_curvas(tmp_path)[0].mask.sum() == 4

    wrong_size = tmp_path / "size"
    _pair(wrong_size, "10001_5.png", grey, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(InputError) as err:
        load_curvas(wrong_size)
    message = str(err.value)
    assert "\n" not in message and "masks/10001_5.png" in message and "size (8, 9)" in message

    unknown = tmp_path / "colour"
    odd = rgb.copy()
    odd[0, 0] = (0, 255, 0)
    _pair(unknown, "10001_5.png", grey, odd)
    with pytest.raises(InputError) as err:
        load_curvas(unknown)
    message = str(err.value)
    assert "\n" not in message and "masks/10001_5.png" in message and "(0, 255, 0) x1" in message

    missing = tmp_path / "missing"
    _pair(missing, "10001_5.png", grey, rgb)
    (missing / "annotation-1" / "masks" / "10001_5.png").unlink()
    with pytest.raises(InputError, match="masks/10001_5.png"):
        load_curvas(missing)


def test_unlabelled_spleen_is_left_out_of_the_dice_not_scored_zero(cases):
    cfg = DataConfig(name="curvas", image_size=32)
    curvas_set = slices_from_cases([c for c in cases if c.patient_id == "10014"], cfg, "curvas")
    pred = curvas_set.masks.copy()
    pred[:, :4, :4] = 3                              # a "spleen" the reference cannot confirm or deny
    result = score_segmentation(curvas_set, pred)
    assert np.isnan(result["per_case"]["dice"]["spleen"]) and result["per_slice"]["n_scored"]["spleen"] == 0
    assert result["per_case"]["dice"]["kidney"] == 1.0 and result["unlabelled"] == {"10014": ["spleen"]}
    labelled = curvas_set.subset(np.arange(len(curvas_set)))
    labelled.unlabelled = {}
    assert score_segmentation(labelled, pred)["per_case"]["dice"]["spleen"] == 0.0


def test_sources_joined_with_plus_split_each_part_alone(data_root, tmp_path):
    assert parts_of("phantom-abdomen+curvas") == ["phantom-abdomen", "curvas"]
    assert parts_of(str(tmp_path / "a+b")) == [str(tmp_path / "a+b")] and "curvas-val" in SOURCES
    cfg = DataConfig(name="phantom-abdomen+curvas", image_size=32, n_phantom_patients=6, phantom_size=32)
    sets = load_segsets(cfg)
    patients = {s: set(sets[s].patients()) for s in ("train", "val", "test")}
    assert SPLIT["train"] and set(SPLIT["train"]) <= patients["train"]
    assert {"10010", "10013", "10014"} <= patients["test"] and {"10010", "10013", "10014"} <= patients["val"]
    assert not patients["train"] & (patients["val"] | patients["test"])
    phantom = {s: {p for p in patients[s] if p.startswith("abdomen")} for s in patients}
    assert all(phantom.values()) and not phantom["val"] & phantom["test"]
    assert set(sets["test"].unlabelled) == set(SPLIT["train"] + SPLIT["val"])  # CURVAS ids only
    assert sets["train"].source == "phantom-abdomen+curvas"


def test_sandfort_cpu_curvas_budget_is_cpu_on_ircadb_plus_curvas(tmp_path):
    from tfganaug.studies.sandfort import STUDY
    from tfganaug.data.sources import licence, permissive
    from tfganaug.studies.segmentation import _configs
    cpu, curvas = STUDY["budgets"]["cpu"], STUDY["budgets"]["cpu-curvas"]
    assert cpu["data"]["name"] == "ircadb" and "conditions" not in cpu  # the committed report's budget, as it was
    assert curvas["data"] == {**cpu["data"], "name": "ircadb+curvas"} and curvas["seg"] == cpu["seg"]
    assert curvas["tests"][:2] == cpu["tests"] and curvas["tests"][2] == "curvas-val"
    assert all(c in STUDY["conditions"] and "unet" not in STUDY["conditions"][c] for c in curvas["conditions"])
    configs = _configs("sandfort", "cpu-curvas", 1, tmp_path)
    assert configs["standard"].data.name == "ircadb+curvas" and configs["standard"].data.seed == 1
    assert configs["gan"].data.name == "ircadb+curvas" and configs["gan"].gan.domain_b == "totalseg-native"
    # Figures of the joined data stay out of reports unless every part's licence allows them.
    assert not permissive("ircadb+curvas") and licence("ircadb+curvas") == "CC BY-NC-ND 4.0; CC BY-NC 4.0"
    assert permissive("totalseg-native") and permissive("totalseg-contrast") and not permissive("curvas")
