"""Frid-Adar et al. 2018 (Neurocomputing 321): GAN-based synthetic liver-lesion ROIs (DCGAN
per class, ACGAN) as augmentation for a small lesion CNN. Start here for `tfganaug study
--paper frid-adar`.

Implemented by: gans/dcgan.py, gans/acgan.py (the GANs; DiffAugment/ADA in gans/augment.py),
tasks/classifier.py (the lesion CNN), data/datasets.py + data/phantom.py (phantom lesion
ROIs, OrganAMNIST, user ROI sets), data/augment.py (the paper's classic augmentation),
stages/ (train_gan, synthesize, train_cls, evaluate), metrics/classification.py.
Paper notes: ../shared/seeds (hyper-parameters in config.PRESETS frid_adar_*).

For every seed: the training ROIs are subsampled (low-data regime) with that seed; one
DCGAN per class and one ACGAN are trained on exactly those ROIs (never on evaluation
data); each is sampled into a synthetic set, whose fidelity (`evaluate --fidelity`) is
measured; then the lesion CNN is trained six ways -- no augmentation, classic, classic +
DCGAN, classic + ACGAN, and on one GAN's ROIs alone (TSTR: train on synthetic, test on real)
-- and scored on the held-out split. Every stage is a run folder of its own, so a rerun
resumes where a crash stopped.

    <study>/study.json
    <study>/seed-0/gan-dcgan  gan-acgan  synth-dcgan  synth-acgan  (each with fidelity.json)
    <study>/seed-0/cls-none   cls-classic  cls-classic+dcgan  cls-classic+acgan
    <study>/seed-0/cls-dcgan-only  cls-acgan-only
    <study>/seed-0/cls-reference  class-fidelity.json

`cls-reference` is the CNN trained on *all* real training ROIs of the seed's split (not the
low-data subset, no augmentation); `class-fidelity.json` holds how often it gives each GAN's
synthetic ROIs their intended class, beside how often it gives held-out real ROIs theirs
(`metrics.classification.conditional_fidelity`): a generator whose samples do not look like
their class scores near chance, whatever its losses say. Beside it, the per-class diversity
(`metrics.privacy.intra_class_diversity`, synthetic vs held-out real ROIs): near 0 when a
class collapsed to a few images, which the class check alone would pass.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tfganaug import config as config_lib
from tfganaug.errors import ConfigError, RunFolderError
from tfganaug.fsutil import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from tfganaug.metrics.stats import format_ci, mean_ci
from tfganaug.stages.evaluate import percent, summarize_evaluations
from tfganaug.studies.base import (condition_curves, copy_configs, fidelity_stage, figure_home, figure_link,
                                   grid_notes, machine, open_study, save_curves, summed_timings, timing,
                                   write_summary)

# Frid-Adar et al. 2018 (Neurocomputing 321), 182 liver lesions, 3 classes, 3-fold CV.
PAPER = {
    "classic": {"macro_sensitivity": 0.786, "macro_specificity": 0.884},
    "classic+dcgan": {"macro_sensitivity": 0.857, "macro_specificity": 0.924},
}


ARCHS = ("dcgan", "acgan")  # the paper's two GANs (gans/dcgan.py, gans/acgan.py)
# "<arch>-only": train on synthetic, test on real (TSTR, issue 14 part 2): the CNN of "none"
# (no classic augmentation) trained on one GAN's ROIs alone, beside "none" on real ROIs (TRTR).
CONDITIONS = ("none", "classic", "classic+dcgan", "classic+acgan", "dcgan-only", "acgan-only")

# Each budget names the data size, the model widths and the epochs; reports print it.
BUDGETS = {
    # smoke: checks the plumbing in seconds; its numbers mean nothing.
    "smoke": {"image_size": 16, "train_per_class": 6, "seeds": [0, 1], "n_synthetic": 30,
              "domain_recipe": {"widths": [4, 8], "features": 8, "steps": 3, "batch_size": 4},
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
PAPER_TRAINING = {"diffaug": "none", "ada_target": None, "g_ema_beta": 0.0, "upsample": "transpose",
                  "g_layout": "paper"}
PAPER_TRAINING_ACGAN = {"d_dropout": 0.5, "conditioning": "multiply", "d_classifies_fakes": True,
                        "mode_seeking": 0.0}
DEFAULT_CLASSES = {"organamnist": ["liver", "kidney-left", "spleen"]}
# What the GANs are trained on, per data set (default: the budget's "classic", the paper's
# rotation 0-180 degrees + flips). A liver lesion ROI has no orientation, so rotated and
# flipped copies are still lesions of their class. An OrganAMNIST organ crop has one: the
# kidney-left is on one side, the liver's shape points one way, and a reference CNN trained
# on real crops gives classically augmented real crops their class only 0.48 of the time
# (0.985 as they are; seed 0 reference CNN of the cpu study, 1,500 test crops).
# GANs trained on those learn that unrecognisable distribution, so on organ crops they see
# the crops as they are (D still sees DiffAugment's translation + cutout in the cpu presets).
GAN_AUGMENT = {"organamnist": "none"}


def _configs(budget: str, data: str, classes, train_per_class, seed: int, gan_training: str = "small-data") -> dict:
    b = BUDGETS[budget]
    data_cfg = {"name": data, "classes": classes or DEFAULT_CLASSES.get(data), "image_size": b["image_size"],
                "train_per_class": train_per_class or b["train_per_class"], "seed": seed}
    paper = budget == "paper"
    out = {}
    for arch in ARCHS:
        preset = f"frid_adar_{arch}" if paper else f"cpu_{arch}"
        gan = dict(b["gan"])
        gan["augment"] = GAN_AUGMENT.get(data, gan.get("augment", "none"))
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
        elif condition.endswith("-only"):
            cls.update(synthetic=f"synth-{condition[:-len('-only')]}", synthetic_ratio=1.0)
        out[f"cls-{condition}"] = config_lib.preset("frid_adar_cnn" if paper else "cpu_cnn",
                                                    data=data_cfg, cls=cls, seed=seed)
    # The yardstick gets three times the CNN budget: it is trained once per seed, on all real ROIs.
    reference = dict(b["cls"], augment="none")
    reference["epochs"] = 3 * reference.get("epochs", 150)
    out["cls-reference"] = config_lib.preset("frid_adar_cnn" if paper else "cpu_cnn",
                                             data={**data_cfg, "train_per_class": None}, cls=reference, seed=seed)
    return out


def class_fidelity(folder: Path, archs=ARCHS, reference: Path | None = None) -> dict:
    """Score each synthetic set `<folder>/synth-<arch>` with the reference CNN (default: the
    seed's `<folder>/cls-reference`); writes `<folder>/class-fidelity.json` and returns it."""

    from tfganaug.data.datasets import load_rois
    from tfganaug.data.pipeline import eval_batches
    from tfganaug.stages.evaluate import load_classifier
    from tfganaug.metrics.classification import conditional_fidelity
    from tfganaug.metrics.privacy import intra_class_diversity
    from tfganaug.runs import RunFolder
    from tfganaug.synthetic import load_synthetic

    run, cfg = RunFolder.load(reference or folder / "cls-reference")
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
        # A generator that draws one good image per class passes the check above; diversity does not.
        result[arch]["diversity"] = intra_class_diversity(images, labels, test.images, test.labels,
                                                          len(test.class_names))
    atomic_write_json(folder / "class-fidelity.json", result)
    return result


def run_study(out, budget: str = "demo", data: str = "phantom", classes=None, train_per_class=None,
              seeds=None, verbose=2, gan_training: str = "small-data") -> Path:
    from tfganaug.data.datasets import load_rois
    from tfganaug.stages.evaluate import evaluate_classifier
    from tfganaug.stages.synthesize import synthesize
    from tfganaug.stages.train_cls import train_classifier
    from tfganaug.stages.train_gan import train_gan

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
    # Every seed's configuration, and the data and classes they name, are checked before the
    # study folder is made: a bad --data, --classes or --train-per-class writes nothing.
    configs_by_seed = {seed: _configs(budget, data, classes, train_per_class, seed, gan_training) for seed in seeds}
    load_rois(configs_by_seed[seeds[0]]["gan-acgan"].data)
    # Seeds and conditions may be added by later runs (or seeds run side by side, one process
    # per seed): they only grow.
    open_study(out, plan, fixed=[k for k in plan if k not in ("seeds", "conditions")], merge=("seeds", "conditions"))
    for seed in seeds:
        folder = out / f"seed-{seed}"
        configs = configs_by_seed[seed]
        for arch in ARCHS:
            t0 = time.time()
            train_gan(configs[f"gan-{arch}"], folder / f"gan-{arch}", verbose=verbose)
            timing(folder, f"gan-{arch}", t0)
            synth = folder / f"synth-{arch}"
            if not (synth / "manifest.json").exists():
                synthesize(folder / f"gan-{arch}", BUDGETS[budget]["n_synthetic"], synth, seed=seed)
            fidelity_stage(folder, f"synth-{arch}", BUDGETS[budget].get("domain_recipe"))
        for condition in CONDITIONS:
            cfg = configs[f"cls-{condition}"]
            if cfg.cls.synthetic:
                cfg.cls.synthetic = str(folder / cfg.cls.synthetic)
            t0 = time.time()
            run = train_classifier(cfg, folder / f"cls-{condition}", verbose=verbose)
            timing(folder, f"cls-{condition}", t0)
            evaluate_classifier(run.path)
        t0 = time.time()
        train_classifier(configs["cls-reference"], folder / "cls-reference", verbose=verbose)
        timing(folder, "cls-reference", t0)
        class_fidelity(folder)
    return out



# ------------------------------------------------------------------ report

def _late_gain(study: Path, condition: str) -> dict:
    """Validation-accuracy change over the last quarter of epochs, over seeds: a CNN still
    improving at the end of its budget was cut short, which limits what its row shows."""
    gains = []
    for path in sorted(study.glob(f"seed-*/cls-{condition}/metrics.jsonl")):
        acc = [r["val_accuracy"] for r in read_jsonl(path) if "val_accuracy" in r]
        if len(acc) >= 4:
            quarter = max(1, len(acc) // 4)
            gains.append(np.mean(acc[-2:]) - np.mean(acc[-quarter - 2:-quarter]))
    return mean_ci(gains)


def _load_study(study: Path) -> tuple[dict, dict[str, list[dict]]]:
    plan_path = study / "study.json"
    if not plan_path.exists():
        raise RunFolderError(f"{study}: expected a study folder with study.json (from `tfganaug study`), got none")
    plan = json.loads(plan_path.read_text())
    evaluations = {}
    for condition in plan["conditions"]:
        found = [json.loads(p.read_text()) for p in sorted(study.glob(f"seed-*/cls-{condition}/evaluation.json"))]
        if found:
            evaluations[condition] = found
    return plan, evaluations


def _fidelity(study: Path, plan: dict) -> dict:
    """FID-like distances (random-feature extractor) and memorisation of each synthetic set."""
    from tfganaug.config import load
    from tfganaug.data.datasets import load_rois
    from tfganaug.metrics.fidelity import fidelity_report
    from tfganaug.metrics.privacy import nearest_real_distances
    from tfganaug.synthetic import load_synthetic

    rows = {}
    for arch in ARCHS:
        per_seed = []
        for seed_dir in sorted(study.glob("seed-*")):
            cfg_path = seed_dir / f"gan-{arch}" / "config.json"
            synth = seed_dir / f"synth-{arch}"
            if not cfg_path.exists() or not (synth / "manifest.json").exists():
                continue
            cfg = load(cfg_path)
            sets = load_rois(cfg.data)
            real = sets["train"]
            fake, _ = load_synthetic(synth, real.class_names, cfg.data.image_size)
            fake = fake[:1000]
            held_out = sets["test"].images[:1000]
            fid = fidelity_report(real.images, fake, extractor="random_conv", kid_subset_size=100)
            ref = fidelity_report(real.images, held_out, extractor="random_conv", kid_subset_size=100)
            fake_nn, _ = nearest_real_distances(real.images, fake)
            held_nn, _ = nearest_real_distances(real.images, held_out)
            # a FID is None with fewer images than features; mean_ci reads it as NaN and drops it
            per_seed.append({"fid": fid["fid"], "fid_real_vs_heldout": ref["fid"], "n_features": fid["n_features"],
                             "precision": fid["precision"],
                             "recall": fid["recall"], "fake_nn": float(np.median(fake_nn)),
                             "heldout_nn": float(np.median(held_nn)),
                             "closer_than_heldout": float((fake_nn < np.quantile(held_nn, 0.01)).mean()),
                             "extractor": fid["extractor"]})
        if per_seed:
            rows[arch] = per_seed
    return rows


def _figures(study: Path, plan: dict, out: Path, report_dir: Path) -> list[str]:
    """ROI grids into `out` (the report folder or the study's figures/, `base.figure_home`), the
    loss and accuracy curves (no image data) into `report_dir`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfganaug.viz import save_grid

    names = []
    seed_dir = sorted(study.glob("seed-*"))[0]
    for arch in ARCHS:
        npz = seed_dir / f"synth-{arch}" / "images.npz"
        if npz.exists():
            with np.load(npz, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
            rows = [images[labels == c][:8] for c in range(int(labels.max()) + 1)]
            save_grid(np.concatenate(rows), out / f"samples_{arch}.png", rows=len(rows))
            names.append(f"samples_{arch}.png")
    from tfganaug.config import load
    from tfganaug.data.datasets import load_rois
    cfg = load(seed_dir / "cls-classic" / "config.json")
    real = load_rois(cfg.data)["train"]
    rows = [real.images[real.labels == c][:8] for c in range(len(real.class_names))]
    save_grid(np.concatenate(rows), out / "samples_real.png", rows=len(rows))
    names.append("samples_real.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, arch in zip(axes[:2], ARCHS):
        rows = read_jsonl(seed_dir / f"gan-{arch}" / "metrics.jsonl")
        for member in sorted({r["member"] for r in rows}):
            mine = [r for r in rows if r["member"] == member and "event" not in r]  # not rollback lines
            ax.plot([r["epoch"] for r in mine], [r["d_loss"] for r in mine], label=f"D {member}")
            ax.plot([r["epoch"] for r in mine], [r["g_loss"] for r in mine], "--", label=f"G {member}")
        ax.set_title(f"{arch.upper()} losses ({seed_dir.name})")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    condition_curves(axes[2], {c: seed_dir / f"cls-{c}" for c in plan["conditions"]}, "val_accuracy",
                     f"lesion CNN validation accuracy ({seed_dir.name})")
    names.append(save_curves(fig, report_dir))
    return names


def _compare(name: str, a: dict, b: dict) -> list[str]:
    """One line per headline metric: the difference of means and whether the 95% CIs overlap."""
    lines = []
    for m in ("macro_sensitivity", "macro_specificity"):
        d = a[m]["mean"] - b[m]["mean"]
        overlap = not (a[m]["ci_low"] > b[m]["ci_high"] or a[m]["ci_high"] < b[m]["ci_low"])
        word = "higher" if d > 0 else "lower" if d < 0 else "equal"
        sig = ("the 95% CIs overlap, so this is not a demonstrated difference" if overlap or np.isnan(a[m]["ci_low"])
               else "the 95% CIs do not overlap")
        lines.append(f"- {name}, {m.replace('_', ' ')}: {100 * d:+.1f} points ({word}); {sig}.")
    return lines


def _verdict(summaries: dict) -> list[str]:
    lines = []
    if "classic" in summaries and "none" in summaries:
        lines += _compare("classic vs none", summaries["classic"], summaries["none"])
    for arch in ARCHS:
        if "classic" in summaries and f"classic+{arch}" in summaries:
            lines += _compare(f"classic+{arch.upper()} vs classic", summaries[f"classic+{arch}"], summaries["classic"])
    paper = PAPER["classic+dcgan"]["macro_sensitivity"] - PAPER["classic"]["macro_sensitivity"]
    ours = summaries.get("classic+dcgan")
    if ours and "classic" in summaries:
        gain = ours["macro_sensitivity"]["mean"] - summaries["classic"]["macro_sensitivity"]["mean"]
        reproduced = gain > 0 and ours["macro_sensitivity"]["ci_low"] > summaries["classic"]["macro_sensitivity"]["ci_high"]
        lines.append(f"- The paper reports {100 * paper:+.1f} points of sensitivity for classic+DCGAN over classic; "
                     f"we measured {100 * gain:+.1f}. "
                     + ("Reproduced in direction, with non-overlapping CIs." if reproduced else
                        "**Not reproduced** at this budget and on this data."))
    return lines


def write_report(study_dir, out) -> Path:
    """Write `<out>/report.md` and its figures from a study folder (replacing an older report)."""
    study = Path(study_dir)
    plan, evaluations = _load_study(study)
    summaries = {c: summarize_evaluations(r) for c, r in evaluations.items()}
    fidelity = _fidelity(study, plan)
    fidelity["class"] = [json.loads(p.read_text()) for p in sorted(study.glob("seed-*/class-fidelity.json"))]
    timings = summed_timings(study.glob("seed-*/timings.jsonl"))
    out = Path(out)
    with atomic_dir(out, overwrite=True) as tmp:
        home, note = figure_home(study, tmp, [plan["data"]])
        figures = [figure_link(f, home, tmp) for f in _figures(study, plan, home, tmp)] + note + grid_notes(study)
        text = _markdown(plan, summaries, fidelity, timings, figures, study)
        atomic_write_text(tmp / "report.md", text)
        first = study / f"seed-{plan['seeds'][0]}"
        copy_configs(tmp, study, sorted(first.glob("*/config.json")), {"env.json": first / "cls-classic" / "env.json"})
        _summary(study, plan, summaries, tmp)
    return out / "report.md"


def test_patients_lines(plan: dict) -> list[str]:
    """Where the test ROIs come from relative to the training ROIs (data.sources.test_patients)."""
    from tfganaug.data.sources import test_patients
    data = plan["data"]
    return [f"- Test ROIs: {test_patients(data)}.",
            f"- One source only (`{data}`): these numbers are in-distribution"
            + (", and optimistic for new patients: the test scans come from the same source as the training scans"
               if data == "organamnist" else "")
            + "; they say nothing about other hospitals, scanners or protocols."]


def utility_lines(summaries: dict) -> list[str]:
    """Train on synthetic, test on real (TSTR: `<arch>-only`) beside train on real (TRTR: `none`)."""
    trtr = summaries.get("none")
    rows = [(f"{arch}-only", summaries.get(f"{arch}-only")) for arch in ARCHS]
    if not trtr or not any(s for _, s in rows):
        return ["Not run in this study folder (no `<arch>-only` condition)."]
    lines = ["The CNN of `none` (no classic augmentation, same budget) trained on real ROIs only (TRTR) and on one "
             "GAN's synthetic ROIs only (TSTR), both scored on the real test ROIs; %, mean [95% CI over seeds].", "",
             "| training data | accuracy | macro sensitivity | TSTR / TRTR accuracy | runs |", "|---|---|---|---|---|",
             f"| none: real only (TRTR) | {percent(trtr['accuracy'])} | {percent(trtr['macro_sensitivity'])} | | "
             f"{trtr['n_runs']} |"]
    for name, s in rows:
        if s:
            ratio = s["accuracy"]["mean"] / trtr["accuracy"]["mean"]
            lines.append(f"| {name}: synthetic only (TSTR) | {percent(s['accuracy'])} | "
                         f"{percent(s['macro_sensitivity'])} | {ratio:.2f} | {s['n_runs']} |")
    return lines


def fidelity_lines(study: Path) -> list[str]:
    """Fidelity (`evaluate --fidelity`) of each GAN's synthetic sets, mean over the seeds' sets."""
    from tfganaug.stages.fidelity import FIDELITY_FILE, fidelity_section
    lines = []
    for arch in ARCHS:
        found = sorted(study.glob(f"seed-*/synth-{arch}/{FIDELITY_FILE}"))
        lines += [fidelity_section(found, heading=f"### {arch.upper()}")] if found else \
            [f"### {arch.upper()}", "", "Not measured: no fidelity.json in this study folder.", ""]
    return lines


def _summary(study: Path, plan: dict, summaries: dict, out: Path) -> None:
    """summary.json beside report.md (base.write_summary)."""
    b = plan["budget_settings"]
    aug, base = summaries.get("classic+dcgan"), summaries.get("classic")
    if not aug or not base:
        return
    paper = PAPER["classic+dcgan"]["macro_sensitivity"] - PAPER["classic"]["macro_sensitivity"]
    gain = aug["macro_sensitivity"]["mean"] - base["macro_sensitivity"]["mean"]
    separated = aug["macro_sensitivity"]["ci_low"] > base["macro_sensitivity"]["ci_high"]
    verdict = ("reproduced in direction (CIs separated)" if gain > 0 and separated else
               "not reproduced (CIs overlap)" if gain > 0 else "not reproduced (no gain)")
    write_summary(out, paper="Frid-Adar et al. 2018: GAN-based synthetic ROIs (DCGAN per class, ACGAN) for a "
                             "lesion CNN",
                  claim="classic + DCGAN augmentation raises macro sensitivity over classic augmentation alone",
                  paper_figure=f"macro sensitivity {100 * PAPER['classic']['macro_sensitivity']:.1f}% (classic) -> "
                               f"{100 * PAPER['classic+dcgan']['macro_sensitivity']:.1f}% (classic + DCGAN), "
                               f"{100 * paper:+.1f} points",
                  ours=f"macro sensitivity (%): classic+dcgan {percent(aug['macro_sensitivity'])} vs classic "
                       f"{percent(base['macro_sensitivity'])} ({100 * gain:+.1f} points; mean [95% CI over "
                       f"{aug['n_runs']} seeds])",
                  data=f"{plan['data']}: {plan['train_per_class'] or b['train_per_class']} training ROIs per class "
                       f"({', '.join(aug['class_names'])})",
                  test_patients=" ".join(line[2:] for line in test_patients_lines(plan)),
                  budget=f"{plan['budget']} (CPU): {b['image_size']} px; GAN {b['gan'].get('epochs')} epochs x "
                         f"{b['gan'].get('steps_per_epoch')} steps, width {b['gan'].get('width')}; CNN "
                         f"{b['cls'].get('epochs')} epochs x {b['cls'].get('steps_per_epoch')} steps",
                  seeds=[s for s in plan["seeds"] if all((study / f"seed-{s}" / f"cls-{c}" / "evaluation.json").exists()
                                                         for c in ("classic", "classic+dcgan"))],
                  verdict=verdict)


GAN_TRICKS = {"diffaug": "DiffAugment policies on D's input", "ada_target": "ADA target",
              "g_ema_beta": "EMA decay of G", "upsample": "G upsampling", "g_layout": "G layout (sngan: Miyato et al. 2018)",
              "d_dropout": "D dropout",
              "conditioning": "ACGAN conditioning", "d_classifies_fakes": "ACGAN D's class loss on fakes",
              "mode_seeking": "ACGAN mode-seeking weight (Mao et al. 2019)", "width": "width", "lr": "Adam lr",
              "batch_size": "batch", "augment": "augmentation of the real ROIs"}
PAPER_GAN = {**PAPER_TRAINING, "width": 1024}


def _gan_training(study: Path, plan: dict) -> list[str]:
    """The GAN settings of the first seed, beside the paper's, from the runs' config.json."""
    from tfganaug.config import load
    seed_dir = study / f"seed-{plan['seeds'][0]}"
    lines = ["| setting | paper (DCGAN / ACGAN) | our DCGAN | our ACGAN |", "|---|---|---|---|"]
    cfgs = {a: load(seed_dir / f"gan-{a}" / "config.json") for a in ARCHS
            if (seed_dir / f"gan-{a}" / "config.json").exists()}
    if not cfgs:
        return ["No GAN runs found."]
    paper = {"d_dropout": "- / 0.5", "conditioning": "- / multiply", "lr": "2e-4 / 1e-4", "batch_size": 64,
             "augment": "classic", "d_classifies_fakes": "- / True", "mode_seeking": "- / 0.0"}
    acgan_only = ("d_dropout", "conditioning", "d_classifies_fakes", "mode_seeking")
    for key, name in GAN_TRICKS.items():
        ours = [str(getattr(cfgs[a].gan, key)) if a in cfgs and not (a == "dcgan" and key in acgan_only) else "-"
                for a in ARCHS]
        lines.append(f"| {name} | {paper.get(key, PAPER_GAN.get(key, '-'))} | {ours[0]} | {ours[1]} |")
    steps = {a: c.gan.epochs * (c.gan.steps_per_epoch or 0) for a, c in cfgs.items()}
    lines += ["", "Steps per GAN: " + ", ".join(f"{a.upper()} {n}" for a, n in steps.items())
              + " (one DCGAN per class). DiffAugment (Zhao et al. 2020), ADA (Karras et al. 2020), the EMA "
              "generator, resize-then-convolve upsampling and the ACGAN changes are not in the paper: they were "
              "added so that GANs train on 40-60 ROIs per class in CPU minutes (with the paper's training the "
              "same budget gave noise and a collapsed checkerboard; `reports/gan-training` measures both), and "
              "each is a config key that can be switched off (`tfganaug study --gan-training paper`)."]
    if any(c.gan.augment != "classic" for c in cfgs.values()):
        lines += ["", f"The GANs were trained on the real ROIs as they are, not on classically augmented copies "
                  f"(`GAN_AUGMENT` in studies/frid_adar.py): {plan['data']} crops have an orientation, and a CNN "
                  "trained on real crops gave 0-180 degree rotated / flipped real crops their class only 0.48 of "
                  "the time, so GANs trained on them learned unrecognisable ROIs."]
    return lines


COLLAPSED = 0.3  # per-class diversity below this: a class drawn as (nearly) one image


def _class_fidelity_lines(rows: list[dict], plan: dict | None = None) -> list[str]:
    """The reference-CNN check of the synthetic ROIs (study.class_fidelity), mean over seeds."""
    if not rows:
        return ["No class-fidelity check in this study folder (it was run before the check existed)."]
    names = rows[0]["class_names"]
    lines = ["A CNN trained on **all** real training ROIs of each seed's split (not the low-data subset, no "
             "augmentation) classifies every synthetic ROI; the share given its intended class is set beside "
             "the same CNN's accuracy on held-out real ROIs. A generator that draws its classes scores a "
             "ratio near 1; one that draws noise or one collapsed image scores near chance "
             f"(1/{len(names)} of the real accuracy). Target (issue 13): at least 0.7 at the demo budget, "
             "0.9 at cpu.", "",
             "| GAN | synthetic accuracy | real held-out accuracy | ratio | per class synthetic (" + ", ".join(names)
             + ") | diversity per class | seeds |", "|---|---|---|---|---|---|---|"]
    for arch in ARCHS:
        found = [r[arch] for r in rows if arch in r]
        if not found:
            continue
        syn = mean_ci([f["synthetic_accuracy"] for f in found])
        real = mean_ci([f["real_accuracy"] for f in found])
        ratio = mean_ci([f["ratio"] for f in found])
        per = np.nanmean([f["per_class_synthetic"] for f in found], axis=0)
        div = [f["diversity"]["per_class"] for f in found if "diversity" in f]  # absent in older folders
        div_cell = ", ".join(f"{v:.2f}" for v in np.nanmean(div, axis=0)) if div else "not measured"
        lines.append(f"| {arch.upper()} | {percent(syn)} | {percent(real)} | "
                     f"{format_ci(ratio, digits=2, clip=(0.0, float('inf')))} | "
                     + ", ".join(f"{100 * v:.0f}%" for v in per) + f" | {div_cell} | {len(found)} |")
    lines += ["", f"(reference CNN trained on {rows[0].get('n_train_real')} real ROIs for seed "
              f"{Path(rows[0]['reference_run']).parent.name}; scored on the test split. Diversity: the synthetic "
              "ROIs' mean pairwise distance within a class over the held-out real ROIs' (after a 1-pixel blur); "
              "about 1 when a generator varies as much as the data, near 0 when a class collapsed to one image, "
              "which the class check alone would pass.)"]
    target = 0.7 if (plan or {}).get("budget") in ("demo", "smoke") else 0.9
    for arch in ARCHS:
        ratios = [r[arch]["ratio"] for r in rows if arch in r]
        if ratios and float(np.nanmean(ratios)) < target:
            lines += ["", f"**{arch.upper()} is below the {target} target**: its samples are not recognisable as "
                      "their class (see its sample grid beside the real one), so the classic + "
                      f"{arch.upper()} condition tests unrealistic ROIs, not GAN augmentation."]
        div = [r[arch]["diversity"]["per_class"] for r in rows if "diversity" in r.get(arch, {})]
        if div and float(np.nanmin(np.nanmean(div, axis=0))) < COLLAPSED:
            lines += ["", f"**{arch.upper()} has a collapsed class** (diversity below {COLLAPSED}): it draws nearly "
                      "the same ROI for every z of that class."]
    return lines


def _markdown(plan, summaries, fidelity, timings, figures, study) -> str:
    b = plan["budget_settings"]
    data = plan["data"]
    lines = [
        "# Frid-Adar et al. 2018 reproduction: GAN augmentation for lesion ROI classification", "",
        f"Generated by `tfganaug report` from the study folder `{study}` (all numbers below come from its runs).", "",
        "## What was run", "",
        f"- Data: **{data}**" + (" (built-in procedural phantom of cyst / metastasis / hemangioma ROIs; not patient data)"
                                  if data == "phantom" else
                                  " (OrganAMNIST organ crops stand in for the paper's 182 liver-lesion ROIs, which "
                                  "are not public: the task is organ classification, not lesion classification. "
                                  "Unlike lesions, organ crops carry orientation: the paper's 0-180 degree rotations "
                                  "and flips change what a left kidney, liver or spleen looks like)"
                                  if data == "organamnist" else ""),
        f"- Classes: {', '.join(next(iter(summaries.values()))['class_names'])}; training ROIs per class: "
        f"{plan['train_per_class'] or b['train_per_class']} (low-data regime; the paper had 53-65 per class)",
        f"- Budget **{plan['budget']}**: image size {b['image_size']} px (paper 64), GAN width "
        f"{b['gan'].get('width', 1024)} (paper 1024), GAN epochs {b['gan'].get('epochs', 'paper')}, CNN epochs "
        f"{b['cls'].get('epochs', 150)} x {b['cls'].get('steps_per_epoch', 'one pass')} steps "
        f"(paper 150 epochs), batch {b['cls'].get('batch_size', 64)}; {b['n_synthetic']} synthetic ROIs per GAN, "
        f"synthetic share {plan['synthetic_ratio']:.0%} of each batch",
        f"- Seeds: {plan['seeds']} (each seed re-draws the training subset, retrains both GANs and all CNNs); "
        "CI = 95% Student-t interval over seeds (the paper used 3-fold cross-validation)",
        f"- Machine: {machine()}; wall time per stage summed over seeds: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(timings.items())), "",
        "## Where the test patients come from", "", *test_patients_lines(plan), "",
        "## Classification (macro one-vs-rest sensitivity and specificity, %, mean [95% CI] over seeds)", "",
        "| training data | paper sens. | paper spec. | our sens. | our spec. | our accuracy | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition in plan["conditions"]:
        s = summaries.get(condition)
        p = PAPER.get(condition, {})
        paper_sens = f"{100 * p['macro_sensitivity']:.1f}" if p else "not reported"
        paper_spec = f"{100 * p['macro_specificity']:.1f}" if p else "not reported"
        if s:
            lines.append(f"| {condition} | {paper_sens} | {paper_spec} | {percent(s['macro_sensitivity'])} | "
                         f"{percent(s['macro_specificity'])} | {percent(s['accuracy'])} | {s['n_runs']} |")
        else:
            lines.append(f"| {condition} | {paper_sens} | {paper_spec} | not run | | | 0 |")
    lines += ["", "The paper's figures are for its own 182 liver lesions at 64 px with full-size networks; "
              "ours are on the data and budget above, so only the direction of the effect is comparable. "
              "CIs are Student-t intervals clipped to [0, 100].", "",
              "Convergence at the end of the budget (validation accuracy, mean of the last two epochs minus the "
              "same a quarter of the epochs earlier, in points, mean over seeds; more than +2 means the CNN was "
              "still improving when its budget ran out):", "",
              "| training data | late gain | still improving |", "|---|---|---|"]
    for condition in plan["conditions"]:
        gain = _late_gain(study, condition)
        if gain["n"]:
            lines.append(f"| {condition} | {100 * gain['mean']:+.1f} | {'yes' if gain['mean'] > 0.02 else 'no'} |")
    lines += ["",
              "## Verdict", ""] + _verdict(summaries) + ["", "## Per class (sensitivity / specificity, %)", "",
              "| training data | " + " | ".join(summaries[next(iter(summaries))]["class_names"]) + " |",
              "|---|" + "---|" * len(summaries[next(iter(summaries))]["class_names"])]
    for condition, s in summaries.items():
        cells = [f"{percent(v['sensitivity'])} / {percent(v['specificity'])}" for v in s["per_class"].values()]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    lines += ["", "Confusion matrices (rows true, columns predicted), summed over seeds:", ""]
    for condition, s in summaries.items():
        lines.append(f"- {condition}: {s['confusion_matrix']}")
    class_rows = fidelity.pop("class", [])
    lines += ["", "## How the GANs were trained", ""] + _gan_training(study, plan)
    lines += ["", "## Utility: train on synthetic, test on real (TSTR) beside train on real (TRTR)", ""]
    lines += utility_lines(summaries)
    lines += ["", "## Conditional agreement: do the synthetic ROIs look like their class?", ""]
    lines += _class_fidelity_lines(class_rows, plan)
    lines += ["", "## Fidelity", "", "`tfganaug evaluate --fidelity` of every seed's synthetic set (radiomics and domain "
              "feature extractors against the seed's real training ROIs, memorisation audit).", ""]
    lines += fidelity_lines(study)
    if fidelity:
        lines += ["", "## Synthetic ROIs", "",
                  "FID here is computed on features of a fixed, randomly initialised conv net (`random_conv`, seed 0): "
                  "Inception weights cannot be downloaded on this machine, so these numbers are comparable only with "
                  "each other, not with published FIDs. 'FID real vs held-out' (training ROIs vs held-out real ROIs) "
                  "is the floor a perfect generator would reach. Precision/recall: k-NN manifolds (k=3, Kynkaanniemi "
                  "et al. 2019) in the same feature space.", "",
                  "Memorisation check: pixel-L2 distance from each synthetic ROI to its nearest training ROI, beside "
                  "the same distance for held-out real ROIs; 'closer' is the share of synthetic ROIs nearer to a "
                  "training ROI than 99% of held-out ROIs are. Smooth (noise-free) synthetic images sit closer to "
                  "everything in pixel space, so a high share flags images to inspect, not proven copies.", "",
                  "| GAN | FID (random_conv) | FID real vs held-out | precision | recall | median NN dist. synthetic | "
                  "median NN dist. held-out | closer |", "|---|---|---|---|---|---|---|---|"]
        for arch, rows in fidelity.items():
            agg = {k: mean_ci([r[k] for r in rows])["mean"] for k in
                   ("fid", "fid_real_vs_heldout", "precision", "recall", "fake_nn", "heldout_nn",
                    "closer_than_heldout")}
            fid = lambda v: f"{v:.3g}" if np.isfinite(v) else \
                f"n/a (fewer training ROIs than its {rows[0]['n_features']} features)"
            lines.append(f"| {arch.upper()} | {fid(agg['fid'])} | {fid(agg['fid_real_vs_heldout'])} | "
                         f"{agg['precision']:.2f} | {agg['recall']:.2f} | {agg['fake_nn']:.2f} | "
                         f"{agg['heldout_nn']:.2f} | {100 * agg['closer_than_heldout']:.1f}% |")
        lines.append(f"\n(means over {len(next(iter(fidelity.values())))} seeds; up to 1000 images per set)")
    lines += ["", "## Figures", ""] + figures
    lines += ["", "## Reproduce", "", "```",
              f"tfganaug study --budget {plan['budget']} --data {data}"
              + f" --classes {','.join(next(iter(summaries.values()))['class_names'])}"
              + f" --seeds {','.join(map(str, plan['seeds']))} --out <study> --report <report>", "```", "",
              "The resolved configuration of every run of the first seed is in `config/`.", ""]
    return "\n".join(lines)
