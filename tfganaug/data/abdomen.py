"""Abdominal CT with liver / kidney / spleen labels: the data of Sandfort et al. 2019.

Sandfort, Yan, Pickhardt & Summers, "Data augmentation using generative adversarial
networks (CycleGAN) to improve generalizability in CT segmentation tasks", Sci. Rep. 9,
16884 (2019), train a U-Net for kidney, liver and spleen on contrast-enhanced CT and test it
on contrast and non-contrast CT. Every source here maps its labels onto one scheme,
:data:`ABDOMEN_CLASSES`, and returns a list of :class:`~tfganaug.data.cases.Case` (image in
HU, ``(Z, H, W, 1)``, axes ``"zyx"`` = orientation ``("S", "P", "L")``, so a slice shows the
patient's right on the left of the image, as radiologists read it):

* :func:`load_ircadb_patient`: a 3D-IRCADb-01 patient folder (``PATIENT_DICOM`` and
  ``MASKS_DICOM``, zipped as distributed or unpacked), read in place; venous-phase contrast.
* :func:`load_totalseg_example`: a TotalSegmentator CT (NIfTI or DICOM series) with its
  117-class "total" mask (model output, not manual ground truth).
* :func:`load_abdomen_sources`: the shared data folder's sources split into
  ``"contrast"`` / ``"non-contrast"`` domains.
* :func:`abdomen_phantom_cases`: procedural abdominal CT, native or portal-venous, with the
  same labels; the built-in default that needs no files.

IRCADb is CC BY-NC-ND: it is converted at load time only, never written back.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
from scipy import ndimage

from tfganaug.data.archives import open_zip, read_member
from tfganaug.data.cases import Case, LazyCases
from tfganaug.data.readers import read_image, read_segmentation, to_zyx
from tfganaug.errors import InputError

ABDOMEN_CLASSES = ("background", "liver", "kidney", "spleen")
"""Label scheme of the Sandfort et al. segmentation task; index = label value."""

DOMAINS = ("contrast", "non-contrast")

IRCADB_STRUCTURES = {"liver": 1, "leftkidney": 2, "rightkidney": 2, "spleen": 3}
"""3D-IRCADb ``MASKS_DICOM`` folder -> label of :data:`ABDOMEN_CLASSES` (kidney = left | right).
IRCADb's liver mask already contains the liver's tumours and cysts."""

TOTALSEG_TO_ABDOMEN = {1: 3, 2: 2, 3: 2, 5: 1}
"""TotalSegmentator "total" label -> :data:`ABDOMEN_CLASSES` label (1 spleen, 2 kidney_right,
3 kidney_left, 5 liver); the other 113 classes become background."""

TOTALSEG_LABELS = range(118)


# --- 3D-IRCADb-01 -------------------------------------------------------------------------

def load_ircadb_patient(folder: str | os.PathLike,
                        required: tuple[str, ...] = tuple(IRCADB_STRUCTURES)) -> list[Case]:
    """One 3D-IRCADb-01 patient (e.g. ``3Dircadb1.1``) as a one-element list of Case.

    The folder holds ``PATIENT_DICOM.zip`` (or an unpacked ``PATIENT_DICOM/``) and
    ``MASKS_DICOM.zip`` (or ``MASKS_DICOM/``) with one DICOM series per structure. Zips are
    read in place, nothing is extracted. Masks ``liver``, ``leftkidney``, ``rightkidney`` and
    ``spleen`` (values {0, 255}) are united into :data:`ABDOMEN_CLASSES`; each must have the
    image's shape, spacing and orientation. Structures in ``required`` must exist (an
    absent mask would otherwise read as "no organ here"); others of the scheme are used if
    present and listed in ``meta["missing_structures"]`` if not. Voxels claimed by two
    masks keep the first label in the order liver, kidney, spleen (none in patient 1).

    Patient id: the DICOM PatientName (IRCADb leaves PatientID empty), else the folder name.
    Domain ``"contrast"``: IRCADb-01 scans are venous phase (mean liver HU 110.6 in
    patient 1).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("3D-IRCADb patient folder", "a folder with PATIENT_DICOM(.zip) and "
                         "MASKS_DICOM(.zip)", "nothing at that path" if not folder.exists()
                         else "a file", folder)
    unknown = sorted(set(required) - set(IRCADB_STRUCTURES))
    if unknown:
        raise InputError("required IRCADb structures", f"a subset of {list(IRCADB_STRUCTURES)}",
                         f"{unknown}", folder)
    image_path = _one_of(folder, "PATIENT_DICOM", "CT series")
    masks_path = _one_of(folder, "MASKS_DICOM", "organ masks")
    available = _mask_folders(masks_path)
    missing = [s for s in IRCADB_STRUCTURES if s not in available]
    if any(s in missing for s in required):
        raise InputError("IRCADb organ masks", "folders " + ", ".join(required),
                         f"folders {sorted(available) or 'none'}", masks_path)

    ct, meta = read_image(image_path)
    if meta.get("axes") != "zyx" or ct.ndim != 3:
        raise InputError("IRCADb CT", "one DICOM series (Z, H, W)", f"shape {ct.shape}", image_path)
    mask = np.zeros(ct.shape, np.uint8)
    voxels, overlap = {}, 0
    for name in sorted((s for s in IRCADB_STRUCTURES if s not in missing),
                       key=lambda s: IRCADB_STRUCTURES[s]):
        if masks_path.suffix.lower() == ".zip":
            organ, _ = read_segmentation(masks_path, like_meta=meta, member=name)
        else:
            organ, _ = read_segmentation(masks_path / name, like_meta=meta)
        organ = organ > 0
        voxels[name] = int(np.count_nonzero(organ))
        overlap += int(np.count_nonzero(organ & (mask > 0) & (mask != IRCADB_STRUCTURES[name])))
        mask[organ & (mask == 0)] = IRCADB_STRUCTURES[name]
    patient_id = _dicom_patient_name(image_path) or folder.name
    return [Case(patient_id=patient_id, image=ct[..., None], mask=mask,
                 spacing_mm=meta["spacing_mm"], class_names=ABDOMEN_CLASSES, channel_names=("CT",),
                 modality="CT", units="HU", domain="contrast", source=str(folder),
                 meta={"dataset": "3D-IRCADb-01", "image": str(image_path), "masks": str(masks_path),
                       "structure_voxels": voxels, "missing_structures": missing,
                       "overlap_voxels": overlap, "affine": meta["affine"],
                       "orientation": meta["orientation"], "series_uid": meta.get("series_uid", "")})]


