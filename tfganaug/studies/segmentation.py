"""What the three segmentation studies (kits_capstone, sandfort, son) share: the runner and
the report. Each paper's file holds its `STUDY` spec (title, presets, budgets, conditions,
published figures, headline metric) and its `results` tables and `verdict`.

Layout (every stage a run folder of its own; a rerun resumes where a crash stopped)::

    <study>/study.json  gan/  synth/  seed-0/<condition>/  seed-1/...

The GAN is trained once (seed 0) and shared by all seeds: the confidence intervals cover
the segmentation networks' training variance, not the GAN's (stated in the reports).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tfganaug import config as config_lib
from tfganaug.errors import ConfigError
from tfganaug.fsutil import atomic_dir, atomic_write_text, read_jsonl, slug
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean
from tfganaug.studies.base import (condition_curves, copy_configs, fidelity_stage, figure_home, figure_link,
                                   grid_notes, machine, open_study, save_curves, summed_timings, timing,
                                   write_summary)

SEG_SMOKE = {"base_filters": 4, "depth": 2, "padding": "same", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8}
SMOKE_ENCODER = {"widths": [4, 8], "features": 8, "steps": 3, "batch_size": 4}
"""The fidelity stage's domain encoder at the smoke budgets (budget key `domain_recipe`; the
other budgets train metrics.domain.DomainRecipe's default)."""
SYNTH = {"gan": "synth", "labels2image": "synth-labels2image"}
"""The synthetic set of a condition's `fakes`: the paper's GAN, or the zero-training baseline
(gans/labels2image.py, issue 14 part 4) fitted on the GAN's training pairs and drawn from the
same label maps as the GAN's set (Pix2Pix: the same label source; StyleGAN2: its own masks)."""


def paper(name: str):
    """The study module of `name` (kits, sandfort, son)."""
    from tfganaug.studies import STUDIES
    return STUDIES.get(name)


def spec_of(name: str) -> dict:
    return paper(name).STUDY


def dice_cell(stat: dict, clip: bool = True) -> str:
    """mean [95% CI]; overlap scores live in [0, 1], so their t-interval is clipped there."""
    return format_ci(stat, clip=(0.0, 1.0) if clip else None)


def _configs(study: str, budget: str, seed: int, folder: Path) -> dict:
    spec = spec_of(study)
    b = spec["budgets"][budget]
    out = {"gan": config_lib.preset(spec["gan_preset"], data=b["data"], gan=b["gan"], seed=0)}
    for name, condition in spec["conditions"].items():
        seg = dict(b["seg"])
        cond = dict(condition)
        if cond.pop("base_filters_x", None) and "base_filters" in seg:
            seg["base_filters"] = seg["base_filters"] * 2
        epochs_x = cond.pop("epochs_x", None)
        if epochs_x and "epochs" in seg:
            seg["epochs"] = max(1, round(seg["epochs"] * epochs_x))
        fakes = cond.pop("fakes", "gan")
        seg.update(cond)
        if cond.get("synthetic_ratio") or "F" in cond.get("setting", ""):
            seg["synthetic"] = str(folder / SYNTH[fakes])
        if cond.get("augment") == "histeq":
            seg["histeq_reference"] = b["histeq_reference"]
        out[name] = config_lib.preset(spec["seg_preset"], data={**b["data"], "seed": seed}, seg=seg, seed=seed)
    return out


