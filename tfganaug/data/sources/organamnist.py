"""OrganAMNIST (MedMNIST v2, Yang et al. 2023; CC BY 4.0): 28x28 organ crops of abdominal CT in
../shared/data/organamnist, Frid-Adar et al.'s stand-in ROIs. Not a segmentation source: it is
read by `data.datasets.load_rois`; this module holds what reports need to know about it."""

LICENCE = "CC BY 4.0"
# MedMNIST v2 (section 3, OrganA/C/SMNIST): train and val are 115 and 16 CT scans of the same
# source, the LiTS training set; only its test split (70 scans of the LiTS test set) comes from
# elsewhere, and that split is kept outside the shared folder.
TEST_PATIENTS = ("OrganAMNIST's val split (the official test split is held back): other CT scans than the train "
                 "split's, but MedMNIST v2 built train (115 scans) and val (16 scans) from the same source, the LiTS "
                 "training set (same centres and protocols)")
