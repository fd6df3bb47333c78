"""Pix2Pix, CycleGAN and StyleGAN2 through the package's stages on tiny phantoms: train-gan
into a run folder, synthesize a segmentation set, export a SavedModel in TF Serving layout
and run it in a fresh process against the Keras models; and the three study pipelines
(GAN -> synthetic set -> U-Nets -> evaluation -> report) at their smoke budgets."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli.main import main
from tfganaug import config
from tfganaug.errors import InputError, RunFolderError
from tfganaug.stages.export import INFO_FILE, export_run
from tfganaug.stages.synthesize import synthesize
from tfganaug.stages.train_gan import load_gan, train_gan as train_image_gan
from tfganaug.studies.segmentation import run_seg_study, write_report as write_seg_report


def load_image_gan(run_dir):
    """(run, cfg, gan, checkpoint, status) of an image-GAN run, restored for sampling."""
    run, cfg, status, gans = load_gan(run_dir)
    return run, cfg, gans[0][1], gans[0][2], status


def synthesize_image_gan(run_dir, n, out, **options):
    return synthesize(run_dir, n or None, out, **options)

# The training tricks of issue 13 on (the paper presets' path, tricks off, runs in the study
# smoke tests): DiffAugment + ADA (p moving fast) for all three, EMA generators and resize
# upsampling for Pix2Pix and CycleGAN, so synthesis and export must use the EMA copies.
ADA = {"diffaug": "translation,cutout,intensity", "ada_target": 0.6, "ada_interval": 1, "ada_speed_images": 16}
TRICKS = {**ADA, "g_ema_beta": 0.9, "upsample": "resize"}
TINY = {
    "pix2pix": ("cpu_pix2pix", {"name": "phantom-kidney", "image_size": 16, "n_phantom_patients": 4,
                                "phantom_size": 32},
                {"width": 4, "epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "sample_every_epochs": 1, **TRICKS}),
    "cyclegan": ("cpu_cyclegan", {"name": "phantom-abdomen", "image_size": 32, "n_phantom_patients": 4,
                                  "phantom_size": 32},
                 {"domain_b": "phantom-abdomen-native", "width": 4, "n_res_blocks": 1, "epochs": 2,
                  "steps_per_epoch": 2, "batch_size": 2, "sample_every_epochs": 1, **TRICKS}),
    "stylegan2": ("cpu_stylegan2", {"name": "phantom-brain", "image_size": 8, "n_phantom_patients": 4,
                                    "phantom_size": 16},
                  {"latent_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 32, "channel_max": 8,
                   "epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "r1_interval": 2, "pl_interval": 2,
                   "sample_every_epochs": 1, **ADA}),
}
EMA_ITEM = {"pix2pix": ("generator", "generator_ema"), "cyclegan": ("g_ab", "g_ab_ema"),
            "stylegan2": ("generator", "G_ema")}


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gans")
    runs = {}
    for arch, (preset, data, gan) in TINY.items():
        cfg = config.preset(preset, data=data, gan=gan)
        runs[arch] = train_image_gan(cfg, root / arch, verbose=0).path
    return runs


@pytest.mark.parametrize("arch", list(TINY))
def test_runs_are_complete_with_samples_and_resumable(gan_runs, arch):
    run = gan_runs[arch]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "complete" and status["members"] == {arch: 2}
    assert len(list((run / "samples" / arch).glob("epoch_*.png"))) == 2
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["g_loss"]) for r in rows)
    assert all(0.0 <= r["ada_p"] <= 1.0 and "ada_rt" in r for r in rows)  # ADA's p is logged
    # the same command again is a no-op on a complete run; another config is refused
    preset, data, gan = TINY[arch]
    assert train_image_gan(config.preset(preset, data=data, gan=gan), run, verbose=0).path == run
    with pytest.raises(RunFolderError, match="different configuration"):
        train_image_gan(config.preset(preset, data=data, gan={**gan, "epochs": 3}), run, verbose=0)


@pytest.mark.parametrize("arch", list(TINY))
def test_load_restores_the_ema_generator_it_samples_from(gan_runs, arch):
    """load_image_gan restores the EMA copies, and sampling (gan.sampler) uses them."""
    import tensorflow as tf
    run, cfg, gan, ckpt, _ = load_image_gan(gan_runs[arch])
    source, item = EMA_ITEM[arch]
    sampler = gan.sampler(source if arch == "cyclegan" else "generator")
    raw = gan.g_ab if arch == "cyclegan" else gan.generator
    assert sampler is not raw
    reader = tf.train.load_checkpoint(ckpt)
    saved = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith(item + "/")]
    weights = [w.numpy() for w in sampler.trainable_weights]
    assert len(saved) >= len(weights) > 5
    for w in weights:  # every EMA weight is one of the checkpoint's EMA tensors, bitwise
        assert any(s.shape == w.shape and np.array_equal(s, w) for s in saved)
    assert any(not np.array_equal(w, r.numpy()) for w, r in zip(weights, raw.trainable_weights))  # EMA lags


def test_synthesize_pix2pix_from_perturbed_label_maps(gan_runs, tmp_path):
    out = synthesize_image_gan(gan_runs["pix2pix"], 10, tmp_path / "s", labels="perturb", seed=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 10 and manifest["perturbed"] == 10 and manifest["kind"] == "segmentation"
    with np.load(out / "images.npz") as z:
        assert z["images"].shape == (10, 16, 16, 1) and set(np.unique(z["masks"])) <= {0, 1, 2}
        assert 0.0 <= z["images"].min() and z["images"].max() <= 1.0
    with pytest.raises(InputError, match="--perturb"):
        synthesize_image_gan(gan_runs["pix2pix"], 4, tmp_path / "t", perturb=2.0)
    assert not (tmp_path / "t").exists()


def test_synthesize_cyclegan_carries_labels_over(gan_runs, tmp_path):
    from tfganaug.stages.train_gan import domain_slices
    run, cfg, gan, _, _ = load_image_gan(gan_runs["cyclegan"])
    out = synthesize_image_gan(gan_runs["cyclegan"], 0, tmp_path / "s")
    real = domain_slices(cfg, cfg.data.name)  # copies of every case, each slice tagged with its origin
    with np.load(out / "images.npz") as z:
        assert np.array_equal(z["masks"], real.masks)  # labels carried over, slice for slice
        assert np.array_equal(z["patient_ids"], real.patient_ids) and np.array_equal(z["slice_index"], real.slice_index)
        want = np.clip((gan.translate_ab(real.images[:3] * 2 - 1).numpy() + 1) / 2, 0, 1)
        np.testing.assert_allclose(z["images"][:3], want, atol=1e-5)
    # whole volumes as NIfTI in the source geometry, labels carried over voxel for voxel
    import nibabel as nib
    from tfganaug.data.segsets import source_cases
    case = source_cases(cfg.data.name, cfg.data)[0][0]
    entry = json.loads((out / "manifest.json").read_text())["nifti"][0]
    image, labels = nib.load(out / entry["image"]), nib.load(out / entry["labels"])
    assert image.shape == case.shape and np.array_equal(np.asarray(labels.dataobj), case.mask)
    np.testing.assert_allclose(image.affine, case.meta.get("affine", np.diag([*case.spacing_mm, 1.0])), atol=1e-6)
    hu = image.get_fdata()
    low = cfg.data.window_level - cfg.data.window_width / 2
    assert low - 1e-3 <= hu.min() and hu.max() <= low + cfg.data.window_width + 1e-3


def test_cyclegan_copies_of_held_out_cases_never_reach_training(gan_runs, tmp_path):
    """A synthetic set holds copies of every case; train-seg keeps those of its own training
    split, whatever seed drew it, in 2-D and (from the NIfTI volumes) in 3-D."""
    from tfganaug.data.segsets import load_segsets
    from tfganaug.stages.train_seg import train_seg
    from tfganaug.synthetic import load_seg_synthetic, load_seg_synthetic_volumes
    run, cfg, gan, _, _ = load_image_gan(gan_runs["cyclegan"])
    out = synthesize_image_gan(gan_runs["cyclegan"], 0, tmp_path / "s")
    with np.load(out / "images.npz") as z:
        all_masks, all_ids = z["masks"], z["patient_ids"]
    for seed in (0, 1):
        seg = config.preset("cpu_unet_abdomen", data={**TINY["cyclegan"][1], "image_size": 32}, seed=seed)
        train = load_segsets(seg.data)["train"]
        _, masks = load_seg_synthetic(out, train, 32)
        assert len(masks) == np.isin(all_ids, train.patient_ids).sum() < len(all_masks)
        assert np.array_equal(masks, all_masks[np.isin(all_ids, train.patient_ids)])
        whole = load_segsets(seg.data, all_slices=True)["train"]
        fake = load_seg_synthetic_volumes(out, whole, seg.data)
        assert fake.patients() == whole.patients() and np.array_equal(fake.masks, whole.masks)
    # 3-D training with synthetic volumes mixed in
    seg3d = config.preset("cpu_unet3d_abdomen", data={**TINY["cyclegan"][1], "image_size": 32},
                          seg={"base_filters": 4, "depth": 2, "patch_depth": 8, "epochs": 1, "steps_per_epoch": 2,
                               "synthetic": str(out), "synthetic_ratio": 0.5})
    status = train_seg(seg3d, tmp_path / "seg3d", verbose=0).status()
    assert status["dims"] == 3 and status["n_synthetic"] == 24 * len(whole.patients())
    # a set of 2-D slices only (no volumes) cannot feed the 3-D U-Net
    p2p = synthesize_image_gan(gan_runs["pix2pix"], 4, tmp_path / "p")
    kidney = config.preset("cpu_unet_kits", data=TINY["pix2pix"][1]).data
    with pytest.raises(InputError, match="whole volumes"):
        load_seg_synthetic_volumes(p2p, load_segsets(kidney, all_slices=True)["train"], kidney)


def test_synthesize_stylegan2_joint_masks_and_truncation(gan_runs, tmp_path):
    out = synthesize_image_gan(gan_runs["stylegan2"], 6, tmp_path / "s", truncation=0.0)
    with np.load(out / "images.npz") as z:
        images, masks = z["images"], z["masks"]
    assert images.shape == (6, 8, 8, 4) and masks.shape == (6, 8, 8)
    # psi = 0: every sample is the average w (noise still random per sample)
    assert np.abs(images - images[:1]).max() < 0.5


def test_exports_run_in_a_fresh_process(gan_runs, tmp_path):
    """Every signature of every export in a fresh process against the Keras models; the
    CycleGAN's raw-input signatures get real CT in HU (TotalSegmentator, 101 x 122 slices) and
    must equal `translate_slices` (the path of `synthesize --from`) within 1e-5 of the window."""
    import tensorflow as tf
    from tfganaug.data.datasets import data_root
    from tfganaug.data.readers import read_image, to_zyx
    from tfganaug.stages.synthesize import translate_slices
    folders = {arch: export_run(run, tmp_path / arch) for arch, run in gan_runs.items()}
    hu = to_zyx(*read_image(data_root() / "totalseg-examples" / "example_ct.nii.gz"))[0][50:53, ..., None]
    unit = np.random.default_rng(5).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    requests = {}
    for arch, folder in folders.items():
        info = json.loads((folder / "assets.extra" / INFO_FILE).read_text())
        requests[arch] = {"serving_default": {k: np.asarray(v) for k, v in info["example_request"]["inputs"].items()}}
    info = json.loads((folders["cyclegan"] / "assets.extra" / INFO_FILE).read_text())
    assert sorted(info["other_signatures"]) == ["b_to_a", "b_to_a_preprocessed", "preprocessed"]
    assert info["domains"] == {"A": {"data": "phantom-abdomen", "units": "HU"},
                               "B": {"data": "phantom-abdomen-native", "units": "HU"}}
    requests["cyclegan"] = {"serving_default": {"image": hu}, "b_to_a": {"image": hu[::-1]},
                            "preprocessed": {"image": unit}, "b_to_a_preprocessed": {"image": unit[::-1]}}
    for arch, signatures in requests.items():
        np.savez(tmp_path / f"{arch}.npz", **{f"{sig}/{k}": v for sig, x in signatures.items() for k, v in x.items()})
    code = ("import json, sys, numpy as np, tensorflow as tf\n"
            "for arch, folder in json.loads(sys.argv[1]).items():\n"
            "    m, x, out = tf.saved_model.load(folder), np.load(sys.argv[2] + '/' + arch + '.npz'), {}\n"
            "    for sig in sorted({k.split('/')[0] for k in x.files}):\n"
            "        args = {k.split('/')[1]: x[k] for k in x.files if k.startswith(sig + '/')}\n"
            "        cast = {k: tf.constant(v.astype(np.int32 if v.dtype.kind == 'i' else np.float32))\n"
            "                for k, v in args.items()}\n"
            "        out.update({f'{sig}/{k}': v.numpy() for k, v in m.signatures[sig](**cast).items()})\n"
            "    np.savez(sys.argv[2] + f'/{arch}-out.npz', **out)\n")
    subprocess.run([sys.executable, "-c", code, json.dumps({a: str(f) for a, f in folders.items()}), str(tmp_path)],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    for arch, run in gan_runs.items():
        _, cfg, gan, _, _ = load_image_gan(run)
        got = dict(np.load(tmp_path / f"{arch}-out.npz"))
        x = requests[arch]["serving_default"]
        if arch == "pix2pix":
            want = {"serving_default/image": (gan.generate(tf.one_hot(x["label_map"], 3)).numpy() + 1) / 2}
        elif arch == "cyclegan":
            domain_b = config.with_data(cfg, cfg.gan.domain_b).data
            assert got["serving_default/image"].shape == hu.shape == (3, 101, 122, 1)
            for sig, translate, raw, data_cfg in (("serving_default", gan.translate_ab, hu, cfg.data),
                                                  ("b_to_a", gan.translate_ba, hu[::-1], domain_b)):
                np.testing.assert_allclose(got[f"{sig}/image"], translate_slices(translate, raw, "HU", data_cfg),
                                           rtol=0, atol=400 * 1e-5, err_msg=sig)
            want = {"preprocessed/image": (gan.translate_ab(unit * 2 - 1).numpy() + 1) / 2,
                    "b_to_a_preprocessed/image": (gan.translate_ba(unit[::-1] * 2 - 1).numpy() + 1) / 2}
        else:
            images, probs = gan.generate(x["z"].astype(np.float32), truncation_psi=x["truncation"].astype(np.float32),
                                         noise_mode="const")
            want = {"serving_default/images": (np.asarray(images) + 1) / 2,
                    "serving_default/mask_probabilities": np.asarray(probs)}
            assert np.array_equal(got["serving_default/label_map"], np.asarray(probs).argmax(-1))
        for key, value in want.items():
            np.testing.assert_allclose(got[key], np.clip(value, 0, 1), atol=1e-5, err_msg=key)


@pytest.mark.parametrize("paper,conditions", [
    ("kits", ["light, real", "light, real+fake 0.2", "light, fake only", "light, real+labels2image 0.2"]),
    ("sandfort", ["standard", "histeq", "cyclegan", "cyclegan, 3-D"]),
    ("son", ["100R", "100F", "300F+100R", "300F+100R labels2image"]),
])
def test_study_smoke_end_to_end(tmp_path, paper, conditions, monkeypatch):
    """GAN -> synthetic set -> fidelity -> U-Nets -> evaluation (and out-of-distribution tests) -> report."""
    study = run_seg_study(paper, tmp_path / "study", budget="smoke", seeds=[0], conditions=conditions, verbose=0)
    report = write_seg_report(study, tmp_path / "report").read_text()
    for condition in conditions:
        assert f"| {condition} |" in report
    assert "## Verdict" in report and (tmp_path / "report" / "training_curves.png").exists()
    assert (tmp_path / "report" / "synthetic_samples.png").exists()
    # issue 14: fidelity of the synthetic set, where the test patients come from, summary.json
    assert (study / "synth" / "fidelity.json").exists() and "## Fidelity" in report and "| radiomics (v" in report
    assert "none of them in training" in report and "these numbers are in-distribution" in report
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert list(summary) == sorted(summary) and summary["report"] == "report.md" and summary["seeds"] == [0]
    assert " vs " in summary["ours"] and "over 1 and 1 seeds" in summary["ours"] and summary["verdict"]
    if paper != "sandfort":  # TSTR beside TRTR, and the GAN against the labels2image baseline
        assert "TSTR / TRTR: **" in report and "the zero-training baseline downstream**" in report
        assert (study / "synth-labels2image" / "fidelity.json").exists()
        assert "### labels2image baseline synthetic set" in report
    # A source whose licence forbids committing its images: every data figure goes to the study
    # folder, the report keeps only the loss curves and says where the others are.
    from tfganaug.data.sources import phantoms
    monkeypatch.setattr(phantoms, "LICENCE", "CC BY-NC-SA 4.0")
    restricted = write_seg_report(study, tmp_path / "restricted").read_text()
    assert sorted(p.name for p in (tmp_path / "restricted").glob("*.png")) == ["training_curves.png"]
    assert (study / "figures" / "synthetic_samples.png").exists() and "(CC BY-NC-SA 4.0)" in restricted
    assert "![synthetic_samples.png]" not in restricted and f"`{study / 'figures'}" in restricted
    assert "![training_curves.png](training_curves.png)" in restricted
    if paper == "sandfort":
        assert "phantom-abdomen-native - Dice per case" in report and "*paper: cyclegan*" in report
        # the translation figure: 6 source slices, their translations, 6 target slices
        assert "![translation.png](translation.png)" in report
        from PIL import Image
        size = Image.open(tmp_path / "report" / "translation.png").size
        assert size[0] > size[1] > 0
    if paper == "son":
        assert "Regions follow the BraTS convention" in report and "whose reference lacks the region: whole tumour" in report
        # the real-trained U-Net scored on the synthetic set, beside its score on real slices
        scored = json.loads((study / "seed-0" / "100R" / "evaluation-images_npz.json").read_text())
        assert scored["n_slices"] == 120 and scored["data"].endswith("images.npz")
        assert "| synthetic | 120 |" in report and "Ratio synthetic / real:" in report
        # real and synthetic blocks of four contrasts + mask, 2-px cells at 16 px: 10 rows
        from PIL import Image
        assert Image.open(tmp_path / "report" / "real_vs_synthetic.png").size[1] > 10 * 2 * 16


def test_cli_train_gan_rejects_cyclegan_without_second_domain(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train-gan", "--arch", "cyclegan", "--preset", "sandfort_cyclegan", "--config", str(tmp_path / "x.json"),
              "--out", str(tmp_path / "r")])
    assert info.value.code == 2
    cfg = config.to_dict(config.preset("cpu_cyclegan"))
    cfg["gan"]["domain_b"] = None
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit) as info:
        main(["train-gan", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "gan.domain_b" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
