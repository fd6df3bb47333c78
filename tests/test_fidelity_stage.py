"""`tfganaug evaluate --fidelity` (stages/fidelity.py) on a tiny labels2image run: fidelity.json
with every extractor's identity per channel, the memorisation audit and its figure, the report
section, and one-line errors for bad input."""
import json

import numpy as np
import pytest

from cli.main import main
from tfganaug import config
from tfganaug.errors import InputError, RunFolderError
from tfganaug.metrics.domain import DomainRecipe
from tfganaug.stages.fidelity import FIDELITY_FILE, FIGURE_FILE, evaluate_fidelity, fidelity_section, real_sets

TINY_ENCODER = DomainRecipe(widths=(4, 8), features=8, steps=3, batch_size=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfganaug.stages.train_gan import train_gan
    cfg = config.preset("cpu_labels2image", data={"image_size": 16, "n_phantom_patients": 6, "phantom_size": 32})
    return train_gan(cfg, tmp_path_factory.mktemp("l2i") / "run", verbose=0).path


def test_fidelity_of_a_gan_run_writes_numbers_identities_and_figure(run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = evaluate_fidelity(run, ["radiomics", "domain"], domain_recipe=TINY_ENCODER)
    assert json.loads((run / FIDELITY_FILE).read_text()) == json.loads(json.dumps(result))
    assert (run / FIGURE_FILE).stat().st_size > 1000
    assert result["source_kind"] == "gan run" and result["arch"] == "labels2image" and result["channels"] == ["CT"]
    assert result["n_synthetic"] == result["n_real_train"] > 4 and result["n_heldout"] >= 4
    for name in ("radiomics", "domain"):
        entry = result["extractors"][name]
        assert entry["extractor"] == name and len(entry["extractor_sha256"]) == 64 and entry["extractor_version"]
        row = entry["per_channel"]["CT"]
        for which in ("synthetic", "heldout_real"):
            assert set(row[which]) >= {"fid", "kid_mean", "kid_std", "precision", "recall", "n_real", "n_fake"}
            few = min(row[which]["n_real"], row[which]["n_fake"])  # FID needs more images than features
            assert (np.isfinite(row[which]["fid"]) if few > row[which]["n_features"] else
                    row[which]["fid"] is None and "FID needs more images" in row[which]["fid_undefined"])
    assert result["extractors"]["domain"]["extractor_options"]["encoder"].startswith(str(tmp_path / "cache"))
    for space in ("pixels", "domain"):
        audit = result["memorisation"][space]
        assert audit["n_synthetic"] == result["n_synthetic"] and audit["quantile"] == 0.05
    section = fidelity_section(run)
    sha = result["extractors"]["radiomics"]["extractor_sha256"][:12]
    assert section.startswith("## Fidelity") and f"radiomics (v1, {sha})" in section and "| CT |" in section
    assert "Memorisation audit" in section and "* pixels:" in section


def test_copies_of_training_images_are_flagged_in_a_synthetic_set(run, tmp_path, monkeypatch):
    from tfganaug.synthetic import write_seg_synthetic
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = real_sets(config.load(run / "config.json"))
    rng = np.random.default_rng(0)
    copies = np.clip(real.train + rng.normal(0, 0.002, real.train.shape), 0, 1)  # lightly noised copies
    copies[::2] = real.train[::2]                                                # and exact ones
    masks = np.zeros(copies.shape[:3], np.uint8)
    out = write_seg_synthetic(tmp_path / "copies", copies, masks, ["background", "kidney", "tumour"], ["CT"],
                              {"generator_run": str(run), "arch": "labels2image"})
    result = evaluate_fidelity(out, ["radiomics"])
    audit = result["memorisation"]["pixels"]
    assert result["source_kind"] == "synthetic set" and audit["flagged"] and audit["fraction_below"] == 1.0
    assert (out / FIDELITY_FILE).exists() and (out / FIGURE_FILE).exists()
    assert "flagged: closer to training images" in fidelity_section(out / FIDELITY_FILE)


def test_bad_input_is_one_line_with_exit_code_2(run, tmp_path, capsys):
    with pytest.raises(InputError, match="--weights"):
        evaluate_fidelity(run, ["inception_v3"])
    with pytest.raises(InputError, match="neither config.json nor manifest.json"):
        evaluate_fidelity(tmp_path)
    for args, message in [(["--extractor", "radiomix"], "did you mean 'radiomics'"),
                          (["--extractor", "inception_v3"], "--weights"),
                          (["--extractor", ","], "--extractor: expected comma-separated names without repeats or empty items")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", str(run), "--fidelity", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "missing"), "--fidelity"])
    assert exit_info.value.code == 2 and "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_classifier_or_segmentation_runs_are_refused(tmp_path):
    cfg = config.preset("cpu_cnn")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "config.json").write_text(json.dumps(config.to_dict(cfg)))
    with pytest.raises(RunFolderError, match="expected a GAN run .* got a 'cls' run"):
        evaluate_fidelity(tmp_path / "cls", ["radiomics"])
