"""Volumes with label maps, one record per patient: what every segmentation source yields.

Each source (KiTS19 label volumes and PNG pairs, IRCADb / TotalSegmentator abdominal CT,
BraTS MR, and the built-in phantoms) returns a list of :class:`Case`; `tfganaug.data.segsets`
turns cases into 2-D slices, splits them by patient and scales intensities for the networks.

Conventions (every reader keeps them, tests pin them):

* ``image``: float32 ``(Z, H, W, C)`` in physical units: Hounsfield units for CT, per-contrast
  z-scores inside the brain for MR (0 outside), in the axis order ``"zyx"`` (axial slices
  first, then rows, then columns; :func:`tfganaug.data.readers.to_zyx`). ``None`` when the
  source has only label maps (KiTS19 segmentations without CT: Pix2Pix synthesises the CT).
* ``mask``: uint8 ``(Z, H, W)`` with the labels of the source's scheme (``class_names``,
  index 0 = background), already mapped (e.g. BraTS 4 -> 3, TotalSegmentator 117 classes ->
  background/liver/kidney/spleen). ``None`` when the source has no labels (an unlabelled
  domain for CycleGAN).
* ``spacing_mm``: ``(z, y, x)`` voxel size in millimetres (volume errors use it).
* ``channel_names``: e.g. ``("CT",)`` or ``("t1", "t1ce", "t2", "flair")``.
* ``units``: ``"HU"`` (CT in Hounsfield units), ``"grey8"`` (already windowed to 0..255, e.g.
  PNG slices) or ``"zscore"`` (MR); it decides how `segsets` scales intensities (MR: by
  ``DataConfig.mr_norm``, percentiles of the brain by default).
* ``modality``: ``"CT"`` or ``"MR"``; ``domain``: free text such as ``"contrast"`` /
  ``"non-contrast"`` (Sandfort et al.) or ``""``.
* ``unlabelled``: classes of ``class_names`` the source does not annotate (CURVAS has no
  spleen): their voxels read as background, so their Dice in this case is unknown, not 0, and
  `stages.evaluate` leaves them out of this case's scores.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tfganaug.errors import InputError


@dataclass
class Case:
    patient_id: str
    image: np.ndarray | None
    mask: np.ndarray | None
    spacing_mm: tuple[float, float, float]
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...] = ("CT",)
    modality: str = "CT"
    units: str = "HU"
    domain: str = ""
    source: str = ""
    meta: dict = field(default_factory=dict)
    unlabelled: tuple[str, ...] = ()

    def __post_init__(self):
        where = self.source or self.patient_id
        if self.image is None and self.mask is None:
            raise InputError("case", "an image, a label map or both", "neither", where)
        if self.image is not None:
            if self.image.ndim != 4 or self.image.shape[-1] != len(self.channel_names):
                raise InputError("case image", f"shape (Z, H, W, {len(self.channel_names)}) for channels "
                                 f"{list(self.channel_names)}", f"shape {self.image.shape}", where)
            self.image = np.asarray(self.image, np.float32)
        if self.mask is not None:
            if self.mask.ndim != 3:
                raise InputError("case label map", "shape (Z, H, W)", f"shape {self.mask.shape}", where)
            if self.image is not None and self.mask.shape != self.image.shape[:3]:
                raise InputError("case label map", f"the image's shape {self.image.shape[:3]}",
                                 f"shape {self.mask.shape}", where)
            top = int(self.mask.max()) if self.mask.size else 0
            if self.mask.min() < 0 or top >= len(self.class_names):
                raise InputError("case label map", f"labels 0..{len(self.class_names) - 1} "
                                 f"({', '.join(self.class_names)})", f"values up to {top}", where)
            self.mask = np.asarray(self.mask, np.uint8)
        if self.units not in ("HU", "grey8", "zscore"):
            raise InputError("case units", "HU, grey8 or zscore", repr(self.units), where)
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)
        self.unlabelled = tuple(self.unlabelled)
        if not set(self.unlabelled) <= set(self.class_names[1:]):
            raise InputError("unlabelled classes", f"some of {list(self.class_names[1:])}",
                             f"{list(self.unlabelled)}", where)

    @property
    def num_slices(self) -> int:
        return (self.image if self.image is not None else self.mask).shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple((self.image if self.image is not None else self.mask).shape[:3])


class LazyCases(Sequence):
    """`n` cases made on demand by `make(i)`, none kept: a simulated data set read case by case
    (`DataConfig.stream`) never holds all its volumes at once. Every access makes the case
    again, so it is for one pass."""

    def __init__(self, n: int, make: Callable[[int], Case]):
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.make(k) for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.make(i % self.n)
