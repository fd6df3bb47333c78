"""`tfganaug train-gan`: train any of the five GANs into a run folder, with exact resume.

The GAN class of `cfg.gan.arch` (`tfganaug.gans.GANS`) says what to load (`data_kind`), which
members one run trains (one DCGAN per class, else one GAN), how it is built (`from_config`),
what its train step takes (`train_inputs`) and how its sample grid is drawn (`grid_fn`);
this module does the rest the same way for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfganaug import config as config_lib
from tfganaug.data.datasets import load_rois
from tfganaug.data.pipeline import training_batches
from tfganaug.data.segsets import SegSet, all_slices_of, load_segsets
from tfganaug.errors import InputError, RunFolderError
from tfganaug.gans import GANS
from tfganaug.runs import (RunFolder, fit_member, save_keras, setup_determinism, start_run, steps_for,
                           strategy_for)


@dataclass
class GANData:
    """What a GAN trains on: `train` (a RoiSet or SegSet), `other` (CycleGAN's domain B)."""

    train: object
    other: SegSet | None = None

    @property
    def targets(self) -> np.ndarray:
        """What goes beside the images in each batch: class labels (ROIs) or label maps."""
        return self.train.labels if hasattr(self.train, "labels") else self.train.masks

    @property
    def num_labels(self) -> int:
        return len(self.train.class_names)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[-1])


def domain_slices(cfg, name: str) -> SegSet:
    """All slices of a source (every split): an unlabelled domain for CycleGAN."""
    return all_slices_of(config_lib.with_data(cfg, name).data)


def _unpaired(cfg) -> GANData:
    a, b = domain_slices(cfg, cfg.data.name), domain_slices(cfg, cfg.gan.domain_b)
    if b.images.shape[-1] != a.images.shape[-1]:
        raise InputError("domain B", f"{a.images.shape[-1]} channel(s) like domain A", f"{b.images.shape[-1]}",
                         cfg.gan.domain_b)
    return GANData(a, b)


LOADERS = {"rois": lambda cfg: GANData(load_rois(cfg.data)["train"]),
           "paired": lambda cfg: GANData(load_segsets(cfg.data)["train"]),
           "unpaired": _unpaired}


def training_data(cfg) -> GANData:
    """The GAN's training data, loaded before any run folder exists (bad data fails first)."""
    return LOADERS[GANS.get(cfg.gan.arch).data_kind](cfg)


def _stream(cfg, data: GANData, images, targets, steps: int):
    """start epoch -> the (images, labels or label maps) batches from that epoch on; for
    CycleGAN the two domains' streams, each flipped, the second with its own seed."""
    common = dict(batch_size=cfg.gan.batch_size, steps_per_epoch=steps, epochs=cfg.gan.epochs, scale="tanh")
    if data.other is None:
        return lambda start: training_batches(images, targets, start_epoch=start, seed=cfg.seed,
                                              augment=cfg.gan.augment, **common)
    a, b = data.train, data.other
    return lambda start: (
        training_batches(a.images, np.zeros(len(a), np.int32), start_epoch=start, seed=cfg.seed, augment="flip",
                         **common),
        training_batches(b.images, np.zeros(len(b), np.int32), start_epoch=start, seed=cfg.seed + 7919,
                         augment="flip", **common))


def train_gan(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the GAN(s) of `cfg` into run folder `out` (resuming it if it holds the same config)."""
    strategy_for(cfg)  # before any other TensorFlow op (multi-worker collectives): see runs.strategy_for
    gan_cls = GANS.get(cfg.gan.arch)
    data = training_data(cfg)
    names = list(data.train.class_names)
    members = gan_cls.members(cfg.gan.arch, names)
    with start_run(cfg, out, overwrite) as (run, strategy):
        if strategy is None:
            return run
        for index, member in enumerate(members):
            if index:
                setup_determinism(cfg)  # each member from the same seeds, as if trained alone
            images, targets = gan_cls.member_data(data.train.images, data.targets, index)
            n = len(images) if data.other is None else max(len(data.train), len(data.other))
            steps = steps_for(n, cfg.gan.batch_size, cfg.gan.steps_per_epoch)
            with strategy.scope():
                gan = gan_cls.from_config(cfg, num_labels=data.num_labels, channels=data.channels, member=index,
                                          steps=steps)
            stream = _stream(cfg, data, images, targets, steps)
            items = gan.checkpoint_items()
            models = [m for m in items.values() if isinstance(m, keras.Model)]
            fit_member(run, member, gan, items, lambda start: gan.train_inputs(stream(start)), epochs=cfg.gan.epochs,
                       steps_per_epoch=steps, keep=cfg.keep_checkpoints, sample_fn=gan.grid_fn(names, data.train),
                       sample_every=cfg.gan.sample_every_epochs, verbose=verbose,
                       check_weights=lambda: [w.numpy() for m in models for w in m.weights],
                       on_divergence=cfg.on_divergence, max_rollbacks=cfg.max_rollbacks)
            for name, model in gan.final_models(member).items():
                save_keras(model, run.final_model(name))
            run.member_done(member, cfg.gan.epochs)
        extra = {} if gan_cls.data_kind == "rois" else {
            "channel_names": list(data.train.channel_names), "n_train": int(len(data.train)),
            "n_train_b": None if data.other is None else int(len(data.other))}
        run.set_status(state="complete", class_names=names, members=dict.fromkeys(members, cfg.gan.epochs), **extra)
    return run


def load_gan(run_dir):
    """A finished GAN run, its generators restored from the latest checkpoints for sampling:
    (run, cfg, status, [(member, gan, checkpoint path)])."""
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "gan":
        raise RunFolderError(f"{run.path}: expected a GAN run (train-gan), got a '{cfg.kind}' run")
    status = run.status()
    if status.get("state") != "complete":
        raise RunFolderError(f"{run.path}: expected a complete GAN run, got state '{status.get('state')}' "
                             "(rerun its train-gan command to finish it)")
    gan_cls = GANS.get(cfg.gan.arch)
    names = tuple(status["class_names"])
    channels = len(status.get("channel_names") or [None])
    gans = []
    for index, member in enumerate(gan_cls.members(cfg.gan.arch, names)):
        gan = gan_cls.from_config(cfg, num_labels=len(names), channels=channels, member=index)
        latest = tf.train.latest_checkpoint(str(run.checkpoint_dir(member)))
        if latest is None:
            raise RunFolderError(f"{run.checkpoint_dir(member)}: expected a checkpoint, got none")
        try:
            tf.train.Checkpoint(**gan.sampling_items()).restore(latest).expect_partial()
        except (ValueError, IndexError, tf.errors.OpError) as exc:  # IndexError: a truncated file
            raise RunFolderError(f"{latest}: expected a checkpoint of this GAN run, got a damaged or foreign one "
                                 f"({' '.join(str(exc).split())[:160]})") from None
        gans.append((member, gan, latest))
    return run, cfg, status, gans
