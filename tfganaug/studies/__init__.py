"""One file per paper: where a newcomer starts. Each module's docstring names the files that
implement that paper (its GAN, task net, data source, augmentations), and the module holds
the paper's budgets, conditions, published figures, verdict and report sections.

* `frid_adar` (Frid-Adar et al. 2018): DCGAN per class and ACGAN lesion ROIs, lesion CNN;
* `kits_capstone` (the KiTS19 capstone): Pix2Pix label map -> CT, kidney/tumour U-Net;
* `sandfort` (Sandfort et al. 2019): CycleGAN contrast -> non-contrast CT, organ U-Net;
* `son` (Son et al.): StyleGAN2 MR contrasts + tumour mask, BraTS U-Net;
* `gan_training`: the before/after report of the small-data GAN training (reports/gan-training).

`base.py` holds what all studies share (study.json guard, timings, report skeleton);
`segmentation.py` the runner and report of the three segmentation studies.
Every study module offers `run_study(out, budget, seeds, verbose, **options)` and
`write_report(study_dir, out)`; `STUDIES.get(name)` is the module.
"""
from tfganaug.registry import Registry

STUDIES = Registry("study", {
    "frid-adar": "tfganaug.studies.frid_adar",
    "kits": "tfganaug.studies.kits_capstone",
    "sandfort": "tfganaug.studies.sandfort",
    "son": "tfganaug.studies.son",
    "gan-training": "tfganaug.studies.gan_training",
})
