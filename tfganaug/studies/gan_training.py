"""`reports/gan-training` (issue 13 part 6): the papers' GAN training against the small-data
training, measured for all five GANs on the data of their papers' studies. Start here for
`tfganaug reproduce gan-training`.

Implemented by: gans/ (the five GANs; DiffAugment / ADA in gans/augment.py, G EMA and resize
upsampling in gans/base.py), the paper studies' budgets and data configs (frid_adar.py,
kits_capstone.py, sandfort.py, son.py), stages/ (train_gan, synthesize, fidelity, train_cls,
train_seg, evaluate), frid_adar.class_fidelity and segmentation.scored_labels (the checks).

For every GAN, training in {paper, small-data} and seed, one GAN run with the same steps, data
and widths (the paper study's preset and data config, at this study's reduced step budget);
its synthetic set, the fidelity stage (`base.fidelity_stage`: radiomics + domain FID / KID /
precision / recall, memorisation audit) and a conditional check with a yardstick model trained
once per data set (seed 0) on real data and shared by every training and seed:

* DCGAN (one per class) and ACGAN, OrganAMNIST liver / kidney-left / spleen (frid_adar.py):
  share of synthetic ROIs a CNN trained on all real training ROIs gives their intended class,
  over its accuracy on held-out real ROIs (`frid_adar.class_fidelity`);
* Pix2Pix (KiTS19, kits_capstone.py) and StyleGAN2 (BraTS 2018 4 contrasts + mask, son.py): a
  U-Net trained on real slices segments the synthetic images; Dice against the label maps /
  generated masks over its Dice on real held-out slices (as `segmentation.synthetic_check`);
* CycleGAN (IRCADb contrast -> TotalSegmentator non-contrast, sandfort.py): the same with a
  U-Net trained on real IRCADb slices, on the translations of IRCADb slices against the masks
  carried over from their sources.

    <study>/study.json  yardsticks/<data set>/  seed-0/gan-<arch>-<training>/
    <study>/seed-0/synth-<arch>-<training>/ (fidelity.json, evaluation-images_npz.json)
    <study>/seed-0/class-fidelity.json  timings.jsonl  ...  figures/ (restricted-licence grids)

Seeds run in order, each for every GAN and both trainings, so a stopped run covers all GANs.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tfganaug import config as config_lib
from tfganaug.errors import ConfigError, RunFolderError
from tfganaug.fsutil import atomic_dir, atomic_write_text
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean
from tfganaug.studies import frid_adar
from tfganaug.studies.base import (figure_home, figure_link, grid_notes, machine, open_study, summed_timings,
                                   timing)

ARCHS = ("dcgan", "acgan", "pix2pix", "cyclegan", "stylegan2")
TRAININGS = ("paper", "small-data")
SOURCE = {"pix2pix": "kits", "cyclegan": "sandfort", "stylegan2": "son"}  # dcgan, acgan: frid-adar
# The U-Net condition of each segmentation study that serves as yardstick (real slices only).
YARDSTICK = {"kits": "light, real", "sandfort": "standard", "son": "100R"}
# "paper": what the paper's training changes on top of the paper study's cpu settings. DCGAN,
# ACGAN, Pix2Pix and CycleGAN: no DiffAugment / ADA, no G EMA, transposed convolutions
# (frid_adar.PAPER_TRAINING); ACGAN also D dropout 0.5, z x class embedding, class loss on fakes,
# no mode-seeking term. StyleGAN2 (Karras et al. 2020) keeps its EMA (part of the paper) and gets
# back the path-length regulariser (weight 2), R1 gamma 10 and the 8-layer mapping network that
# cpu_stylegan2 / the son budget reduce.
PAPER = {"dcgan": frid_adar.PAPER_TRAINING, "acgan": {**frid_adar.PAPER_TRAINING, **frid_adar.PAPER_TRAINING_ACGAN},
         "pix2pix": frid_adar.PAPER_TRAINING, "cyclegan": frid_adar.PAPER_TRAINING,
         "stylegan2": {"pl_weight": 2.0, "r1_gamma": 10.0, "mapping_layers": 8}}
# "small-data": the cpu_* preset and budget as they are, except Pix2Pix, whose preset has none
# of issue 13's options (measured worse at 600 steps: config.py): as is it would equal "paper",
# so here it gets cpu_dcgan's DiffAugment translation + cutout, G EMA 0.99 and resize upsampling.
SMALL_DATA = {"pix2pix": {"diffaug": "translation,cutout", "g_ema_beta": 0.99, "upsample": "resize"}}

BUDGETS = {
    # smoke: the plumbing on phantoms in seconds (real TF graphs, tiny shapes); numbers mean nothing.
    "smoke": {"source": "smoke", "roi_data": "phantom", "seeds": [0, 1], "epochs": 2,
              "steps": {a: 2 for a in ARCHS}, "n": {"roi": 30, "pix2pix": 24, "stylegan2": 24, "cyclegan": 0},
              "reference_epochs": 2},
    # cpu: a reduced CPU budget for 30 GAN runs in about 100 minutes on 2 cores (measured s/step at
    # the source budgets' shapes: DCGAN 0.025 per class, ACGAN 0.04, Pix2Pix 0.34, StyleGAN2 ~0.8,
    # CycleGAN ~2): fewer steps than the paper studies' cpu budgets (DCGAN/ACGAN 2,000, Pix2Pix
    # 600, CycleGAN 1,200, StyleGAN2 3,000), far fewer than the papers'.
    "cpu": {"source": "cpu", "roi_data": "organamnist", "seeds": [0, 1, 2], "epochs": 4,
            "steps": {"dcgan": 1000, "acgan": 1000, "pix2pix": 240, "cyclegan": 100, "stylegan2": 200},
            "n": {"roi": 600, "pix2pix": 160, "stylegan2": 400, "cyclegan": 0}, "reference_epochs": 60},
}


def _seg_spec(arch: str, budget: str) -> dict:
    from tfganaug.studies.segmentation import spec_of
    spec = spec_of(SOURCE[arch])
    return {**spec, "budget": spec["budgets"][BUDGETS[budget]["source"]]}


def gan_config(arch: str, training: str, budget: str, seed: int):
    """The GAN run config of one arch, training and seed (same steps for both trainings)."""
    b = BUDGETS[budget]
    if arch in frid_adar.ARCHS:
        cfg = frid_adar._configs(b["source"], b["roi_data"], None, None, seed, training)[f"gan-{arch}"]
    else:
        s = _seg_spec(arch, budget)
        gan = {**s["budget"]["gan"], **(PAPER[arch] if training == "paper" else SMALL_DATA.get(arch, {}))}
        cfg = config_lib.preset(s["gan_preset"], data=s["budget"]["data"], gan=gan, seed=seed)
    cfg.gan.epochs = cfg.gan.sample_every_epochs = b["epochs"]
    cfg.gan.steps_per_epoch = b["steps"][arch] // b["epochs"]
    return cfg


def _yardstick(study: Path, arch: str, budget: str, verbose) -> Path:
    """The real-data model of `arch`'s data set, trained once (seed 0); returns its run folder."""
    from tfganaug.stages.evaluate import evaluate_seg
    from tfganaug.stages.train_cls import train_classifier
    from tfganaug.stages.train_seg import train_seg
    from tfganaug.studies.segmentation import _configs
    b = BUDGETS[budget]
    if arch in frid_adar.ARCHS:
        cfg = frid_adar._configs(b["source"], b["roi_data"], None, None, 0)["cls-reference"]
        cfg.cls.epochs = b["reference_epochs"]
        folder = study / "yardsticks" / "cls-reference"
        t0 = time.time()
        train_classifier(cfg, folder, verbose=verbose)
    else:
        paper = SOURCE[arch]
        cfg = _configs(paper, b["source"], 0, study)[YARDSTICK[paper]]
        folder = study / "yardsticks" / f"unet-{paper}"
        t0 = time.time()
        train_seg(cfg, folder, verbose=verbose)
        if not (folder / "evaluation.json").exists():
            evaluate_seg(folder)
    timing(study, folder.name, t0)
    return folder


