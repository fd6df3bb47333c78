import json

import pytest

from tfganaug import config as C
from tfganaug.errors import ConfigError


def test_paper_presets_carry_the_papers_settings():
    dcgan, acgan, cnn = C.preset("frid_adar_dcgan"), C.preset("frid_adar_acgan"), C.preset("frid_adar_cnn")
    assert (dcgan.gan.width, dcgan.gan.kernel_size, dcgan.gan.lr, dcgan.gan.epochs, dcgan.gan.batch_size) == \
        (1024, 5, 2e-4, 70, 64)
    assert (acgan.gan.kernel_size, acgan.gan.d_dropout, acgan.gan.lr, acgan.gan.epochs) == (3, 0.5, 1e-4, 50)
    assert (cnn.cls.lr, cnn.cls.epochs, cnn.cls.batch_size, cnn.cls.dropout) == (1e-3, 150, 64, 0.5)
    assert dcgan.data.image_size == 64 and dcgan.gan.latent_dim == 100


def test_json_round_trip(tmp_path):
    cfg = C.preset("cpu_acgan", data={"name": "organamnist", "classes": ["liver", "spleen"]}, seed=3)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(C.to_dict(cfg)))
    assert C.load(path) == cfg


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="unknown key 'widht'; did you mean 'width'"):
        C.preset("cpu_dcgan", gan={"widht": 64})


def test_unknown_preset_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="did you mean 'cpu_dcgan'"):
        C.preset("cpu_dcgn")
    with pytest.raises(ConfigError, match="power of two"):
        C.preset("cpu_dcgan", data={"image_size": 48})
    with pytest.raises(ConfigError, match="synthetic_ratio in"):
        C.preset("cpu_cnn", cls={"synthetic_ratio": 1.5, "synthetic": "x"})


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="c.json: expected a JSON configuration"):
        C.load(bad)
