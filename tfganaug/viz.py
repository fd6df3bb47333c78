"""Figures: sample grids and training curves, written atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tfganaug.fsutil import atomic_write_bytes


def grid(images: np.ndarray, rows: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W[, 1]) images in [0, 1] into one uint8 picture."""
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    n, h, w = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: np.ndarray, path: str | Path, rows: int | None = None, upscale: int = 2) -> Path:
    picture = grid(images, rows)
    if upscale > 1:
        picture = np.kron(picture, np.ones((upscale, upscale), np.uint8))
    return atomic_write_bytes(path, png_bytes(picture))


def save_figure(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