def run_seg_study(study: str, out, budget: str = "cpu", seeds=None, conditions=None, verbose=2) -> Path:
    from tfganaug.stages.evaluate import evaluate_seg
    from tfganaug.stages.synthesize import synthesize
    from tfganaug.stages.train_gan import train_gan
    from tfganaug.stages.train_seg import train_seg

    spec = spec_of(study)
    if budget not in spec["budgets"]:
        raise ConfigError(f"study {study}: unknown budget '{budget}' (known: {', '.join(spec['budgets'])})")
    b = spec["budgets"][budget]
    out = Path(out)
    seeds = seeds or b["seeds"]
    conditions = conditions or b.get("conditions") or list(spec["conditions"])
    plan = {"study": study, "budget": budget, "budget_settings": b, "seeds": seeds, "conditions": conditions}
    plan = open_study(out, plan, fixed=("study", "budget", "budget_settings"), merge=("seeds", "conditions"))
    configs = _configs(study, budget, 0, out)
    t0 = time.time()
    train_gan(configs["gan"], out / "gan", verbose=verbose)
    timing(out, "gan", t0)
    if not (out / "synth" / "manifest.json").exists():
        s = b["synth"]
        synthesize(out / "gan", s.get("n") or None, out / "synth", labels=s.get("labels", "train"),
                   perturb=s.get("perturb"), seed=0)
    fidelity_stage(out, "synth", b.get("domain_recipe"))
    if any(spec["conditions"][c].get("fakes") == "labels2image" for c in conditions):
        _baseline(out, b, configs["gan"], verbose)
    for seed in seeds:
        configs = _configs(study, budget, seed, out)
        for condition in conditions:
            folder = out / f"seed-{seed}" / slug(condition)
            t0 = time.time()
            train_seg(configs[condition], folder, verbose=verbose)
            timing(out / f"seed-{seed}", slug(condition), t0)
            whole = _whole_volumes(plan, condition) or None
            evaluate_seg(folder, whole_volumes=whole)
            for test in b.get("tests", []):
                evaluate_seg(folder, test_data=test, whole_volumes=whole)
            if condition == spec.get("synthetic_check"):
                evaluate_seg(folder, test_data=str(out / "synth" / "images.npz"))
    return out


def _baseline(out: Path, b: dict, gan_cfg, verbose) -> None:
    """The labels2image baseline: fitted on the GAN's training data (same data config), drawn
    into `synth-labels2image` from the GAN set's label maps, with the same count."""
    from tfganaug.gans import GANS
    from tfganaug.stages.synthesize import synthesize
    from tfganaug.stages.train_gan import train_gan
    cfg = config_lib.preset("cpu_labels2image", data=config_lib.to_dict(gan_cfg)["data"], seed=0)
    t0 = time.time()
    train_gan(cfg, out / "labels2image", verbose=verbose)
    timing(out, "labels2image", t0)
    s = b["synth"]
    if GANS.get(gan_cfg.gan.arch).synthesises_from == "label_maps":
        labels, perturb = s.get("labels", "train"), s.get("perturb")
    else:  # a generator of images and masks together: the baseline paints the masks it drew
        labels, perturb = str(out / "synth" / "images.npz"), 0.0
    if not (out / SYNTH["labels2image"] / "manifest.json").exists():
        synthesize(out / "labels2image", s.get("n") or None, out / SYNTH["labels2image"], labels=labels,
                   perturb=perturb, seed=0)
    fidelity_stage(out, SYNTH["labels2image"], b.get("domain_recipe"))


# ------------------------------------------------------------------ report

def _whole_volumes(plan: dict, condition: str) -> bool:
    """Scored on whole volumes: the budget says so, or the condition's U-Net is 3-D."""
    spec = spec_of(plan["study"])
    return bool(spec["budgets"][plan["budget"]].get("whole_volumes")
                or spec["conditions"].get(condition, {}).get("unet") in config_lib.UNET_3D)


def evaluations(study: Path, plan: dict, test: str | None = None) -> dict[str, list[dict]]:
    """Per condition, the evaluations of every seed on the run's own test split or on `test` data."""
    from tfganaug.stages.evaluate import evaluation_name
    out = {}
    for condition in plan["conditions"]:
        name = evaluation_name(test, _whole_volumes(plan, condition))
        rows = [json.loads(p.read_text()) for p in sorted(study.glob(f"seed-*/{slug(condition)}/{name}"))]
        if rows:
            out[condition] = rows
    return out


