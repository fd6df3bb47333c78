"""Configurations as dataclasses, one preset per paper, JSON in and out.

Units live in the names or the docstrings. A run folder holds the resolved configuration
(`config.json`) written before training starts, so any result can be reproduced from its
folder: `tfganaug train-gan --config runs/x/config.json --out runs/y`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfganaug.errors import ConfigError


@dataclass
class DataConfig:
    """Where the images come from and which part of them is used."""

    name: str = "phantom"              # phantom | organamnist | path to an .npz or a class-per-folder PNG tree
    classes: list[str] | None = None   # class names to keep, in this order (None: all)
    image_size: int = 64               # ROIs are resized to image_size^2 (the paper: 64, bicubic)
    train_per_class: int | None = None # low-data regime: keep this many training ROIs per class
    val_fraction: float = 0.15         # for data with patient ids but no official split
    test_fraction: float = 0.15
    eval_split: str = "test"           # split scored by `evaluate` (organamnist: its official val split)
    n_phantom_patients: int = 400      # phantom only: patients (1-3 lesions each)
    seed: int = 0                      # seeds subsampling and patient splits


@dataclass
class GANConfig:
    """DCGAN / ACGAN after Frid-Adar et al. 2018 (defaults are the paper's DCGAN)."""

    arch: str = "dcgan"                # dcgan (one generator per class) | acgan
    latent_dim: int = 100              # z ~ U[-1, 1]^100
    width: int = 1024                  # G's first layer is 4x4xwidth; D mirrors it
    kernel_size: int = 5               # G and DCGAN D: 5x5; ACGAN D: 3x3
    d_dropout: float = 0.0             # ACGAN D: 0.5 after every conv
    lr: float = 2e-4                   # DCGAN 2e-4, ACGAN 1e-4
    beta_1: float = 0.5                # Adam beta_1 of Radford et al.
    epochs: int = 70                   # DCGAN 70, ACGAN 50
    batch_size: int = 64
    steps_per_epoch: int | None = None # None: one pass over the (per-class) training set
    sample_every_epochs: int = 5       # sample grid PNG cadence
    augment: str = "none"              # none | classic: train the GAN on classically augmented ROIs


@dataclass
class ClassifierConfig:
    """Lesion CNN of Frid-Adar et al. 2018: 3 conv+max-pool pairs, 2 dense, dropout 0.5, SGD."""

    filters: list[int] = field(default_factory=lambda: [32, 64, 128])
    kernel_size: int = 3               # not stated in the paper notes; our choice
    dense_units: int = 256             # not stated in the paper notes; our choice
    dropout: float = 0.5
    lr: float = 1e-3                   # SGD, as in the paper
    momentum: float = 0.9              # not stated in the paper; plain SGD at 1e-3 barely moves in a CPU budget
    epochs: int = 150
    batch_size: int = 64
    steps_per_epoch: int | None = None # None: one pass over the real training set (plus the synthetic share)
    augment: str = "classic"           # none | classic
    synthetic: str | None = None       # folder written by `tfganaug synthesize`
    synthetic_ratio: float = 0.0       # expected share of synthetic ROIs in each training batch


@dataclass
class RunConfig:
    """Everything one training run needs; written to `<run>/config.json` before it starts."""

    kind: str = "gan"                  # gan | cls
    data: DataConfig = field(default_factory=DataConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    cls: ClassifierConfig = field(default_factory=ClassifierConfig)
    seed: int = 0                      # seeds weights, noise, shuffling and augmentation
    deterministic: bool = True         # tf.config.experimental.enable_op_determinism()
    precision: str = "float32"         # float32 | mixed_bfloat16 (CPU) | mixed_float16 (GPU)
    keep_checkpoints: int = 3
    distribute: str = "none"           # none | mirrored: tf.distribute.MirroredStrategy over local devices
    on_divergence: str = "stop"        # stop | rollback: restore the last good checkpoint, halve every lr
    max_rollbacks: int = 3             # rollback only: give up after this many in one command
    preset: str | None = None


PRESETS: dict[str, dict[str, Any]] = {
    # Paper settings (Frid-Adar et al. 2018, section III): for GPUs.
    "frid_adar_dcgan": {"kind": "gan", "gan": {"arch": "dcgan", "width": 1024, "kernel_size": 5,
                                                "lr": 2e-4, "epochs": 70, "batch_size": 64}},
    "frid_adar_acgan": {"kind": "gan", "gan": {"arch": "acgan", "width": 1024, "kernel_size": 3,
                                                "d_dropout": 0.5, "lr": 1e-4, "epochs": 50,
                                                "batch_size": 64}},
    "frid_adar_cnn": {"kind": "cls", "cls": {"lr": 1e-3, "epochs": 150, "batch_size": 64,
                                              "augment": "classic"}},
    # Labelled CPU budgets: same architectures, narrower and shorter.
    "cpu_dcgan": {"kind": "gan", "data": {"image_size": 32},
                  "gan": {"arch": "dcgan", "width": 128, "kernel_size": 5, "lr": 2e-4,
                          "epochs": 60, "batch_size": 32}},
    "cpu_acgan": {"kind": "gan", "data": {"image_size": 32},
                  "gan": {"arch": "acgan", "width": 128, "kernel_size": 3, "d_dropout": 0.5,
                          "lr": 2e-4, "epochs": 60, "batch_size": 32}},
    # SGD at lr 1e-2 (paper 1e-3): the paper's 150 epochs over a many-fold augmented set are
    # far more steps than a CPU budget; at 1e-3 the CNN is still at chance after 600 steps.
    "cpu_cnn": {"kind": "cls", "data": {"image_size": 32},
                "cls": {"lr": 1e-2, "epochs": 20, "batch_size": 32, "steps_per_epoch": 30}},
}


def _from_dict(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(values).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(names))}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        sub = _NESTED.get((cls, key))
        kwargs[key] = _from_dict(sub, value, f"{where}.{key}") if sub else value
    return cls(**kwargs)


_NESTED = {(RunConfig, "data"): DataConfig, (RunConfig, "gan"): GANConfig,
           (RunConfig, "cls"): ClassifierConfig}


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` into a copy of `base` (nested dicts merged, other values replaced)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(values: dict, where: str = "config") -> RunConfig:
    cfg = _from_dict(RunConfig, values, where)
    validate(cfg, where)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def preset(name: str, **overrides) -> RunConfig:
    """A paper or CPU preset, with nested overrides: `preset("cpu_acgan", data={"name": "organamnist"})`."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}'{hint} (known: {', '.join(PRESETS)})")
    values = merge(merge(PRESETS[name], {"preset": name}), overrides)
    return from_dict(values, f"preset {name}")


def load(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: expected a JSON configuration, got unreadable content ({exc})") from None
    return from_dict(values, str(path))


def validate(cfg: RunConfig, where: str = "config") -> None:
    def need(ok: bool, what: str, got: Any):
        if not ok:
            raise ConfigError(f"{where}: expected {what}, got {got!r}")

    need(cfg.kind in ("gan", "cls"), "kind gan or cls", cfg.kind)
    need(cfg.gan.arch in ("dcgan", "acgan"), "gan.arch dcgan or acgan", cfg.gan.arch)
    size = cfg.data.image_size
    need(isinstance(size, int) and size >= 16 and size & (size - 1) == 0,
         "data.image_size a power of two >= 16", size)
    need(cfg.gan.width >= 8 and cfg.gan.width % 8 == 0, "gan.width a multiple of 8", cfg.gan.width)
    need(0.0 <= cfg.cls.synthetic_ratio < 1.0, "cls.synthetic_ratio in [0, 1)", cfg.cls.synthetic_ratio)
    need(cfg.cls.synthetic_ratio == 0.0 or cfg.cls.synthetic, "cls.synthetic set when synthetic_ratio > 0",
         cfg.cls.synthetic)
    need(cfg.cls.augment in ("none", "classic"), "cls.augment none or classic", cfg.cls.augment)
    need(cfg.gan.augment in ("none", "classic"), "gan.augment none or classic", cfg.gan.augment)
    need(cfg.distribute in ("none", "mirrored"), "distribute none or mirrored", cfg.distribute)
    need(cfg.precision in ("float32", "mixed_bfloat16", "mixed_float16"),
         "precision float32, mixed_bfloat16 or mixed_float16", cfg.precision)
    for name, value in (("gan.epochs", cfg.gan.epochs), ("cls.epochs", cfg.cls.epochs),
                        ("gan.batch_size", cfg.gan.batch_size), ("cls.batch_size", cfg.cls.batch_size)):
        need(isinstance(value, int) and value >= 1, f"{name} a positive integer", value)
    need(cfg.on_divergence in ("stop", "rollback"), "on_divergence stop or rollback", cfg.on_divergence)
    need(isinstance(cfg.max_rollbacks, int) and cfg.max_rollbacks >= 1, "max_rollbacks a positive integer",
         cfg.max_rollbacks)
    need(cfg.data.train_per_class is None or cfg.data.train_per_class >= 2,
         "data.train_per_class >= 2 or null", cfg.data.train_per_class)
