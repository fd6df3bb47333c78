"""`tfganaug train-seg`: a 2-D or 3-D U-Net (tasks/unet.py, tasks/unet3d.py) trained on real
slices and/or a synthetic segmentation set, into a run folder like every other command
(config.json first, exact resume, divergence guard).

The augmentation of each paper (flips, the standard rotation + elastic set, histogram
equalisation toward non-contrast CT, their 3-D versions), the real + synthetic pool (a share of
synthetic slices per batch, or Son et al.'s settings such as 300F+100R) and the 3-D windows
are chosen here from the config.

Streamed data (`data.stream: true`, `--stream`; off by default, so existing runs and configs
train as before): the 2-D U-Net's cases are prepared one at a time and their slices written to
a temporary slice store on disk (`data.slicestore`), which the one tf.data chain
(`pipeline.training_batches`) reads an element at a time, with the same order, synthetic
interleaving and augmentation as from memory: a streamed run sees the same batches as an
in-memory one (tests/test_streaming.py). The kidney and abdomen phantoms and a folder of the
user's own cases (KiTS19 layout or BraTS) make or read each patient when it is reached, so
memory does not grow with their number of patients; the small shared sources' loaders (and
PNG pairs) still read their list of cases whole first, so there only the prepared slices and
their tf.constant copies are saved. Not streamed, refused: the 3-D U-Net's windows and Son et
al.'s settings (flipped copies of the real slices), built in memory. A histeq reference set is
another data set, read whole for its histogram.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfganaug import config as config_lib
from tfganaug.data.pipeline import eval_batches, training_batches
from tfganaug.data.segsets import SegSet, all_slices_of, load_segsets
from tfganaug.errors import ConfigError, InputError
from tfganaug.gans.base import seed_generator_states
from tfganaug.runs import RunFolder, fit_member, save_keras, strategy_for, start_run, steps_for
from tfganaug.schedules import ScaledCosineDecay
from tfganaug.synthetic import load_seg_synthetic, load_seg_synthetic_volumes, read_synthetic_manifest
from tfganaug.tasks.segmenter import SegLoss, build_segmenter, is_3d, unet_args


def _augment_fn(cfg, train: SegSet):
    """The training augmentation: a name `training_batches` knows, or `(image, label, seed)` callable."""
    seg, three_d = cfg.seg, is_3d(cfg.seg)
    if seg.augment == "none" or (seg.augment == "flip" and not three_d):
        return seg.augment
    from tfganaug.data.volumes import flip_3d_tf, standard_augment_3d_tf
    if seg.augment == "flip":
        return flip_3d_tf
    # Sandfort et al.'s elastic sigma of 8 px belongs to slices of about 256 px (volumes of 192
    # slices); it is scaled with the slice size (8 px on a 32 px slice folds a third of the warp
    # over itself) and, in 3-D, with the window's depth.
    sigma_px = 8.0 * cfg.data.image_size / 256.0
    if three_d:
        from tfganaug.data.volumes import PAPER_VOLUME_SIDE
        sigmas = (8.0 * seg.patch_depth / PAPER_VOLUME_SIDE, sigma_px, sigma_px)

        def geometric(image, label, seed):
            return standard_augment_3d_tf(image, label, seed, sigma_px=sigmas)
    else:
        from tfganaug.data.elastic import standard_augment_tf

        def geometric(image, label, seed):
            return standard_augment_tf(image, label, seed, sigma_px=sigma_px)
    if seg.augment == "standard":
        return geometric
    # histeq: half the samples get the histogram of the non-contrast reference, then standard.
    from tfganaug.data.histeq import random_histeq_tf, reference_histogram
    reference = all_slices_of(config_lib.with_data(cfg, seg.histeq_reference).data).images  # all of it: only its histogram is used
    ref_hist = reference_histogram(reference, 256, (0.0, 1.0))

    def histeq(image, label, seed):
        return geometric(random_histeq_tf(image, seed, ref_hist, (0.0, 1.0)), label, seed)
    return histeq


def _training_pool(cfg, train: SegSet):
    """(real images, real masks, synthetic (images, masks) or None, synthetic ratio, augmented copies)."""
    seg = cfg.seg
    synthetic = None
    if seg.synthetic and (seg.synthetic_ratio > 0 or seg.setting):
        synthetic = load_seg_synthetic(seg.synthetic, train, cfg.data.image_size)
    real_x, real_y, ratio = train.images, train.masks, seg.synthetic_ratio
    if seg.setting:
        parts = config_lib.parse_setting(seg.setting)
        n_real = len(train)
        pools_x, pools_y = [], []
        if parts["A"]:  # flip-augmented copies of the real slices (Son et al.'s "A")
            n_a = int(round(parts["A"] * n_real))
            idx = np.arange(n_a) % n_real
            pools_x.append(real_x[idx][:, :, ::-1])
            pools_y.append(real_y[idx][:, :, ::-1])
        if parts["F"]:
            n_f = int(round(parts["F"] * n_real))
            if synthetic is None or len(synthetic[1]) < n_f:
                have = 0 if synthetic is None else len(synthetic[1])
                raise InputError("synthetic set", f"at least {n_f} slices for setting {seg.setting} "
                                 f"({parts['F']:.0%} of {n_real} real)", f"{have}", seg.synthetic)
            pools_x.append(synthetic[0][:n_f])
            pools_y.append(synthetic[1][:n_f])
        extra = (np.concatenate(pools_x), np.concatenate(pools_y)) if pools_x else None
        n_extra = 0 if extra is None else len(extra[1])
        if parts["R"] == 0:  # fake only: the "real" pool is the synthetic one
            return extra[0], extra[1], None, 0.0, n_extra
        return real_x, real_y, extra, n_extra / (n_extra + n_real), n_extra
    return real_x, real_y, synthetic, ratio, 0


def _volume_pool(cfg, train: SegSet):
    """3-D: (stacked volumes, labels, window starts, synthetic (volumes, labels, starts) or None,
    synthetic ratio, synthetic volumes' slice count)."""
    from tfganaug.data.volumes import volumes_of, window_stack
    depth = cfg.seg.patch_depth
    x, y, starts = window_stack(volumes_of(train), depth)
    extra, n_extra = None, 0
    if cfg.seg.synthetic and cfg.seg.synthetic_ratio > 0:
        fake = load_seg_synthetic_volumes(cfg.seg.synthetic, train, cfg.data)
        extra, n_extra = window_stack(volumes_of(fake), depth), len(fake)
    return x, y, starts, extra, cfg.seg.synthetic_ratio, n_extra


def train_seg(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    """Train the segmentation U-Net of `cfg` into run folder `out` (resuming it if it holds the same config)."""
    strategy_for(cfg)  # before any other TensorFlow op (multi-worker collectives): see runs.strategy_for
    three_d = is_3d(cfg.seg)
    if cfg.seg.synthetic and (cfg.seg.synthetic_ratio > 0 or cfg.seg.setting):  # in seconds, before the real data
        read_synthetic_manifest(cfg.seg.synthetic, "segmentation", {})
    if cfg.data.stream and (three_d or cfg.seg.setting):
        raise ConfigError("data.stream: expected the 2-D U-Net without a Son et al. setting (streamed slices feed "
                          f"2-D samples), got {'a 3-D U-Net' if three_d else 'setting ' + cfg.seg.setting}")
    # bad data fails here, before a run folder exists
    sets = load_segsets(cfg.data, all_slices=three_d, stream=cfg.data.stream)
    train, val = sets["train"], sets["val"]
    window = starts = None
    if three_d:
        x, y, starts, extra, ratio, n_extra = _volume_pool(cfg, train)
        window, samples = cfg.seg.patch_depth, max(1, round(len(y) / cfg.seg.patch_depth))
    else:
        x, y, extra, ratio, n_extra = _training_pool(cfg, train)
        samples = len(y)
    augment = _augment_fn(cfg, train)
    with start_run(cfg, out, overwrite) as (run, strategy):
        if strategy is None:
            return run
        args = unet_args(cfg.seg, train.num_classes)
        steps = steps_for(round(samples / (1.0 - ratio)) if ratio < 1 else samples, cfg.seg.batch_size,
                          cfg.seg.steps_per_epoch)
        with strategy.scope():
            model = build_segmenter(cfg.seg, train.num_classes, cfg.data.image_size, train.images.shape[-1],
                                    seed=cfg.seed)
            lr = cfg.seg.lr
            if cfg.seg.lr_schedule == "cosine":
                lr = ScaledCosineDecay(cfg.seg.lr, steps * cfg.seg.epochs)
            optimizer = keras.optimizers.Adam(lr)
            model.compile(optimizer=optimizer, loss=SegLoss(train.num_classes, args["output"], cfg.seg.loss,
                                                            cfg.seg.dice_smooth, cfg.seg.batch_dice))
            optimizer.build(model.trainable_variables)

        def batches(start):
            return training_batches(x, y, batch_size=cfg.seg.batch_size, steps_per_epoch=steps,
                                    epochs=cfg.seg.epochs, start_epoch=start, seed=cfg.seed, augment=augment,
                                    synthetic=extra, synthetic_ratio=ratio, window=window, starts=starts)

        if three_d:
            from tfganaug.data.volumes import volume_chunks, volumes_of
            vx, vy = volume_chunks(volumes_of(val), cfg.seg.patch_depth)
            validation = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(2)
        else:
            validation = eval_batches(val.images, val.masks, 32)
        items = {"model": model, "optimizer": optimizer, "seed_states": seed_generator_states(model)}
        fit_member(run, "seg", model, items, batches, epochs=cfg.seg.epochs, steps_per_epoch=steps,
                   keep=cfg.keep_checkpoints, validation=validation, verbose=verbose,
                   check_weights=lambda: [w.numpy() for w in model.weights], on_divergence=cfg.on_divergence,
                   max_rollbacks=cfg.max_rollbacks)
        save_keras(model, run.final_model("seg"))
        run.set_status(state="complete", class_names=list(train.class_names),
                       channel_names=list(train.channel_names), members={"seg": cfg.seg.epochs},
                       n_train_real=int(len(train)), n_train_patients=len(train.patients()),
                       n_synthetic=int(n_extra if cfg.seg.setting else (0 if extra is None else len(extra[1]))),
                       synthetic_ratio=float(ratio), output=args["output"], dims=3 if three_d else 2,
                       patch_depth=cfg.seg.patch_depth if three_d else None)
    return run
