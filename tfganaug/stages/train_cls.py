"""`tfganaug train-cls`: the lesion CNN of Frid-Adar et al. (tasks/classifier.py) trained with
classic and/or synthetic augmentation into a run folder, with exact resume."""
from __future__ import annotations

import keras

from tfganaug.data.datasets import load_rois
from tfganaug.data.pipeline import eval_batches, training_batches
from tfganaug.gans.base import seed_generator_states
from tfganaug.runs import RunFolder, fit_member, save_keras, strategy_for, start_run, steps_for
from tfganaug.synthetic import load_synthetic
from tfganaug.tasks.classifier import build_lesion_cnn


def train_classifier(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the lesion CNN with classic and/or synthetic augmentation into run folder `out`."""
    strategy_for(cfg)  # before any other TensorFlow op (multi-worker collectives): see runs.strategy_for
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
            # the mean of what the CNN trains on: the synthetic ROIs when it sees no real one (TSTR)
            seen = synthetic[0] if cfg.cls.synthetic_ratio >= 1.0 else train.images
            model.get_layer("subtract_mean").mean.assign(float(seen.mean()))
            optimizer = keras.optimizers.SGD(cfg.cls.lr, momentum=cfg.cls.momentum)
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            optimizer.build(model.trainable_variables)
        # One epoch = one pass over the real ROIs, stretched so the synthetic share comes on top
        # (synthetic only: one pass over the synthetic ROIs).
        ratio = cfg.cls.synthetic_ratio
        steps = steps_for(round(len(train) / (1.0 - ratio)) if ratio < 1.0 else len(synthetic[1]),
                          cfg.cls.batch_size, cfg.cls.steps_per_epoch)

        def batches(start):
            return training_batches(train.images, train.labels, batch_size=cfg.cls.batch_size,
                                    steps_per_epoch=steps, epochs=cfg.cls.epochs, start_epoch=start,
                                    seed=cfg.seed, augment=cfg.cls.augment, synthetic=synthetic,
                                    synthetic_ratio=cfg.cls.synthetic_ratio)

        items = {"model": model, "optimizer": optimizer, "seed_states": seed_generator_states(model)}
        fit_member(run, "cls", model, items, batches, epochs=cfg.cls.epochs, steps_per_epoch=steps,
                   keep=cfg.keep_checkpoints, validation=eval_batches(val.images, val.labels), verbose=verbose,
                   check_weights=lambda: [w.numpy() for w in model.weights], on_divergence=cfg.on_divergence,
                   max_rollbacks=cfg.max_rollbacks)
        save_keras(model, run.final_model("cls"))
        run.set_status(state="complete", class_names=list(train.class_names), members={"cls": cfg.cls.epochs},
                       n_train_real=len(train), n_synthetic=0 if synthetic is None else len(synthetic[1]))
    return run
