"""The three segmentation studies end to end, with named budgets, and their reports.

* ``kits`` (KiTS19 capstone): Pix2Pix label map -> CT; U-Net (light / heavy) for kidney and
  tumour trained on real slices vs real + fake at a few ratios.
* ``sandfort`` (Sandfort et al. 2019): CycleGAN contrast -> non-contrast CT; U-Net for
  liver, kidney, spleen with standard, histogram-equalisation or CycleGAN augmentation,
  scored on contrast (in distribution) and non-contrast (out of distribution) CT.
* ``son`` (Son et al.): StyleGAN2 generating MR contrasts + tumour labels; U-Net trained on
  100R, 100F, 100F+100R, 300F+100R, 300A+100R.

Layout (every stage a run folder of its own; a rerun resumes where a crash stopped)::

    <study>/study.json  gan/  synth/  seed-0/<condition>/  seed-1/...

The GAN is trained once (seed 0) and shared by all seeds: the confidence intervals cover
the segmentation networks' training variance, not the GAN's (stated in the reports).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from tfganaug import config as config_lib
from tfganaug.errors import ConfigError, RunFolderError
from tfganaug.fsutil import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl, slug
from tfganaug.metrics.brats import BRATS_REGION_KEYS
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean

SEG_SMOKE = {"base_filters": 4, "depth": 2, "padding": "same", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8}

UNET3D_CPU = {"unet": "sandfort3d", "base_filters": 8, "depth": 3, "patch_depth": 16, "batch_size": 2}

STUDIES = {
    "kits": {
        "title": "KiTS19 capstone reproduction: Pix2Pix label-to-CT augmentation for kidney/tumour U-Net",
        "gan_preset": "cpu_pix2pix", "seg_preset": "cpu_unet_kits",
        "budgets": {
            "smoke": {"data": {"name": "phantom-kidney", "image_size": 32, "n_phantom_patients": 6,
                               "phantom_size": 64},
                      "gan": {"width": 8, "epochs": 2, "steps_per_epoch": 2, "batch_size": 4},
                      "synth": {"labels": "perturb", "n": 40}, "seg": SEG_SMOKE, "seeds": [0, 1], "tests": []},
            "cpu": {"data": {"name": "kits19", "image_size": 128},
                    "gan": {"width": 32, "epochs": 150, "batch_size": 4, "sample_every_epochs": 25},
                    "synth": {"labels": "kits19-labels", "perturb": 0.5, "n": 320},
                    "seg": {"base_filters": 16, "depth": 4, "padding": "same", "epochs": 40, "steps_per_epoch": 10,
                            "batch_size": 8},
                    "seeds": [0, 1, 2], "tests": []},
        },
        "conditions": {
            "light, real": {"unet": "kits_light"},
            "light, real+fake 0.2": {"unet": "kits_light", "synthetic_ratio": 0.2},
            "light, real+fake 0.5": {"unet": "kits_light", "synthetic_ratio": 0.5},
            # heavy: twice the filters (4x the FLOPs), so half the steps on a CPU budget
            "heavy, real": {"unet": "kits_heavy", "base_filters_x": 2, "epochs_x": 0.5},
            "heavy, real+fake 0.2": {"unet": "kits_heavy", "base_filters_x": 2, "epochs_x": 0.5,
                                     "synthetic_ratio": 0.2},
        },
        # The capstone's per-slice mean IoU on its test split (README, section 6): 58 % with real
        # data only, about 90 % (+32 points) once augmented; per U-Net variant it gives no table.
        "paper": {"light, real": {"per_slice_iou_mean": 0.58}, "light, real+fake 0.2": {"per_slice_iou_mean": 0.90}},
        "headline": ("per_slice", "iou"),
    },
    "sandfort": {
        "title": "Sandfort et al. 2019 reproduction: CycleGAN contrast-to-non-contrast augmentation for organ "
                 "segmentation",
        "gan_preset": "cpu_cyclegan", "seg_preset": "cpu_unet_abdomen",
        "budgets": {
            "smoke": {"data": {"name": "phantom-abdomen", "image_size": 32, "n_phantom_patients": 6,
                               "phantom_size": 64},
                      "gan": {"domain_b": "phantom-abdomen-native", "width": 8, "n_res_blocks": 1, "epochs": 2,
                              "steps_per_epoch": 2, "batch_size": 2},
                      "synth": {"n": 0}, "seg": SEG_SMOKE, "seeds": [0, 1], "whole_volumes": True,
                      "histeq_reference": "phantom-abdomen-native", "tests": ["phantom-abdomen-native"]},
            "cpu": {"data": {"name": "ircadb", "image_size": 128, "window_width": 400.0, "window_level": 50.0},
                    "gan": {"domain_b": "totalseg-native", "width": 16, "n_res_blocks": 6, "epochs": 30,
                            "steps_per_epoch": 40, "batch_size": 2, "sample_every_epochs": 10},
                    "synth": {"n": 0},
                    "seg": {"base_filters": 16, "depth": 4, "epochs": 30, "steps_per_epoch": 10, "batch_size": 8},
                    "seeds": [0, 1, 2], "histeq_reference": "totalseg-native", "whole_volumes": True,
                    "tests": ["totalseg-native", "totalseg-contrast"]},
        },
        # Every condition is scored on whole volumes (all slices of a case or z-block), as the
        # paper's 3-D evaluation and so that the 2-D and 3-D U-Nets are compared on the same voxels.
        "conditions": {
            "standard": {"augment": "standard"},
            "histeq": {"augment": "histeq"},
            "cyclegan": {"augment": "standard", "synthetic_ratio": 0.5},
            # The paper's 3-D U-Net on windows of 16 slices (narrower than the 2-D one: CPU budget).
            "standard, 3-D": {**UNET3D_CPU, "augment": "standard"},
            "cyclegan, 3-D": {**UNET3D_CPU, "augment": "standard", "synthetic_ratio": 0.5},
        },
        # Non-contrast (out-of-distribution) Dice, standard -> CycleGAN augmentation (the issue's
        # figures from the paper); in distribution the paper reports 0.89-0.94 for all methods.
        "paper": {"standard": {"ood_dice": {"kidney": 0.09, "liver": 0.86, "spleen": 0.65}},
                  "cyclegan": {"ood_dice": {"kidney": 0.66, "liver": 0.89, "spleen": 0.69}}},
        "headline": ("per_case", "dice"),
    },
    "son": {
        "title": "Son et al. reproduction: StyleGAN2 joint MR contrasts + tumour mask for U-Net training",
        "gan_preset": "cpu_stylegan2", "seg_preset": "cpu_unet_brats",
        "budgets": {
            "smoke": {"data": {"name": "phantom-brain", "image_size": 16, "n_phantom_patients": 6,
                               "phantom_size": 32, "contrasts": ["t1", "t1ce", "t2", "flair"]},
                      "gan": {"latent_dim": 16, "w_dim": 16, "channel_base": 64, "channel_max": 16, "epochs": 2,
                              "steps_per_epoch": 2, "batch_size": 4, "r1_interval": 2, "pl_interval": 2},
                      "synth": {"n": 120}, "seg": SEG_SMOKE, "seeds": [0, 1], "tests": []},
            "cpu": {"data": {"name": "brats", "image_size": 64, "contrasts": ["flair", "t1ce"],
                             "max_slices_per_case": 80},
                    "gan": {"latent_dim": 128, "w_dim": 128, "mapping_layers": 4, "channel_base": 1024,
                            "channel_max": 64, "epochs": 60, "steps_per_epoch": 50, "batch_size": 8,
                            "sample_every_epochs": 10},
                    "synth": {"n": 1200},
                    "seg": {"base_filters": 16, "depth": 3, "epochs": 30, "steps_per_epoch": 10, "batch_size": 16},
                    "seeds": [0, 1, 2], "tests": []},
        },
        "conditions": {s: {"setting": s} for s in ("100R", "100F", "100F+100R", "300F+100R", "300A+100R")},
        # Son et al. give their Dice tables as images only; their claims, in words (paper text).
        "paper": {"100F": {"claim": "comparable to 100R"}, "100F+100R": {"claim": "significantly better than 100R"},
                  "300F+100R": {"claim": "best of all settings (small real set)"},
                  "300A+100R": {"claim": "below 300F+100R"}},
        "headline": ("per_case", "dice"),
    },
}


def _dice_cell(stat: dict, clip: bool = True) -> str:
    """mean [95% CI]; overlap scores live in [0, 1], so their t-interval is clipped there."""
    return format_ci(stat, clip=(0.0, 1.0) if clip else None)


def _configs(study: str, budget: str, seed: int, folder: Path) -> dict:
    spec = STUDIES[study]
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
        seg.update(cond)
        if cond.get("synthetic_ratio") or "F" in cond.get("setting", ""):
            seg["synthetic"] = str(folder / "synth")
        if cond.get("augment") == "histeq":
            seg["histeq_reference"] = b["histeq_reference"]
        out[name] = config_lib.preset(spec["seg_preset"], data={**b["data"], "seed": seed}, seg=seg, seed=seed)
    return out


NO_DERIVATIVES = {"ircadb"}  # 3D-IRCADb-01: CC BY-NC-ND, no derivatives may be redistributed


def run_seg_study(study: str, out, budget: str = "cpu", seeds=None, conditions=None, verbose=2) -> Path:
    from tfganaug.image_gans import synthesize_image_gan, train_image_gan
    from tfganaug.segmentation import evaluate_seg, train_seg
    from tfganaug.study import _timing

    if study not in STUDIES:
        raise ConfigError(f"unknown study '{study}' (known: {', '.join(STUDIES)}, frid-adar)")
    spec = STUDIES[study]
    if budget not in spec["budgets"]:
        raise ConfigError(f"study {study}: unknown budget '{budget}' (known: {', '.join(spec['budgets'])})")
    b = spec["budgets"][budget]
    out = Path(out)
    seeds = seeds or b["seeds"]
    conditions = conditions or list(spec["conditions"])
    plan = {"study": study, "budget": budget, "budget_settings": b, "seeds": seeds, "conditions": conditions}
    study_json = out / "study.json"
    if study_json.exists():
        previous = json.loads(study_json.read_text())
        if {k: previous.get(k) for k in ("study", "budget", "budget_settings")} != \
                {k: plan[k] for k in ("study", "budget", "budget_settings")}:
            raise RunFolderError(f"{out}: holds a study with other settings ({study_json}); choose another --out")
        plan["seeds"] = sorted(set(previous["seeds"]) | set(seeds))
        plan["conditions"] = list(dict.fromkeys(previous["conditions"] + conditions))
    atomic_write_json(study_json, {**plan, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    configs = _configs(study, budget, 0, out)
    t0 = time.time()
    train_image_gan(configs["gan"], out / "gan", verbose=verbose)
    _timing(out, "gan", t0)
    if not (out / "synth" / "manifest.json").exists():
        s = b["synth"]
        synthesize_image_gan(out / "gan", s.get("n", 0), out / "synth", labels=s.get("labels", "train"),
                             perturb=s.get("perturb"), seed=0)
    for seed in seeds:
        configs = _configs(study, budget, seed, out)
        for condition in conditions:
            folder = out / f"seed-{seed}" / slug(condition)
            t0 = time.time()
            train_seg(configs[condition], folder, verbose=verbose)
            _timing(out / f"seed-{seed}", slug(condition), t0)
            whole = _whole_volumes(plan, condition) or None
            evaluate_seg(folder, whole_volumes=whole)
            for test in b.get("tests", []):
                evaluate_seg(folder, test_data=test, whole_volumes=whole)
    return out


# ------------------------------------------------------------------ report

def _whole_volumes(plan: dict, condition: str) -> bool:
    """Scored on whole volumes: the budget says so, or the condition's U-Net is 3-D."""
    spec = STUDIES[plan["study"]]
    return bool(spec["budgets"][plan["budget"]].get("whole_volumes")
                or spec["conditions"].get(condition, {}).get("unet") in config_lib.UNET_3D)


