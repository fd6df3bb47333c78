"""Training and sampling of the image-to-image and joint image+mask GANs.

* ``pix2pix`` (KiTS19 capstone): label map -> CT slice, trained on paired slices of
  `data.name`; synthesises CT for label maps of another source and for perturbed maps.
* ``cyclegan`` (Sandfort et al. 2019): contrast (`data.name`) <-> non-contrast
  (`gan.domain_b`) CT, unpaired; synthesises non-contrast copies of labelled contrast CT,
  the labels carried over.
* ``stylegan2`` (Son et al.): MR contrasts and the tumour label map generated together.

Each is one run-folder member named after its arch, trained by `train.fit_member` with
exact resume, and each synthesises a segmentation set (`segmentation.write_seg_synthetic`).
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug import config as config_lib
from tfganaug.data.pipeline import training_batches
from tfganaug.data.segsets import SegSet, _square, all_slices_of, load_segsets, select_slices, source_cases
from tfganaug.errors import InputError, OutputExistsError, RunFolderError
from tfganaug.gans.base import seed_generator_states
from tfganaug.registry import build_augment
from tfganaug.train import RunFolder, fit_member, start_run, steps_for

IMAGE_GANS = ("pix2pix", "cyclegan", "stylegan2")


def domain_slices(cfg, name: str) -> SegSet:
    """All slices of a source (every split): an unlabelled domain for CycleGAN."""
    return all_slices_of(config_lib.with_data(cfg, name).data)


def build_image_gan(cfg, num_labels: int, channels: int):
    """The GAN of `cfg.gan.arch` with the training tricks of the config (gan.diffaug, gan.ada_*,
    gan.g_ema_beta, gan.upsample; all off in the paper presets). D's augmenter treats the first
    `channels` channels of D's input as images: the label map (Pix2Pix) and the mask
    (StyleGAN2) that follow are moved by geometric ops only."""
    g = cfg.gan
    size = cfg.data.image_size
    augment = build_augment(g, cfg.seed, image_channels=channels)
    if g.arch == "pix2pix":
        from tfganaug.gans.pix2pix import Pix2Pix
        gan = Pix2Pix(image_size=size, num_labels=num_labels, out_channels=channels, base_filters=g.width,
                      lambda_l1=g.lambda_l1, dropout=g.g_dropout, norm=g.norm, seed=cfg.seed, augment=augment,
                      ema_beta=g.g_ema_beta, upsample=g.upsample)
        gan.compile(d_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1, beta_2=g.beta_2),
                    g_optimizer=keras.optimizers.Adam(g.lr, beta_1=g.beta_1, beta_2=g.beta_2))
        return gan
    if g.arch == "cyclegan":
        from tfganaug.gans.cyclegan import CycleGAN, LinearDecay
        gan = CycleGAN(image_size=size, channels=channels, base_filters=g.width, n_res_blocks=g.n_res_blocks,
                       lambda_cycle=g.lambda_cycle, lambda_identity=g.lambda_identity, pool_size=g.pool_size,
                       seed=cfg.seed, augment=augment, ema_beta=g.g_ema_beta, upsample=g.upsample)
        return gan
    if g.arch == "stylegan2":
        from tfganaug.gans.stylegan2 import StyleGAN2, stylegan2_optimizers
        gan = StyleGAN2(resolution=size, n_channels=channels, num_labels=num_labels, z_dim=g.latent_dim,
                        w_dim=g.w_dim, mapping_layers=g.mapping_layers, channel_base=g.channel_base,
                        channel_max=g.channel_max, r1_gamma=g.r1_gamma, r1_interval=g.r1_interval,
                        pl_weight=g.pl_weight, pl_interval=g.pl_interval, style_mixing_prob=g.style_mixing_prob,
                        ema_beta=g.ema_beta, seed=cfg.seed, augment=augment)
        d_opt, g_opt = stylegan2_optimizers(g.lr, g.r1_interval, g.pl_interval)
        gan.compile(d_optimizer=d_opt, g_optimizer=g_opt)
        return gan
    raise RunFolderError(f"expected one of {IMAGE_GANS}, got arch '{g.arch}'")


def _compile_cyclegan(gan, cfg, steps: int):
    from tfganaug.gans.cyclegan import LinearDecay
    g = cfg.gan
    total = max(2, g.epochs * steps)
    decay_start = min(total - 1, (g.decay_start_epoch if g.decay_start_epoch is not None else g.epochs // 2) * steps)
    gan.compile(g_optimizer=keras.optimizers.Adam(LinearDecay(g.lr, decay_start, total), beta_1=g.beta_1,
                                                  beta_2=g.beta_2),
                d_optimizer=keras.optimizers.Adam(LinearDecay(g.lr, decay_start, total), beta_1=g.beta_1,
                                                  beta_2=g.beta_2))


def _training_data(cfg):
    """(training slices, second domain or None): loaded before any run folder exists."""
    train = load_segsets(cfg.data)["train"] if cfg.gan.arch != "cyclegan" else domain_slices(cfg, cfg.data.name)
    other = domain_slices(cfg, cfg.gan.domain_b) if cfg.gan.arch == "cyclegan" else None
    if other is not None and other.images.shape[-1] != train.images.shape[-1]:
        raise InputError("domain B", f"{train.images.shape[-1]} channel(s) like domain A",
                         f"{other.images.shape[-1]}", cfg.gan.domain_b)
    return train, other


def _grid_rows(*rows) -> tuple[np.ndarray, int]:
    """Equally long lists of (H, W) images in [0,1] -> ((n_rows*n, H, W, 1), n_rows): one grid row each."""
    return np.concatenate([np.asarray(r, np.float32)[..., None] for r in rows], axis=0), len(rows)


def train_image_gan(cfg, out, overwrite: bool = False, verbose="auto") -> RunFolder:
    train, other = _training_data(cfg)
    arch = cfg.gan.arch
    with start_run(cfg, out, overwrite) as (run, strategy):
        if strategy is None:
            return run
        n = len(train) if other is None else max(len(train), len(other))
        steps = steps_for(n, cfg.gan.batch_size, cfg.gan.steps_per_epoch)
        with strategy.scope():
            gan = build_image_gan(cfg, train.num_classes, train.images.shape[-1])
            if arch == "cyclegan":
                _compile_cyclegan(gan, cfg, steps)
        k = train.num_classes
        common = dict(batch_size=cfg.gan.batch_size, steps_per_epoch=steps, epochs=cfg.gan.epochs,
                      scale="tanh")
        show = np.linspace(0, len(train) - 1, min(6, len(train))).round().astype(int)

        if arch == "pix2pix":
            def batches(start):
                ds = training_batches(train.images, train.masks, start_epoch=start, seed=cfg.seed,
                                      augment=cfg.gan.augment, **common)
                return ds.map(lambda x, m: (tf.one_hot(m, k), x))

            def samples():
                onehot = tf.one_hot(train.masks[show].astype(np.int32), k)
                fake = (gan.generate(onehot).numpy() + 1) / 2
                return _grid_rows(train.masks[show] / max(1, k - 1), fake[..., 0], train.images[show, ..., 0])
        elif arch == "cyclegan":
            def batches(start):
                a = training_batches(train.images, np.zeros(len(train), np.int32), start_epoch=start,
                                     seed=cfg.seed, augment="flip", **common)
                b = training_batches(other.images, np.zeros(len(other), np.int32), start_epoch=start,
                                     seed=cfg.seed + 7919, augment="flip", **common)
                return tf.data.Dataset.zip(a, b).map(lambda a, b: (a[0], b[0]))

            def samples():
                x = train.images[show] * 2 - 1
                fake = (gan.translate_ab(x).numpy() + 1) / 2
                back = (gan.translate_ba(fake * 2 - 1).numpy() + 1) / 2
                return _grid_rows(train.images[show, ..., 0], fake[..., 0], back[..., 0])
        else:
            fixed_z = np.random.default_rng(0).standard_normal((6, cfg.gan.latent_dim)).astype(np.float32)

            def batches(start):
                return training_batches(train.images, train.masks, start_epoch=start, seed=cfg.seed,
                                        augment=cfg.gan.augment, **common)

            def samples():
                images, probs = gan.generate(fixed_z, truncation_psi=1.0, noise_mode="const")
                images = np.clip((np.asarray(images) + 1) / 2, 0, 1)
                mask = np.asarray(probs).argmax(-1) / max(1, k - 1)
                return _grid_rows(*[images[..., c] for c in range(images.shape[-1])], mask)

        models = [m for m in gan.checkpoint_items().values() if isinstance(m, keras.Model)]
        fit_member(run, arch, gan, gan.checkpoint_items(), batches, epochs=cfg.gan.epochs, steps_per_epoch=steps,
                   keep=cfg.keep_checkpoints, sample_fn=samples, sample_every=cfg.gan.sample_every_epochs,
                   verbose=verbose, check_weights=lambda: [w.numpy() for m in models for w in m.weights],
                   on_divergence=cfg.on_divergence, max_rollbacks=cfg.max_rollbacks)
        run.member_done(arch, cfg.gan.epochs)
        run.set_status(state="complete", class_names=list(train.class_names),
                       channel_names=list(train.channel_names), members={arch: cfg.gan.epochs},
                       n_train=int(len(train)), n_train_b=None if other is None else int(len(other)))
    return run


def load_image_gan(run_dir):
    """(run, cfg, gan whose generators are restored from its latest checkpoint, checkpoint path,
    status). Restored: `gan.sampling_items()`, the generators and their EMA copies (StyleGAN2:
    G and G_ema), which is what generate / translate_ab / translate_ba use."""
    run, cfg = RunFolder.load(run_dir)
    if cfg.kind != "gan" or cfg.gan.arch not in IMAGE_GANS:
        raise RunFolderError(f"{run.path}: expected a {', '.join(IMAGE_GANS)} run, got a "
                             f"'{cfg.kind}' run of arch '{cfg.gan.arch}'")
    status = run.status()
    if status.get("state") != "complete":
        raise RunFolderError(f"{run.path}: expected a complete GAN run, got state '{status.get('state')}' "
                             "(rerun its train-gan command to finish it)")
    gan = build_image_gan(cfg, len(status["class_names"]), len(status["channel_names"]))
    if cfg.gan.arch == "cyclegan":
        _compile_cyclegan(gan, cfg, 1)
    latest = tf.train.latest_checkpoint(str(run.checkpoint_dir(cfg.gan.arch)))
    if latest is None:
        raise RunFolderError(f"{run.checkpoint_dir(cfg.gan.arch)}: expected a checkpoint, got none")
    tf.train.Checkpoint(**gan.sampling_items()).restore(latest).expect_partial()
    return run, cfg, gan, latest, status


# ------------------------------------------------------------------ synthesis

def _label_maps(cfg, labels: str, status) -> tuple[np.ndarray, str]:
    """Label maps (N, S, S) uint8 at the run's size: the run's training maps or another source's."""
    if labels in ("train", "perturb"):
        return load_segsets(cfg.data)["train"].masks, f"{cfg.data.name} (training split)"
    data_cfg = config_lib.with_data(cfg, labels).data
    cases, fixed = source_cases(labels, data_cfg)
    if fixed and fixed.get("train"):  # synthetic data only from the source's training cases
        cases = [c for c in cases if c.patient_id in set(fixed["train"])]
    maps = []
    size = cfg.data.image_size
    for case in cases:
        if case.mask is None:
            raise InputError("label source", "cases with label maps", "a case without one", case.source or labels)
        if list(case.class_names) != list(status["class_names"]):
            raise InputError("label maps", f"classes {status['class_names']} like the Pix2Pix training data",
                             f"{list(case.class_names)}", case.source or labels)
        keep = select_slices(case.mask, case.num_slices, 0.0, data_cfg.max_slices_per_case)
        m = _square(case.mask[keep], 0)  # padded to square with background, as the training slices
        if m.shape[1] != size:
            m = tf.image.resize(m[..., None], (size, size), "nearest").numpy()[..., 0]
        maps.append(m.astype(np.uint8))
    if not maps:
        raise InputError("label source", "at least one labelled slice", "none", labels)
    return np.concatenate(maps), labels


