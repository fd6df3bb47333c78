"""CURVAS (MICCAI 2024 challenge "Calibration and Uncertainty for multiRater Volume Assessment in
multiorgan Segmentation"; CC BY-NC 4.0): contrast-enhanced abdominal CT from University
Hospital Erlangen, liver / kidney / pancreas corrected by hand by three radiologists from
TotalSegmentator pre-labels. Sandfort et al.'s contrast domain beside IRCADb: 12 patients
instead of one. Read in place from ../shared/data/curvas (its MANIFEST.md): 88 slice PNG pairs
``annotation-{1,2,3}/{images,masks}/<case>_<slice>.png``, one folder per rater, each folder
with other slices; the case id is the patient.

* **Labels**, mapped onto :data:`~tfganaug.data.abdomen.ABDOMEN_CLASSES` from the masks' exact
  colours: magenta (255, 0, 255) liver, yellow (255, 255, 0) kidney (left and right),
  cyan (0, 255, 255) pancreas -> background (not in Sandfort et al.'s scheme), black
  background; any other colour, or a mask of another size than its slice, is an InputError
  naming the file. **No spleen label**: CURVAS spleens read as background, so every case
  carries ``unlabelled=("spleen",)`` and `evaluate` leaves the spleen out of CURVAS Dice
  (unknown, not 0). In training the spleen of CURVAS slices still counts as background (no
  partial-label loss here): CURVAS teaches the U-Net nothing about the spleen and pulls its
  spleen predictions down where the spleen is in view.
* **Split by case id** over all three rater folders (a patient's slices of every rater on
  one side): train 10001-10009, val 10010, 10013, 10014 (the MANIFEST's suggestion; 13 slices).
  With 12 patients there is no third split, so the held-out test split is the val split:
  in-distribution patients (same hospital, scanner and protocol as the training ones). The
  MANIFEST's blind test cases are not here. ``curvas-val`` is the val patients alone, for
  ``evaluate --test curvas-val``.
* **Intensities.** The PNGs are display-windowed to 0..255 with a window the repository does
  not document (no HU). Measured here, not guessed: a linear window ``grey = 255 (HU - L + W/2)
  / W``, clipped, was fitted (least squares over the 2nd-98th percentiles) so that the grey
  levels of the body (:func:`body_of`) on the CURVAS slices with kidney match the HU of the body
  (filled HU > -400) on the IRCADb slices with kidney. Pooled over the 12 patients: **W 308,
  L 135 HU** (rms misfit 4.5 grey levels), used rounded as W 310 / L 135 (floor -20, ceiling
  290 HU); over the nine training patients alone W 311 / L 132 (rms 4.7), the same within the
  error, so the val patients' share in the fit does not matter. Its error: fitted per patient
  W 194-429 (sd 87), L 111-171 (sd 20); with the body taken as the largest filled component
  alone (no hull) the pooled fit moves to W 369 / L 125 (rms 8.9), so W is known to about
  +-60 HU and L to about +-10 HU. Checks: CURVAS fat and air are 0 (fat lies below the floor:
  IRCADb's fat median is -85 HU); 0 on 33 % and 255 on 2.7 % of the body pixels (median over
  slices with kidney), where IRCADb has 39 % below the floor and 2.3 % above the ceiling; a
  two-tissue fit on the liver and kidney medians alone is unstable (per-patient W 266 to
  4,743: kidney enhancement varies with the contrast phase, medians 92-229 grey levels
  between patients).
  :func:`display_to_hu` turns the grey levels back into **estimated HU**, so CURVAS meets
  IRCADb's HU slices through the study's own window (WW 400 / WL 50): liver median 101 HU
  (0.63 in that window; IRCADb patient 1 112 HU, 0.66), kidney 168 HU (0.79; IRCADb 205 HU,
  0.89). The pixels at 0, whose HU the PNG has lost, get -1024 HU (air) outside the body and
  -89 HU inside, the median HU of the IRCADb body voxels below the floor (mostly fat: 0.15 in
  the study window, IRCADb fat 0.16). Taken as grey / 255 instead, the liver would sit at 0.39
  and fat at 0, far from IRCADb's 0.66 and 0.16. Units are "HU" with ``meta["hu_estimated"] =
  True``: values between -20 and 290 HU are estimates, no finer than the 1.2 HU of one grey
  level, and one window serves every patient.
* No pixel spacing: ``spacing_mm`` is (1, 1, 1) with ``meta["spacing_known"] = False``, so CURVAS
  volumes are in pixel units, not millilitres (Dice and relative volume errors do not need it). A case's slices
  are sorted by slice number and are not contiguous (``meta["slice_numbers"]``, ``meta["raters"]``
  and ``meta["files"]`` per slice). Radiological orientation (patient's right on the image's
  left), as the other abdominal sources.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from tfganaug.data.sources import shared

LICENCE = "CC BY-NC 4.0"
TEST_PATIENTS = ("CURVAS patients 10010, 10013, 10014, never in training: same hospital, scanner and "
                 "protocol as the training patients (in distribution); val and test are the same patients")
SPLIT = {"train": [f"100{i:02d}" for i in range(1, 10)], "val": ["10010", "10013", "10014"]}
MASK_COLOURS = {(0, 0, 0): 0, (255, 0, 255): 1, (255, 255, 0): 2, (0, 255, 255): 0}
"""Exact mask colours -> :data:`~tfganaug.data.abdomen.ABDOMEN_CLASSES` labels (pancreas -> background)."""
EXPECTED_COLOURS = ("only (0, 0, 0) background, (255, 0, 255) magenta liver, (255, 255, 0) yellow kidney, "
                    "(0, 255, 255) cyan pancreas")
DISPLAY_WINDOW = (310.0, 135.0)
"""Width and level (HU) of the PNGs' undocumented display window, as fitted (module docstring)."""
BODY_BELOW_FLOOR_HU = -89.0
"""Median HU of IRCADb body voxels below the window's floor (-20 HU): the value given to body pixels at 0."""
AIR_HU = -1024.0
_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