def _evaluations(study: Path, plan: dict, test: str | None = None) -> dict[str, list[dict]]:
    """Per condition, the evaluations of every seed on the run's own test split or on `test` data."""
    from tfganaug.segmentation import evaluation_name
    out = {}
    for condition in plan["conditions"]:
        name = evaluation_name(test, _whole_volumes(plan, condition))
        rows = [json.loads(p.read_text()) for p in sorted(study.glob(f"seed-*/{slug(condition)}/{name}"))]
        if rows:
            out[condition] = rows
    return out


def _table(title: str, evaluations: dict, level: str, metric: str, paper_key=None, paper=None) -> list[str]:
    from tfganaug.segmentation import summarize_seg
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
        cells = [_dice_cell(s[level][metric][c], clip) for c in classes]
        mean = _dice_cell(mean_ci([nan_mean([r[level][metric][c] for c in classes]) for r in rows]), clip)
        lines.append(f"| {condition} | " + " | ".join(cells) + f" | {mean} | {s['n_runs']} |")
        if paper and paper_key and condition in paper and paper_key in paper[condition]:
            p = paper[condition][paper_key]
            pcells = [f"{p[c]:.2f}" if isinstance(p, dict) and c in p else "" for c in classes]
            pmean = f"{p:.2f}" if not isinstance(p, dict) else ""
            lines.append(f"| *paper: {condition}* | " + " | ".join(pcells) + f" | {pmean} | |")
    return lines + [""]


