"""The one named lookup (registry.Registry) and what is registered in it: every GAN, study and
data source resolves to what the stages call, and a wrong name gets one line with a guess."""
import pytest

from tfganaug.data.sources import SOURCES
from tfganaug.errors import ConfigError
from tfganaug.gans import GANS
from tfganaug.gans.base import GAN
from tfganaug.registry import Registry
from tfganaug.studies import STUDIES


def test_lookup_lazy_entries_and_did_you_mean():
    registry = Registry("colour", {"teal": "colorsys:rgb_to_hls"})
    registry.register("red", 1)

    @registry.register("blue")
    def blue():
        return 2

    assert registry.names() == ("teal", "red", "blue") and "red" in registry and "green" not in registry
    import colorsys
    assert registry.get("teal") is colorsys.rgb_to_hls and registry.get("blue") is blue
    with pytest.raises(ConfigError, match=r"unknown colour 'bleu'; did you mean 'blue'\? \(known: teal, red, blue\)"):
        registry.get("bleu")
    with pytest.raises(ConfigError, match="unknown colour 'zzz' \\(known"):
        registry.get("zzz")


def test_every_gan_implements_the_stage_contract():
    assert GANS.names() == ("dcgan", "acgan", "pix2pix", "cyclegan", "stylegan2", "labels2image")
    kinds = {}
    for name in GANS.names():
        cls = GANS.get(name)
        assert issubclass(cls, GAN) and cls.from_config.__func__ is not GAN.from_config.__func__, name
        kinds[name] = (cls.data_kind, cls.synthesises_from)
    assert kinds == {"dcgan": ("rois", "labels"), "acgan": ("rois", "labels"), "pix2pix": ("paired", "label_maps"),
                     "cyclegan": ("unpaired", "source"), "stylegan2": ("paired", "noise"),
                     "labels2image": ("paired", "label_maps")}
    assert GANS.get("dcgan").members("dcgan", ["a", "b"]) == ["a", "b"]
    assert GANS.get("acgan").members("acgan", ["a", "b"]) == ["acgan"]


def test_every_study_offers_run_and_report():
    for name in STUDIES.names():
        module = STUDIES.get(name)
        assert callable(module.run_study) and callable(module.write_report), name
        assert module.__doc__ and "Implemented by" in module.__doc__, name  # where a newcomer starts


def test_every_named_source_is_a_function_of_the_data_config():
    for name in SOURCES.names():
        assert callable(SOURCES.get(name)), name
    from tfganaug.config import DataConfig
    cases, fixed = SOURCES.get("phantom-kidney")(DataConfig(n_phantom_patients=2, phantom_size=32))
    assert len(cases) == 2 and fixed is None
    with pytest.raises(ConfigError, match="did you mean 'brats2018'"):
        SOURCES.get("brats2019")
