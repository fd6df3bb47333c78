"""The KiTS19 capstone: Pix2Pix (Isola et al. 2017) turns kidney/tumour label maps into CT
slices; a U-Net (light / heavy) segments kidney and tumour trained on real slices vs real +
fake at a few ratios. Start here for `tfganaug study --paper kits`.

Implemented by: gans/pix2pix.py (the GAN), tasks/unet.py + tasks/segmenter.py (the U-Nets),
data/kits.py (KiTS19 PNG slices and NIfTI cases, the kidney phantom, label-map perturbation),
data/segsets.py (slices, splits), stages/ (train_gan, synthesize --labels/--perturb,
train_seg, evaluate), metrics/segmentation.py. Shared runner and report: studies/segmentation.py.
"""
from __future__ import annotations

from tfganaug.metrics.stats import mean_ci, nan_mean
from tfganaug.studies.segmentation import SEG_SMOKE, SMOKE_ENCODER, judge, run_seg_study, table, write_report

__all__ = ["STUDY", "results", "verdict", "run_study", "write_report"]

STUDY = {
    "title": "KiTS19 capstone reproduction: Pix2Pix label-to-CT augmentation for kidney/tumour U-Net",
    "gan_preset": "cpu_pix2pix", "seg_preset": "cpu_unet_kits",
    "budgets": {
        "smoke": {"data": {"name": "phantom-kidney", "image_size": 32, "n_phantom_patients": 6,
                           "phantom_size": 64},
                  "gan": {"width": 8, "epochs": 2, "steps_per_epoch": 2, "batch_size": 4},
                  "synth": {"labels": "perturb", "n": 40}, "seg": SEG_SMOKE, "domain_recipe": SMOKE_ENCODER, "seeds": [0, 1], "tests": []},
        "cpu": {"data": {"name": "kits19", "image_size": 128},
                "gan": {"width": 32, "epochs": 150, "batch_size": 4, "sample_every_epochs": 25},
                # Fakes from the training label maps, perturbed (elastic warp, tumour scaled and
                # moved, flips), not from the label volumes of the 10 other KiTS19 patients: a
                # Pix2Pix trained on 16 slices of one patient (one large left tumour) has never seen
                # their maps (two small kidneys, mostly no tumour; kidney area 296 vs 643 px at
                # 128 px) and painted blotches for them. Measured on 64 fakes each (600 steps,
                # seed 0), with the budget's "light, real" U-Net (kidney Dice 0.777 on the 4
                # held-out real slices): other patients' maps 0.595 (0.77x), tumour 0.035, grid
                # blotchy; perturbed training maps 0.780 (1.00x), tumour 0.572, grid with liver,
                # spine and kidney texture. Joint flip/rotate/shift/scale of the training pairs
                # (to teach G other positions) gave blurrier fakes with a grid pattern (0.66x at
                # 480 steps, vs 0.70x without at 344): the one patient, not the placement, is
                # what G lacks.
                "synth": {"labels": "perturb", "n": 320},
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
        # Train on synthetic, test on real (issue 14 part 2): every batch from the Pix2Pix set.
        "light, fake only": {"unet": "kits_light", "synthetic_ratio": 1.0},
        # The zero-training baseline's fakes at the GAN condition's ratio (issue 14 part 4).
        "light, real+labels2image 0.2": {"unet": "kits_light", "synthetic_ratio": 0.2, "fakes": "labels2image"},
    },
    # The capstone's per-slice mean IoU on its test split (README, section 6): 58 % with real
    # data only, about 90 % (+32 points) once augmented; per U-Net variant it gives no table.
    "paper": {"light, real": {"per_slice_iou_mean": 0.58}, "light, real+fake 0.2": {"per_slice_iou_mean": 0.90}},
    "headline": ("per_slice", "iou"),
    # The real-trained U-Net segments the synthetic set (conditional agreement, issue 14 part 2).
    "synthetic_check": "light, real",
    "utility": {"trtr": "light, real", "tstr": "light, fake only"},
    "baseline": {"gan": "light, real+fake 0.2", "labels2image": "light, real+labels2image 0.2"},
    "summary": {"paper": "KiTS19 capstone: Pix2Pix label-to-CT augmentation for a kidney/tumour U-Net",
                "claim": "Pix2Pix fakes from label maps raise the U-Net's per-slice mean IoU from 58% to about 90%",
                "paper_figure": "per-slice mean IoU 0.58 (real only) -> about 0.90 (real + 1,333 fakes)",
                "compare": ("light, real+fake 0.2", "light, real"), "paper_gain": 0.32},
}


def run_study(out, budget: str = "cpu", seeds=None, verbose=2, conditions=None, **_):
    return run_seg_study("kits", out, budget, seeds, conditions, verbose)


def results(study, plan, main_eval) -> list[str]:
    return (table("Per-slice IoU (the capstone's metric)", main_eval, "per_slice", "iou", "per_slice_iou_mean",
                  STUDY["paper"])
            + table("Per-slice Dice", main_eval, "per_slice", "dice")
            + table("Per-case (volumetric) Dice", main_eval, "per_case", "dice"))


def verdict(study, plan, main_eval) -> str:
    """Plain sentences from the numbers: does the synthetic data help here, as the capstone says?"""
    def iou(c):
        return mean_ci([nan_mean(list(r["per_slice"]["iou"].values())) for r in main_eval.get(c, [])])
    out = []
    for variant in ("light", "heavy"):
        base = iou(f"{variant}, real")
        for c in plan["conditions"]:
            if c.startswith(f"{variant}, real+fake") and c in main_eval:
                s = iou(c)
                out.append(f"- {c}: mean per-slice IoU {s['mean']:.3f} vs {base['mean']:.3f} for {variant}, real "
                           f"({s['mean'] - base['mean']:+.3f}): {judge(s, base, 0.32)}.")
    out.append("- The capstone reports 0.58 -> about 0.90 (+0.32) on 6,400 real + 1,333 fake slices; data size, "
               "resolution and budget differ here (above).")
    return "\n".join(out)
