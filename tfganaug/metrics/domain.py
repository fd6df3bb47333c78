"""The ``domain`` feature extractor: an encoder trained by tfganaug on the real training split.

No pretrained medical image network can be loaded offline here (../shared/ARCHITECTURE.md, the
FID decision), so tfganaug trains its own small one on the task's real training images: a
convolutional autoencoder whose 64-D bottleneck (fed by the mean activations of every encoder
scale) is the feature vector. For ROI data an auxiliary head predicts the class, so the
features carry the task's semantics and not only the pixels. Segmentation data get the
autoencoder alone: a head predicting each label's share of the slice would make the features
reward label-map GANs for the label maps they were given, not for the images they drew. Each channel
(MR contrast) is a separate grey training image, so one encoder gives per-contrast features.

The encoder is a function of the training images, their targets and :class:`DomainRecipe`
(seeded initialisation, seeded batch order, op determinism), so the same data and recipe give
the same weights in every process. It is cached under ``$XDG_CACHE_HOME/tfganaug/domain/<key>``
(default ``~/.cache``), ``key`` the sha256 of the data, the targets, the recipe and
:data:`DOMAIN_VERSION`: changing any of them trains a new one. A cache entry holds
``weights.npz`` and ``meta.json`` (recipe, data hash, weights sha256, training time and loss);
an entry whose weights no longer match their recorded sha256 is trained again. The number
printed beside each metric is the sha256 of the weights (every array's float32 bytes, in order).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from tfganaug.errors import InputError, OutputExistsError
from tfganaug.fsutil import atomic_dir, atomic_write_json

DOMAIN_VERSION = "2"
"""Bumped when the architecture or training changes; part of the cache key."""


@dataclasses.dataclass(frozen=True)
class DomainRecipe:
    """How the domain encoder is trained (part of its cache key)."""

    widths: tuple[int, ...] = (16, 32, 64, 128)  # 3x3 stride-2 convolutions, each halving the image
    features: int = 64                            # bottleneck = feature vector
    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3                              # Adam
    aux_weight: float = 1.0                       # cross-entropy of the target head vs the reconstruction MSE
    max_images: int = 4000                        # training images kept (seeded draw) to bound the hashing and memory
    seed: int = 0


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/tfganaug/domain`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tfganaug" / "domain"


def as_channel_images(images) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> (N * C, H, W, 1): every channel a grey image, image-major."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or not len(x):
        raise InputError("images", "a non-empty (N, H, W, C) array", f"shape {x.shape}")
    return x.transpose(0, 3, 1, 2).reshape(-1, x.shape[1], x.shape[2], 1)


def _sha256_arrays(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(images: np.ndarray, targets: np.ndarray, recipe: DomainRecipe) -> str:
    recipe_text = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    return hashlib.sha256(f"{DOMAIN_VERSION}|{recipe_text}|{_sha256_arrays([images, targets])}".encode()).hexdigest()


def build_autoencoder(size: int, num_targets: int, recipe: DomainRecipe):
    """(encoder, autoencoder): encoder (S, S, 1) -> features; autoencoder -> (reconstruction, target logits)."""
    import keras

    if size < 2 ** len(recipe.widths) or size & (size - 1):
        raise InputError("image size", f"a power of two >= {2 ** len(recipe.widths)} for the domain encoder",
                         str(size))
    image = keras.Input((size, size, 1), name="image")
    h, pooled = image * 2.0 - 1.0, []
    for i, width in enumerate(recipe.widths):
        h = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"down{i}")(h)
        h = keras.layers.LeakyReLU(0.2)(h)
        pooled.append(keras.layers.GlobalAveragePooling2D()(h))
    # the bottleneck sees every scale's mean activations, fine texture as well as layout
    features = keras.layers.Dense(recipe.features, name="features")(keras.layers.Concatenate()(pooled))
    encoder = keras.Model(image, features, name="domain_encoder")

    side = size // 2 ** len(recipe.widths)
    h = keras.layers.Dense(side * side * recipe.widths[-1], name="expand")(features)
    h = keras.layers.Reshape((side, side, recipe.widths[-1]))(h)
    for i, width in enumerate(reversed(recipe.widths)):
        h = keras.layers.UpSampling2D(2)(h)
        h = keras.layers.Conv2D(width, 3, padding="same", name=f"up{i}")(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    reconstruction = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="reconstruction")(h)
    target_logits = keras.layers.Dense(num_targets, name="targets")(features)
    return encoder, keras.Model(image, [reconstruction, target_logits], name="domain_autoencoder")


def train_encoder(images: np.ndarray, targets: np.ndarray, recipe: DomainRecipe):
    """Train the autoencoder on (N, S, S, 1) images in [0, 1] and (N, K) target distributions;
    returns (encoder, final loss)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(recipe.seed)
    tf.config.experimental.enable_op_determinism()
    encoder, model = build_autoencoder(images.shape[1], targets.shape[1], recipe)
    optimizer = keras.optimizers.Adam(recipe.lr)

    @tf.function
    def step(x, t):
        with tf.GradientTape() as tape:
            reconstruction, logits = model(x, training=True)
            mse = tf.reduce_mean(tf.square(reconstruction - x))
            ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(t, logits))
            loss = mse + recipe.aux_weight * ce
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(recipe.seed)
    loss = float("nan")
    for _ in range(recipe.steps):
        pick = rng.integers(0, len(images), min(recipe.batch_size, len(images)))
        loss = float(step(tf.constant(images[pick]), tf.constant(targets[pick])))
    return encoder, loss


