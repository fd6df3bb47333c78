"""Son et al.: StyleGAN2 (Karras et al. 2020) generates four MR contrasts and the tumour mask
together; U-Nets are trained on real (R), synthetic (F), flip-augmented (A) slices and their
mixtures (100R, 100F, 100F+100R, 300F+100R, 300A+100R) and scored on BraTS labels and regions.
Start here for `tfganaug study --paper son`.

Implemented by: gans/stylegan2.py (the GAN), tasks/unet.py + tasks/segmenter.py (the U-Net),
data/brats.py (BraTS cases, the brain phantom, MR normalisation), data/segsets.py,
stages/ (train_gan, synthesize, train_seg --setting, evaluate), metrics/brats.py (the regions,
the BraTS convention). Shared runner and report: studies/segmentation.py.
"""
from __future__ import annotations

import numpy as np

from tfganaug.metrics.brats import BRATS_REGION_KEYS
from tfganaug.metrics.stats import mean_ci
from tfganaug.studies.segmentation import SEG_SMOKE, SMOKE_ENCODER, dice_cell, judge, run_seg_study, table, write_report

__all__ = ["STUDY", "results", "verdict", "run_study", "write_report"]

STUDY = {
    "title": "Son et al. reproduction: StyleGAN2 joint MR contrasts + tumour mask for U-Net training",
    "gan_preset": "cpu_stylegan2", "seg_preset": "cpu_unet_brats",
    "budgets": {
        "smoke": {"data": {"name": "phantom-brain", "image_size": 16, "n_phantom_patients": 6,
                           "phantom_size": 32, "contrasts": ["t1", "t1ce", "t2", "flair"]},
                  "gan": {"latent_dim": 16, "w_dim": 16, "channel_base": 64, "channel_max": 16, "epochs": 2,
                          "steps_per_epoch": 2, "batch_size": 4, "r1_interval": 2, "pl_interval": 2},
                  "synth": {"n": 120}, "seg": SEG_SMOKE, "domain_recipe": SMOKE_ENCODER, "seeds": [0, 1], "tests": []},
        # The twelve BraTS 2018 cases (4 contrasts + mask, 9 train / 3 val), 80 slices per case at 32 px:
        # a 64 px StyleGAN2 of the same widths (2,400 steps, 47 min on the loaded 2-core machine) drew
        # brains of less variety, many near-black slices and masks off the lesions; 32 px, 3,000 steps
        # (34 min) drew varied brains whose FLAIR-bright spots carry the masks. Tricks: cpu_stylegan2.
        "cpu": {"data": {"name": "brats2018", "image_size": 32, "contrasts": ["t1", "t1ce", "t2", "flair"],
                         "max_slices_per_case": 80},
                "gan": {"latent_dim": 128, "w_dim": 128, "mapping_layers": 4, "channel_base": 1024,
                        "channel_max": 64, "epochs": 60, "steps_per_epoch": 50, "batch_size": 8,
                        "pl_weight": 0.0, "ema_beta": 0.995, "sample_every_epochs": 10},
                "synth": {"n": 2400},  # 300F needs 3x the 700 real training slices
                "seg": {"base_filters": 16, "depth": 3, "epochs": 30, "steps_per_epoch": 10, "batch_size": 16},
                "seeds": [0, 1, 2], "tests": []},
    },
    "conditions": {**{s: {"setting": s} for s in ("100R", "100F", "100F+100R", "300F+100R", "300A+100R")},
                   # the zero-training baseline (issue 14 part 4) painting the StyleGAN2's own masks
                   "300F+100R labels2image": {"setting": "300F+100R", "fakes": "labels2image"}},
    # Son et al. give their Dice tables as images only; their claims, in words (paper text).
    "paper": {"100F": {"claim": "comparable to 100R"}, "100F+100R": {"claim": "significantly better than 100R"},
              "300F+100R": {"claim": "best of all settings (small real set)"},
              "300A+100R": {"claim": "below 300F+100R"}},
    "headline": ("per_case", "dice"),
    # Issue 13's test of the joint generator: the real-trained U-Net segments the synthetic set.
    "synthetic_check": "100R",
    "utility": {"trtr": "100R", "tstr": "100F"},  # 100F is train-on-synthetic, test-on-real
    "baseline": {"gan": "300F+100R", "labels2image": "300F+100R labels2image"},
    "summary": {"paper": "Son et al.: StyleGAN2 joint MR contrasts + tumour mask for BraTS U-Net training",
                "claim": "300F+100R (synthetic slices three times the real set, plus the real set) is the best "
                         "setting with a small real set; 100F is comparable to 100R",
                "paper_figure": "Dice tables given as images only; in the text: 100F ~ 100R, 100F+100R and "
                                "300F+100R above 100R",
                "compare": ("300F+100R", "100R"), "paper_gain": 0.02},
}


def run_study(out, budget: str = "cpu", seeds=None, verbose=2, conditions=None, **_):
    return run_seg_study("son", out, budget, seeds, conditions, verbose)


def results(study, plan, main_eval) -> list[str]:
    lines = table("Dice per label (per case)", main_eval, "per_case", "dice")
    lines += ["### BraTS regions (per case Dice, mean [95% CI over seeds])", "",
              "| training | whole tumour | tumour core | enhancing | paper's claim |", "|---|---|---|---|---|"]
    for condition, rows in main_eval.items():
        regs = [dice_cell(mean_ci([r["per_case"].get("brats_regions", {}).get(g, np.nan) for r in rows]))
                for g in BRATS_REGION_KEYS.values()]
        claim = STUDY["paper"].get(condition, {}).get("claim", "reference (100R)" if condition == "100R" else "")
        lines.append(f"| {condition} | " + " | ".join(regs) + f" | {claim} |")
    return lines + ["", brats_convention(main_eval), ""]


def brats_convention(evaluations: dict) -> str:
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


def verdict(study, plan, main_eval) -> str:
    """Plain sentences from the numbers: do the synthetic slices help, as Son et al. say?"""
    def stat(condition):
        return mean_ci([r["per_case"]["mean_dice"] for r in main_eval.get(condition, [])])

    def overlap(a, b):
        return not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])
    out = []
    base = stat("100R")
    for c in plan["conditions"]:
        if c != "100R":
            s = stat(c)
            if s["n"]:
                out.append(f"- {c}: mean Dice {s['mean']:.3f} vs 100R {base['mean']:.3f} "
                           f"({s['mean'] - base['mean']:+.3f}; CIs {'overlap' if overlap(s, base) else 'do not overlap'}).")
    fake = stat("300F+100R")
    out.append(f"- 300F+100R vs 100R: {judge(fake, base, 0.02)} (the paper gives no number in its text; a "
               "gain of 0.02 Dice is taken as its claim's size).")
    out.append("- The paper: 100F comparable to 100R, 100F+100R clearly better, 300F+100R best with a small real set.")
    return "\n".join(out)
