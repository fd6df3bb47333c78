"""Procedural liver-lesion ROI phantom: the built-in default data, needing no files.

Three classes mimic how the lesions of Frid-Adar et al. 2018 differ on portal-venous CT:

* cyst: round, sharply marginated, homogeneous and water-dense (about 0-10 HU);
* metastasis: hypodense centre with an enhancing irregular rim (ring / target sign);
* hemangioma: peripheral nodular (discontinuous) enhancement close to vessel density
  around a hypodense centre.

ROIs are simulated in Hounsfield units on textured liver parenchyma (about 60 HU), with
size variation (10-40 px diameter at 64 px), CT-like noise and a mild blur, then windowed
(liver window W 150 / L 30 by default, as radiologists read liver lesions). Each simulated
patient carries 1-3 lesions, so patient-level splits matter as they do on real data.
Everything is deterministic given the seed.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CLASS_NAMES = ("cyst", "metastasis", "hemangioma")
LIVER_HU = 60.0


def _grid(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _lesion(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ROI in HU, lesion centred with a small random offset."""
    yy, xx = _grid(size)
    background = LIVER_HU + ndimage.gaussian_filter(rng.normal(0, 12, (size, size)), 2.0)
    radius = rng.uniform(0.08, 0.3) * size
    cy, cx = size / 2 + rng.normal(0, size * 0.03, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    # Irregular margin: radius modulated by a few low-order harmonics.
    irregularity = {0: 0.03, 1: 0.07, 2: 0.05}[cls]
    harmonics = sum(rng.normal(0, irregularity) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
                    for k in range(2, 6))
    r = np.hypot(yy - cy, xx - cx) / (radius * np.clip(1 + harmonics, 0.6, 1.4))
    img = background.copy()
    if cls == 0:  # cyst: sharp, homogeneous water density
        edge = 1 / (1 + np.exp(np.clip((r - 1) * 25, -50, 50)))
        img = img * (1 - edge) + rng.uniform(0, 30) * edge
    elif cls == 1:  # metastasis: hypodense core, enhancing rim, soft margin
        core = 1 / (1 + np.exp(np.clip((r - 0.75) * 10, -50, 50)))
        rim = np.exp(-((r - 0.95) / 0.15) ** 2)
        img = img * (1 - core) + rng.uniform(10, 40) * core + rng.uniform(5, 50) * rim
    else:  # hemangioma: hypodense centre, discontinuous bright nodules at the periphery
        inside = 1 / (1 + np.exp(np.clip((r - 1) * 15, -50, 50)))
        img = img * (1 - inside) + rng.uniform(25, 40) * inside
        for _ in range(rng.integers(2, 7)):
            a = rng.uniform(0, 2 * np.pi)
            ny = cy + 0.85 * radius * np.sin(a)
            nx = cx + 0.85 * radius * np.cos(a)
            nr = radius * rng.uniform(0.15, 0.3)
            img += rng.uniform(40, 120) * np.exp(-((yy - ny) ** 2 + (xx - nx) ** 2) / (2 * nr ** 2))
    img = ndimage.gaussian_filter(img, 0.7)
    return img + rng.normal(0, 12, img.shape)  # quantum noise of a portal-venous scan


def make_lesion_rois(n_patients: int = 120, image_size: int = 64, seed: int = 0,
                     window=(150.0, 30.0)):
    """Simulate lesion ROIs for `n_patients` patients.

    Returns `(images, labels, patient_ids)`: images float32 (N, size, size, 1) in [0, 1] after
    the (width, level) HU window, labels int32 in {0 cyst, 1 metastasis, 2 hemangioma}, and
    patient ids as strings `phantom-0007`. Each patient has one lesion type (as is common)
    and 1-3 lesions.
    """
    rng = np.random.default_rng(seed)
    width, level = window
    images, labels, patients = [], [], []
    for p in range(n_patients):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        for _ in range(int(rng.integers(1, 4))):
            hu = _lesion(cls, image_size, rng)
            images.append(np.clip((hu - (level - width / 2)) / width, 0.0, 1.0))
            labels.append(cls)
            patients.append(f"phantom-{p:04d}")
    images = np.asarray(images, np.float32)[..., None]
    return images, np.asarray(labels, np.int32), np.asarray(patients)
