"""The `domain` feature extractor (metrics/domain.py): an encoder trained on the real training
images, deterministic from its seed, cached by the hash of data and recipe, hashed itself."""
import json

import numpy as np
import pytest

from tfganaug.errors import InputError
from tfganaug.metrics import domain
from tfganaug.metrics.domain import DomainRecipe, domain_encoder
from tfganaug.metrics.fidelity import get_extractor

TINY = DomainRecipe(widths=(4, 8), features=8, steps=3, batch_size=4)


def _images(seed=0, n=12, channels=2):
    return np.random.default_rng(seed).random((n, 16, 16, channels)).astype(np.float32)


def test_encoder_is_deterministic_cached_and_retrained_when_data_or_recipe_change(tmp_path, monkeypatch):
    x = _images()
    targets = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    first = domain_encoder(x, targets, TINY, tmp_path / "a")
    again = domain_encoder(x, targets, TINY, tmp_path / "b")  # another cache: trained again from scratch
    meta = json.loads((first / "meta.json").read_text())
    assert meta["weights_sha256"] == json.loads((again / "meta.json").read_text())["weights_sha256"]
    assert meta["n_images"] == 24 and meta["num_targets"] == 3  # every channel a grey training image
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert domain.cache_root() == tmp_path / "xdg" / "tfganaug" / "domain"

    def no_training(*args):
        raise AssertionError("trained although cached")
    monkeypatch.setattr(domain, "train_encoder", no_training)
    assert domain_encoder(x, targets, TINY, tmp_path / "a") == first  # cache hit
    with pytest.raises(AssertionError, match="trained although cached"):
        domain_encoder(x[:-1], targets[:-1], TINY, tmp_path / "a")  # other data: a new key
    with pytest.raises(AssertionError, match="trained although cached"):
        domain_encoder(x, targets, DomainRecipe(**{**TINY.__dict__, "seed": 1}), tmp_path / "a")
    with np.load(first / "weights.npz") as z:
        damaged = {k: z[k] for k in z.files}
    damaged["w000"] = damaged["w000"] + 1.0
    np.savez(first / "weights.npz", **damaged)
    with pytest.raises(AssertionError, match="trained although cached"):  # weights off their sha256
        domain_encoder(x, targets, TINY, tmp_path / "a")


def test_extractor_features_per_channel_with_the_weights_hash(tmp_path):
    x = _images(1)
    folder = domain_encoder(x, None, TINY, tmp_path)
    extractor = get_extractor("domain", encoder=folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert extractor.sha256 == meta["weights_sha256"] and extractor.version == domain.DOMAIN_VERSION
    features = extractor(x)
    assert features.shape == (12, 16) and np.isfinite(features).all()  # 8 features per channel
    np.testing.assert_allclose(features[:, 8:], extractor(x[..., 1:])[:, :8], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="16 x 16 px"):
        extractor(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(InputError, match="meta.json"):
        get_extractor("domain", encoder=tmp_path / "nothing")