def _synthesize(arch: str, budget: str, run: Path, out: Path, seed: int) -> None:
    from tfganaug.stages.synthesize import synthesize
    if (out / "manifest.json").exists():
        return
    n = BUDGETS[budget]["n"]
    if arch in frid_adar.ARCHS:
        synthesize(run, n["roi"], out, seed=seed)
    else:
        labels = _seg_spec(arch, budget)["budget"]["synth"].get("labels", "train")
        synthesize(run, n[arch] or None, out, labels=labels if arch == "pix2pix" else "train", seed=seed)


def run_study(out, budget: str = "cpu", seeds=None, verbose=2, **_) -> Path:
    from tfganaug.stages.evaluate import evaluate_seg, evaluation_name
    from tfganaug.stages.train_gan import train_gan
    from tfganaug.studies.base import fidelity_stage

    if budget not in BUDGETS:
        raise ConfigError(f"study gan-training: unknown budget '{budget}' (known: {', '.join(BUDGETS)})")
    b = BUDGETS[budget]
    out = Path(out)
    seeds = seeds or b["seeds"]
    plan = {"study": "gan-training", "budget": budget, "budget_settings": b, "seeds": seeds,
            "paper_training": PAPER, "small_data_training": SMALL_DATA}
    configs = {(a, t, s): gan_config(a, t, budget, s) for s in seeds for a in ARCHS for t in TRAININGS}
    open_study(out, plan, fixed=[k for k in plan if k != "seeds"], merge=("seeds",))
    yardsticks = {}
    for seed in seeds:
        folder = out / f"seed-{seed}"
        for arch in ARCHS:
            recipe = (frid_adar.BUDGETS[b["source"]] if arch in frid_adar.ARCHS
                      else _seg_spec(arch, budget)["budget"]).get("domain_recipe")
            for training in TRAININGS:
                name = f"{arch}-{training}"
                t0 = time.time()
                train_gan(configs[(arch, training, seed)], folder / f"gan-{name}", verbose=verbose)
                timing(folder, f"gan-{name}", t0)
                _synthesize(arch, budget, folder / f"gan-{name}", folder / f"synth-{name}", seed)
                fidelity_stage(folder, f"synth-{name}", recipe)
                key = "roi" if arch in frid_adar.ARCHS else SOURCE[arch]
                if key not in yardsticks:
                    yardsticks[key] = _yardstick(out, arch, budget, verbose)
                synth = folder / f"synth-{name}"
                if arch in frid_adar.ARCHS:
                    done = json.loads((folder / "class-fidelity.json").read_text()) \
                        if (folder / "class-fidelity.json").exists() else {}
                    if name not in done:
                        present = [f"{a}-{t}" for a in frid_adar.ARCHS for t in TRAININGS
                                   if (folder / f"synth-{a}-{t}" / "manifest.json").exists()]
                        frid_adar.class_fidelity(folder, present, reference=yardsticks[key])
                elif not (synth / evaluation_name(str(synth / "images.npz"))).exists():
                    evaluate_seg(yardsticks[key], test_data=str(synth / "images.npz"), into=synth)
    return out