def synthesize_image_gan(run_dir, n: int, out, *, labels: str = "train", perturb: float | None = None,
                         source: str | None = None, truncation: float = 1.0, seed: int = 0,
                         overwrite: bool = False, batch_size: int = 32) -> Path:
    from tfganaug.segmentation import write_seg_synthetic
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(out)
    run, cfg, gan, ckpt, status = load_image_gan(run_dir)
    arch = cfg.gan.arch
    k = len(status["class_names"])
    rng = np.random.default_rng(seed)
    info = {"generator_run": str(Path(run.path).resolve()), "arch": arch, "checkpoint": ckpt, "seed": seed}
    if arch == "pix2pix":
        maps, origin = _label_maps(cfg, labels, status)
        perturb = (1.0 if labels == "perturb" else 0.0) if perturb is None else float(perturb)
        if not 0.0 <= perturb <= 1.0:
            raise InputError("--perturb", "a fraction in [0, 1]", str(perturb))
        from tfganaug.data.kits import perturb_label_map
        count = n or len(maps)
        # each label map at most once while there are enough, else drawn with replacement
        pick = rng.permutation(len(maps))[:count] if count <= len(maps) else rng.integers(0, len(maps), count)
        masks = maps[pick].copy()
        perturbed = rng.random(count) < perturb
        for i in np.flatnonzero(perturbed):
            masks[i] = perturb_label_map(masks[i], rng)
        images = np.concatenate([gan.generate(tf.one_hot(masks[s:s + batch_size].astype(np.int32), k)).numpy()
                                 for s in range(0, count, batch_size)])
        info.update({"label_source": origin, "n_label_maps": int(len(maps)), "perturbed": int(perturbed.sum())})
    elif arch == "cyclegan":
        src = source or cfg.data.name
        # Copies of every case, each slice tagged with its patient and position: train-seg keeps
        # only the copies of its own training cases, whatever split it draws.
        real = domain_slices(cfg, src)
        count = min(n, len(real)) if n else len(real)
        idx = np.arange(count)
        images = np.concatenate([gan.translate_ab(real.images[idx[s:s + batch_size]] * 2 - 1).numpy()
                                 for s in range(0, count, batch_size)])
        masks = real.masks[idx]
        info.update({"source": src, "direction": "A->B", "labels": "carried over from the source slices",
                     "cases": "all cases of the source; train-seg uses only the copies of its training cases"})
        data_cfg = config_lib.with_data(cfg, src).data

        def extra(tmp):
            return {"nifti": translate_volumes(gan, source_cases(src, data_cfg)[0], data_cfg, tmp / "nifti",
                                               batch_size)}
    else:
        if not n:
            raise InputError("--n", "a positive number of samples", str(n))
        z = rng.standard_normal((n, cfg.gan.latent_dim)).astype(np.float32)
        parts_i, parts_m = [], []
        for s in range(0, n, batch_size):
            img, probs = gan.generate(z[s:s + batch_size], truncation_psi=truncation)
            parts_i.append(np.asarray(img))
            parts_m.append(np.asarray(probs).argmax(-1))
        images, masks = np.concatenate(parts_i), np.concatenate(parts_m).astype(np.uint8)
        info.update({"truncation_psi": truncation})
    images = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
    return write_seg_synthetic(out, images, masks, status["class_names"], status["channel_names"], info,
                               overwrite=overwrite, extra=extra if arch == "cyclegan" else None,
                               origin=(real.patient_ids[idx], real.slice_index[idx]) if arch == "cyclegan" else None)