def _load(folder: Path, size: int, num_targets: int, recipe: DomainRecipe):
    """(encoder, meta) from a cache entry, or None when it is missing or damaged."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "weights.npz", allow_pickle=False) as z:
            weights = [z[f"w{i:03d}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError):
        return None
    if _sha256_arrays(weights) != meta.get("weights_sha256"):
        return None
    encoder, _ = build_autoencoder(size, num_targets, recipe)
    try:
        encoder.set_weights(weights)
    except ValueError:
        return None
    return encoder, meta


def domain_encoder(images, targets=None, recipe: DomainRecipe = DomainRecipe(), cache_dir=None,
                   log=None) -> Path:
    """The cache folder of the domain encoder of these real training images (trained on first use).

    ``images`` (N, S, S, C) in [0, 1]; ``targets`` (N, K) per image: one-hot classes (None: the
    autoencoder alone). Returns the folder :func:`domain_extractor` reads.
    """
    x = as_channel_images(images)
    channels = np.asarray(images).shape[-1]
    t = np.ones((len(x), 1), np.float32) if targets is None else np.repeat(
        np.asarray(targets, np.float32).reshape(len(images), -1), channels, axis=0)
    if len(x) > recipe.max_images:
        keep = np.sort(np.random.default_rng(recipe.seed).choice(len(x), recipe.max_images, replace=False))
        x, t = x[keep], t[keep]
    folder = Path(cache_dir or cache_root()) / cache_key(x, t, recipe)
    if _load(folder, x.shape[1], t.shape[1], recipe) is not None:
        return folder
    if log:
        log(f"training the domain encoder on {len(x)} real images ({recipe.steps} steps); cached in {folder}")
    start = time.time()
    encoder, loss = train_encoder(x, t, recipe)
    weights = [np.asarray(w, np.float32) for w in encoder.get_weights()]
    try:
        with atomic_dir(folder, overwrite=folder.exists()) as tmp:
            np.savez(tmp / "weights.npz", **{f"w{i:03d}": w for i, w in enumerate(weights)})
            atomic_write_json(tmp / "meta.json", {
                "version": DOMAIN_VERSION, "recipe": dataclasses.asdict(recipe), "image_size": int(x.shape[1]),
                "num_targets": int(t.shape[1]), "n_images": int(len(x)), "data_sha256": _sha256_arrays([x, t]),
                "weights_sha256": _sha256_arrays(weights), "final_loss": loss,
                "seconds": round(time.time() - start, 1)})
    except OutputExistsError:  # another process cached the same encoder meanwhile
        pass
    return folder


def domain_extractor(encoder):
    """Extractor factory: the encoder cached in folder ``encoder`` (see :func:`domain_encoder`);
    features of every channel, concatenated."""
    from tfganaug.metrics.fidelity import Features

    folder = Path(encoder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        recipe = DomainRecipe(**{**meta["recipe"], "widths": tuple(meta["recipe"]["widths"])})
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError("domain encoder", "a folder written by tfganaug's domain_encoder (meta.json)",
                         "a missing or unreadable meta.json", folder) from None
    loaded = _load(folder, meta["image_size"], meta["num_targets"], recipe)
    if loaded is None:
        raise InputError("domain encoder", f"weights with sha256 {meta.get('weights_sha256')}",
                         "missing or changed weights.npz", folder)
    model, _ = loaded
    size = meta["image_size"]

    def extract(x):
        if x.shape[1:3] != (size, size):
            raise InputError("images", f"{size} x {size} px like the encoder's training images",
                             f"{x.shape[1]} x {x.shape[2]}", folder)
        return np.asarray(model(as_channel_images(x), training=False)).reshape(len(x), -1)
    return Features(extract, DOMAIN_VERSION, meta["weights_sha256"])