# ------------------------------------------------------------------ report

def _check(study: Path, arch: str, seed_dir: Path, training: str) -> dict | None:
    """The conditional check of one run: ratio synthetic / real (class accuracy or Dice)."""
    name = f"{arch}-{training}"
    if arch in frid_adar.ARCHS:
        path = seed_dir / "class-fidelity.json"
        f = json.loads(path.read_text()).get(name) if path.exists() else None
        return None if f is None else {"ratio": f["ratio"], "synthetic": f["synthetic_accuracy"],
                                       "real": f["real_accuracy"], "diversity": f["diversity"]["mean"]}
    from tfganaug.stages.evaluate import evaluation_name
    from tfganaug.studies.segmentation import scored_labels
    synth = seed_dir / f"synth-{name}"
    fake_path = synth / evaluation_name(str(synth / "images.npz"))
    real_path = study / "yardsticks" / f"unet-{SOURCE[arch]}" / "evaluation.json"
    if not fake_path.exists() or not real_path.exists():
        return None
    real, fake = json.loads(real_path.read_text()), json.loads(fake_path.read_text())
    classes, _ = scored_labels([real], [fake])
    r = nan_mean([real["per_slice"]["dice"][c] for c in classes]) if classes else float("nan")
    f = nan_mean([fake["per_slice"]["dice"][c] for c in classes]) if classes else float("nan")
    return {"ratio": f / r if r > 0 else float("nan"), "synthetic": f, "real": r, "labels": classes}


