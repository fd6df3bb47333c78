"""The Frid-Adar et al. 2018 study end to end, with named compute budgets.

For every seed: the training ROIs are subsampled (low-data regime) with that seed; one
DCGAN per class and one ACGAN are trained on exactly those ROIs (never on evaluation
data); each is sampled into a synthetic set; then the lesion CNN is trained four ways --
no augmentation, classic, classic + DCGAN, classic + ACGAN -- and scored on the held-out
split. Every stage is a run folder of its own, so a rerun resumes where a crash stopped.

    <study>/study.json
    <study>/seed-0/gan-dcgan  gan-acgan  synth-dcgan  synth-acgan
    <study>/seed-0/cls-none   cls-classic  cls-classic+dcgan  cls-classic+acgan
    <study>/seed-0/cls-reference  class-fidelity.json

`cls-reference` is the CNN trained on *all* real training ROIs of the seed's split (not the
low-data subset, no augmentation); `class-fidelity.json` holds how often it gives each GAN's
synthetic ROIs their intended class, beside how often it gives held-out real ROIs theirs
(`metrics.classification.conditional_fidelity`): a generator whose samples do not look like
their class scores near chance, whatever its losses say.
"""
from __future__ import annotations

import time
from pathlib import Path

from tfganaug import config as config_lib
from tfganaug.errors import ConfigError, RunFolderError
from tfganaug.fsutil import atomic_write_json

CONDITIONS = ("none", "classic", "classic+dcgan", "classic+acgan")

# Each budget names the data size, the model widths and the epochs; reports print it.
BUDGETS = {
    # smoke: checks the plumbing in seconds; its numbers mean nothing.
    "smoke": {"image_size": 16, "train_per_class": 6, "seeds": [0, 1], "n_synthetic": 30,
              "gan": {"width": 16, "latent_dim": 8, "epochs": 2, "steps_per_epoch": 2, "batch_size": 8,
                      "sample_every_epochs": 1},
              "cls": {"epochs": 2, "batch_size": 8, "steps_per_epoch": 3, "filters": [4, 8, 8], "dense_units": 16}},
    # demo and cpu: the cpu_dcgan / cpu_acgan presets (DiffAugment, EMA G, resize upsampling;
    # ACGAN without D dropout, label concatenated to z): see config.PRESETS.
    "demo": {"image_size": 32, "train_per_class": 40, "seeds": [0, 1], "n_synthetic": 600,
             "gan": {"width": 96, "epochs": 6, "steps_per_epoch": 250, "batch_size": 32, "lr": 2e-4,
                     "augment": "classic", "sample_every_epochs": 3},
             "cls": {"epochs": 10, "batch_size": 32, "steps_per_epoch": 30}},
    "cpu": {"image_size": 32, "train_per_class": 60, "seeds": [0, 1, 2], "n_synthetic": 3000,
            "gan": {"width": 96, "epochs": 20, "steps_per_epoch": 100, "batch_size": 32, "lr": 2e-4,
                    "augment": "classic", "sample_every_epochs": 5},
            "cls": {"epochs": 60, "batch_size": 32, "steps_per_epoch": 30}},
    "paper": {"image_size": 64, "train_per_class": 60, "seeds": [0, 1, 2], "n_synthetic": 3000,
              # The paper's epochs ran over a many-fold classically augmented set (N copies per ROI,
              # N not given); an epoch here is a fixed number of steps over augmented ROIs instead.
              "gan": {"augment": "classic", "steps_per_epoch": 100}, "cls": {"steps_per_epoch": 50}},
}
SYNTHETIC_RATIO = 0.5
# `gan_training="paper"`: the CPU budgets' widths and steps, but the papers' training (no
# DiffAugment, no EMA, transposed convolutions; ACGAN with D dropout 0.5 and z x embedding):
# the "before" of reports/gan-training. "small-data" (the default) keeps the cpu_* presets.
GAN_TRAININGS = ("small-data", "paper")
PAPER_TRAINING = {"diffaug": "none", "ada_target": None, "g_ema_beta": 0.0, "upsample": "transpose"}
PAPER_TRAINING_ACGAN = {"d_dropout": 0.5, "conditioning": "multiply"}
DEFAULT_CLASSES = {"organamnist": ["liver", "kidney-left", "spleen"]}


def _configs(budget: str, data: str, classes, train_per_class, seed: int, gan_training: str = "small-data") -> dict:
    b = BUDGETS[budget]
    data_cfg = {"name": data, "classes": classes or DEFAULT_CLASSES.get(data), "image_size": b["image_size"],
                "train_per_class": train_per_class or b["train_per_class"], "seed": seed}
    paper = budget == "paper"
    out = {}
    for arch in ("dcgan", "acgan"):
        preset = f"frid_adar_{arch}" if paper else f"cpu_{arch}"
        gan = dict(b["gan"])
        if arch == "acgan" and not paper:
            gan["lr"] = gan.get("lr", 2e-4)
        if gan_training == "paper" and not paper:
            gan.update(PAPER_TRAINING, **(PAPER_TRAINING_ACGAN if arch == "acgan" else {}))
        out[f"gan-{arch}"] = config_lib.preset(preset, data=data_cfg, gan=gan, seed=seed)
    for condition in CONDITIONS:
        cls = dict(b["cls"], augment="none" if condition == "none" else "classic")
        if "+" in condition:
            arch = condition.split("+")[1]
            cls.update(synthetic=f"synth-{arch}", synthetic_ratio=SYNTHETIC_RATIO)
        out[f"cls-{condition}"] = config_lib.preset("frid_adar_cnn" if paper else "cpu_cnn",
                                                    data=data_cfg, cls=cls, seed=seed)
    # The yardstick gets three times the CNN budget: it is trained once per seed, on all real ROIs.
    reference = dict(b["cls"], augment="none")
    reference["epochs"] = 3 * reference.get("epochs", 150)
    out["cls-reference"] = config_lib.preset("frid_adar_cnn" if paper else "cpu_cnn",
                                             data={**data_cfg, "train_per_class": None}, cls=reference, seed=seed)
    return out