def _figures(study: Path, plan: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tfganaug.viz import save_figure, save_grid

    names = []
    samples = sorted((study / "gan" / "samples").glob("*/epoch_*.png"))
    if samples:
        (out / "gan_samples_last_epoch.png").write_bytes(samples[-1].read_bytes())
        names.append("gan_samples_last_epoch.png")
    npz = study / "synth" / "images.npz"
    if npz.exists():
        with np.load(npz, allow_pickle=False) as z:
            images, masks, k = z["images"][:8], z["masks"][:8], len(z["class_names"])
        rows = [images[..., c] for c in range(images.shape[-1])] + [masks / max(1, k - 1)]
        save_grid(np.concatenate(rows)[..., None], out / "synthetic_samples.png", rows=len(rows))
        names.append("synthetic_samples.png")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    rows = [r for r in read_jsonl(study / "gan" / "metrics.jsonl") if "event" not in r]
    for key in sorted({k for r in rows for k in r if k.endswith("loss")}):
        axes[0].plot([r["epoch"] for r in rows], [r[key] for r in rows], label=key)
    axes[0].set_title("GAN losses")
    axes[0].set_xlabel("epoch")
    axes[0].set_yscale("symlog")
    axes[0].legend(fontsize=7)
    seed = plan["seeds"][0]
    for condition in plan["conditions"]:
        rows = [r for r in read_jsonl(study / f"seed-{seed}" / slug(condition) / "metrics.jsonl") if "event" not in r]
        if rows:
            axes[1].plot([r["epoch"] for r in rows], [r.get("val_loss", np.nan) for r in rows], label=condition)
    axes[1].set_title(f"U-Net validation loss (seed {seed})")
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=7)
    save_figure(fig, out / "training_curves.png")
    plt.close(fig)
    names.append("training_curves.png")
    return names


