"""Kidney and kidney-tumour sources for the KiTS Pix2Pix study: lists of :class:`Case`.

KiTS19 (Heller et al. 2019, "The KiTS19 challenge data: 300 kidney tumor cases with clinical
context, CT semantic segmentations, and surgical outcomes", arXiv:1904.00445) labels
preoperative arterial-phase abdominal CT with 0 background, 1 kidney, 2 tumour. The 2021
Hallym capstone (../shared/seeds) trained Pix2Pix (Isola et al. 2017) to turn such label maps
into CT slices and added the fakes to a U-Net's training set. Sources:

* :func:`load_kits_cases`: the official layout ``<root>/case_XXXXX/{imaging,segmentation}.nii.gz``
  (also under ``<root>/data``) and the shared label-only layout
  ``<root>/segmentations/case_XXXXX/segmentation.nii.gz`` (``Case.image`` is then None).
  KiTS19 NIfTI files store (z, y, x) arrays under an affine whose axis codes are ("I", "P",
  "L"); the readers canonicalise NIfTI to RAS (x, y, z), and :func:`to_zyx` turns that into
  the (z, y, x) = ("S", "P", "L") order of every Case: axial slices in the radiological view
  (anterior at the top, the patient's right on the left), z ascending from feet to head. That
  is the stored array flipped along z; the kidneys then sit in the posterior half of each
  slice on both sides of the spine, as in the PNG slices.
* :func:`load_png_pairs`: windowed 8-bit slice PNGs with RGB masks (blue kidney, red tumour),
  one Case per case id.
* :func:`kidney_phantom_cases`: procedural abdominal CT in HU with kidney/tumour labels, the
  default that needs no files.
* :func:`perturb_label_map`: new plausible label maps from real ones, the inputs Pix2Pix turns
  into synthetic CT slices.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from tfganaug.data.cases import Case, LazyCases
from tfganaug.data.readers import read_image, read_segmentation, to_zyx
from tfganaug.errors import InputError

CLASS_NAMES = ("background", "kidney", "tumour")
LABELS = (0, 1, 2)
MASK_COLOURS = {(0, 0, 0): 0, (0, 0, 255): 1, (255, 0, 0): 2}
"""RGB mask colours of the KiTS19 PNG slices: black background, blue kidney, red tumour."""

_CASE_DIR = re.compile(r"^case_(\d{5})$")
_PNG_NAME = re.compile(r"^(.+)_(\d+)\.png$", re.IGNORECASE)


# --- KiTS19 NIfTI ----------------------------------------------------------------------------

def _case_name(case_id) -> str:
    """7, "7", "00007" or "case_00007" -> "case_00007"."""
    text = str(case_id)
    digits = text[5:] if text.startswith("case_") else text
    if not digits.isdigit():
        raise InputError("KiTS case id", "an integer or 'case_XXXXX'", repr(case_id))
    return f"case_{int(digits):05d}"


def _find_case_dirs(root: Path) -> dict[str, Path]:
    """case name -> folder holding its segmentation.nii.gz, over the three known layouts."""
    found = {}
    for parent in (root, root / "segmentations", root / "data"):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            if _CASE_DIR.match(folder.name) and (folder / "segmentation.nii.gz").is_file():
                found.setdefault(folder.name, folder)
    return found


def _clinical(root: Path, folder: Path) -> dict:
    """The case's row of kits.json (clinical table) when the layout has one, else {}."""
    for candidate in (folder.parent / "kits.json", root / "kits.json"):
        if candidate.is_file():
            try:
                table = json.loads(candidate.read_text())
            except (OSError, ValueError) as exc:
                raise InputError("KiTS clinical table", "a readable JSON list", type(exc).__name__,
                                 candidate) from exc
            return next((row for row in table if isinstance(row, dict)
                         and row.get("case_id") == folder.name), {})
    return {}


