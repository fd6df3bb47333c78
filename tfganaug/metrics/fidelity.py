"""Image fidelity (FID, KID, precision/recall) computed from features, never from downloads.

The metrics are pure NumPy/SciPy functions of feature matrices (n_samples, n_features), as
in TF-GAN's ``frechet_classifier_distance_from_activations``:

* FID, Heusel et al. 2017 (Fréchet distance of Gaussians, Dowson & Landau 1982), with the
  numerics of the pytorch-fid reference (``calculate_frechet_distance``);
* KID, Bińkowski et al. 2018 ("Demystifying MMD GANs"): unbiased MMD^2 with the cubic
  polynomial kernel, averaged over random subsets;
* improved precision and recall, Kynkäänniemi et al. 2019 (k-NN manifold estimates).

FID needs more images than features in each set: with n <= d a set's covariance has rank
n - 1 < d, and the distance is then set by the eps*I that makes sqrtm defined, not by the
images (a KiTS training set of 16 slices against 36 radiomics features gave FIDs of 10^6-10^8).
:func:`fidelity_from_features` reports such a FID as None with the reason (``fid_undefined``);
KID and precision/recall do not need a covariance and are still reported.

Features come from a named extractor (:func:`get_extractor`, registered in
:data:`EXTRACTORS`). A number is meaningful only next to the extractor that produced it, so
:func:`fidelity_report` always returns the extractor's name, version, sha256 and options.
Built in:

* ``radiomics``: weights-free first-order, GLCM and GLRLM features inside the foreground
  (:mod:`tfganaug.metrics.radiomics`, after Konz et al.'s Fréchet Radiomics Distance),
  z-scored with the real set's statistics before the metrics;
* ``domain``: an encoder tfganaug trains on the real training split of the task's data and
  caches by the hash of data and recipe (:mod:`tfganaug.metrics.domain`);

* ``inception_v3``: Keras' ImageNet InceptionV3 (2048-D pool features) loaded from a local
  weights file; tfganaug never downloads weights at run time. Its values are on the
  Inception scale but not identical to published FIDs, which use the 2015 TF Inception
  graph of the original FID code.
* ``random_conv``: a fixed, seeded, randomly initialised 4-layer conv net (256-D). Random
  features track distribution shift but are not on the Inception scale: compare its
  numbers only with numbers from the same extractor, seed and input size.
* ``pixels``: images area-averaged to ``size`` x ``size`` and flattened, a crude baseline.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import warnings
from typing import Any, Callable

import numpy as np
from scipy import linalg

from tfganaug.errors import ConfigError, InputError, TfganaugError
from tfganaug.metrics.privacy import distance_blocks
from tfganaug.registry import Registry

INCEPTION_WEIGHTS_ENV = "TFGANAUG_INCEPTION_WEIGHTS"

# ---------------------------------------------------------------- metrics from features


def _check_features(features, what: str, min_samples: int = 2) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < min_samples:
        raise InputError(what, f"a (n_samples >= {min_samples}, n_features) array", f"shape {f.shape}")
    return f


def _check_feature_pair(f1, f2, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    f1 = _check_features(f1, "first feature set", min_samples)
    f2 = _check_features(f2, "second feature set", min_samples)
    if f1.shape[1] != f2.shape[1]:
        raise InputError("second feature set", f"{f1.shape[1]} features like the first", f"{f2.shape[1]}")
    return f1, f2


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> np.ndarray:
    """Real square root of sigma1 @ sigma2, regularised by eps*I when the product is singular."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        try:
            covmean = linalg.sqrtm(sigma1 @ sigma2)
        except linalg.LinAlgError:  # scipy >= 1.16 raises on some singular products instead of warning
            covmean = np.full(sigma1.shape, np.nan)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():
        offset = eps * np.eye(sigma1.shape[0])
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if imag > 1e-3:
            raise InputError("covariances", "a product with a real square root (use more samples than "
                             "features)", f"an imaginary part of {imag:.3g} in sqrtm")
        covmean = covmean.real
    return covmean


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    Follows pytorch-fid's ``calculate_frechet_distance``: when ``S1 S2`` is singular (scipy
    warns or returns non-finite values), ``eps * I`` is added to both covariances; imaginary
    parts below 1e-3 left by ``scipy.linalg.sqrtm`` are dropped, larger ones raise.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError("means and covariances", f"shapes ({d},) and ({d}, {d})",
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2, eps)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
    """FID (Heusel et al. 2017) between two feature sets: Fréchet distance of their Gaussian fits."""
    f1, f2 = _check_feature_pair(features1, features2)
    return frechet_distance(f1.mean(axis=0), np.cov(f1, rowvar=False), f2.mean(axis=0), np.cov(f2, rowvar=False))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Bińkowski et al. 2018, eq. 3)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid_from_features(features1, features2, num_subsets: int = 10, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and standard deviation of unbiased MMD^2 over subsets.

    Each of ``num_subsets`` draws takes ``subset_size`` samples without replacement from each
    set (capped at the smaller set's size), as in TF-GAN, clean-fid and torch-fidelity; the
    standard deviation is the population one over subsets, as torch-fidelity reports it.
    """
    f1, f2 = _check_feature_pair(features1, features2)
    m = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.default_rng(seed)
    mmds = [_polynomial_mmd2(f1[rng.choice(f1.shape[0], m, replace=False)],
                             f2[rng.choice(f2.shape[0], m, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(mmds)), float(np.std(mmds))


def _knn_radii(x: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Distance from each sample to its k-th nearest other sample."""
    radii = np.empty(x.shape[0])
    for start, block in distance_blocks(x, x, batch_size):
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = np.inf
        radii[start:start + block.shape[0]] = np.partition(block, k - 1, axis=1)[:, k - 1]
    return radii


def _fraction_in_manifold(queries: np.ndarray, support: np.ndarray, radii: np.ndarray, batch_size: int) -> float:
    inside = np.empty(queries.shape[0], dtype=bool)
    for start, block in distance_blocks(queries, support, batch_size):
        inside[start:start + block.shape[0]] = (block <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall_knn(real_features, fake_features, k: int = 3, batch_size: int = 512) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The real manifold is the union of balls around each real sample with radius its
    distance to its k-th nearest real neighbour; precision is the fraction of fakes inside
    it. Recall swaps the roles. ``k=3`` is the paper's choice.
    """
    real, fake = _check_feature_pair(real_features, fake_features, min_samples=k + 1)
    precision = _fraction_in_manifold(fake, real, _knn_radii(real, k, batch_size), batch_size)
    recall = _fraction_in_manifold(real, fake, _knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


# ---------------------------------------------------------------- feature extractors

EXTRACTORS = Registry("feature extractor", {
    # trained by tfganaug on the real training split and cached (imports TensorFlow when built)
    "domain": "tfganaug.metrics.domain:domain_extractor",
})
"""name -> ``factory(**options)`` returning the feature function (or :class:`Features`)."""


@dataclasses.dataclass(frozen=True)
class Features:
    """What an extractor factory may return: the feature function with its identity.

    ``version`` changes whenever the features' definition does; ``sha256`` identifies the
    exact features (a weights file's hash, or the hash of a weights-free recipe);
    ``standardize`` asks for z-scoring with the real set's mean and standard deviation before
    the metrics (hand-crafted features in mixed units, as in the Fréchet Radiomics Distance).
    """

    fn: Callable[[np.ndarray], Any]
    version: str
    sha256: str
    standardize: bool = False


def recipe_sha256(name: str, version: str, options: dict) -> str:
    """sha256 of a weights-free extractor's name, version and options (canonical JSON)."""
    text = json.dumps({"name": name, "version": version, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def register_extractor(name: str, overwrite: bool = False):
    """Decorator registering ``factory(**options) -> fn`` (or :class:`Features`) under ``name``.

    ``fn`` receives float32 NHWC batches already mapped to [0, 1] and returns an
    (n, n_features) array; :func:`get_extractor` does the checking and batching. A bare
    ``fn`` gets version "0" and the hash of its name and options.
    """
    def decorator(factory):
        if name in EXTRACTORS and not overwrite:
            raise ConfigError(f"feature extractor {name!r} is already registered")
        return EXTRACTORS.register(name, factory)
    return decorator


def available_extractors() -> list[str]:
    """Names accepted by :func:`get_extractor`."""
    return sorted(EXTRACTORS.names())


def _to_unit_range(images, value_range) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise InputError("images", "a non-empty float array (N, H, W, C)", f"shape {x.shape}")
    if value_range == "auto":
        value_range = (-1.0, 1.0) if x.min() < 0 else (0.0, 1.0)
    low, high = value_range
    tol = 1e-3 * (high - low)
    if x.min() < low - tol or x.max() > high + tol:
        raise InputError("images", f"values in [{low:g}, {high:g}]", f"values in [{x.min():.4g}, {x.max():.4g}]")
    return np.clip((x - low) / (high - low), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A named, configured feature extractor: ``extractor(images) -> (N, n_features)`` float64.

    ``images`` are float NHWC in [0, 1] or [-1, 1]; ``value_range="auto"`` reads an array
    with any negative value as [-1, 1] and otherwise as [0, 1] (give the range explicitly
    for a [-1, 1] set that may happen to be non-negative).
    """

    name: str
    options: dict
    fn: Callable[[np.ndarray], Any]
    batch_size: int = 64
    value_range: Any = "auto"
    version: str = "0"
    sha256: str = ""
    standardize: bool = False

    def identity(self) -> dict:
        """What must be printed beside every number this extractor produced."""
        return {"extractor": self.name, "extractor_version": self.version, "extractor_sha256": self.sha256,
                "extractor_options": {k: str(v) if isinstance(v, os.PathLike) else v for k, v in self.options.items()}}

    def __call__(self, images) -> np.ndarray:
        x = _to_unit_range(images, self.value_range)
        parts = [np.asarray(self.fn(x[i:i + self.batch_size])) for i in range(0, x.shape[0], self.batch_size)]
        return np.concatenate(parts).reshape(x.shape[0], -1).astype(np.float64)


def get_extractor(name: str, batch_size: int = 64, value_range="auto", **options) -> FeatureExtractor:
    """Build the registered extractor ``name`` with ``options`` (see the module docstring)."""
    built = EXTRACTORS.get(name)(**options)
    if not isinstance(built, Features):
        built = Features(built, "0", recipe_sha256(name, "0", options))
    return FeatureExtractor(name, dict(options), built.fn, batch_size, value_range, built.version, built.sha256,
                            built.standardize)


def _grey_to_rgb(x):
    channels = x.shape[-1]
    if channels not in (1, 3):
        raise InputError("images", "1 (grey) or 3 (RGB) channels", f"{channels}")
    return np.repeat(x, 3, axis=-1) if channels == 1 else x


@register_extractor("inception_v3")
def _inception_v3(weights_path: str | os.PathLike | None = None):
    """InceptionV3 pool features (2048-D) from a local Keras weights file (no top)."""
    path = weights_path or os.environ.get(INCEPTION_WEIGHTS_ENV)
    if not path:
        raise TfganaugError(
            "inception_v3 needs a local weights file: tfganaug does not download weights at run time; "
            f"pass weights_path=... or set {INCEPTION_WEIGHTS_ENV} to the Keras InceptionV3 no-top weights "
            "(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5), or use extractor 'random_conv'")
    if not os.path.isfile(path):
        raise InputError("InceptionV3 weights", "an existing Keras weights file", "no such file", path=path)
    import keras
    import tensorflow as tf

    from tfganaug.fsutil import sha256_file

    try:
        model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=os.fspath(path),
                                               input_shape=(299, 299, 3))
    except (ValueError, OSError) as exc:
        raise InputError("InceptionV3 weights", "a Keras InceptionV3 no-top weights file (.h5)",
                         " ".join(str(exc).split())[:160], path=path) from None

    def extract(x):
        rgb = tf.image.resize(_grey_to_rgb(x), (299, 299), method="bilinear")
        return model(rgb * 2.0 - 1.0, training=False).numpy()  # InceptionV3 expects [-1, 1]
    return Features(extract, f"keras-applications-inceptionv3 (keras {keras.__version__})", sha256_file(path))


def _random_kernels(seed: int, in_channels: int, widths: tuple[int, ...]) -> list[np.ndarray]:
    """He-normal 3x3 kernels drawn with NumPy so they are identical in every process."""
    rng = np.random.default_rng([seed, in_channels])
    kernels = []
    for out_channels in widths:
        std = np.sqrt(2.0 / (9 * in_channels))
        kernels.append(rng.normal(0.0, std, size=(3, 3, in_channels, out_channels)).astype(np.float32))
        in_channels = out_channels
    return kernels


@register_extractor("random_conv")
def _random_conv(seed: int = 0, widths: tuple[int, ...] = (32, 64, 128, 256)):
    """Fixed random conv net: 3x3 stride-2 convs with leaky ReLU, then global average pool."""
    import tensorflow as tf

    @functools.cache
    def kernels(channels: int) -> list[np.ndarray]:
        return _random_kernels(seed, channels, tuple(widths))

    def extract(x):
        h = tf.constant(x * 2.0 - 1.0)
        for kernel in kernels(x.shape[-1]):
            h = tf.nn.leaky_relu(tf.nn.conv2d(h, kernel, strides=2, padding="SAME"), alpha=0.2)
        return tf.reduce_mean(h, axis=(1, 2)).numpy()
    options = {"seed": seed, "widths": list(widths)}
    return Features(extract, "1", recipe_sha256("random_conv", "1", options))


@register_extractor("pixels")
def _pixels(size: int = 16):
    """Images area-averaged to size x size and flattened."""
    import tensorflow as tf

    def extract(x):
        return tf.image.resize(x, (size, size), method="area").numpy().reshape(x.shape[0], -1)
    return Features(extract, "1", recipe_sha256("pixels", "1", {"size": size}))


@register_extractor("radiomics")
def _radiomics(levels: int = 16, foreground: float = 0.02):
    """Weights-free first-order, GLCM and GLRLM features per channel (:mod:`.radiomics`),
    z-scored with the real set's statistics before the metrics, as the FRD does."""
    from tfganaug.metrics import radiomics

    if not (isinstance(levels, int) and 2 <= levels <= 256):
        raise ConfigError(f"radiomics levels must be an integer in [2, 256], got {levels!r}")

    def extract(x):
        return np.concatenate([radiomics.radiomics_features(x[..., c], levels, foreground)
                               for c in range(x.shape[-1])], axis=1)
    options = {"levels": levels, "foreground": foreground, "features": radiomics.feature_names()}
    return Features(extract, radiomics.RADIOMICS_VERSION,
                    recipe_sha256("radiomics", radiomics.RADIOMICS_VERSION, options), standardize=True)


# ---------------------------------------------------------------- reports


def standardize_features(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets z-scored with the real set's per-feature mean and standard deviation (a
    constant feature is only centred), so features in different units weigh alike."""
    mean, std = real.mean(axis=0), real.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return (real - mean) / std, (fake - mean) / std


def fidelity_from_features(real_features, fake_features, extractor: str, k: int = 3,
                           kid_num_subsets: int = 10, kid_subset_size: int = 1000, kid_seed: int = 0,
                           standardize: bool = False) -> dict:
    """FID, KID and precision/recall of precomputed features, labelled with their extractor;
    ``standardize``: z-score both with the real set's statistics first."""
    real, fake = _check_feature_pair(real_features, fake_features, min_samples=k + 1)
    if standardize:
        real, fake = standardize_features(real, fake)
    kid_mean, kid_std = kid_from_features(real, fake, kid_num_subsets, kid_subset_size, kid_seed)
    precision, recall = precision_recall_knn(real, fake, k)
    out = {"kid_mean": kid_mean, "kid_std": kid_std, "precision": precision, "recall": recall,
           "extractor": extractor, "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0]),
           "n_features": int(real.shape[1])}
    few = min(real.shape[0], fake.shape[0])
    if few <= real.shape[1]:  # module docstring: the covariance is singular, eps would set the number
        out.update(fid=None, fid_undefined=f"{few} images in the smaller set for {real.shape[1]} features "
                                           "(FID needs more images than features)")
    else:
        out["fid"] = fid_from_features(real, fake)
    return out


def fidelity_report(real_images, fake_images, extractor: str = "random_conv", *, k: int = 3,
                    kid_num_subsets: int = 10, kid_subset_size: int = 1000, kid_seed: int = 0,
                    **extractor_options) -> dict:
    """Extract features of both image sets once and report FID, KID and precision/recall.

    ``extractor_options`` go to :func:`get_extractor` (e.g. ``seed`` for ``random_conv``,
    ``weights_path`` for ``inception_v3``). Returns ``dict(fid, kid_mean, kid_std,
    precision, recall, extractor, extractor_version, extractor_sha256, extractor_options,
    n_real, n_fake)``.
    """
    ext = get_extractor(extractor, **extractor_options)
    report = fidelity_from_features(ext(real_images), ext(fake_images), ext.name, k,
                                    kid_num_subsets, kid_subset_size, kid_seed, ext.standardize)
    report.update(ext.identity())
    return report