def synthetic_check(study: Path, plan: dict) -> list[str]:
    """Do the synthetic masks match their images? (issue 13, for the mask-making GANs): the U-Net
    of condition `STUDY["synthetic_check"]`, trained on real slices only, segments the synthetic
    set; its per-slice mean Dice against the generated masks should be at least 0.7x its Dice
    on the real held-out slices."""
    condition = spec_of(plan["study"]).get("synthetic_check")
    real = evaluations(study, plan).get(condition, [])
    fake = evaluations(study, plan, str(study / "synth" / "images.npz")).get(condition, [])
    if not real or not fake:
        return []
    classes, missing = scored_labels(real, fake)
    if not classes:
        return ["### Conditional agreement: do the generated masks match the generated images?", "",
                "The synthetic masks contain no foreground label and the U-Net finds none: nothing to score.", ""]

    def stat(rows):
        return mean_ci([nan_mean([e["per_slice"]["dice"][c] for c in classes]) for e in rows])

    def per_label(rows):
        return " / ".join(f"{nan_mean([e['per_slice']['dice'][c] for e in rows]):.2f}" for c in classes)
    r, f = stat(real), stat(fake)
    ratio = f["mean"] / r["mean"] if r["mean"] > 0 else float("nan")
    return ["### Conditional agreement: do the generated masks match the generated images?", "",
            f"Conditional agreement (issue 14 part 2; the synthetic check of issue 13): the `{condition}` U-Net (real training slices only) segments real held-out slices and the "
            f"synthetic set; Dice against the reference / the generated masks, per slice, mean over the labels "
            f"the synthetic set scores ({' / '.join(classes)}; in neither its masks nor the U-Net's predictions: "
            f"{', '.join(missing) or 'none'}), "
            f"[95% CI over {len(fake)} seed(s)]. The target (issue 13): synthetic at least 0.7x real.", "",
            "| slices | n | mean Dice | per label |", "|---|---|---|---|",
            f"| real held-out ({real[0]['data']} {real[0]['split']}) | {real[0]['n_slices']} | {format_ci(r)} | "
            f"{per_label(real)} |",
            f"| synthetic | {fake[0]['n_slices']} | {format_ci(f)} | {per_label(fake)} |", "",
            f"Ratio synthetic / real: **{ratio:.2f}** ({'meets' if ratio >= 0.7 else 'below'} the 0.7 target).", ""]


def scored_labels(real: list[dict], fake: list[dict]) -> tuple[list[str], list[str]]:
    """The labels a synthetic-set check compares on, and those left out: the ones the generated
    masks (or the U-Net's predictions on them) contain. A label the GAN never draws has no
    synthetic Dice, and the mean over the others would flatter or punish the synthetic set."""
    classes = [c for c in real[0]["classes"] if fake[0]["per_slice"]["n_scored"][c] > 0]
    return classes, [c for c in real[0]["classes"] if c not in classes]


def table(title: str, evaluations: dict, level: str, metric: str, paper_key=None, paper=None) -> list[str]:
    from tfganaug.stages.evaluate import summarize_seg
    if not evaluations:
        return []
    first = next(iter(evaluations.values()))[0]
    classes = first["classes"]
    head = f"| training | " + " | ".join(classes) + " | mean | runs |"
    lines = [f"### {title}", "", f"{first['data']} ({first['split']}: {first['n_slices']} slices, "
             f"{first['n_cases']} case(s), scored on {first.get('slices_scored', 'the selected slices')}); "
             f"{level.replace('_', '-')} {metric}, mean [95% CI over seeds]", "",
             head, "|---|" + "---|" * (len(classes) + 2)]
    clip = metric in ("dice", "iou")
    for condition, rows in evaluations.items():
        s = summarize_seg(rows)
        cells = [dice_cell(s[level][metric][c], clip) for c in classes]
        mean = dice_cell(mean_ci([nan_mean([r[level][metric][c] for c in classes]) for r in rows]), clip)
        lines.append(f"| {condition} | " + " | ".join(cells) + f" | {mean} | {s['n_runs']} |")
        if paper and paper_key and condition in paper and paper_key in paper[condition]:
            p = paper[condition][paper_key]
            pcells = [f"{p[c]:.2f}" if isinstance(p, dict) and c in p else "" for c in classes]
            pmean = f"{p:.2f}" if not isinstance(p, dict) else ""
            lines.append(f"| *paper: {condition}* | " + " | ".join(pcells) + f" | {pmean} | |")
    return lines + [""]


