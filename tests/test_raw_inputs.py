"""Raw intensities -> network input inside a TF graph (data/raw_input.py, the raw-input
signatures of stages/export.py) against the training path (`segsets.network_slices`, through
`raw_input.request_to_unit`) on real shared files read by the package's readers: CT in HU
(3D-IRCADb 512 x 512 DICOM, shrunk to 64 px; the TotalSegmentator NIfTI, 101 x 122, not
square), KiTS19 8-bit PNG slices, and BraTS 2018 MR as stored (int16, four contrasts) under
both `mr_norm` settings, as 2-D requests and as 3-D volumes.

The graph runs with every dimension but the channels unknown, as a served signature does.
Tolerance: 1e-5 absolute on [0, 1] (float32 resizing against float32 resizing; the MR
statistics are float64 on both sides)."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfganaug import config
from tfganaug.data.datasets import data_root
from tfganaug.data.raw_input import (request_to_unit, source_units, to_input_grid, to_input_grid_tf,
                                     to_unit_tf)
from tfganaug.data.readers import read_image, to_zyx
from tfganaug.data.segsets import source_cases
from tfganaug.data.sources import SOURCES, UNITS

ATOL = 1e-5
BRATS = "brats/brats2018_4contrast/Brats18_CBICA_ABM_1/Brats18_CBICA_ABM_1_{}.nii.gz"


def real(path: str) -> np.ndarray:
    return to_zyx(*read_image(data_root() / path))[0]


def in_graph(raw, units, data_cfg, volumes=False):
    spec = tf.TensorSpec([None] * (raw.ndim - 1) + [raw.shape[-1]], tf.float32)  # channels known, as served

    @tf.function(input_signature=[spec])
    def fn(x):
        return to_unit_tf(x, units, data_cfg, volumes)[0]

    return fn(tf.constant(raw, tf.float32)).numpy()


def ct(size=64, **data):
    return config.preset("cpu_unet_abdomen", data={"image_size": size, **data}).data


@pytest.fixture(scope="module")
def mr():
    """Five axial slices of one BraTS 2018 case, four contrasts as stored, cropped off square."""
    volume = np.stack([real(BRATS.format(c)) for c in ("t1", "t1ce", "t2", "flair")], axis=-1)
    return volume[70:75, 20:220, 30:190]


def test_ct_in_hu_matches_training_preprocessing():
    ircadb = real("ircadb/3Dircadb1.1/PATIENT_DICOM.zip")[60:63, ..., None]  # 512 x 512 -> 64: antialiased
    totalseg = real("totalseg-examples/example_ct.nii.gz")[50:53, ..., None]  # 101 x 122: padded with air
    assert ircadb.min() <= -1000 and totalseg.shape[1:3] == (101, 122)
    for raw, data in ((ircadb, {}), (totalseg, {"window_width": 350.0, "window_level": 40.0}), (totalseg[:, :40], {})):
        for size in (64, 256):  # shrinking and growing
            got = in_graph(raw, "HU", ct(size, **data))
            want = request_to_unit(raw, "HU", ct(size, **data))
            assert got.shape == want.shape == (3, size, size, 1)
            np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # the air padding of the non-square slice is at the window's bottom, the body is not
    unit = in_graph(totalseg, "HU", ct(128))
    assert unit[:, :10].max() == 0.0 and unit[:, 40:80].max() > 0.5


def test_kits_png_grey8_matches_training_preprocessing():
    files = sorted((data_root() / "kits19" / "png_slices" / "images").glob("*.png"))[:2]
    raw = np.stack([np.asarray(Image.open(f).convert("L"), np.float32) for f in files])[..., None]
    cfg = ct(64)
    np.testing.assert_allclose(in_graph(raw, "grey8", cfg), request_to_unit(raw, "grey8", cfg), rtol=0, atol=ATOL)


@pytest.mark.parametrize("norm", ["percentile", "zscore"])
def test_mr_as_stored_matches_training_preprocessing(mr, norm):
    cfg = config.preset("cpu_unet_brats", data={"image_size": 64, "mr_norm": norm}).data
    got, want = in_graph(mr, "zscore", cfg), request_to_unit(mr, "zscore", cfg)
    assert got.shape == (5, 64, 64, 4)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # as stored or z-scored first: the same network input (percentiles and z-scores commute
    # with the reader's affine map; zero stays the background)
    brain = np.any(mr != 0, axis=-1)
    z = np.where(brain[..., None], (mr - mr[brain].mean(0)) / mr[brain].std(0), 0.0).astype(np.float32)
    np.testing.assert_allclose(in_graph(z, "zscore", cfg), got, rtol=0, atol=1e-4)
    # 3-D requests: statistics per volume, so a volume's answer does not depend on its neighbour
    pair = np.stack([mr, mr[:, ::-1] * 3.0])
    got3d = in_graph(pair, "zscore", cfg, volumes=True)
    np.testing.assert_allclose(got3d, request_to_unit(pair, "zscore", cfg, volumes=True), rtol=0, atol=ATOL)
    np.testing.assert_allclose(got3d[0], got, rtol=0, atol=ATOL)


def test_mr_request_without_brain_is_invalid_argument():
    cfg = config.preset("cpu_unet_brats", data={"image_size": 16}).data
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected brain voxels"):
        in_graph(np.zeros((2, 20, 20, 4), np.float32), "zscore", cfg)


def test_outputs_go_back_onto_the_input_grid():
    rng = np.random.default_rng(0)
    for height, width in ((101, 122), (40, 17), (16, 16)):
        y = rng.uniform(0, 1, (2, 3, 16, 16, 5)).astype(np.float32)
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        got = to_input_grid_tf(tf.constant(y), tf.constant(height), tf.constant(width), top, left).numpy()
        assert got.shape == (2, 3, height, width, 5)
        np.testing.assert_allclose(got, to_input_grid(y, height, width), rtol=0, atol=ATOL)


def test_named_source_units_are_those_of_their_cases():
    for name in ("phantom-kidney", "phantom-abdomen-native", "phantom-brain"):
        data_cfg = config.preset("cpu_unet_abdomen", data={"name": name, "n_phantom_patients": 2,
                                                           "phantom_size": 16}).data
        assert source_units(data_cfg) == UNITS[name] == source_cases(name, data_cfg)[0][0].units
    assert source_units(config.preset("cpu_unet_abdomen", data={"name": "slices.npz"}).data) == "unit"
    assert set(UNITS) <= set(SOURCES.names())
