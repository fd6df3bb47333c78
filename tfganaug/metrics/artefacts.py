"""Checkerboard artefacts of transposed convolutions (Odena, Dumoulin and Olah 2016, "Deconvolution
and Checkerboard Artifacts"), measured in the Fourier domain.

A stride-2 transposed convolution with uneven kernel overlap paints a period-2 pattern, which
puts spectral power at the Nyquist frequencies: (N/2, 0), (0, N/2) and (N/2, N/2). The index
is the share of each image's non-DC power within `radius` bins of those three points,
averaged over images. Natural CT slices score close to the share a white-noise image of the
same size would give to that area only if they are noisy; smooth slices score near 0. A
synthetic set scoring well above the real images of its target domain has a checkerboard.
"""
from __future__ import annotations

import numpy as np

from tfganaug.errors import InputError


def _nyquist_mask(h: int, w: int, radius: int) -> np.ndarray:
    fy = np.abs(np.fft.fftfreq(h) * h)  # integer bin distances from DC
    fx = np.abs(np.fft.fftfreq(w) * w)
    near_y = np.abs(fy - h / 2) <= radius
    near_x = np.abs(fx - w / 2) <= radius
    low_y, low_x = fy <= radius, fx <= radius
    return (near_y[:, None] & (near_x[None, :] | low_x[None, :])) | (low_y[:, None] & near_x[None, :])


def checkerboard_index(images, radius: int = 1) -> float:
    """Mean share of non-DC spectral power near the Nyquist frequencies, for (N, H, W[, C]) images."""
    x = np.asarray(images, np.float64)
    if x.ndim == 4:
        x = np.moveaxis(x, -1, 1).reshape(-1, x.shape[1], x.shape[2])
    if x.ndim != 3 or min(x.shape[1:]) < 4 or not np.isfinite(x).all():
        raise InputError("images", "finite (N, H, W[, C]) images of at least 4x4 pixels", f"shape {x.shape}")
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    total = power.reshape(len(x), -1).sum(axis=1)
    near = power[:, _nyquist_mask(*x.shape[1:], radius)].sum(axis=1)
    keep = total > 0
    return float(np.mean(near[keep] / total[keep])) if keep.any() else 0.0