def _figures(study: Path, plan: dict, out: Path, report_dir: Path) -> list[str]:
    """Sample grids into `out` (the report folder or the study's figures/, `base.figure_home`),
    the loss curves (no image data) into `report_dir`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tfganaug.viz import save_grid

    names = []
    samples = sorted((study / "gan" / "samples").glob("*/epoch_*.png"))
    if samples:
        (out / "gan_samples_last_epoch.png").write_bytes(samples[-1].read_bytes())
        names.append("gan_samples_last_epoch.png")
    for folder, name in (("synth", "synthetic_samples.png"), (SYNTH["labels2image"], "labels2image_samples.png")):
        npz = study / folder / "images.npz"
        if npz.exists():
            with np.load(npz, allow_pickle=False) as z:
                images, masks, k = z["images"][:8], z["masks"][:8], len(z["class_names"])
            rows = [images[..., c] for c in range(images.shape[-1])] + [masks / max(1, k - 1)]
            save_grid(np.concatenate(rows)[..., None], out / name, rows=len(rows))
            names.append(name)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    rows = [r for r in read_jsonl(study / "gan" / "metrics.jsonl") if "event" not in r]
    for key in sorted({k for r in rows for k in r if k.endswith("loss")}):
        axes[0].plot([r["epoch"] for r in rows], [r[key] for r in rows], label=key)
    axes[0].set_title("GAN losses")
    axes[0].set_xlabel("epoch")
    axes[0].set_yscale("symlog")
    axes[0].legend(fontsize=7)
    seed = plan["seeds"][0]
    condition_curves(axes[1], {c: study / f"seed-{seed}" / slug(c) for c in plan["conditions"]}, "val_loss",
                     f"U-Net validation loss (seed {seed})")
    names.append(save_curves(fig, report_dir))
    return names


def write_report(study_dir, out, notes: str | None = None) -> Path:
    """`<out>/report.md` + figures + configs from a segmentation study folder; `notes` (default:
    the study folder's notes.md, if any) go under "Where this setting differs from the paper"."""
    study = Path(study_dir)
    if notes is None:
        notes = (study / "notes.md").read_text() if (study / "notes.md").exists() else ""
    plan = json.loads((study / "study.json").read_text())
    spec = spec_of(plan["study"])
    b = plan["budget_settings"]
    level, metric = spec["headline"]
    timings = summed_timings([study / "timings.jsonl", *study.glob("seed-*/timings.jsonl")])
    gan_status = json.loads((study / "gan" / "status.json").read_text())
    synth = json.loads((study / "synth" / "manifest.json").read_text())
    seg_status = next(iter(sorted(study.glob("seed-*/*/status.json"))), None)
    seg_status = json.loads(seg_status.read_text()) if seg_status else {}
    lines = [f"# {spec['title']}", "",
             f"Generated by `tfganaug report` from `{study}`; every number below comes from its runs.", "",
             "## What was run", "",
             f"- Study `{plan['study']}`, budget **{plan['budget']}** (a labelled CPU budget, not the paper's): "
             f"data `{b['data']['name']}` at {b['data']['image_size']} px; GAN settings {json.dumps(b['gan'])}; "
             f"U-Net settings {json.dumps(b['seg'])}.",
             f"- GAN trained once (seed 0) on {gan_status.get('n_train')} slices"
             + (f" (domain B: {gan_status.get('n_train_b')} slices)" if gan_status.get("n_train_b") else "")
             + f"; synthetic set: {synth['count']} samples ({json.dumps({k: synth[k] for k in synth if k in ('label_source', 'perturbed', 'source', 'truncation_psi')})}).",
             f"- U-Net training set: {seg_status.get('n_train_real')} real slices from "
             f"{seg_status.get('n_train_patients')} patient(s) (first seed; the synthetic share per condition is in "
             "the tables' row names).",
             f"- Seeds run: {_seeds_run(study, plan)}: each U-Net condition retrained per seed; the GAN and the "
             "synthetic set are shared, so the CIs cover U-Net training variance only.",
             f"- Machine: {machine()}; wall time: "
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(timings.items())), ""]
    if notes:
        lines += ["## Where this setting differs from the paper", "", notes, ""]
    lines += ["## Where the test patients come from", "", *test_patients_lines(study, plan), ""]
    lines += ["## Results", ""]
    main_eval = evaluations(study, plan)
    lines += paper(plan["study"]).results(study, plan, main_eval)
    lines += utility_lines(study, plan, main_eval)
    lines += synthetic_check(study, plan)
    lines += baseline_lines(plan, main_eval)
    lines += ["## Verdict", "", paper(plan["study"]).verdict(study, plan, main_eval), ""]
    lines += fidelity_lines(study, seg_status.get("n_train_patients"))
    with atomic_dir(out, overwrite=True) as tmp:
        home, note = figure_home(study, tmp, data_sources(b))
        lines += _synthetic_section(study, home, tmp)
        lines += _translation_section(study, home, tmp, b.get("translation_figure"))
        lines += ["## Figures", ""]
        lines += [figure_link(f, home, tmp) for f in _figures(study, plan, home, tmp)]
        lines += ["", *note] if note else []
        lines += grid_notes(study)
        seeds = ",".join(map(str, plan["seeds"]))
        lines += ["", "## Reproduce", "", "```",
                  f"tfganaug study --paper {plan['study']} --budget {plan['budget']} --seeds {seeds} --out <study>",
                  f"tfganaug report <study> --out <report>", "```", "",
                  "The resolved configuration of the GAN and of every condition of the first seed is in `config/`.", ""]
        atomic_write_text(tmp / "report.md", "\n".join(lines))
        copy_configs(tmp, study, sorted(study.glob(f"seed-{plan['seeds'][0]}/*/config.json")),
                     {"gan.json": study / "gan" / "config.json", "env.json": study / "gan" / "env.json"})
        _summary(study, plan, tmp, gan_status, seg_status)
    return Path(out) / "report.md"