def display_to_hu(grey: np.ndarray) -> np.ndarray:
    """A CURVAS slice (H, W) uint8 -> estimated HU, float32 (module docstring)."""
    width, level = DISPLAY_WINDOW
    hu = (level - width / 2 + grey.astype(np.float32) * (width / 255.0)).astype(np.float32)
    clipped = grey == 0
    hu[clipped] = AIR_HU
    hu[clipped & body_of(grey)] = BODY_BELOW_FLOOR_HU
    return hu


def body_of(grey: np.ndarray) -> np.ndarray:
    """The body of a CURVAS slice, without the table: the largest filled component of its non-zero
    pixels, joined with the convex hull of the thick parts of the non-zero pixels (where the skin
    line has gaps, filling leaves the body open; the thin table arcs vanish in the opening). Where
    the skin is broken and the subcutaneous fat is clipped to 0 (patient 10001, some others),
    that fat lies outside the hull and reads as air."""
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(grey > 0, iterations=3))
    components, n = ndimage.label(filled)
    if not n:
        return filled
    body = components == 1 + int(np.argmax(ndimage.sum(filled, components, range(1, n + 1))))
    thick = ndimage.binary_opening(grey > 0, iterations=2)
    components, n = ndimage.label(thick)
    if n:
        sizes = ndimage.sum(thick, components, range(1, n + 1))
        points = np.argwhere(np.isin(components, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max())))
        try:
            corners = points[ConvexHull(points).vertices]
        except (QhullError, ValueError):  # fewer than 3 points, or all on a line
            return body
        hull = Image.new("1", grey.shape[::-1])
        ImageDraw.Draw(hull).polygon([(int(x), int(y)) for y, x in corners], fill=1)
        body |= np.array(hull, bool)
    return body


def load_curvas(root, case_ids=None) -> list:
    """One Case per CURVAS patient under `root` (all, or those in `case_ids`), its slices of all
    three raters sorted by slice number (module docstring)."""
    from tfganaug.data.abdomen import ABDOMEN_CLASSES
    from tfganaug.data.cases import Case
    from tfganaug.data.kits import colour_mask, read_png_slice
    from tfganaug.data.readers import read_image
    from tfganaug.errors import InputError

    root = Path(root)
    raters = sorted(p for p in root.glob("annotation-*") if (p / "images").is_dir())
    if not raters:
        raise InputError("CURVAS folder", "annotation-{1,2,3}/images/ and masks/", "no rater folders", root)
    by_case: dict[str, list] = {}
    for folder in raters:
        rater = int(folder.name.rpartition("-")[2])
        for image_path in sorted((folder / "images").glob("*.png")):
            found = _NAME.match(image_path.name)
            if not found:
                raise InputError("CURVAS slice name", "<case>_<slice number>.png", repr(image_path.name), image_path)
            by_case.setdefault(found[1], []).append((int(found[2]), rater, image_path))
    wanted = sorted(by_case) if case_ids is None else list(case_ids)
    missing = [c for c in wanted if c not in by_case]
    if missing:
        raise InputError("CURVAS cases", f"some of {sorted(by_case)}", f"missing {missing}", root)
    cases = []
    for case_id in wanted:
        slices = sorted(by_case[case_id])
        images, masks = [], []
        for _, _, image_path in slices:
            mask_path = image_path.parent.parent / "masks" / image_path.name
            if not mask_path.is_file():
                raise InputError("CURVAS mask", f"masks/{image_path.name} for this slice", "no such file", mask_path)
            grey = read_png_slice(image_path)
            rgb, meta = read_image(mask_path)
            if meta["axes"] != "yxc" or rgb.shape[-1] != 3:
                raise InputError("CURVAS mask", "an RGB colour mask", f"shape {rgb.shape} ({meta['mode']})",
                                 mask_path)
            if rgb.shape[:2] != grey.shape:
                raise InputError("CURVAS mask", f"the size {grey.shape} of its slice", f"size {rgb.shape[:2]}",
                                 mask_path)
            if images and grey.shape != images[0].shape:
                raise InputError("CURVAS slice", f"the size {images[0].shape} of the case's other slices",
                                 f"size {grey.shape}", image_path)
            masks.append(colour_mask(rgb.astype(np.uint8), mask_path, MASK_COLOURS, EXPECTED_COLOURS))
            images.append(display_to_hu(grey))
        cases.append(Case(patient_id=case_id, image=np.stack(images)[..., None], mask=np.stack(masks),
                          spacing_mm=(1.0, 1.0, 1.0), class_names=ABDOMEN_CLASSES, channel_names=("CT",),
                          modality="CT", units="HU", domain="contrast", source=str(root),
                          unlabelled=("spleen",),
                          meta={"dataset": "CURVAS", "axes": "zyx", "spacing_known": False, "hu_estimated": True,
                                "display_window": DISPLAY_WINDOW, "slice_numbers": [n for n, _, _ in slices],
                                "raters": [r for _, r, _ in slices], "files": [str(p) for _, _, p in slices]}))
    return cases


def cases(cfg):
    """All 12 patients, split train 10001-10009 / val 10010, 10013, 10014 (test = val)."""
    return load_curvas(shared("curvas")), SPLIT


def val_cases(cfg):
    """The val patients alone (no split): an in-distribution test set for `evaluate --test`."""
    return load_curvas(shared("curvas"), SPLIT["val"]), None
