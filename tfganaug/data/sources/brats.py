"""BraTS brain-tumour MR (Menze et al. 2015, Bakas et al. 2017/2018), Son et al.'s data, in
../shared/data/brats; the fixed splits are the shared folder's MANIFEST.md suggestion.

* ``brats``: the four BraTS 2015 (DeepMedic examples) cases, FLAIR + T1c + manual labels,
  z-scored by their providers; train pat0005_1 + pat0006_1, val pat0003_1 + pat0004_1.
* ``brats2018``: twelve BraTS 2018 training cases with all four contrasts (raw intensities)
  and manual labels; train 9 cases, val 3 (two HGG, one LGG each side as listed there).
"""
from __future__ import annotations

from tfganaug.data.sources import shared

# BraTS data terms: research use, cite; the 2015 cases CC BY-NC-SA 3.0.
LICENCE = "BraTS data terms (research use) / CC BY-NC-SA 3.0"
TEST_PATIENTS = ("held-out BraTS cases of the same challenge data (the shared MANIFEST's split by case), "
                 "scanned at the same institutions as the training cases")

BRATS2015_SPLIT = {"train": ["brats_2013_pat0005_1", "brats_2013_pat0006_1"],
                   "val": ["brats_2013_pat0003_1", "brats_2013_pat0004_1"]}
BRATS2018_SPLIT = {"train": ["Brats18_2013_20_1", "Brats18_CBICA_ABM_1", "Brats18_CBICA_ALU_1", "Brats18_CBICA_AME_1",
                             "Brats18_CBICA_AMH_1", "Brats18_CBICA_AOP_1", "Brats18_CBICA_AOZ_1",
                             "Brats18_TCIA02_135_1", "Brats18_TCIA10_628_1"],
                   "val": ["Brats18_CBICA_AQN_1", "Brats18_CBICA_APR_1", "Brats18_TCIA10_639_1"]}


def brats2015(cfg):
    from tfganaug.data.brats import load_brats_cases
    # The 2023 case has four contrasts but no labels, so it is not a segmentation case.
    ids = BRATS2015_SPLIT
    return (load_brats_cases(shared("brats", "brats2015_deepmedic_examples"),
                             contrasts=tuple(cfg.contrasts or ("flair", "t1ce")), case_ids=ids["train"] + ids["val"]),
            ids)


def brats2018(cfg):
    from tfganaug.data.brats import load_brats_cases
    ids = BRATS2018_SPLIT
    return (load_brats_cases(shared("brats", "brats2018_4contrast"),
                             contrasts=tuple(cfg.contrasts or ("t1", "t1ce", "t2", "flair")),
                             case_ids=ids["train"] + ids["val"]), ids)