def data_sources(b: dict) -> list[str]:
    """Every data set whose images (or images generated from it) a report's figures show."""
    return [b["data"]["name"], b["gan"].get("domain_b"), b.get("translation_figure")]


def _synthetic_section(study: Path, out: Path, report_dir: Path) -> list[str]:
    """Real vs synthetic slices side by side, and the checkerboard index of each set."""
    from tfganaug.config import load
    from tfganaug.data.segsets import load_segsets
    from tfganaug.stages.train_gan import domain_slices
    from tfganaug.metrics.artefacts import checkerboard_index
    from tfganaug.viz import save_grid

    cfg = load(study / "gan" / "config.json")
    with np.load(study / "synth" / "images.npz", allow_pickle=False) as z:
        fake, fake_masks = z["images"], z["masks"][:8]
    train = load_segsets(cfg.data)["train"]
    real = train.images
    sets = {"real training slices (" + cfg.data.name + ")": real, "synthetic": fake}
    if cfg.gan.arch == "cyclegan":
        rows = [real[:6], fake[:6]]
        other = domain_slices(cfg, cfg.gan.domain_b).images
        sets[f"real target domain ({cfg.gan.domain_b})"] = other
        rows.append(other[np.linspace(0, len(other) - 1, 6).round().astype(int)])
        n = min(len(r) for r in rows)
        rows = [r[:n, ..., :1] for r in rows]
        what = " / ".join(sets) + " (the synthetic row is the CycleGAN translation of the real row above it)"
    else:
        # Every channel and the mask, real slices with a lesion (spread over the set) above the
        # first synthetic samples, so contrasts and masks can be compared with their images.
        k = max(1, len(train.class_names) - 1)
        lesion = np.flatnonzero(train.masks.reshape(len(train), -1).any(axis=1))
        pick = lesion[np.linspace(0, len(lesion) - 1, min(8, len(lesion))).round().astype(int)]
        n = min(len(pick), len(fake_masks))
        rows = []
        for images, masks in ((real[pick[:n]], train.masks[pick[:n]]), (fake[:n], fake_masks[:n])):
            rows += [images[..., c:c + 1] for c in range(images.shape[-1])] + [masks[..., None] / k]
        names = list(train.channel_names) + ["mask"]
        what = f"real training slices with a lesion ({cfg.data.name}): " + ", ".join(names) + \
            "; then the same rows for synthetic samples"
    save_grid(np.concatenate(rows), out / "real_vs_synthetic.png", rows=len(rows))
    lines = ["## Synthetic slices", "",
             "Rows of `real_vs_synthetic.png`: " + what + ".", "",
             "Checkerboard index (Odena et al. 2016): share of spectral power at the Nyquist frequencies, where "
             "transposed convolutions leave their period-2 pattern; a synthetic set well above the real sets has "
             "checkerboard artefacts (first channel, all slices).", "",
             "| set | slices | checkerboard index |", "|---|---|---|"]
    for name, images in sets.items():
        lines.append(f"| {name} | {len(images)} | {checkerboard_index(images[..., :1]):.2e} |")
    return lines + ["", figure_link("real_vs_synthetic.png", out, report_dir), ""]