def _fidelity(seed_dir: Path, name: str) -> dict | None:
    """Domain and radiomics FID / KID / precision / recall (mean over channels), memorisation flags."""
    from tfganaug.stages.fidelity import FIDELITY_FILE
    path = seed_dir / f"synth-{name}" / FIDELITY_FILE
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    out = {}
    for ext in ("domain", "radiomics"):
        rows = r["extractors"].get(ext, {}).get("per_channel", {}).values()
        for key in ("fid", "kid_mean", "precision", "recall"):
            # NaN where a FID is undefined (None: fewer images than features, metrics/fidelity.py)
            value = lambda v: np.nan if v is None else v
            out[f"{ext}_{key}"] = float(np.mean([value(row["synthetic"][key]) for row in rows]))
            out[f"{ext}_{key}_heldout"] = float(np.mean([value((row.get("heldout_real") or {}).get(key, np.nan))
                                                         for row in rows]))
    mem = r.get("memorisation", {})
    out["flagged"] = [s for s, a in mem.items() if s != "skipped" and a["flagged"]]
    return out


def _seconds(seed_dir: Path, name: str) -> float | None:
    from tfganaug.fsutil import read_jsonl
    rows = [r["seconds"] for r in read_jsonl(seed_dir / "timings.jsonl") if r["stage"] == f"gan-{name}"]
    return rows[0] if rows else None


def measures(study: Path) -> dict:
    """Per (arch, training): one row per seed that has its check, fidelity and wall time."""
    out = {}
    for arch in ARCHS:
        for training in TRAININGS:
            rows = []
            for seed_dir in sorted(study.glob("seed-*"), key=lambda p: int(p.name.split("-")[1])):
                name = f"{arch}-{training}"
                check, fid, seconds = _check(study, arch, seed_dir, training), _fidelity(seed_dir, name), \
                    _seconds(seed_dir, name)
                if check and fid and seconds is not None:
                    rows.append({"seed": int(seed_dir.name.split("-")[1]), "seconds": seconds, **check, **fid})
            out[(arch, training)] = rows
    return out


def _grid(study: Path, arch: str, seed_dir: Path, home: Path) -> str | None:
    """Real | paper | small-data of one GAN (first seed), drawn into `home`; returns its name."""
    from tfganaug.config import load
    from tfganaug.viz import save_grid
    synth = {t: seed_dir / f"synth-{arch}-{t}" / "images.npz" for t in TRAININGS}
    if not all(p.exists() for p in synth.values()):
        return None
    cfg = load(seed_dir / f"gan-{arch}-paper" / "config.json")
    sets = {}
    for t, path in synth.items():
        with np.load(path, allow_pickle=False) as z:
            sets[t] = {k: z[k] for k in z.files if k in ("images", "labels", "masks")}
    if arch in frid_adar.ARCHS:
        from tfganaug.data.datasets import load_rois
        real = load_rois(cfg.data)["train"]
        k = len(real.class_names)
        rows = [real.images[real.labels == c][:8] for c in range(k)]
        rows += [s["images"][s["labels"] == c][:8] for s in sets.values() for c in range(k)]
    elif arch == "cyclegan":
        from tfganaug.stages.train_gan import domain_slices
        source, target = domain_slices(cfg, cfg.data.name).images, domain_slices(cfg, cfg.gan.domain_b).images
        n = min(len(source), *(len(s["images"]) for s in sets.values()))
        pick = np.linspace(0, n - 1, 8).round().astype(int)  # synthesize keeps the source's slice order
        rows = [source[pick], *(s["images"][pick] for s in sets.values()),
                target[np.linspace(0, len(target) - 1, 8).round().astype(int)]]
        rows = [r[..., :1] for r in rows]
    else:
        from tfganaug.data.segsets import load_segsets
        train = load_segsets(cfg.data)["train"]
        k = max(1, len(train.class_names) - 1)
        lesion = np.flatnonzero(train.masks.reshape(len(train), -1).any(axis=1))
        pick = lesion[np.linspace(0, len(lesion) - 1, 8).round().astype(int)]
        rows = []
        for images, masks in [(train.images[pick], train.masks[pick])] + \
                [(s["images"][:8], s["masks"][:8]) for s in sets.values()]:
            rows += [images[..., c:c + 1] for c in range(images.shape[-1])] + [masks[..., None] / k]
    n = min(len(r) for r in rows)
    name = f"grid_{arch}.png"
    save_grid(np.concatenate([r[:n] for r in rows]), home / name, rows=len(rows))
    return name