def _one_of(folder: Path, stem: str, what: str) -> Path:
    """``<stem>.zip`` (as IRCADb distributes it) or an unpacked ``<stem>/`` folder."""
    for candidate in (folder / f"{stem}.zip", folder / stem):
        if candidate.exists():
            return candidate
    raise InputError(f"IRCADb {what}", f"{stem}.zip or a folder {stem}/",
                     f"neither (found {sorted(p.name for p in folder.iterdir())})", folder)


def _mask_folders(masks_path: Path) -> set[str]:
    """Names of the structure folders in ``MASKS_DICOM(.zip)`` (last path component)."""
    if masks_path.is_dir():
        return {p.name for p in masks_path.iterdir() if p.is_dir()}
    with open_zip(masks_path, "IRCADb organ masks") as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
    return {n.rpartition("/")[0].rpartition("/")[2] for n in names if "/" in n}


def _dicom_patient_name(image_path: Path) -> str:
    """PatientName of the first slice with a readable header ('' if none)."""
    def headers():
        if image_path.is_dir():
            for f in sorted(image_path.iterdir()):
                if f.is_file():
                    yield f
        else:
            with open_zip(image_path, "IRCADb CT") as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        yield io.BytesIO(read_member(archive, info, "IRCADb CT"))

    try:
        for source in headers():
            try:
                ds = pydicom.dcmread(source, stop_before_pixels=True)
            except (OSError, ValueError, pydicom.errors.InvalidDicomError):
                continue
            return str(ds.get("PatientName", "")).strip()
    except (OSError, InputError):
        return ""
    return ""


# --- TotalSegmentator ----------------------------------------------------------------------

