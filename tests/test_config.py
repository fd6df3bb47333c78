import json
import re

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
    # Odena et al.'s ACGAN: D classifies fakes too, no mode-seeking term; the EMA G is off
    assert (acgan.gan.d_classifies_fakes, acgan.gan.mode_seeking, acgan.gan.g_ema_beta) == (True, 0.0, 0.0)


def test_frid_adar_gans_see_organ_crops_unrotated_and_lesions_classically_augmented():
    from tfganaug.studies.frid_adar import _configs
    for budget in ("demo", "cpu", "paper"):
        organ, phantom = _configs(budget, "organamnist", None, None, 0), _configs(budget, "phantom", None, None, 0)
        for arch in ("dcgan", "acgan"):
            assert organ[f"gan-{arch}"].gan.augment == "none" and phantom[f"gan-{arch}"].gan.augment == "classic"
        assert organ["cls-classic"].cls.augment == "classic"  # the CNN conditions stay the paper's
    cpu = _configs("cpu", "phantom", None, None, 0)["gan-acgan"].gan
    assert (cpu.d_classifies_fakes, cpu.mode_seeking) == (False, 1.0)


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


def test_every_preset_loads_and_names_match_case_insensitively():
    for name in C.PRESETS:  # sandfort_unet3d's 192 px was refused as "not a power of two" until stop 21
        assert C.preset(name).preset == name
    assert C.preset("CPU_ACGAN").preset == "cpu_acgan"


@pytest.mark.parametrize("section, key, value, expected", [
    ("gan", "latent_dim", 0, "gan.latent_dim an integer in [1, 1000000]"),
    ("gan", "channel_base", 10**9, "gan.channel_base an integer in [1, 1000000]"),
    ("gan", "pool_size", -1, "gan.pool_size an integer in [0, 1000000]"),
    ("gan", "lr", -1.0, "gan.lr > 0"),
    ("gan", "lr", 0.0, "gan.lr > 0"),
    ("gan", "beta_1", 1.0, "gan.beta_1 [0, 1)"),
    ("gan", "lambda_cycle", -10.0, "gan.lambda_cycle >= 0"),
    ("cls", "dropout", 1.0, "cls.dropout [0, 1)"),
    ("seg", "base_filters", 0, "seg.base_filters an integer in [1, 1000000]"),
    ("seg", "depth", 9, "seg.depth an integer in [1, 8]"),
    ("gan", "epochs", 0, "gan.epochs an integer in [1, 100000]"),
    ("cls", "batch_size", 4097, "cls.batch_size an integer in [1, 4096]"),
    ("", "seed", 2**32, "seed an integer in [0, 4294967295]"),
    ("", "max_rollbacks", 0, "max_rollbacks an integer in [1, 1000000]"),
    ("data", "train_per_class", 1, "data.train_per_class an integer in [2, 1000000]"),
    ("gan", "ada_interval", 0, "gan.ada_interval an integer in [1, 1000000]"),
    ("gan", "g_ema_beta", 1.0, "gan.g_ema_beta [0, 1)"),
    ("data", "window_width", 0.0, "data.window_width > 0"),
    ("data", "test_fraction", 1.0, "data.test_fraction [0, 1)"),
])
def test_every_number_in_a_config_has_a_range(section, key, value, expected):
    preset = "cpu_unet_kits" if section == "seg" else "cpu_acgan"
    override = (lambda v: {key: v}) if section == "" else (lambda v: {section: {key: v}})
    with pytest.raises(ConfigError, match=re.escape(f"expected {expected}, got {value!r}")):
        C.preset(preset, **override(value))
    current = C.preset(preset)
    C.preset(preset, **override(getattr(getattr(current, section) if section else current, key)))


def test_a_seed_above_a_million_is_a_seed():
    """The CLI takes seeds up to 2**32 - 1; the integer bound of stop 21 refused 10**7 (MAX_COUNT)."""
    assert C.preset("cpu_acgan", seed=10**7, data={"seed": 2**32 - 1}).seed == 10**7


def test_a_u_net_side_is_a_multiple_of_two_to_its_depth_not_a_power_of_two():
    assert C.preset("cpu_unet_kits", data={"image_size": 192}).data.image_size == 192
    with pytest.raises(ConfigError, match=re.escape("a multiple of 8 (2**seg.depth)")):
        C.preset("cpu_unet_kits", data={"image_size": 100}, seg={"depth": 3})
    with pytest.raises(ConfigError, match="power of two"):
        C.preset("cpu_dcgan", data={"image_size": 192})


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="c.json: expected a JSON configuration"):
        C.load(bad)