GRID_ROWS = {"roi": "rows 1-3 real training ROIs (one class per row: {classes}), rows 4-6 the paper's training, "
                    "rows 7-9 the small-data training (seed {seed})",
             "cyclegan": "row 1 real {data} slices (contrast source), row 2 their translation by the paper's "
                         "training, row 3 by the small-data training, row 4 real {target} slices (target domain; "
                         "other positions) (seed {seed})",
             "seg": "real training slices with a lesion, one row per channel ({channels}) and the mask; then the "
                    "same rows for the paper's training and for the small-data training (seed {seed})"}


def _fmt(rows: list[dict], key: str, digits: int = 2, ci: bool = True) -> str:
    """mean [95% CI] of a non-negative quantity; digits None: 3 significant digits (FID, KID),
    and the mean alone when `ci` is False."""
    stat = mean_ci([r[key] for r in rows])
    if not stat["n"] or not np.isfinite(stat["mean"]):
        return "n/a"
    if digits is not None:
        return format_ci(stat, digits=digits, clip=(0.0, float("inf")))
    return f"{stat['mean']:.3g}" + (f" [{max(0.0, stat['ci_low']):.3g}, {stat['ci_high']:.3g}]"
                                    if ci and stat["n"] > 1 else "")


def write_report(study_dir, out) -> Path:
    """`<out>/report.md` (+ OrganAMNIST grids) from the study folder; restricted-licence grids go
    to `<study>/figures` (base.figure_home)."""
    from tfganaug.config import load
    from tfganaug.data.sources import permissive
    study = Path(study_dir)
    try:
        plan = json.loads((study / "study.json").read_text())
    except (OSError, ValueError, RecursionError):
        plan = {}
    if not isinstance(plan, dict) or plan.get("study") != "gan-training":
        raise RunFolderError(f"{study}: expected a gan-training study folder (study.json from `tfganaug reproduce "
                             "gan-training`), got " + ("none" if not plan else f"a '{plan.get('study')}' study"))
    b = plan["budget_settings"]
    m = measures(study)
    first = study / f"seed-{plan['seeds'][0]}"
    target = 0.9 if plan["budget"] == "cpu" else 0.7
    lines = ["# GAN training on small medical data sets: the papers' training against the small-data training, "
             "five GANs", "",
             f"Generated by `tfganaug report` from `{study}` (`tfganaug reproduce gan-training --budget "
             f"{plan['budget']}`); every number below comes from its runs. Machine: {machine()}, shared with other "
             "jobs, so wall times include their load.", "",
             "## What was run", "",
             f"Budget **{plan['budget']}**: a reduced CPU budget chosen so that 30 GAN runs and their checks fit in "
             "about 100 minutes on 2 cores; it is neither the paper studies' cpu budgets (DCGAN/ACGAN 2,000 steps, "
             "Pix2Pix 600, CycleGAN 1,200, StyleGAN2 3,000) nor the papers' (tens of thousands of steps on GPUs). "
             "Both trainings of a GAN run the same steps on the same data with the same widths and seeds; each seed "
             "retrains every GAN. " + _wall_time(study), "",
             "| GAN | data (paper study) | steps | image size | width | batch | seeds with results (paper / "
             "small-data) | GAN wall time s, paper | small-data |", "|---|---|---|---|---|---|---|---|---|"]
    for arch in ARCHS:
        cfg_path = first / f"gan-{arch}-paper" / "config.json"
        if not cfg_path.exists():
            lines.append(f"| {arch.upper()} | not run | | | | | | | |")
            continue
        cfg = load(cfg_path)
        width = (f"channel base {cfg.gan.channel_base}, max {cfg.gan.channel_max}" if arch == "stylegan2"
                 else str(cfg.gan.width))
        data = cfg.data.name + (f" ({', '.join(cfg.data.classes)})" if cfg.data.classes else "") + \
            (f" -> {cfg.gan.domain_b}" if arch == "cyclegan" else "")
        steps = cfg.gan.epochs * cfg.gan.steps_per_epoch
        seeds = " / ".join(str([r["seed"] for r in m[(arch, t)]]) for t in TRAININGS)
        times = [_fmt(m[(arch, t)], "seconds", 0) for t in TRAININGS]
        lines.append(f"| {arch.upper()} | {data} | {steps}" + (" per class" if arch == "dcgan" else "") +
                     f" | {cfg.data.image_size} | {width} | {cfg.gan.batch_size} | {seeds} | {times[0]} | {times[1]} |")
    lines += ["", "What differs between the two trainings, read from the seed's two run configs (all other "
              "settings equal; the small-data training is the paper study's cpu_* preset and budget as they are"
              + (", except Pix2Pix: cpu_pix2pix has none of issue 13's options, so as it is it would equal the "
                 "paper's training, and here it gets cpu_dcgan's" if "pix2pix" in SMALL_DATA else "") + "):", "",
              "| GAN | setting | paper | small-data |", "|---|---|---|---|"]
    for arch in ARCHS:
        paths = [first / f"gan-{arch}-{t}" / "config.json" for t in TRAININGS]
        if all(p.exists() for p in paths):
            # read through `load`, so a key newer than a run's config.json has the value it ran with
            before, after = (dataclasses.asdict(load(p).gan) for p in paths)
            diff = [k for k in before if before[k] != after.get(k)]
            lines += [f"| {arch.upper()} | {k} | {before[k]} | {after[k]} |" for k in diff] or \
                [f"| {arch.upper()} | none at this budget | | |"]
    lines += ["", "## Results", "",
              "Check ratio: DCGAN / ACGAN, share of synthetic ROIs a CNN trained on all real training ROIs gives "
              "their intended class over its accuracy on held-out real ROIs; Pix2Pix / StyleGAN2, Dice of a U-Net "
              "trained on real slices on the synthetic images against their label maps / generated masks over its "
              "Dice on real held-out slices (labels the synthetic masks contain); CycleGAN, the same with a U-Net "
              "trained on real IRCADb (contrast) slices, on the translations of IRCADb slices against their source "
              "masks: whether the translation keeps the anatomy where the masks are (its slices include the "
              "U-Net's own training slices, so this flatters it; how non-contrast the translations look is the "
              "FID against the target domain). Each yardstick is trained once (seed 0) and shared. "
              f"Targets (issue 13): class ratio >= {target} at this budget, Dice ratio >= 0.7. FID / KID / "
              "precision / recall of the fidelity stage against the real training images (mean over channels), "
              "held-out real images in the last column as what a perfect generator would reach. "
              "Mean [95% CI over seeds].", "",
              "| GAN | training | check ratio | synthetic | real | domain FID | domain KID | precision | recall | "
              "radiomics FID (mean) | domain FID held-out real | memorisation flagged | seeds |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arch in ARCHS:
        for t in TRAININGS:
            rows = m[(arch, t)]
            if not rows:
                lines.append(f"| {arch.upper()} | {t} | not run | | | | | | | | | | 0 |")
                continue
            flagged = sum(bool(r["flagged"]) for r in rows)
            lines.append(f"| {arch.upper()} | {t} | {_fmt(rows, 'ratio')} | {_fmt(rows, 'synthetic')} | "
                         f"{_fmt(rows, 'real')} | {_fmt(rows, 'domain_fid', None)} | {_fmt(rows, 'domain_kid_mean', None)} | "
                         f"{_fmt(rows, 'domain_precision')} | {_fmt(rows, 'domain_recall')} | "
                         f"{_fmt(rows, 'radiomics_fid', None, ci=False)} | {_fmt(rows, 'domain_fid_heldout', None)} | "
                         f"{flagged} of {len(rows)} | {[r['seed'] for r in rows]} |")
    lines += ["", "## Verdict", ""] + [_verdict(arch, m, target) for arch in ARCHS if m[(arch, "paper")]
                                       and m[(arch, "small-data")]]
    lines += ["", "## Sample grids", ""]
    with atomic_dir(Path(out), overwrite=True) as tmp:
        notes = []
        for arch in ARCHS:
            cfg_path = first / f"gan-{arch}-paper" / "config.json"
            if not cfg_path.exists():
                continue
            cfg = load(cfg_path)
            home, note = figure_home(study, tmp, [cfg.data.name, cfg.gan.domain_b])
            notes += [n for n in note if n not in notes]
            grid = _grid(study, arch, first, home)
            if not grid:
                continue
            kind = "roi" if arch in frid_adar.ARCHS else "cyclegan" if arch == "cyclegan" else "seg"
            status = json.loads((first / f"gan-{arch}-paper" / "status.json").read_text())
            what = GRID_ROWS[kind].format(classes=", ".join(status["class_names"]), seed=plan["seeds"][0],
                                          data=cfg.data.name, target=cfg.gan.domain_b,
                                          channels=", ".join(cfg.data.contrasts or ["CT"]))
            shown = figure_link(grid, home, tmp)
            lines += [f"{arch.upper()}: {what}." + ("" if permissive(cfg.data.name) else
                                                    " Described in words below (restricted licence)."), "", shown, ""]
        lines += notes + grid_notes(study)
        lines += ["## Reproduce", "", "```",
                  f"tfganaug reproduce gan-training --budget {plan['budget']} --seeds "
                  f"{','.join(map(str, plan['seeds']))} --out <studies> --reports <reports>",
                  "tfganaug report <studies>/gan-training --out reports/gan-training", "```", ""]
        atomic_write_text(tmp / "report.md", "\n".join(lines))
    return Path(out) / "report.md"


def _wall_time(study: Path) -> str:
    """Summed stage times of the folder: GAN runs, fidelity stages, yardsticks."""
    t = summed_timings([study / "timings.jsonl", *study.glob("seed-*/timings.jsonl")])
    part = {k: sum(v for s, v in t.items() if s.startswith(k)) / 60 for k in ("gan-", "fidelity-")}
    return (f"Stage wall times summed over this folder: GAN runs {part['gan-']:.0f} min, fidelity stages "
            f"{part['fidelity-']:.0f} min, yardsticks {sum(t.values()) / 60 - sum(part.values()):.0f} min "
            "(synthesis and the checks are not timed).")


def _verdict(arch: str, m: dict, target: float) -> str:
    before, after = m[(arch, "paper")], m[(arch, "small-data")]
    s0, s1 = (mean_ci([r["ratio"] for r in x]) for x in (before, after))
    f0, f1 = (float(np.mean([r["domain_fid"] for r in x])) for x in (before, after))
    goal = target if arch in frid_adar.ARCHS else 0.7
    separated = min(s0["n"], s1["n"]) > 1 and (s1["ci_low"] > s0["ci_high"] or s0["ci_low"] > s1["ci_high"])
    spread = "one seed on a side, no spread to compare" if min(s0["n"], s1["n"]) < 2 else "within the seed spread"
    if s1["mean"] > s0["mean"]:
        who = "**beats** the paper's" if separated else f"is ahead of the paper's ({spread})"
    else:
        who = "**does not beat** the paper's" + ("" if separated else f" ({spread})")
    meets = [t for t, s in (("paper", s0), ("small-data", s1)) if s["mean"] >= goal]
    fid = (f"domain FID {f0:.3g} -> {f1:.3g}" if np.isfinite(f0) and np.isfinite(f1) else
           "domain FID undefined (fewer real images than features)")
    return (f"- {arch.upper()}: check ratio {s0['mean']:.2f} (paper) vs {s1['mean']:.2f} (small-data): the small-data "
            f"training {who}; {fid}. Target {goal}: "
            + (f"met by {' and '.join(meets)}" if meets else "**met by neither**") + ".")