def load_totalseg_example(image_path: str | os.PathLike, mask_path: str | os.PathLike,
                          domain: str, patient_id: str | None = None) -> list[Case]:
    """A TotalSegmentator CT (NIfTI file or DICOM series) and its 117-class mask.

    The image is reoriented with :func:`~tfganaug.data.readers.to_zyx`, so a NIfTI (stored
    RAS) and a DICOM series come out in the same ``("S", "P", "L")`` axes; the mask must then
    agree with it in shape, spacing and orientation. Labels 5 -> liver, 2 | 3 -> kidney,
    1 -> spleen, all others -> background. ``domain`` is ``"contrast"`` or
    ``"non-contrast"``: NIfTI carries no contrast tag, so the caller states it (the shared
    ``example_ct_sm.nii.gz`` is native by TotalSegmentator's phase prediction, the
    ``example_ct_dicom`` series has ContrastBolusAgent "APPLIED", kept in
    ``meta["contrast_bolus_agent"]``). Patient id: ``patient_id``, else the DICOM
    PatientName / PatientID, else the file name without suffix.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    if domain not in DOMAINS:
        raise InputError("domain", " or ".join(repr(d) for d in DOMAINS), repr(domain), image_path)
    ct, meta = read_image(image_path)
    if ct.ndim != 3:
        raise InputError("TotalSegmentator CT", "a 3-D volume", f"shape {ct.shape}", image_path)
    ct, meta = to_zyx(ct, meta)
    labels, _ = read_segmentation(mask_path, like_meta=meta, labels=TOTALSEG_LABELS)
    lookup = np.zeros(max(TOTALSEG_LABELS) + 1, np.uint8)
    for total_label, label in TOTALSEG_TO_ABDOMEN.items():
        lookup[total_label] = label
    mask = lookup[labels]
    header = _dicom_header(image_path) if meta.get("format") == "dicom" else None
    if patient_id is None:
        named = "" if header is None else (str(header.get("PatientName", "")).strip()
                                           or str(header.get("PatientID", "")).strip())
        patient_id = named or _stem(image_path)
    return [Case(patient_id=patient_id, image=ct[..., None], mask=mask, spacing_mm=meta["spacing_mm"],
                 class_names=ABDOMEN_CLASSES, channel_names=("CT",), modality="CT", units="HU",
                 domain=domain, source=str(image_path),
                 meta={"dataset": "TotalSegmentator example", "image": str(image_path),
                       "masks": str(mask_path), "format": meta.get("format"),
                       "original_orientation": meta.get("original_orientation", meta["orientation"]),
                       "affine": meta["affine"], "orientation": meta["orientation"],
                       "contrast_bolus_agent": None if header is None
                       else str(header.get("ContrastBolusAgent", "")),
                       "label_map": "TotalSegmentator total: " + ", ".join(
                           f"{k}->{ABDOMEN_CLASSES[v]}" for k, v in sorted(TOTALSEG_TO_ABDOMEN.items()))})]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dicom_header(path: Path):
    """Header of one slice of a DICOM folder or file (None if none is readable)."""
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    for f in files:
        try:
            return pydicom.dcmread(f, stop_before_pixels=True)
        except (OSError, ValueError, pydicom.errors.InvalidDicomError):
            continue
    return None


# --- the shared data folder ----------------------------------------------------------------

TOTALSEG_EXAMPLES = {
    "contrast": ("example_ct_dicom", "example_seg_dicom.nii.gz"),
    "non-contrast": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
}
"""The TotalSegmentator reference files with a matching mask, by domain (see its MANIFEST).
``example_ct.nii.gz`` (112 slices) has no mask of its shape and is not used."""


def load_abdomen_sources(root: str | os.PathLike | None = None) -> dict[str, list[Case]]:
    """``{"contrast": [...], "non-contrast": [...]}`` from the shared data folder.

    Contrast: every ``ircadb/3Dircadb1.*`` patient, then the TotalSegmentator contrast DICOM
    series (liver and spleen only; its 20 slices contain no kidney). Non-contrast: the
    TotalSegmentator native ``example_ct_sm`` (3 mm). ``root`` defaults to
    :func:`tfganaug.data.datasets.data_root`.
    """
    if root is None:
        from tfganaug.data.datasets import data_root

        root = data_root()
    root = Path(root)
    ircadb = sorted((p for p in (root / "ircadb").glob("3Dircadb1.*") if p.is_dir()),
                    key=lambda p: [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in p.name.split(".")])
    totalseg = root / "totalseg-examples"
    absent = [] if ircadb else ["ircadb/3Dircadb1.*/"]
    absent += [f"totalseg-examples/{name}" for pair in TOTALSEG_EXAMPLES.values() for name in pair
               if not (totalseg / name).exists()]
    if absent:
        raise InputError("abdominal CT sources", "ircadb/3Dircadb1.*/ and totalseg-examples/ (see "
                         "INDEX.md; set TFGANAUG_DATA to the shared data folder)",
                         "missing " + ", ".join(absent), root)
    sources = {"contrast": [], "non-contrast": []}
    for patient in ircadb:
        sources["contrast"] += load_ircadb_patient(patient)
    for domain, (image, mask) in TOTALSEG_EXAMPLES.items():
        sources[domain] += load_totalseg_example(totalseg / image, totalseg / mask, domain,
                                                 patient_id=f"totalseg-{_stem(Path(image))}")
    return sources


# --- procedural phantom --------------------------------------------------------------------

FIELD_OF_VIEW_MM = 400.0
Z_EXTENT_MM = 240.0

# tissue -> (native HU, portal-venous HU). Native liver > spleen > kidney; after contrast the
# kidney enhances most (cortex above medulla), spleen above liver in the portal-venous phase.
TISSUE_HU = {
    "air": (-1000.0, -1000.0), "fat": (-100.0, -100.0), "muscle": (50.0, 60.0),
    "bowel": (30.0, 55.0), "gas": (-850.0, -850.0), "cortical_bone": (700.0, 700.0),
    "marrow": (220.0, 235.0), "csf": (15.0, 15.0), "aorta": (40.0, 170.0), "ivc": (40.0, 140.0),
    "liver": (55.0, 105.0), "liver_vessel": (38.0, 170.0), "spleen": (45.0, 130.0),
    "kidney_cortex": (32.0, 225.0), "kidney_medulla": (28.0, 175.0),
}
_TISSUES = tuple(TISSUE_HU)
_T = {name: i for i, name in enumerate(_TISSUES)}
_TISSUE_LABEL = {"liver": 1, "liver_vessel": 1, "kidney_cortex": 2, "kidney_medulla": 2, "spleen": 3}


def abdomen_phantom_cases(n_patients: int = 8, image_size: int = 128, n_slices: int = 24,
                          contrast: bool = True, seed: int = 0, lazy: bool = False) -> list[Case]:
    """Procedural abdominal CT in HU with liver, kidneys and spleen labelled (no files needed).

    Each patient has a body outline with subcutaneous fat, abdominal-wall and paraspinal
    muscles, psoas, a vertebral body with spinal canal, aorta and IVC, bowel with fat and gas,
    and the labelled organs as perturbed ellipsoids: liver (right lobe + left lobe, with
    intrahepatic vessels) on the patient's right (low column index, as in ``("S","P","L")``
    axes), spleen postero-laterally on the left, two kidneys (cortex around medulla) beside
    the spine, lower than liver and spleen; each organ occupies its own z-range. Sizes and
    positions vary per patient (liver about 0.9-1.8 l, both kidneys 250-360 ml, spleen
    70-230 ml). ``contrast=True`` gives portal-venous
    enhancement (liver ~110, spleen ~120, kidney ~190 HU with brighter cortex, aorta ~170),
    ``False`` native values (liver ~55, spleen ~45, kidney ~30 HU); then a mild in-plane blur
    (partial volume) and 12 HU Gaussian quantum noise.

    Deterministic: patient ``p`` depends only on ``(seed, p)``, and ``contrast`` changes only
    intensities, so the same seed gives the same anatomy in both phases (paired native /
    contrast scans of one patient, hence the same patient id). Field of view 400 mm,
    z-extent 240 mm (spacing ``(240/n_slices, 400/image_size, 400/image_size)`` mm).
    ``lazy``: a :class:`~tfganaug.data.cases.LazyCases` making each patient when it is reached
    (streamed data sets), instead of the list.
    """
    if n_patients < 1 or image_size < 16 or n_slices < 4:
        raise InputError("abdomen phantom size", "n_patients >= 1, image_size >= 16, n_slices >= 4",
                         f"{n_patients}, {image_size}, {n_slices}")
    cases = LazyCases(n_patients, lambda p: _abdomen_patient(p, image_size, n_slices, contrast, seed))
    return cases if lazy else list(cases)


def _abdomen_patient(p: int, image_size: int, n_slices: int, contrast: bool, seed: int) -> Case:
    """Patient `p` of :func:`abdomen_phantom_cases`."""
    phase = 1 if contrast else 0
    rng = np.random.default_rng([seed, p])
    tissue, spacing = _phantom_tissues(rng, image_size, n_slices)
    # Per-patient enhancement (cardiac output, timing): always drawn, used for contrast only.
    # Per-patient enhancement (dose, timing): a common factor and a small per-tissue
    # part, always drawn so that `contrast` changes intensities only.
    factor, jitter = rng.uniform(0.9, 1.1), rng.normal(0.0, 0.03, len(_TISSUES))
    native = np.array([TISSUE_HU[t][0] for t in _TISSUES])
    enhancement = np.array([TISSUE_HU[t][1] for t in _TISSUES]) - native
    hu_table = (native + phase * enhancement * factor * (1.0 + jitter)).astype(np.float32)
    image = hu_table[tissue]
    image = ndimage.gaussian_filter(image, (0.0, 0.6, 0.6))
    image += _smooth_noise(rng, image.shape, 1.5, 6.0)  # parenchymal texture
    image += rng.normal(0.0, 12.0, image.shape).astype(np.float32)
    label_table = np.array([_TISSUE_LABEL.get(t, 0) for t in _TISSUES], np.uint8)
    mask = label_table[tissue]
    return Case(patient_id=f"abdomen-{seed}-{p:04d}", image=image[..., None].astype(np.float32),
                mask=mask, spacing_mm=spacing, class_names=ABDOMEN_CLASSES,
                channel_names=("CT",), modality="CT", units="HU",
                domain="contrast" if contrast else "non-contrast", source="phantom:abdomen",
                meta={"phantom": True, "seed": seed, "patient": p,
                      "phase": "portal-venous" if contrast else "native",
                      "tissue_hu": {t: float(v) for t, v in zip(_TISSUES, hu_table)}})


def _smooth_noise(rng: np.random.Generator, shape, sigma_px: float, std: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape).astype(np.float32),
                                    (sigma_px / 3.0, sigma_px, sigma_px))
    return (field * (std / (field.std() + 1e-6))).astype(np.float32)


def _phantom_tissues(rng: np.random.Generator, size: int, n_slices: int):
    """Integer tissue map (Z, H, W) indexing :data:`TISSUE_HU`, and spacing (z, y, x) mm."""
    px, dz = FIELD_OF_VIEW_MM / size, Z_EXTENT_MM / n_slices
    z = ((np.arange(n_slices) - (n_slices - 1) / 2) * dz)[:, None, None].astype(np.float32)
    y = ((np.arange(size) - (size - 1) / 2) * px)[None, :, None].astype(np.float32)  # + posterior
    x = ((np.arange(size) - (size - 1) / 2) * px)[None, None, :].astype(np.float32)  # + patient left
    shape = (n_slices, size, size)
    wobble = _smooth_noise(rng, shape, max(1.0, 12.0 / px), 1.0)  # irregular organ surfaces

    def ellipsoid(centre, semi, angle_deg=0.0, irregular=0.0):
        """Inside of an ellipsoid (x, y, z mm), rotated in-plane, surface perturbed."""
        a = np.deg2rad(angle_deg)
        dx, dy = x - centre[0], y - centre[1]
        u, v = np.cos(a) * dx + np.sin(a) * dy, -np.sin(a) * dx + np.cos(a) * dy
        r2 = (u / semi[0]) ** 2 + (v / semi[1]) ** 2 + ((z - centre[2]) / semi[2]) ** 2
        return r2 + irregular * wobble < 1.0

    def cylinder(centre, radius, z_range=(-1e9, 1e9)):
        inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 < radius ** 2
        return inside & (z >= z_range[0]) & (z <= z_range[1])

    def jitter(mm):
        return rng.normal(0.0, mm, 3)

    body = rng.uniform(0.92, 1.08)
    lat, ap = 150.0 * body, 112.0 * body
    tissue = np.full(shape, _T["air"], np.uint8)

    def paint(region, name):
        tissue[np.broadcast_to(region, shape)] = _T[name]

    fat_mm, wall_mm = rng.uniform(10.0, 25.0), rng.uniform(8.0, 12.0)
    paint(ellipsoid((0, 0, 0), (lat, ap, 1e9)), "fat")
    paint(ellipsoid((0, 0, 0), (lat - fat_mm, ap - fat_mm, 1e9)), "muscle")
    inner_lat, inner_ap = lat - fat_mm - wall_mm, ap - fat_mm - wall_mm
    inner = ellipsoid((0, 0, 0), (inner_lat, inner_ap, 1e9))
    place = np.array([inner_lat / 122.0, inner_ap / 84.0, 1.0])  # organ positions follow the body
    bowel = _smooth_noise(rng, shape, max(1.0, 8.0 / px), 1.0)
    gas = _smooth_noise(rng, shape, max(1.0, 5.0 / px), 1.0)
    tissue[np.broadcast_to(inner, shape)] = _T["fat"]
    tissue[np.broadcast_to(inner, shape) & (bowel > 0.1)] = _T["bowel"]
    tissue[np.broadcast_to(inner, shape) & (bowel > 0.1) & (gas > 2.2)] = _T["gas"]
    spine_y = ap - fat_mm - 45.0
    for side in (-1, 1):
        paint(ellipsoid((side * 32, spine_y + 28, 0), (26, 20, 1e9)), "muscle")  # erector spinae
        paint(ellipsoid((side * 36, spine_y - 8, -60), (15, 15, 90)), "muscle")  # psoas, lower
    paint(cylinder((0, spine_y), 18.0), "cortical_bone")
    paint(cylinder((0, spine_y), 15.0), "marrow")
    paint(cylinder((0, spine_y + 26), 8.0), "csf")
    paint(cylinder((12, spine_y - 30), 11.0), "aorta")
    paint(cylinder((-24, spine_y - 32), 11.0), "ivc")

    liver_scale = rng.uniform(0.92, 1.1, 3)
    liver_c = np.array([-62.0, -12.0, 40.0]) * place + jitter(7.0)
    right_lobe = ellipsoid(liver_c, np.array([68.0, 68.0, 72.0]) * liver_scale, irregular=0.25)
    left_c = liver_c + np.array([62.0, -32.0, 8.0]) * place + jitter(5.0)
    left_lobe = ellipsoid(left_c, np.array([42.0, 28.0, 38.0]) * liver_scale, angle_deg=-15, irregular=0.25)
    liver = (right_lobe | left_lobe) & np.broadcast_to(inner, shape)
    tissue[liver] = _T["liver"]
    vessels = _smooth_noise(rng, shape, max(1.0, 4.0 / px), 1.0)
    tissue[liver & (np.abs(vessels) < 0.12)] = _T["liver_vessel"]

    spleen_c = np.array([82.0, 35.0, 60.0]) * place + jitter(6.0)
    spleen = ellipsoid(spleen_c, np.array([22.0, 45.0, 45.0]) * rng.uniform(0.85, 1.15, 3),
                       angle_deg=rng.uniform(20, 45), irregular=0.2)
    tissue[spleen & np.broadcast_to(inner, shape)] = _T["spleen"]

    for side, dz_mm in ((1, -10.0), (-1, -28.0)):  # left kidney higher than the right
        c = np.array([side * 68.0 * place[0], spine_y - 5.0, dz_mm]) + jitter(5.0)
        semi = np.array([24.0, 28.0, 52.0]) * rng.uniform(0.88, 1.12, 3)
        angle = side * rng.uniform(15, 35)
        tissue[ellipsoid(c, semi, angle, irregular=0.1)] = _T["kidney_cortex"]
        tissue[ellipsoid(c, semi - 7.0, angle, irregular=0.1)] = _T["kidney_medulla"]
    return tissue, (dz, px, px)