def write_seg_report(study_dir, out, notes: str = "") -> Path:
    """`<out>/report.md` + figures + configs from a segmentation study folder."""
    study = Path(study_dir)
    plan = json.loads((study / "study.json").read_text())
    spec = STUDIES[plan["study"]]
    b = plan["budget_settings"]
    level, metric = spec["headline"]
    timings = {}
    for t in [study / "timings.jsonl", *study.glob("seed-*/timings.jsonl")]:
        for row in read_jsonl(t):
            timings[row["stage"]] = timings.get(row["stage"], 0.0) + row["seconds"]
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
             f"- Machine: {platform.machine()} CPU, no GPU; wall time: "
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(timings.items())), ""]
    if notes:
        lines += ["## Where this setting differs from the paper", "", notes, ""]
    lines += ["## Results", ""]
    main_eval = _evaluations(study, plan)
    if plan["study"] == "kits":
        lines += _table("Per-slice IoU (the capstone's metric)", main_eval, "per_slice", "iou", "per_slice_iou_mean",
                        spec["paper"])
        lines += _table("Per-slice Dice", main_eval, "per_slice", "dice")
        lines += _table("Per-case (volumetric) Dice", main_eval, "per_case", "dice")
    elif plan["study"] == "sandfort":
        lines += _table("In distribution (contrast CT, held-out slices) - Dice per case", main_eval, "per_case", "dice")
        for test in b.get("tests", []):
            ev = _evaluations(study, plan, test)
            paper = spec["paper"] if "native" in test else None
            lines += _table(f"{test} - Dice per case", ev, "per_case", "dice", "ood_dice", paper)
            lines += _table(f"{test} - |relative volume error| (%) per case", ev, "per_case",
                            "abs_relative_volume_error_percent")
    else:
        lines += _table("Dice per label (per case)", main_eval, "per_case", "dice")
        lines += ["### BraTS regions (per case Dice, mean [95% CI over seeds])", "",
                  "| training | whole tumour | tumour core | enhancing | paper's claim |", "|---|---|---|---|---|"]
        for condition, rows in main_eval.items():
            regs = [_dice_cell(mean_ci([r["per_case"].get("brats_regions", {}).get(g, np.nan) for r in rows]))
                    for g in BRATS_REGION_KEYS.values()]
            claim = spec["paper"].get(condition, {}).get("claim", "reference (100R)" if condition == "100R" else "")
            lines.append(f"| {condition} | " + " | ".join(regs) + f" | {claim} |")
        lines += ["", _brats_convention(main_eval), ""]
    lines += ["## Verdict", "", _verdict(plan, spec, main_eval, study), ""]
    no_derivatives = any(n in NO_DERIVATIVES for n in (b["data"]["name"], b["gan"].get("domain_b")))
    with atomic_dir(out, overwrite=True) as tmp:
        lines += _synthetic_section(study, tmp)
        lines += ["## Figures", ""]
        for f in _figures(study, plan, tmp):
            if no_derivatives and f != "training_curves.png":
                (tmp / f).unlink()
                continue
            lines.append(f"![{f}]({f})")
        if no_derivatives:
            for f in ("real_vs_synthetic.png",):
                (tmp / f).unlink(missing_ok=True)
            lines += ["", "Figures that show pixels of " + ", ".join(sorted(NO_DERIVATIVES)) + " (real or translated "
                      "slices) are written by `tfganaug report` on your machine but left out here: the data's licence "
                      "(CC BY-NC-ND) forbids redistributing derivatives."]
        seeds = ",".join(map(str, plan["seeds"]))
        lines += ["", "## Reproduce", "", "```",
                  f"tfganaug study --paper {plan['study']} --budget {plan['budget']} --seeds {seeds} --out <study>",
                  f"tfganaug report <study> --out <report>", "```", "",
                  "The resolved configuration of the GAN and of every condition of the first seed is in `config/`.", ""]
        atomic_write_text(tmp / "report.md", "\n".join(lines))
        (tmp / "config").mkdir()
        (tmp / "config" / "study.json").write_text((study / "study.json").read_text())
        (tmp / "config" / "gan.json").write_text((study / "gan" / "config.json").read_text())
        for cfg in sorted(study.glob(f"seed-{plan['seeds'][0]}/*/config.json")):
            (tmp / "config" / f"{cfg.parent.name}.json").write_text(cfg.read_text())
        if (study / "gan" / "env.json").exists():
            (tmp / "config" / "env.json").write_text((study / "gan" / "env.json").read_text())
    return Path(out) / "report.md"