def translate_volumes(gan, cases, data_cfg, folder: Path, batch_size: int = 16) -> list[dict]:
    """CycleGAN A -> B for whole volumes, slice by slice, written as NIfTI in the original geometry.

    Each slice goes through the training preprocessing (window, pad to square, resize), is
    translated, resized back and cropped to the original in-plane size, and mapped back from
    the window to Hounsfield units (values outside the window were clipped on the way in and
    stay at its edges). `<patient>_image.nii.gz` (float32 HU) and `<patient>_labels.nii.gz`
    (uint8, the source labels) carry the source's affine, so they overlay the original scan.
    """
    import nibabel as nib
    from tfganaug.data.segsets import _to_unit, _background_value
    folder.mkdir(parents=True, exist_ok=True)
    size, written = data_cfg.image_size, []
    for case in cases:
        if case.image is None or case.units != "HU":
            raise InputError("source case", "a CT volume in HU", f"units {case.units}", case.source)
        z, h, w = case.shape
        square = _square(case.image, _background_value("HU", data_cfg))
        side = square.shape[1]
        unit = _to_unit(square, "HU", data_cfg)
        small = tf.image.resize(unit, (size, size), "bilinear", antialias=side > size).numpy()
        fake = np.concatenate([gan.translate_ab(small[s:s + batch_size] * 2 - 1).numpy()
                               for s in range(0, z, batch_size)])
        fake = tf.image.resize(np.clip((fake + 1) / 2, 0, 1), (side, side), "bilinear").numpy()
        top, left = (side - h) // 2, (side - w) // 2
        fake = fake[:, top:top + h, left:left + w, 0]
        hu = fake * data_cfg.window_width + (data_cfg.window_level - data_cfg.window_width / 2)
        # phantoms have no scanner geometry: voxel size on the diagonal, in the array's (z, y, x) order
        affine = np.asarray(case.meta.get("affine", np.diag([*case.spacing_mm, 1.0])), np.float64)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in case.patient_id)
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), str(folder / f"{stem}_image.nii.gz"))
        if case.mask is not None:
            nib.save(nib.Nifti1Image(case.mask.astype(np.uint8), affine), str(folder / f"{stem}_labels.nii.gz"))
        written.append({"patient_id": case.patient_id, "shape": [z, h, w], "spacing_mm": list(case.spacing_mm),
                        "image": f"nifti/{stem}_image.nii.gz",
                        "labels": f"nifti/{stem}_labels.nii.gz" if case.mask is not None else None})
    return written
