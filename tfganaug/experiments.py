"""The stages of the Frid-Adar study, each reading and writing run folders.

train_gan -> synthesize -> train_classifier -> evaluate -> report, as nnU-Net hands files
from stage to stage: any stage can be rerun alone from the folders the previous one left.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug.data.datasets import load_rois
from tfganaug.data.pipeline import eval_batches, training_batches
from tfganaug.errors import RunFolderError
from tfganaug.fsutil import atomic_write_json, atomic_write_with
from tfganaug.gans.base import seed_generator_states
from tfganaug.metrics.classification import per_class_metrics
from tfganaug.registry import build_gan
from tfganaug.synthesize import load_synthetic
from tfganaug.tasks.classifier import build_lesion_cnn
from tfganaug.train import RunFolder, fit_member, lock, setup_determinism, start_run, steps_for, strategy_for


def _members(cfg, class_names):
    return list(class_names) if cfg.gan.arch == "dcgan" else [cfg.gan.arch]


def _make_gan(cfg, num_classes, member_index=0):
    gan = build_gan(cfg.gan, cfg.data.image_size, num_classes, seed=cfg.seed * 1000 + member_index)
    gan.compile(d_optimizer=keras.optimizers.Adam(cfg.gan.lr, beta_1=cfg.gan.beta_1),
                g_optimizer=keras.optimizers.Adam(cfg.gan.lr, beta_1=cfg.gan.beta_1))
    return gan


def _weights(*models):
    return lambda: [w.numpy() for m in models for w in m.weights]


def train_gan(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the GAN(s) of `cfg` into run folder `out` (resuming it if it holds the same config)."""
    data = load_rois(cfg.data)["train"]  # bad data fails here, before a run folder exists
    names = data.class_names
    run = RunFolder.open(out, cfg, overwrite)
    with lock(run):
        if run.status().get("state") == "complete":
            return run
        run.set_status(state="running")
        for index, member in enumerate(_members(cfg, names)):
            setup_determinism(cfg)
            if cfg.gan.arch == "dcgan":
                keep = data.labels == index
                images, labels = data.images[keep], np.zeros(int(keep.sum()), np.int32)
            else:
                images, labels = data.images, data.labels
            strategy = strategy_for(cfg)
            with strategy.scope():
                gan = _make_gan(cfg, len(names), index)
            run.set_status(replicas=strategy.num_replicas_in_sync)
            steps = steps_for(len(labels), cfg.gan.batch_size, cfg.gan.steps_per_epoch)
            fixed_z = np.random.default_rng(0).uniform(-1, 1, (36, cfg.gan.latent_dim)).astype(np.float32)
            # one class per grid row (6 columns), the rows cycling through the classes
            fixed_labels = ((np.arange(36) // 6) % len(names)).astype(np.int32)

            def samples(gan=gan):
                return (gan.generate(fixed_z, fixed_labels).numpy() + 1.0) / 2.0

            def batches(start, images=images, labels=labels):
                return training_batches(images, labels, batch_size=cfg.gan.batch_size, steps_per_epoch=steps,
                                        epochs=cfg.gan.epochs, start_epoch=start, seed=cfg.seed, scale="tanh",
                                        augment=cfg.gan.augment)

            fit_member(run, member, gan, gan.checkpoint_items(), batches, epochs=cfg.gan.epochs,
                       steps_per_epoch=steps, keep=cfg.keep_checkpoints, sample_fn=samples,
                       sample_every=cfg.gan.sample_every_epochs, verbose=verbose,
                       check_weights=_weights(gan.generator, gan.discriminator, *gan.ema.values()),
                       on_divergence=cfg.on_divergence, max_rollbacks=cfg.max_rollbacks)
            final = run.final_model(member)
            final.parent.mkdir(parents=True, exist_ok=True)
            _save_keras(gan.sampler(), final)  # the EMA generator when there is one
            run.member_done(member, cfg.gan.epochs)
        run.set_status(state="complete", class_names=list(names), members=dict.fromkeys(_members(cfg, names),
                                                                                          cfg.gan.epochs))
    return run


def _save_keras(model, path: Path) -> None:
    atomic_write_with(path, model.save, suffix=".keras")  # Keras needs the extension


def load_gan_for_sampling(run_dir):
    """Rebuild the GAN(s) of a run and restore their latest checkpoints: [(member, gan)], cfg, names."""
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "gan":
        raise RunFolderError(f"{run.path}: expected a GAN run, got a '{cfg.kind}' run")
    status = run.status()
    if status.get("state") != "complete":
        raise RunFolderError(f"{run.path}: expected a complete GAN run, got state '{status.get('state')}' "
                             "(rerun its train-gan command to finish it)")
    names = tuple(status["class_names"])
    gans = []
    for index, member in enumerate(_members(cfg, names)):
        gan = _make_gan(cfg, len(names), index)
        ckpt = tf.train.Checkpoint(**gan.sampling_items())
        latest = tf.train.latest_checkpoint(str(run.checkpoint_dir(member)))
        if latest is None:
            raise RunFolderError(f"{run.checkpoint_dir(member)}: expected a checkpoint, got none")
        ckpt.restore(latest).expect_partial()
        gans.append((member, gan, latest))
    return run, cfg, names, gans


def train_classifier(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the lesion CNN with classic and/or synthetic augmentation into run folder `out`."""
    sets = load_rois(cfg.data)  # bad data or synthetic sets fail here, before a run folder exists
    train, val = sets["train"], sets["val"]
    synthetic = None
    if cfg.cls.synthetic and cfg.cls.synthetic_ratio > 0:
        synthetic = load_synthetic(cfg.cls.synthetic, train.class_names, cfg.data.image_size)
    with start_run(cfg, out, overwrite) as (run, strategy):
        if strategy is None:
            return run
        with strategy.scope():
            model = build_lesion_cnn(len(train.class_names), cfg.data.image_size, filters=cfg.cls.filters,
                                     kernel_size=cfg.cls.kernel_size, dense_units=cfg.cls.dense_units,
                                     dropout=cfg.cls.dropout, seed=cfg.seed)
            model.get_layer("subtract_mean").mean.assign(float(train.images.mean()))
            optimizer = keras.optimizers.SGD(cfg.cls.lr, momentum=cfg.cls.momentum)
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            optimizer.build(model.trainable_variables)
        # One epoch = one pass over the real ROIs, stretched so the synthetic share comes on top.
        steps = steps_for(round(len(train) / (1.0 - cfg.cls.synthetic_ratio)), cfg.cls.batch_size,
                          cfg.cls.steps_per_epoch)

        def batches(start):
            return training_batches(train.images, train.labels, batch_size=cfg.cls.batch_size,
                                    steps_per_epoch=steps, epochs=cfg.cls.epochs, start_epoch=start,
                                    seed=cfg.seed, augment=cfg.cls.augment, synthetic=synthetic,
                                    synthetic_ratio=cfg.cls.synthetic_ratio)

        items = {"model": model, "optimizer": optimizer, "seed_states": seed_generator_states(model)}
        fit_member(run, "cls", model, items, batches, epochs=cfg.cls.epochs, steps_per_epoch=steps,
                   keep=cfg.keep_checkpoints, validation=eval_batches(val.images, val.labels), verbose=verbose,
                   check_weights=_weights(model), on_divergence=cfg.on_divergence,
                   max_rollbacks=cfg.max_rollbacks)
        run.final_model("cls").parent.mkdir(parents=True, exist_ok=True)
        _save_keras(model, run.final_model("cls"))
        run.set_status(state="complete", class_names=list(train.class_names), members={"cls": cfg.cls.epochs},
                       n_train_real=len(train), n_synthetic=0 if synthetic is None else len(synthetic[1]))
    return run


def load_classifier(run: RunFolder) -> keras.Model:
    return run.load_final_model("cls", "classifier", "train-cls")


def evaluate_classifier(run_dir, split: str | None = None) -> dict:
    """Score a classifier run on its evaluation split; writes `<run>/evaluation.json`."""
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "cls":
        raise RunFolderError(f"{run.path}: expected a classifier run (train-cls), got a '{cfg.kind}' run")
    split = split or cfg.data.eval_split
    data = load_rois(cfg.data)[split]
    model = load_classifier(run)
    probs = model.predict(eval_batches(data.images, data.labels), verbose=0)
    result = per_class_metrics(data.labels, probs.argmax(-1), len(data.class_names), list(data.class_names))
    result.update({"split": split, "n": len(data), "data": cfg.data.name, "seed": cfg.seed,
                   "augment": cfg.cls.augment, "synthetic": cfg.cls.synthetic,
                   "synthetic_ratio": cfg.cls.synthetic_ratio})
    atomic_write_json(run.path / "evaluation.json", result)
    return result


def classifier_runs(folder) -> list[Path]:
    """A classifier run folder itself, or every run folder below it (one per seed)."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return [folder]
    runs = sorted(p.parent for p in folder.glob("*/config.json"))
    if not runs:
        raise RunFolderError(f"{folder}: expected a run folder or a folder of run folders, got neither")
    return runs