def _synthetic_section(study: Path, out: Path) -> list[str]:
    """Real vs synthetic slices side by side, and the checkerboard index of each set."""
    from tfganaug.config import load
    from tfganaug.data.segsets import load_segsets
    from tfganaug.image_gans import domain_slices
    from tfganaug.metrics.artefacts import checkerboard_index
    from tfganaug.viz import save_grid

    cfg = load(study / "gan" / "config.json")
    with np.load(study / "synth" / "images.npz", allow_pickle=False) as z:
        fake = z["images"]
    real = load_segsets(cfg.data)["train"].images
    sets = {"real training slices (" + cfg.data.name + ")": real, "synthetic": fake}
    rows = [real[:6], fake[:6]]
    if cfg.gan.arch == "cyclegan":
        other = domain_slices(cfg, cfg.gan.domain_b).images
        sets[f"real target domain ({cfg.gan.domain_b})"] = other
        rows.append(other[np.linspace(0, len(other) - 1, 6).round().astype(int)])
    n = min(len(r) for r in rows)
    save_grid(np.concatenate([r[:n, ..., :1] for r in rows]), out / "real_vs_synthetic.png", rows=len(rows))
    lines = ["## Synthetic slices", "",
             "Rows of `real_vs_synthetic.png`: " + " / ".join(sets) + (" (the synthetic row is the CycleGAN "
             "translation of the real row above it)" if cfg.gan.arch == "cyclegan" else "") + ".", "",
             "Checkerboard index (Odena et al. 2016): share of spectral power at the Nyquist frequencies, where "
             "transposed convolutions leave their period-2 pattern; a synthetic set well above the real sets has "
             "checkerboard artefacts (first channel, all slices).", "",
             "| set | slices | checkerboard index |", "|---|---|---|"]
    for name, images in sets.items():
        lines.append(f"| {name} | {len(images)} | {checkerboard_index(images[..., :1]):.2e} |")
    no_derivatives = any(n in NO_DERIVATIVES for n in (cfg.data.name, cfg.gan.domain_b))
    return lines + ["", "" if no_derivatives else "![real_vs_synthetic.png](real_vs_synthetic.png)", ""]


