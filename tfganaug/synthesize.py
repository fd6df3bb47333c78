"""Sample a trained generator into a synthetic data set: NPZ + PNG + manifest.

The output folder::

    images.npz      images float32 (N, H, W, 1) in [0, 1], labels int32 (N,), class_names
    png/<class>/000001.png
    manifest.json   generator run, checkpoint, seed, counts, sha256 of images.npz

It is built under a temporary name and renamed when complete, so a folder that has a
manifest is complete; `load_synthetic` checks the checksum before using it.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfganaug import __version__
from tfganaug.data.synthetic import read_manifest_json, read_synthetic_rois
from tfganaug.errors import InputError, OutputExistsError
from tfganaug.fsutil import atomic_dir, atomic_write_json, sha256_file
from tfganaug.viz import png_bytes


def _balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    labels = np.arange(n) % num_classes
    return np.random.default_rng(seed).permutation(labels).astype(np.int32)


def sample_images(gans, num_classes: int, n: int, seed: int = 0, batch_size: int = 256):
    """(images in [0, 1], labels) from [(member, gan, ckpt)]: DCGAN one per class, ACGAN conditional."""
    labels = _balanced_labels(n, num_classes, seed)
    latent_dim = gans[0][1].latent_dim
    z = tf.random.stateless_uniform([n, latent_dim], seed=[seed, 2018], minval=-1.0, maxval=1.0).numpy()
    images = None
    for start in range(0, n, batch_size):
        zb, lb = z[start:start + batch_size], labels[start:start + batch_size]
        if len(gans) == 1:
            out = gans[0][1].generate(zb, lb).numpy()
        else:  # one DCGAN per class: each produces the ROIs of its own class
            out = np.zeros((len(lb),) + tuple(gans[0][1].generator.output_shape[1:]), np.float32)
            for c, (_, gan, _) in enumerate(gans):
                sel = lb == c
                if sel.any():
                    out[sel] = gan.generate(zb[sel]).numpy()
        if images is None:
            images = np.zeros((n,) + out.shape[1:], np.float32)
        images[start:start + len(lb)] = out
    return np.clip((images + 1.0) / 2.0, 0.0, 1.0), labels


def synthesize(run_dir, n: int, out, seed: int = 0, overwrite: bool = False, png: bool = True) -> Path:
    from tfganaug.experiments import load_gan_for_sampling

    if n < 1:
        raise InputError("--n", "a positive number of images", str(n))
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(out)
    run, cfg, names, gans = load_gan_for_sampling(run_dir)
    images, labels = sample_images(gans, len(names), n, seed)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        np.savez_compressed(tmp / "images.npz", images=images, labels=labels, class_names=np.array(names))
        if png:
            for i, (img, lab) in enumerate(zip(images, labels)):
                path = tmp / "png" / names[lab] / f"{i:06d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png_bytes((img[..., 0] * 255).round().astype(np.uint8)))
        atomic_write_json(tmp / "manifest.json", {
            "generator_run": str(Path(run.path).resolve()), "arch": cfg.gan.arch,
            "checkpoints": {m: c for m, _, c in gans}, "seed": seed, "count": n,
            "class_names": list(names), "class_counts": np.bincount(labels, minlength=len(names)).tolist(),
            "image_size": int(images.shape[1]), "value_range": [0.0, 1.0],
            "images_sha256": sha256_file(tmp / "images.npz"), "tfganaug": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return Path(out)


def read_synthetic_manifest(folder, kind: str, expect: dict) -> dict:
    """The manifest of a synthetic set written by `synthesize`, checked: its images.npz against the
    recorded sha256, its kind ("classification": ROIs with class labels; "segmentation": image +
    label-map pairs) and every `expect` entry `{key: (what, wanted value, description)}`."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise InputError("a synthetic set", "a folder written by `tfganaug synthesize` (with manifest.json)",
                         "no manifest.json" if folder.exists() else "no such folder", folder)
    manifest = read_manifest_json(manifest_path)
    kinds = {"classification": "ROIs with class labels (a dcgan/acgan set)",
             "segmentation": "image + label-map pairs (from a pix2pix, cyclegan or stylegan2 run)"}
    got = manifest.get("kind", "classification")
    if got != kind:
        raise InputError("a synthetic set", kinds[kind], kinds.get(got, repr(got)), folder)
    npz = folder / "images.npz"
    if not npz.exists() or sha256_file(npz) != manifest.get("images_sha256"):
        raise InputError("images.npz", f"sha256 {manifest.get('images_sha256')} from the manifest",
                         "a missing or changed file", npz)
    for key, (what, want, description) in expect.items():
        if manifest.get(key) != want:
            raise InputError(f"synthetic {what}", description, f"{manifest.get(key)}", manifest_path)
    return manifest


def load_synthetic(folder, class_names, image_size: int):
    """(images, labels) of a synthetic set, checked against the classifier's classes and size."""
    read_synthetic_manifest(folder, "classification", {
        "class_names": ("classes", list(class_names), f"the training classes {list(class_names)}"),
        "image_size": ("image size", image_size, f"{image_size} px (data.image_size)")})
    return read_synthetic_rois(folder)