def _translation_section(study: Path, out: Path, report_dir: Path, source: str | None) -> list[str]:
    """CycleGAN only: slices of `source` (a freely licensed contrast scan when domain A's licence
    forbids showing derivatives), their G_AB translation and real slices of domain B, one column
    per source slice spread over the scan."""
    if not source:
        return []
    from tfganaug.stages.train_gan import domain_slices, load_gan
    from tfganaug.viz import save_grid

    _, cfg, _, gans = load_gan(study / "gan")
    gan = gans[0][1]
    real = domain_slices(cfg, source).images
    target = domain_slices(cfg, cfg.gan.domain_b).images
    pick = lambda images: images[np.linspace(0, len(images) - 1, 6).round().astype(int)]
    x = pick(real)
    fake = np.clip((gan.translate_ab(x * 2 - 1).numpy() + 1) / 2, 0, 1)
    save_grid(np.concatenate([x[..., :1], fake[..., :1], pick(target)[..., :1]]), out / "translation.png", rows=3)
    return ["## Translation", "",
            f"Rows of `translation.png`: {source} slices (contrast source) / the CycleGAN's translation of each (G_AB, "
            f"contrast -> non-contrast) / real {cfg.gan.domain_b} slices (the target domain; other positions, not "
            "the same patient as the row above unless the data says so).", "",
            figure_link("translation.png", out, report_dir), ""]


def _seeds_run(study: Path, plan: dict) -> str:
    """Seeds with a finished run, per condition (what the tables average over)."""
    found = {c: [s for s in plan["seeds"] if (study / f"seed-{s}" / slug(c) / "final").exists()]
             for c in plan["conditions"]}
    if len({tuple(v) for v in found.values()}) == 1:
        return str(next(iter(found.values())))
    return "; ".join(f"{c}: {v}" for c, v in found.items())


def judge(gain: dict, base: dict, paper_gain: float) -> str:
    """Reproduced / direction only / not reproduced, from the gain over the baseline and its CI."""
    if not gain["n"] or not base["n"]:
        return "not run"
    diff = gain["mean"] - base["mean"]
    separated = gain["ci_low"] > base["ci_high"]
    if separated and diff >= 0.5 * paper_gain:
        return "**reproduced** (gain at least half the paper's, CIs separated)"
    if separated:
        return "**direction only** (a gain with separated CIs, but less than half the paper's)"
    if diff > 0:
        return "**not reproduced** (the difference is within the seed spread: CIs overlap)"
    return "**not reproduced** (no gain at this budget and on this data)"




# ------------------------------------------------------------------ issue 14 sections

def headline_stat(evals: dict, condition: str, level: str, metric: str) -> dict:
    """Mean [95% CI] over seeds of the class-mean `level` `metric` of one condition."""
    rows = evals.get(condition, [])
    classes = rows[0]["classes"] if rows else []
    return mean_ci([nan_mean([r[level][metric][c] for c in classes]) for r in rows])


def _overlap(a: dict, b: dict) -> bool:
    return not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])


def _cis(a: dict, b: dict) -> str:
    """Whether two mean [95% CI] overlap, in words (one seed has no interval)."""
    if min(a["n"], b["n"]) < 2:
        return "one seed on a side: no CI to compare"
    return f"CIs {'overlap' if _overlap(a, b) else 'do not overlap'}"