def _brats_convention(evaluations: dict) -> str:
    """How the region table treats cases without a region (:mod:`tfganaug.metrics.brats`)."""
    rows = [r for rs in evaluations.values() for r in rs]
    if not all("brats_regions_absent" in r["per_case"] for r in rows):
        return ("Some evaluations were written by an older tfganaug, which left a region absent from both reference "
                "and prediction out of the mean (NaN) instead of scoring it 1 (the BraTS convention); re-run "
                "`tfganaug study` (it re-evaluates every run) before comparing these rows.")
    n_cases = rows[0]["n_cases"] if rows else 0
    absent = rows[0]["per_case"]["brats_regions_absent"] if rows else {}
    counts = ", ".join(f"{k.replace('_', ' ')} {absent[k]}" for k in BRATS_REGION_KEYS.values() if k in absent)
    return ("Regions follow the BraTS convention: a region absent from both the reference and the prediction of a "
            "case scores 1, absent from the reference only 0, and such cases stay in the per-case mean (as in the "
            f"BraTS ranking). Test cases (of {n_cases}) whose reference lacks the region: {counts}. The per-label table "
            "above leaves a label absent from both maps out of its mean instead, as in the other studies.")


def _seeds_run(study: Path, plan: dict) -> str:
    """Seeds with a finished run, per condition (what the tables average over)."""
    found = {c: [s for s in plan["seeds"] if (study / f"seed-{s}" / slug(c) / "final").exists()]
             for c in plan["conditions"]}
    if len({tuple(v) for v in found.values()}) == 1:
        return str(next(iter(found.values())))
    return "; ".join(f"{c}: {v}" for c, v in found.items())


def _judge(gain: dict, base: dict, paper_gain: float) -> str:
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


def _verdict(plan, spec, evaluations, study) -> str:
    """Plain sentences from the numbers: does the synthetic data help here, as the paper says?"""

    def stat(condition, test=None, level="per_case", key="mean_dice"):
        rows = _evaluations(study, plan, test).get(condition, [])
        return mean_ci([r[level][key] for r in rows])

    def overlap(a, b):
        return not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])

    out = []
    if plan["study"] == "kits":
        def iou(c):
            return mean_ci([nan_mean(list(r["per_slice"]["iou"].values())) for r in evaluations.get(c, [])])
        for variant in ("light", "heavy"):
            base = iou(f"{variant}, real")
            for c in plan["conditions"]:
                if c.startswith(f"{variant}, real+fake") and c in evaluations:
                    s = iou(c)
                    out.append(f"- {c}: mean per-slice IoU {s['mean']:.3f} vs {base['mean']:.3f} for {variant}, real "
                               f"({s['mean'] - base['mean']:+.3f}): {_judge(s, base, 0.32)}.")
        out.append("- The capstone reports 0.58 -> about 0.90 (+0.32) on 6,400 real + 1,333 fake slices; data size, "
                   "resolution and budget differ here (above).")
    elif plan["study"] == "sandfort":
        for test in STUDIES["sandfort"]["budgets"][plan["budget"]].get("tests", []):
            if "native" not in test:
                continue
            for dims in ("", ", 3-D"):
                std = stat("standard" + dims, test)
                for c in ("histeq" + dims, "cyclegan" + dims):
                    s = stat(c, test)
                    if s["n"] and std["n"]:
                        out.append(f"- Non-contrast ({test}) mean Dice, {c} vs standard{dims}: {s['mean']:.3f} vs "
                                   f"{std['mean']:.3f} ({s['mean'] - std['mean']:+.3f}): "
                                   + (_judge(s, std, (0.57 + 0.03 + 0.04) / 3) if c.startswith("cyclegan")
                                      else "paper: no gain") + ".")
        out.append("- The paper: non-contrast kidney 0.09 -> 0.66 with CycleGAN augmentation, liver 0.86 -> 0.89, "
                   "spleen 0.65 -> 0.69; compare per organ in the tables above.")
    else:
        base = stat("100R")
        for c in plan["conditions"]:
            if c != "100R":
                s = stat(c)
                if s["n"]:
                    out.append(f"- {c}: mean Dice {s['mean']:.3f} vs 100R {base['mean']:.3f} "
                               f"({s['mean'] - base['mean']:+.3f}; CIs {'overlap' if overlap(s, base) else 'do not overlap'}).")
        fake = stat("300F+100R")
        out.append(f"- 300F+100R vs 100R: {_judge(fake, base, 0.02)} (the paper gives no number in its text; a "
                   "gain of 0.02 Dice is taken as its claim's size).")
        out.append("- The paper: 100F comparable to 100R, 100F+100R clearly better, 300F+100R best with a small real set.")
    return "\n".join(out)