def test_mr_normalisation_keys_defaults_and_one_line_errors():
    cfg = C.preset("cpu_stylegan2")
    assert cfg.data.mr_norm == "percentile" and cfg.data.mr_percentiles == [0.5, 99.5]
    assert C.preset("cpu_stylegan2", data={"mr_norm": "zscore"}).data.mr_norm == "zscore"
    # a tuple is kept as the list JSON gives back, so a resumed run compares equal
    assert C.preset("cpu_stylegan2", data={"mr_percentiles": (1, 99)}).data.mr_percentiles == [1, 99]
    for data, message in (({"mr_norm": "minmax"}, "data.mr_norm percentile or zscore"),
                          ({"mr_percentiles": [99.5, 0.5]}, "data.mr_percentiles"),
                          ({"mr_percentiles": [0.5]}, "data.mr_percentiles"),
                          ({"mr_percentiles": [-1, 99]}, "data.mr_percentiles"),
                          ({"mr_percentiles": ["1", "99"]}, "data.mr_percentiles"),
                          ({"zscore_clip": 0}, "data.zscore_clip > 0")):
        with pytest.raises(ConfigError, match=message) as info:
            C.preset("cpu_stylegan2", data=data)
        assert "\n" not in str(info.value)


def test_a_config_json_from_before_mr_norm_stays_a_zscore_run(tmp_path):
    """Every written config.json holds every key: zscore_clip without mr_norm = an older z-score run."""
    values = C.to_dict(C.preset("cpu_stylegan2"))
    for key in ("mr_norm", "mr_percentiles"):
        del values["data"][key]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(values))
    assert C.load(old).data.mr_norm == "zscore"
    # The run folder compares after loading: resuming with today's preset is refused, not
    # silently continued under another normalisation; resuming from its own config.json works.
    from tfganaug.errors import RunFolderError
    from tfganaug.runs import RunFolder
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(values))
    with pytest.raises(RunFolderError, match="different configuration"):
        RunFolder.open(run, C.preset("cpu_stylegan2"))
    assert RunFolder.open(run, C.load(run / "config.json")).path == run
    # A hand-written config that names neither key gets the current default.
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"kind": "gan", "data": {"name": "phantom-brain"}}))
    assert C.load(new).data.mr_norm == "percentile"
    # The regenerated Son report names its normalisation, so the upgrade leaves it alone.
    from pathlib import Path
    report = Path(__file__).resolve().parents[1] / "reports" / "son-stylegan2" / "config" / "gan.json"
    assert C.load(report).data.mr_norm == "percentile"


def test_resolve_picks_the_preset_the_command_needs_and_the_synthetic_share(tmp_path):
    from tfganaug.config import SYNTHETIC_RATIO, resolve
    cfg = resolve("seg", None, None, {"data": {"name": "brats2018"}, "seg": {"synthetic": "s"}}, seed=3)
    assert cfg.preset == "cpu_unet_brats" and cfg.seg.synthetic_ratio == SYNTHETIC_RATIO
    assert cfg.seed == cfg.data.seed == 3
    # a Son et al. setting says how much synthetic data goes in: no share is imposed
    cfg = resolve("seg", None, None, {"data": {"name": None}, "seg": {"synthetic": "s", "setting": "100F"}}, seed=0)
    assert cfg.preset == "cpu_unet_kits" and cfg.seg.synthetic_ratio == 0.0
    assert resolve("seg", None, None, {"seg": {"unet": "sandfort3d"}}, 0).preset == "cpu_unet3d_abdomen"
    assert resolve("gan", None, None, {"gan": {"arch": "pix2pix"}}, 0).gan.arch == "pix2pix"
    # a named preset keeps its own architecture; the wrong kind is one line
    assert resolve("gan", "frid_adar_dcgan", None, {"gan": {"arch": "acgan"}}, 0).gan.arch == "dcgan"
    with pytest.raises(ConfigError, match="preset cpu_cnn: expected a 'gan' configuration, got kind 'cls'"):
        resolve("gan", "cpu_cnn", None, {}, 0)
