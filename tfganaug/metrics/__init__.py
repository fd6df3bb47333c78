"""Evaluation metrics as pure functions of arrays: classification, segmentation, BraTS regions,
fidelity, privacy, and the statistics over runs that every report shares (:mod:`.stats`).

Importing this package does not import TensorFlow; only the image feature extractors in
:mod:`tfganaug.metrics.fidelity` do, when they are built.
"""
from tfganaug.metrics.classification import (
    bootstrap_ci,
    confusion_matrix,
    per_class_metrics,
    roc_auc_ovr,
    roc_auc_per_class,
)
from tfganaug.metrics.fidelity import (
    available_extractors,
    fid_from_features,
    fidelity_from_features,
    fidelity_report,
    frechet_distance,
    get_extractor,
    kid_from_features,
    precision_recall_knn,
    register_extractor,
)
from tfganaug.metrics.privacy import memorisation_report, nearest_real_distances
from tfganaug.metrics.segmentation import dice_per_class, hausdorff95, iou_per_class, volume_error
from tfganaug.metrics.stats import format_ci, mean_ci, nan_mean

__all__ = [
    "available_extractors", "bootstrap_ci", "confusion_matrix", "dice_per_class", "fid_from_features",
    "fidelity_from_features", "fidelity_report", "format_ci", "frechet_distance", "get_extractor", "hausdorff95",
    "iou_per_class", "kid_from_features", "mean_ci", "memorisation_report", "nan_mean", "nearest_real_distances",
    "per_class_metrics", "precision_recall_knn", "register_extractor", "roc_auc_ovr", "roc_auc_per_class",
    "volume_error",
]