def load_kits_cases(root: str | os.PathLike, case_ids=None, lazy: bool = False) -> list[Case]:
    """KiTS19 cases under `root` (see the module docstring), in case order.

    `case_ids` selects cases (ints or ``"case_XXXXX"``); None loads every case found. `lazy`: a
    `LazyCases` that reads each case when it is reached (streamed training, `data.stream`), so
    a folder of 300 scans is never in memory at once; the folder's layout is checked now. With
    ``imaging.nii.gz`` the image is CT in HU, ``(Z, H, W, 1)``, and the mask is checked against
    it (shape, spacing, orientation). Labels other than 0, 1, 2 raise InputError naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("KiTS19 folder", "an existing folder of case_XXXXX sub-folders",
                         "nothing at that path" if not root.exists() else "a file", root)
    found = _find_case_dirs(root)
    if not found:
        raise InputError("KiTS19 folder", "case_XXXXX/segmentation.nii.gz (optionally under "
                         "segmentations/ or data/)", "no cases", root)
    if case_ids is None:
        names = sorted(found)
    else:
        names = [_case_name(c) for c in ([case_ids] if isinstance(case_ids, (str, int)) else case_ids)]
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError("KiTS19 cases", f"some of {sorted(found)}", f"missing {missing}", root)
    if lazy:
        from tfganaug.data.cases import LazyCases
        return LazyCases(len(names), lambda i: _load_case(root, found[names[i]]))
    return [_load_case(root, found[name]) for name in names]


def _load_case(root: Path, folder: Path) -> Case:
    seg_path, img_path = folder / "segmentation.nii.gz", folder / "imaging.nii.gz"
    if img_path.is_file():
        hu, meta = to_zyx(*read_image(img_path))
        mask, _ = read_segmentation(seg_path, like_meta=meta, labels=LABELS)
        image = hu[..., None]
    else:
        mask, meta = to_zyx(*read_segmentation(seg_path, labels=LABELS))
        image = None
    return Case(patient_id=folder.name, image=image, mask=mask, spacing_mm=meta["spacing_mm"],
                class_names=CLASS_NAMES, channel_names=("CT",), modality="CT", units="HU",
                domain="contrast", source=str(folder),
                meta={"layout": "kits19", "axes": "zyx", "spacing_known": True,
                      "segmentation": str(seg_path), "imaging": str(img_path) if image is not None else None,
                      "orientation": tuple(meta["orientation"]), "affine": meta["affine"],
                      "original_orientation": tuple(meta.get("original_orientation") or ()),
                      "clinical": _clinical(root, folder)})


# --- PNG slice pairs ---------------------------------------------------------------------------

def colour_mask(rgb: np.ndarray, path, colours: dict = MASK_COLOURS,
                expected: str = "only (0, 0, 0) background, (0, 0, 255) blue kidney, (255, 0, 0) red tumour"
                ) -> np.ndarray:
    """(H, W, 3) uint8 in `colours` ({(r, g, b): label}) -> (H, W) labels; any other colour is an
    InputError naming the file, `expected` and the colours found."""
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    known = {(r << 16) | (g << 8) | b: label for (r, g, b), label in colours.items()}
    present, counts = np.unique(codes, return_counts=True)
    unexpected = [(int(c >> 16), int((c >> 8) & 255), int(c & 255), int(n))
                  for c, n in zip(present, counts) if int(c) not in known]
    if unexpected:
        listed = ", ".join(f"{c[:3]} x{c[3]}" for c in unexpected[:8])
        more = f" and {len(unexpected) - 8} more" if len(unexpected) > 8 else ""
        raise InputError("mask colours", expected, f"unexpected colours {listed}{more}", path)
    lut_keys = np.array(sorted(known), np.uint32)
    lut_vals = np.array([known[k] for k in sorted(known)], np.uint8)
    return lut_vals[np.searchsorted(lut_keys, codes)]


def read_png_slice(path: Path) -> np.ndarray:
    array, meta = read_image(path)
    if meta["axes"] == "yxc":
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise InputError("PNG slice", "an 8-bit greyscale CT slice", f"a colour image {array.shape}", path)
        array = array[..., 0]
    if meta["dtype"] != "uint8":
        raise InputError("PNG slice", "an 8-bit greyscale CT slice (already windowed to 0..255)",
                         f"dtype {meta['dtype']}", path)
    return array


def _read_png_mask(path: Path) -> np.ndarray:
    array, meta = read_image(path)
    if meta["axes"] == "yxc":
        return colour_mask(array.astype(np.uint8), path)
    mask, _ = read_segmentation(path, labels=LABELS)
    return mask


def _png_names(folder: Path, sub: str) -> dict[str, Path]:
    where = folder / sub
    if not where.is_dir():
        raise InputError("PNG pair folder", "sub-folders images/ and masks/", f"no {sub}/ folder", folder)
    names = {}
    for path in sorted(where.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not _PNG_NAME.match(path.name):
            raise InputError("PNG slice name", "<case>_<slice number>.png", repr(path.name), path)
        names[path.name] = path
    return names


def load_png_pairs(folder: str | os.PathLike) -> list[Case]:
    """Slice PNG pairs ``images/<case>_<slice>.png`` + ``masks/<case>_<slice>.png``, one Case
    per case id (sorted), slices ordered by slice number.

    Images: 8-bit greyscale, already windowed (units ``"grey8"``). Masks: RGB with
    :data:`MASK_COLOURS` or single-channel labels 0, 1, 2. The PNGs carry no spacing:
    ``spacing_mm`` is (1, 1, 1) with ``meta["spacing_known"] = False``; the slice numbers are in
    ``meta["slice_numbers"]`` (they need not be contiguous).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("PNG pair folder", "an existing folder with images/ and masks/",
                         "nothing at that path" if not folder.exists() else "a file", folder)
    images, masks = _png_names(folder, "images"), _png_names(folder, "masks")
    if not images:
        raise InputError("PNG pair folder", "at least one images/<case>_<slice>.png", "no PNG files",
                         folder / "images")
    for name, path in images.items():
        if name not in masks:
            raise InputError("mask", f"masks/{name} for this image", "no such file", path)
    for name, path in masks.items():
        if name not in images:
            raise InputError("image", f"images/{name} for this mask", "no such file", path)
    by_case: dict[str, list[tuple[int, str]]] = {}
    for name in images:
        case, number = _PNG_NAME.match(name).groups()
        by_case.setdefault(case, []).append((int(number), name))
    cases = []
    for case in sorted(by_case):
        slices = sorted(by_case[case])
        grey, labels = [], []
        for _, name in slices:
            image, mask = read_png_slice(images[name]), _read_png_mask(masks[name])
            if image.shape != mask.shape:
                raise InputError("mask", f"the image's shape {image.shape} ({images[name]})",
                                 f"shape {mask.shape}", masks[name])
            if grey and image.shape != grey[0].shape:
                raise InputError("PNG slice", f"the shape {grey[0].shape} of the case's other slices",
                                 f"shape {image.shape}", images[name])
            grey.append(image)
            labels.append(mask)
        cases.append(Case(patient_id=case, image=np.stack(grey)[..., None], mask=np.stack(labels),
                          spacing_mm=(1.0, 1.0, 1.0), class_names=CLASS_NAMES, channel_names=("CT",),
                          modality="CT", units="grey8", domain="contrast", source=str(folder),
                          meta={"layout": "png_pairs", "axes": "zyx", "spacing_known": False,
                                "slice_numbers": [n for n, _ in slices],
                                "files": [name for _, name in slices]}))
    return cases