def class_fidelity(folder: Path, archs=("dcgan", "acgan")) -> dict:
    """Score each synthetic set of one seed with the seed's reference CNN; writes
    `<folder>/class-fidelity.json` and returns it."""
    import numpy as np

    from tfganaug.data.datasets import load_rois
    from tfganaug.data.pipeline import eval_batches
    from tfganaug.experiments import load_classifier
    from tfganaug.metrics.classification import conditional_fidelity
    from tfganaug.synthesize import load_synthetic
    from tfganaug.train import RunFolder

    run, cfg = RunFolder.load(folder / "cls-reference")
    model = load_classifier(run)
    test = load_rois(cfg.data)["test"]
    real_pred = model.predict(eval_batches(test.images, test.labels), verbose=0).argmax(-1)
    result = {"reference_run": str(run.path), "n_train_real": run.status().get("n_train_real"),
              "split": "test", "class_names": list(test.class_names)}
    for arch in archs:
        synth = folder / f"synth-{arch}"
        if not (synth / "manifest.json").exists():
            continue
        images, labels = load_synthetic(synth, test.class_names, cfg.data.image_size)
        pred = model.predict(eval_batches(images, labels), verbose=0).argmax(-1)
        result[arch] = conditional_fidelity(labels, pred, test.labels, real_pred, len(test.class_names))
    atomic_write_json(folder / "class-fidelity.json", result)
    return result


def run_study(out, budget: str = "demo", data: str = "phantom", classes=None, train_per_class=None,
              seeds=None, verbose=2, gan_training: str = "small-data") -> Path:
    from tfganaug.experiments import evaluate_classifier, train_classifier, train_gan
    from tfganaug.synthesize import synthesize

    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget '{budget}' (known: {', '.join(BUDGETS)})")
    if gan_training not in GAN_TRAININGS:
        raise ConfigError(f"unknown GAN training '{gan_training}' (known: {', '.join(GAN_TRAININGS)})")
    out = Path(out)
    seeds = seeds or BUDGETS[budget]["seeds"]
    plan = {"budget": budget, "budget_settings": BUDGETS[budget], "data": data, "classes": classes,
            "train_per_class": train_per_class, "seeds": seeds, "conditions": list(CONDITIONS),
            "synthetic_ratio": SYNTHETIC_RATIO}
    if gan_training != "small-data":  # only then, so study folders from before the option still match
        plan["gan_training"] = gan_training
    study_json = out / "study.json"
    if study_json.exists():
        import json
        previous = json.loads(study_json.read_text())
        if {k: previous.get(k) for k in plan} != plan:
            raise RunFolderError(f"{out}: holds a study with other settings ({study_json}); choose another --out")
    else:
        atomic_write_json(study_json, {**plan, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    for seed in seeds:
        folder = out / f"seed-{seed}"
        configs = _configs(budget, data, classes, train_per_class, seed, gan_training)
        for arch in ("dcgan", "acgan"):
            t0 = time.time()
            train_gan(configs[f"gan-{arch}"], folder / f"gan-{arch}", verbose=verbose)
            _timing(folder, f"gan-{arch}", t0)
            synth = folder / f"synth-{arch}"
            if not (synth / "manifest.json").exists():
                synthesize(folder / f"gan-{arch}", BUDGETS[budget]["n_synthetic"], synth, seed=seed)
        for condition in CONDITIONS:
            cfg = configs[f"cls-{condition}"]
            if cfg.cls.synthetic:
                cfg.cls.synthetic = str(folder / cfg.cls.synthetic)
            t0 = time.time()
            run = train_classifier(cfg, folder / f"cls-{condition}", verbose=verbose)
            _timing(folder, f"cls-{condition}", t0)
            evaluate_classifier(run.path)
        t0 = time.time()
        train_classifier(configs["cls-reference"], folder / "cls-reference", verbose=verbose)
        _timing(folder, "cls-reference", t0)
        class_fidelity(folder)
    return out


def _timing(folder: Path, stage: str, t0: float) -> None:
    """Log a stage's wall time, unless a rerun found it complete and did nothing."""
    from tfganaug.fsutil import append_jsonl, read_jsonl
    if any(r.get("stage") == stage for r in read_jsonl(folder / "timings.jsonl")):
        return
    append_jsonl(folder / "timings.jsonl", {"stage": stage, "seconds": round(time.time() - t0, 2)})
