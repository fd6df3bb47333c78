"""Streamed volumes (issue 15, part 5): `predict` reads a scan a block of slices at a time and
gives the mask of the whole volume at once; `train-seg --stream` keeps its slices on disk and
trains on the batches the in-memory chain gives, bit for bit."""
import weakref

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from tfganaug import config
from tfganaug.data.cases import Case
from tfganaug.data.readers import open_slices, read_image, to_zyx
from tfganaug.data.segsets import load_segsets, network_slices
from tfganaug.stages import predict as predict_stage
from tfganaug.stages.predict import load_segmenter_for_prediction, predict_labels, read_scan
from tfganaug.stages.train_seg import train_seg
from tfganaug.tasks.segmenter import decode

TINY = {"base_filters": 4, "depth": 2, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "augment": "none"}
PHANTOM = {"image_size": 32, "phantom_size": 32, "n_phantom_patients": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-runs")
    train_seg(config.preset("cpu_unet_abdomen", data=PHANTOM, seg=TINY), root / "seg2d", verbose=0)
    train_seg(config.preset("cpu_unet3d_abdomen", data=PHANTOM,
                            seg={**TINY, "batch_size": 1, "patch_depth": 8, "unet": "sandfort3d"}),
              root / "seg3d", verbose=0)
    return {name: load_segmenter_for_prediction(root / name) for name in ("seg2d", "seg3d")}


def whole_volume_labels(segmenter, path, batch_size):
    """The labels the plain way: the scan read whole (`read_image`, `to_zyx`), every slice
    prepared at once, the 2-D network on batches of the whole stack or the 3-D network's
    windows summed into probabilities of the whole volume, all mapped back at once."""
    array, meta = read_image(path)
    zyx, zmeta = to_zyx(array if array.ndim == 4 else array[..., None], meta)
    case = Case("scan", zyx, None, zmeta["spacing_mm"], segmenter.class_names, units="HU")
    z, h, w = zyx.shape[:3]
    x = network_slices(case, np.arange(z), segmenter.data)
    depth = segmenter.patch_depth
    if depth is None:
        probs = np.concatenate([segmenter.probabilities(x[s:s + batch_size]) for s in range(0, z, batch_size)])
    else:
        starts = sorted(set(list(range(0, z - depth + 1, depth // 2)) + [z - depth]))
        total, count = None, np.zeros((z, 1, 1, 1), np.float32)
        for s in starts:
            p = np.asarray(segmenter.probabilities(x[None, s:s + depth]), np.float32)[0]
            total = np.zeros((z,) + p.shape[1:], np.float32) if total is None else total
            total[s:s + depth] += p
            count[s:s + depth] += 1
        probs = total / count
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    p = tf.image.resize(probs, (side, side), "bilinear")[:, top:top + h, left:left + w]
    return decode(p, segmenter.output).numpy().astype(np.uint8)


def streamed_labels(segmenter, path, batch_size):
    """`predict`'s labels, and the largest block of slices it read at once."""
    scan = read_scan([path], segmenter)
    blocks, read = [], scan.volume.slices

    def recorded(z0, z1):
        blocks.append(z1 - z0)
        return read(z0, z1)
    scan.volume.slices = recorded
    return predict_labels(segmenter, scan, batch_size), max(blocks), scan.volume.shape[0]


def flipped_copy(source, path):
    """The scan stored with z flipped and the axes permuted (the z blocks are read backwards)."""
    image = nib.load(source)
    ornt = np.array([[2, -1], [0, 1], [1, -1]])
    data = nib.orientations.apply_orientation(np.asarray(image.dataobj), ornt)
    nib.save(nib.Nifti1Image(data, image.affine @ nib.orientations.inv_ornt_aff(ornt, image.shape)), path)
    return path


@pytest.mark.parametrize("model", ["seg2d", "seg3d"])
def test_streamed_predict_gives_the_whole_volume_mask(runs, shared_data, tmp_path, monkeypatch, model):
    """Real shared scans (NIfTI, the same NIfTI stored flipped, a DICOM folder; the 2-D model
    also a DICOM zip of 129 slices of 512 px) through the streamed path, in blocks of 7 slices
    and batches of 5 (neither divides the other): the same labels as the whole volume at once,
    and no block larger than 7 slices was read."""
    monkeypatch.setattr(predict_stage, "SLICE_CHUNK", 7)
    segmenter = runs[model]
    examples = shared_data / "totalseg-examples"
    scans = [examples / "example_ct_sm.nii.gz", flipped_copy(examples / "example_ct_sm.nii.gz", tmp_path / "f.nii.gz"),
             examples / "example_ct_dicom"]
    if model == "seg2d":
        scans.append(shared_data / "ircadb" / "3Dircadb1.1" / "PATIENT_DICOM.zip")
    for scan in scans:
        want = whole_volume_labels(segmenter, scan, batch_size=5)
        got, largest_block, z = streamed_labels(segmenter, scan, batch_size=5)
        assert got.shape == want.shape and np.array_equal(got, want), scan
        assert len(np.unique(want)) > 1, scan  # a constant mask would prove little
        assert largest_block <= 7 < z, (scan, largest_block, z)


def test_streamed_reader_gives_the_readers_values(shared_data, tmp_path):
    """`open_slices` block by block equals `read_image` + `to_zyx` voxel for voxel and in its
    geometry; a NaN voxel is one line naming the file, a constant scan too (after the last block)."""
    from tfganaug.errors import InputError
    for path in (shared_data / "totalseg-examples" / "example_ct_sm.nii.gz",
                 shared_data / "totalseg-examples" / "example_ct_dicom"):
        array, meta = to_zyx(*read_image(path))
        volume = open_slices(path)
        got = np.concatenate([volume.slices(z, min(z + 6, volume.shape[0])) for z in range(0, volume.shape[0], 6)])
        assert np.array_equal(got[..., 0], array)
        np.testing.assert_allclose(volume.meta["affine"], meta["affine"])
        assert volume.meta["spacing_mm"] == pytest.approx(meta["spacing_mm"])
        volume.check_not_constant()
    bad = np.ones((4, 5, 6), np.float32)
    bad[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(InputError, match="nan.nii.*1 non-finite voxels"):
        open_slices(tmp_path / "nan.nii").slices(0, 4)
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), 7, np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    flat = open_slices(tmp_path / "flat.nii.gz")
    flat.slices(0, flat.shape[0])
    with pytest.raises(InputError, match="flat.nii.gz.*every voxel 7"):
        flat.check_not_constant()


# ---------------------------------------------------------------------------- train-seg

STREAM_DATA = {"image_size": 16, "phantom_size": 32, "n_phantom_patients": 5}


@pytest.mark.parametrize("name", ["phantom-abdomen", "phantom-kidney", "phantom-abdomen+phantom-abdomen-native"])
def test_streamed_segsets_hold_the_same_slices_on_disk(name):
    """The same slices, patients and splits from disk as from memory; joined sources join their stores."""
    from tfganaug.data.slicestore import DiskRows
    cfg = config.preset("cpu_unet_abdomen", data={**STREAM_DATA, "name": name}).data
    memory, streamed = load_segsets(cfg), load_segsets(cfg, stream=True)
    for split in ("train", "val", "test"):
        a, b = memory[split], streamed[split]
        assert isinstance(b.images, DiskRows) and isinstance(b.masks, DiskRows)
        assert np.array_equal(a.images, np.asarray(b.images)) and np.array_equal(a.masks, np.asarray(b.masks))
        assert np.array_equal(a.patient_ids, b.patient_ids) and np.array_equal(a.slice_index, b.slice_index)
        assert (a.domain, a.unlabelled) == (b.domain, b.unlabelled)


def test_a_folder_of_the_users_scans_is_read_one_case_at_a_time(tmp_path, monkeypatch):
    """The user's own KiTS19-layout folder: streamed, each case is read when it is reached and
    dropped after the next (so memory does not grow with the number of scans), and the slices
    and splits equal the in-memory ones."""
    from tfganaug.data import kits
    from tfganaug.data.cases import LazyCases
    from tfganaug.data.segsets import source_cases
    rng = np.random.default_rng(0)
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    for k in range(6):
        folder = tmp_path / f"case_{k:05d}"
        folder.mkdir()
        seg = np.zeros((6, 24, 24), np.uint8)
        seg[1:5, 6 + k:14 + k, 5:12] = 1
        seg[2:4, 8 + k:11 + k, 7:10] = 2
        hu = rng.normal(40, 20, seg.shape) + 150 * (seg > 0)
        nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), folder / "imaging.nii.gz")
        nib.save(nib.Nifti1Image(seg, affine), folder / "segmentation.nii.gz")
    cfg = config.preset("cpu_unet_kits", data={"name": str(tmp_path), "image_size": 16}).data
    live, reads, real_load = [], [], kits._load_case

    def load(root, folder):
        live[:] = [c for c in live if c() is not None]  # weak references to the cases still alive
        reads.append(len(live))
        case = real_load(root, folder)
        live.append(weakref.ref(case.mask))
        return case
    monkeypatch.setattr(kits, "_load_case", load)
    assert isinstance(source_cases(str(tmp_path), cfg, lazy=True)[0], LazyCases) and reads == []
    streamed = load_segsets(cfg, stream=True)
    # at most the case before (still bound to the loop variable while the next one is read)
    assert len(reads) == 6 and max(reads) <= 1, f"cases alive when the next one was read: {reads}"
    memory = load_segsets(cfg)
    for split in ("train", "val", "test"):
        a, b = memory[split], streamed[split]
        assert np.array_equal(a.images, np.asarray(b.images)) and np.array_equal(a.masks, np.asarray(b.masks))
        assert np.array_equal(a.patient_ids, b.patient_ids)


def test_streamed_chain_gives_the_in_memory_batches():
    """Two epochs of the one chain, standard augmentation and 30 % synthetic slices interleaved:
    the same batches, element for element, from disk as from memory."""
    from tfganaug.data.pipeline import training_batches
    from tfganaug.stages.train_seg import _augment_fn
    cfg = config.preset("cpu_unet_abdomen", data=STREAM_DATA, seg={"augment": "standard"})
    memory, streamed = load_segsets(cfg.data)["train"], load_segsets(cfg.data, stream=True)["train"]
    rng = np.random.default_rng(0)
    synthetic = (rng.uniform(0, 1, (7, 16, 16, 1)).astype(np.float32), rng.integers(0, 4, (7, 16, 16)))
    batches = []
    for train in (memory, streamed):
        chain = training_batches(train.images, train.masks, batch_size=4, steps_per_epoch=5, epochs=2, seed=3,
                                 augment=_augment_fn(cfg, train), synthetic=synthetic, synthetic_ratio=0.3)
        batches.append([(x.numpy(), y.numpy()) for x, y in chain])
    assert len(batches[0]) == len(batches[1]) == 10
    for (xa, ya), (xb, yb) in zip(*batches):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_streamed_training_ends_with_the_in_memory_weights(tmp_path):
    from tfganaug.runs import RunFolder
    from tfganaug.stages.evaluate import load_segmenter
    weights = []
    for stream in (False, True):
        cfg = config.preset("cpu_unet_abdomen", data={**STREAM_DATA, "stream": stream},
                            seg={**TINY, "epochs": 2, "augment": "flip"})
        run = train_seg(cfg, tmp_path / f"stream-{stream}", verbose=0)
        weights.append([w.numpy() for w in load_segmenter(RunFolder(run.path)).weights])
    assert len(weights[0]) == len(weights[1]) > 4
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)  # bitwise


def test_stream_refuses_what_it_cannot_stream(tmp_path):
    from tfganaug.errors import ConfigError
    cfg = config.preset("cpu_unet3d_abdomen", data={**STREAM_DATA, "stream": True},
                        seg={**TINY, "batch_size": 1, "patch_depth": 4, "unet": "sandfort3d"})
    with pytest.raises(ConfigError, match="data.stream.*3-D U-Net"):
        train_seg(cfg, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