# --- procedural phantom ------------------------------------------------------------------------

AIR_HU, FAT_HU, SOFT_HU, LIVER_HU = -1000.0, -100.0, 40.0, 60.0


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
    """Normalised elliptic radius (< 1 inside), float32; broadcasts over z."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dy, dx = yy - np.float32(cy), xx - np.float32(cx)
    u = (c * dx + s * dy) / np.asarray(rx, np.float32)
    v = (c * dy - s * dx) / np.asarray(ry, np.float32)
    return np.sqrt(u * u + v * v)


def _smooth_field(rng: np.random.Generator, n_slices: int, size: int) -> np.ndarray:
    """Unit-variance texture correlated over ~size/32 pixels in plane and ~1 slice in z
    (filtered on a 4x coarser grid and upsampled: the phantom must stay fast)."""
    coarse = max(size // 4, 4)
    field = ndimage.gaussian_filter(rng.standard_normal((n_slices, coarse, coarse), np.float32), 1.0)
    # Linear upsampling as two matrix products (far faster than ndimage.zoom here).
    pos = np.clip((np.arange(size, dtype=np.float32) + 0.5) * coarse / size - 0.5, 0, coarse - 1)
    lo = np.minimum(pos.astype(int), coarse - 2)
    up = np.zeros((size, coarse), np.float32)
    up[np.arange(size), lo] = 1 - (pos - lo)
    up[np.arange(size), lo + 1] = pos - lo
    field = up @ field @ up.T
    return (field - field.mean()) / (field.std() + 1e-6)


def _phantom_patient(p: int, size: int, n_slices: int, seed: int) -> Case:
    rng = np.random.default_rng([seed, p])
    zz = np.arange(n_slices, dtype=np.float32)[:, None, None]
    yy, xx = (g[None].astype(np.float32) for g in np.mgrid[0:size, 0:size])
    t = (zz - np.float32((n_slices - 1) / 2)) / np.float32(max(n_slices, 1))  # -0.5 (feet) .. 0.5 (head)
    shape = (n_slices, size, size)

    # Body: an ellipse a little wider than deep, changing slowly along z; fat under the skin.
    cy, cx = size * rng.uniform(0.48, 0.53), size * rng.uniform(0.48, 0.52)
    ry0, rx0 = size * rng.uniform(0.27, 0.34), size * rng.uniform(0.38, 0.46)
    ry, rx = ry0 * (1 + 0.05 * t), rx0 * (1 + 0.04 * t)
    r_body = _ellipse(yy, xx, cy, cx, ry, rx)
    fat_frac = rng.uniform(0.06, 0.16)  # subcutaneous fat thickness / radius: varies with habitus
    inner = r_body < 1 - fat_frac
    smooth = _smooth_field(rng, n_slices, size)
    hu = np.full(shape, AIR_HU, np.float32)
    hu[r_body < 1] = FAT_HU
    # Abdominal contents: soft tissue (bowel, muscle) with fat between the loops.
    hu[inner] = SOFT_HU + 12 * smooth[inner]
    pockets = inner & (smooth > rng.uniform(0.6, 1.0))
    hu[pockets] = FAT_HU + 20 * smooth[pockets]
    # A few gas pockets in the anterior bowel.
    for _ in range(int(rng.integers(2, 6))):
        gy, gx = cy - ry0 * rng.uniform(0.1, 0.6), cx + rx0 * rng.uniform(-0.5, 0.5)
        gas = _ellipse(yy, xx, gy, gx, size * rng.uniform(0.015, 0.04), size * rng.uniform(0.02, 0.05)) < 1
        gz, gh = rng.uniform(-0.5, 0.5), rng.uniform(0.1, 0.3)
        hu[gas & (np.abs(t - gz) < gh) & inner] = -900.0

    # Spine at the back: cortical rim ~700 HU around cancellous bone ~400 HU, spinous process
    # behind it, psoas / paraspinal muscle (~50 HU) beside it. Constant along z.
    inner_ry = ry0 * (1 - fat_frac)
    sy, sx = cy + 0.62 * inner_ry, cx
    sr = size * rng.uniform(0.05, 0.065)
    r_spine = _ellipse(yy, xx, sy, sx, sr * 0.9, sr)[0]
    muscle = np.zeros((size, size), bool)
    for dy, dx, ay, ax in ((-0.2, -2.1, 1.1, 1.0), (-0.2, 2.1, 1.1, 1.0),  # psoas
                           (1.6, -1.3, 0.9, 1.1), (1.6, 1.3, 0.9, 1.1)):  # erector spinae
        muscle |= _ellipse(yy, xx, sy + dy * sr, sx + dx * sr, ay * sr, ax * sr)[0] < 1
    process = _ellipse(yy, xx, sy + 1.4 * sr, sx, 0.8 * sr, 0.25 * sr)[0] < 1
    region = muscle[None] & inner
    hu[region] = 50.0 + 5 * smooth[region]
    bone = np.where(r_spine > 0.8, rng.uniform(600, 750), rng.uniform(350, 450)).astype(np.float32)
    hu[:, r_spine < 1] = bone[r_spine < 1]
    hu[process[None] & inner] = rng.uniform(500, 650)
    hard = (r_spine < 1.05) | process  # no tumour grows into bone

    # Liver on the patient's right (left of the image), larger towards the head.
    grow = np.clip(0.7 + 1.2 * t, 0.1, 1.3)
    liver = _ellipse(yy, xx, cy - 0.15 * inner_ry, cx - 0.45 * rx0 * (1 - fat_frac), inner_ry * 0.55 * grow,
                     rx0 * 0.38 * grow, angle=0.3) < 1
    liver &= inner
    hu[liver] = LIVER_HU + 6 * smooth[liver]

    # Kidneys: ellipsoids beside the spine over a z-range only (the right one lower), enhancing
    # under contrast: cortex ~185-205 HU brighter than medulla ~150-170 HU, a fat-filled sinus
    # at the hilum, perirenal fat around.
    mask = np.zeros(shape, np.uint8)
    half_len = rng.uniform(0.2, 0.3) * n_slices  # kidney half-length in slices
    centre_z = rng.uniform(0.42, 0.58) * n_slices
    kidneys = []
    for side in (-1, 1):  # -1: patient's right (image left), +1: patient's left
        kz = centre_z - (0.05 * n_slices if side < 0 else 0.0)
        ky, kx = sy - rng.uniform(0.1, 0.6) * sr, sx + side * rng.uniform(2.6, 3.2) * sr
        a_in, b_in = size * rng.uniform(0.06, 0.085), size * rng.uniform(0.04, 0.055)
        angle = side * rng.uniform(0.3, 0.7)
        hz = half_len * rng.uniform(0.9, 1.1)
        profile = np.sqrt(np.clip(1 - ((zz - kz) / hz) ** 2, 0, 1))  # ellipsoid cross-section
        present = profile > 0.05
        r_k = _ellipse(yy, xx, ky, kx, a_in * profile + 1e-3, b_in * profile + 1e-3, angle)
        r_sinus = _ellipse(yy, xx, ky, kx - side * 0.55 * b_in, 0.35 * a_in * profile + 1e-3,
                           0.35 * b_in * profile + 1e-3, angle)
        kidney = (r_k < 1) & (r_sinus >= 1) & present
        hu[(r_k < 1.35) & present & inner & ~kidney & ~hard[None]] = FAT_HU
        cortex, medulla = rng.uniform(185, 205), rng.uniform(150, 170)
        hu[kidney] = np.where(r_k[kidney] > 0.7, cortex, medulla)
        hu[(r_sinus < 1) & (r_k < 1) & present] = FAT_HU / 2
        mask[kidney] = 1
        kidneys.append((kz, ky, kx, a_in, b_in, hz))

    # Tumours (label 2, ~40-90 HU, heterogeneous): in some patients, inside or bulging out of
    # one kidney (sometimes both), never outside the body or in bone.
    n_tumours = int(rng.choice([0, 1, 1, 2]))
    for k in rng.permutation(2)[:n_tumours]:
        kz, ky, kx, a_in, b_in, hz = kidneys[k]
        direction = rng.normal(0, 1, 3)
        direction /= np.linalg.norm(direction)
        depth = rng.uniform(0.3, 1.0)  # 0: centre of the kidney, 1: at its surface
        tz, ty, tx = kz + direction[0] * depth * hz * 0.6, ky + direction[1] * depth * a_in, \
            kx + direction[2] * depth * b_in
        radius = rng.uniform(0.45, 0.9) * b_in
        rz = radius * hz / a_in
        r_t = ((zz - tz) / rz) ** 2 + ((yy - ty) / radius) ** 2 + ((xx - tx) / radius) ** 2
        tumour = (r_t < 1) & inner & ~hard[None]
        hu[tumour] = rng.uniform(45, 85) + 15 * smooth[tumour]
        mask[tumour] = 2

    # Partial-volume blur in plane, then CT noise (slightly correlated, ~10-20 HU).
    hu = ndimage.gaussian_filter(hu, (0, 0.6, 0.6))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, np.float32), (0, 0.7, 0.7))
    hu += noise * np.float32(rng.uniform(10, 20) / (noise.std() + 1e-6))
    np.clip(hu, -1024, 3071, out=hu)

    pixel_mm = float(rng.uniform(300, 400) / (2 * rx0))  # an abdomen is ~30-40 cm wide
    slice_mm = float(rng.uniform(50, 60) / max(half_len, 1.0))  # a kidney is ~10-12 cm long
    return Case(patient_id=f"kits-phantom-{p:04d}", image=hu[..., None], mask=mask,
                spacing_mm=(slice_mm, pixel_mm, pixel_mm), class_names=CLASS_NAMES, channel_names=("CT",),
                modality="CT", units="HU", domain="contrast", source="phantom",
                meta={"layout": "phantom", "axes": "zyx", "spacing_known": True, "seed": seed,
                      "n_tumours": n_tumours})


def kidney_phantom_cases(n_patients: int = 8, image_size: int = 128, n_slices: int = 24,
                         seed: int = 0, lazy: bool = False) -> list[Case]:
    """Procedural contrast-enhanced abdominal CT (HU, zyx, radiological view) with kidney and
    tumour labels, one Case per simulated patient.

    Air -1000 HU outside an elliptical body, subcutaneous and intra-abdominal fat ~-100 HU,
    soft tissue ~40 HU, liver ~60 HU on the patient's right, a spine (cortex ~700, cancellous
    ~400 HU), two kidneys (~150 HU medulla, ~190 HU cortex, fat in the sinus) over a z-range
    only (so the first and last slices have none), tumours (label 2, ~40-90 HU) inside or at
    the edge of some kidneys, CT-like noise. Body, organ and tumour sizes vary per patient.
    Patient ``p`` depends only on ``(seed, p)``, not on ``n_patients``. ``lazy``: a
    :class:`~tfganaug.data.cases.LazyCases` making each patient when it is reached (streamed
    data sets), instead of the list.
    """
    if image_size < 16 or n_slices < 1 or n_patients < 0:
        raise InputError("phantom size", "image_size >= 16, n_slices >= 1, n_patients >= 0",
                         f"image_size={image_size}, n_slices={n_slices}, n_patients={n_patients}")
    cases = LazyCases(int(n_patients), lambda p: _phantom_patient(p, int(image_size), int(n_slices), int(seed)))
    return cases if lazy else list(cases)


# --- label-map perturbation for synthesis --------------------------------------------------------

def _elastic_coords(shape, rng: np.random.Generator, strength: float, grid: int) -> np.ndarray:
    """Sampling coordinates of a smooth random displacement (Simard et al. 2003 style, on a
    coarse control grid upsampled cubically): standard deviation `strength` x image size."""
    h, w = shape
    coarse = rng.normal(0, strength * max(h, w), (2, grid, grid))
    # Cubic-spline zoom is separable and linear: apply it as (h x grid) and (w x grid) matrices.
    up_y = ndimage.zoom(np.eye(grid), (h / grid, 1), order=3, mode="nearest")
    up_x = ndimage.zoom(np.eye(grid), (w / grid, 1), order=3, mode="nearest")
    field = up_y @ coarse @ up_x.T
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([yy + field[0], xx + field[1]])


_EIGHT = np.ones((3, 3), bool)


def _touches(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.any(ndimage.binary_dilation(a, _EIGHT) & b))


def _in_convex_hull(region: np.ndarray, where: np.ndarray) -> np.ndarray:
    """For the pixels of boolean map `where`: are they inside the convex hull of `region`?"""
    queries = np.argwhere(where)
    points = np.argwhere(region)
    try:
        equations = ConvexHull(points).equations  # inside: normal . p + offset <= 0 for every facet
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line: the region itself
        return region[where]
    return np.all(queries @ equations[:, :2].T + equations[:, 2] <= 1e-9, axis=1)


def _move_tumours(mask: np.ndarray, rng: np.random.Generator, scale_range, edge_prob: float,
                  max_shift: float) -> np.ndarray:
    """Scale each tumour about its centre by U(`scale_range`) and move its centre to a point of
    its own kidney at most `max_shift` x the radius of kidney + tumour away (a point on the
    kidney's outer edge with probability `edge_prob`, where the tumour then bulges out). Its
    old place becomes kidney inside the kidney's convex hull, background outside."""
    out = mask.copy()
    pieces, n = ndimage.label(mask == 2, _EIGHT)
    renal, _ = ndimage.label(mask > 0, _EIGHT)
    outside = ndimage.binary_dilation(mask == 0, _EIGHT)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    placed = []
    for i in range(1, n + 1):
        scale, u_edge, u_pick = rng.uniform(*scale_range), rng.random(), rng.random()
        tumour = pieces == i
        ty, tx = (float(v) for v in np.argwhere(tumour).mean(axis=0))
        component = renal == renal[tumour].max()
        kidney = component & (mask == 1)
        new_y, new_x = ty, tx
        out[tumour] = 0
        if kidney.any():
            out[tumour] = np.where(_in_convex_hull(kidney, tumour), 1, 0)
            edge = kidney & outside
            region = edge if (u_edge < edge_prob and edge.any()) else kidney
            points = np.argwhere(region)
            reach = max_shift * np.sqrt(component.sum() / np.pi)
            points = points[np.hypot(points[:, 0] - ty, points[:, 1] - tx) <= reach]
            if len(points):
                new_y, new_x = (float(v) for v in points[min(int(u_pick * len(points)), len(points) - 1)])
        source = np.stack([(yy - new_y) / scale + ty, (xx - new_x) / scale + tx])
        moved = ndimage.map_coordinates(tumour.astype(np.uint8), source, order=0, cval=0).astype(bool)
        placed.append(moved if moved.any() else tumour)  # a one-pixel tumour may scale away: keep it
    for moved in placed:
        out[moved] = 2
    return out


def perturb_label_map(mask, rng, *, elastic_strength: float = 0.02, elastic_grid: int = 5,
                      tumour_scale=(0.8, 1.25), max_shift: float = 0.5, edge_prob: float = 0.5,
                      flip_prob: float = 0.5, body_mask=None) -> np.ndarray:
    """A plausible new kidney/tumour label map (H, W) from `mask`, for Pix2Pix synthesis.

    Steps: each tumour is scaled by U(`tumour_scale`) about its centre and moved to a random
    point of its own kidney at most `max_shift` x the radius of kidney + tumour away (on the
    kidney's outer edge with probability `edge_prob`; the vacated place becomes kidney inside
    the kidney's convex hull, background outside). Then the map is warped by a smooth random
    elastic deformation (displacements ~ N(0, `elastic_strength` x size) on an
    `elastic_grid`^2 control grid, cubic upsampling, nearest-neighbour resampling so labels
    stay labels) and mirrored left-right with probability `flip_prob`.

    No tumour floats in empty space: when every tumour touched a kidney, every tumour still
    does (fragments the warp cut loose are removed), and a tumour without kidney in the slice
    (a tumour pole) is only scaled and warped in place. With `body_mask` (H, W) bool, e.g.
    HU > -500 of the source slice, warped alongside, no label falls outside the body.

    `rng` is a ``numpy.random.Generator`` (or a seed); the result depends only on `mask` and
    the generator's state. Returns uint8 with labels in {0, 1, 2}.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError("label map", "one 2-D slice (H, W)", f"shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 2 or np.any(mask != np.round(mask))):
        bad = np.setdiff1d(np.unique(mask), LABELS)
        raise InputError("label map", f"labels in {list(LABELS)} ({', '.join(CLASS_NAMES)})",
                         f"unexpected values {bad[:10].tolist()}")
    mask = mask.astype(np.uint8)
    pieces, n = ndimage.label(mask == 2, _EIGHT)
    was_attached = n > 0 and all(_touches(pieces == i, mask == 1) for i in range(1, n + 1))
    out = _move_tumours(mask, rng, tumour_scale, edge_prob, max_shift)
    coords = _elastic_coords(mask.shape, rng, elastic_strength, elastic_grid)
    flip = rng.random() < flip_prob
    out = ndimage.map_coordinates(out, coords, order=0, mode="constant", cval=0).astype(np.uint8)
    if body_mask is not None:
        body = np.asarray(body_mask, bool)
        if body.shape != mask.shape:
            raise InputError("body mask", f"the label map's shape {mask.shape}", f"shape {body.shape}")
        body = ndimage.map_coordinates(body.astype(np.uint8), coords, order=0, mode="constant", cval=0) > 0
        out[~body] = 0
    if was_attached:  # drop tumour fragments that the warp cut loose from the kidney
        pieces, n = ndimage.label(out == 2, _EIGHT)
        loose = [i for i in range(1, n + 1) if not _touches(pieces == i, out == 1)]
        if 0 < len(loose) < n:
            out[np.isin(pieces, loose)] = 0
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