def utility_lines(study: Path, plan: dict, main_eval: dict) -> list[str]:
    """Train on synthetic, test on real (TSTR) beside train on real, test on real (TRTR)."""
    spec = spec_of(plan["study"])
    u = spec.get("utility")
    if isinstance(u, str):  # a study without a TSTR condition says why
        return ["### Utility: train on synthetic, test on real (TSTR)", "", u, ""]
    if not u:
        return []
    level, metric = spec["headline"]
    name = f"{level.replace('_', '-')} {metric}"
    trtr, tstr = (headline_stat(main_eval, u[k], level, metric) for k in ("trtr", "tstr"))
    lines = ["### Utility: train on synthetic, test on real (TSTR) beside train on real (TRTR)", "",
             f"The same U-Net recipe trained on real slices only (`{u['trtr']}`, TRTR) and on synthetic slices only "
             f"(`{u['tstr']}`, TSTR), both scored on the real test slices above; {name}, class mean, "
             "mean [95% CI over seeds].", "",
             "| training | data | " + name + " | runs |", "|---|---|---|---|"]
    for key, stat in (("trtr", trtr), ("tstr", tstr)):
        cell = dice_cell(stat) if stat["n"] else "not run"
        lines.append(f"| {u[key]} | {'real only (TRTR)' if key == 'trtr' else 'synthetic only (TSTR)'} | {cell} | "
                     f"{stat['n']} |")
    if trtr["n"] and tstr["n"]:
        ratio = tstr["mean"] / trtr["mean"] if trtr["mean"] > 0 else float("nan")
        lines += ["", f"TSTR / TRTR: **{ratio:.2f}** ({_cis(tstr, trtr)})."]
    return lines + [""]


def baseline_lines(plan: dict, main_eval: dict) -> list[str]:
    """Does the GAN beat the zero-training labels2image baseline downstream (issue 14 part 4)?"""
    spec = spec_of(plan["study"])
    base = spec.get("baseline")
    if not base:
        return []
    level, metric = spec["headline"]
    gan, l2i = (headline_stat(main_eval, base[k], level, metric) for k in ("gan", "labels2image"))
    lines = ["### The GAN against a zero-training baseline", "",
             f"`{base['labels2image']}` trains the same U-Net as `{base['gan']}`, with the GAN's synthetic set "
             "replaced by the labels2image baseline's (gans/labels2image.py: each label region painted with "
             "intensities drawn from that label's statistics in the real training slices, textured noise and blur; "
             "nothing trained) drawn from the same label maps, same count, same ratio.", "",
             f"| training | {level.replace('_', '-')} {metric} | runs |", "|---|---|---|"]
    for c, s in ((base["gan"], gan), (base["labels2image"], l2i)):
        lines.append(f"| {c} | {dice_cell(s) if s['n'] else 'not run'} | {s['n']} |")
    if gan["n"] and l2i["n"]:
        d = gan["mean"] - l2i["mean"]
        separated = min(gan["n"], l2i["n"]) > 1 and not _overlap(gan, l2i)
        beats = d > 0 and separated
        lines += ["", f"**The GAN {'beats' if beats else 'does not beat'} the zero-training baseline downstream** "
                  f"({d:+.3f}; {_cis(gan, l2i)})"
                  + ("" if beats else ": at this budget its fakes are worth no more to the U-Net than per-label "
                     "intensity statistics" if d <= 0 else ": the gain is within the seed spread"
                     if min(gan["n"], l2i["n"]) > 1 else ": with one seed a gain cannot be told from seed noise")
                  + "."]
    return lines + [""]


def fidelity_lines(study: Path, n_train_patients: int | None = None) -> list[str]:
    """The fidelity section: `evaluate --fidelity` of each synthetic set of the study."""
    from tfganaug.stages.fidelity import FIDELITY_FILE, fidelity_section
    lines = ["## Fidelity", ""]
    if n_train_patients == 1:
        lines += ["With one training patient, every image drawn from that patient's statistics (the GAN's and the "
                  "baseline's alike) sits closer to the training slices than the held-out patients do, so the "
                  "memorisation audit flags it whether or not it copies; the closest-pairs figures say which.", ""]
    sets = [(n, study / folder) for n, folder in (("GAN", "synth"), ("labels2image baseline", SYNTH["labels2image"]))
            if (study / folder / "manifest.json").exists()]
    for name, folder in sets:
        if (folder / FIDELITY_FILE).exists():
            lines += [fidelity_section(folder, heading=f"### {name} synthetic set ({folder.name})")]
        else:
            lines += [f"### {name} synthetic set ({folder.name})", "", "Not measured: this study folder has no "
                      "fidelity.json (run `tfganaug study` again, or `tfganaug evaluate <set> --fidelity`).", ""]
    return lines


def test_patients_lines(study: Path, plan: dict) -> list[str]:
    """Where the test patients come from relative to the training patients: the patient ids of
    the splits the U-Nets were trained and scored on (first seed) and the source's own words."""
    from tfganaug.config import load
    from tfganaug.data.segsets import load_segsets
    from tfganaug.data.sources import parts_of, test_patients
    b = plan["budget_settings"]
    runs = sorted(study.glob(f"seed-{plan['seeds'][0]}/*/config.json"))
    if not runs:
        return ["No U-Net run yet."]
    cfg = load(runs[0])
    sets = load_segsets(cfg.data)
    train, val, test = (set(sets[s].patients()) for s in ("train", "val", "test"))
    scored = val if cfg.data.name in ("kits19", "brats", "brats2018") else test  # as stages.evaluate.evaluate_seg

    def ids(xs):
        xs = sorted(xs)
        return ", ".join(xs[:6]) + (f", ... ({len(xs)})" if len(xs) > 6 else "")
    shared = train & scored
    lines = [f"- Training: {len(train)} patient(s) of `{cfg.data.name}` ({ids(train)}); scored on "
             f"{len(scored)} other patient(s) ({ids(scored)})"
             + (f"; **{len(shared)} of them also in training**" if shared else ", none of them in training") + ".",
             f"- Test patients: {test_patients(cfg.data.name)}.",
             (f"- One source only (`{cfg.data.name}`): these numbers are in-distribution, and say nothing about other "
              "hospitals, scanners or protocols." if len(parts_of(cfg.data.name)) == 1 else
              f"- Sources {', '.join(f'`{p}`' for p in parts_of(cfg.data.name))}, each split by patient on its own and "
              "each scored on held-out patients of its own source: these numbers are in-distribution for each "
              "source, and say nothing about other hospitals, scanners or protocols.")]
    for extra in b.get("tests", []):
        lines.append(f"- `{extra}`: another data set, none of its patients seen in training "
                     f"({test_patients(extra)}).")
    return lines


def _summary(study: Path, plan: dict, out: Path, gan_status: dict, seg_status: dict) -> None:
    """summary.json beside report.md (base.write_summary)."""
    spec = spec_of(plan["study"])
    s = spec["summary"]
    b = plan["budget_settings"]
    level, metric = spec["headline"]
    # "test": the budget's test data set whose name holds it (Sandfort: the non-contrast one)
    test = next((t for t in b.get("tests", []) if s["test"] in t), None) if s.get("test") else None
    evals = evaluations(study, plan, test)
    aug, base = (headline_stat(evals, c, level, metric) for c in s["compare"])
    what = f"{level.replace('_', '-')} {metric}" + (f" on {test}" if test else "")
    ours = (f"{what}: {s['compare'][0]} {dice_cell(aug)} vs {s['compare'][1]} {dice_cell(base)} "
            f"(mean [95% CI] over {aug['n']} and {base['n']} seeds)")
    verdict = judge(aug, base, s["paper_gain"]).replace("**", "")
    gan = b["gan"]
    budget = (f"{plan['budget']} (CPU): {b['data']['image_size']} px; GAN {gan.get('epochs')} epochs"
              + (f" x {gan['steps_per_epoch']} steps" if gan.get("steps_per_epoch") else "")
              + f"; U-Net {b['seg'].get('epochs')} epochs x {b['seg'].get('steps_per_epoch')} steps")
    data = (f"{b['data']['name']}: {seg_status.get('n_train_real')} real training slices of "
            f"{seg_status.get('n_train_patients')} patient(s); GAN trained on {gan_status.get('n_train')} slices")
    origin = test_patients_lines(study, plan)
    write_summary(out, paper=s["paper"], claim=s["claim"], paper_figure=s["paper_figure"], ours=ours, data=data,
                  test_patients=" ".join(line[2:] for line in origin[:3]), budget=budget,
                  seeds=_finished_seeds(study, plan, s["compare"]), verdict=verdict)


def _finished_seeds(study: Path, plan: dict, conditions) -> list[int]:
    return [s for s in plan["seeds"] if all((study / f"seed-{s}" / slug(c) / "final").exists() for c in conditions)]
