"""`tfganaug synthesize`: sample any trained GAN run into a synthetic set (`tfganaug.synthetic`).

What a GAN draws from is its class's `synthesises_from`:

* ``labels``: DCGAN / ACGAN ROIs, balanced over the classes (one DCGAN per class);
* ``label_maps``: Pix2Pix CT for the run's training label maps, perturbed ones
  (`--labels perturb`, `--perturb`), another source's, or the masks of an .npz (e.g. another
  generator's synthetic set);
* ``source``: CycleGAN A -> B copies of every slice of a labelled source, the labels carried
  over, plus whole translated volumes as NIfTI (3-D training);
* ``noise``: StyleGAN2 images and masks from z ~ N(0, I) (`truncation`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfganaug import config as config_lib
from tfganaug.data.segsets import load_segsets, select_slices, source_cases, square_pad
from tfganaug.errors import ConfigError, InputError, OutputExistsError
from tfganaug.gans import GANS
from tfganaug.stages.train_gan import domain_slices, load_gan
from tfganaug.synthetic import write_roi_synthetic, write_seg_synthetic

ROI_COUNT = 1000  # ROIs drawn when no count is given
MAX_BYTES = 4 * 2**30  # the largest synthetic set held in memory (images + masks as float32)
ROI_BATCH = 256  # ROIs per generator call (served: per request), so served rows meet the same batches


def _balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    labels = np.arange(n) % num_classes
    return np.random.default_rng(seed).permutation(labels).astype(np.int32)


def roi_noise(n: int, num_classes: int, latent_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(z, labels) of `n` ROIs from `seed`: z uniform in [-1, 1] (as in training), labels balanced
    over the classes. Local and served synthesis both draw them here, so a seed gives one set."""
    z = tf.random.stateless_uniform([n, latent_dim], seed=[seed, 2018], minval=-1.0, maxval=1.0).numpy()
    return z, _balanced_labels(n, num_classes, seed)


def sample_images(gans, num_classes: int, n: int, seed: int = 0, batch_size: int = ROI_BATCH):
    """(images in [0, 1], labels) from [(member, gan, ckpt)]: DCGAN one per class, ACGAN conditional."""
    z, labels = roi_noise(n, num_classes, gans[0][1].latent_dim, seed)
    images = None
    for start in range(0, n, batch_size):
        zb, lb = z[start:start + batch_size], labels[start:start + batch_size]
        if len(gans) == 1:
            out = gans[0][1].generate(zb, lb).numpy()
        else:  # one DCGAN per class: each produces the ROIs of its own class
            out = np.zeros((len(lb),) + tuple(gans[0][1].generator.output_shape[1:]), np.float32)
            for c, (_, gan, _) in enumerate(gans):
                sel = lb == c
                if sel.any():
                    out[sel] = gan.generate(zb[sel]).numpy()
        if images is None:
            images = np.zeros((n,) + out.shape[1:], np.float32)
        images[start:start + len(lb)] = out
    return np.clip((images + 1.0) / 2.0, 0.0, 1.0), labels


def synthesize(run_dir, n: int | None, out, *, seed: int = 0, overwrite: bool = False, png: bool = True,
               labels: str = "train", perturb: float | None = None, source: str | None = None,
               truncation: float = 1.0, batch_size: int = 32) -> Path:
    """Sample the GAN run `run_dir` into the synthetic set `out` (written atomically); `n`
    samples (None: 1000 ROIs, one image per label map or source slice; StyleGAN2 needs it)."""
    if n is not None and n < 1:
        raise InputError("--n", "a positive number of samples", str(n))
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(out)
    run, cfg, status, gans = load_gan(run_dir)
    kind = GANS.get(cfg.gan.arch).synthesises_from
    for flag, given, used_by in (("--labels", labels != "train", "label_maps"), ("--perturb", perturb is not None,
                                 "label_maps"), ("--from", source is not None, "source"),
                                 ("--truncation", truncation != 1.0, "noise")):
        if given and kind != used_by:  # silently ignored, it would hide a mistaken run folder
            raise ConfigError(f"{flag}: expected a run whose GAN draws from {used_by.replace('_', ' ')}, got a "
                              f"{cfg.gan.arch} run ({run_dir}); leave {flag} out")
    per_sample = cfg.data.image_size ** 2 * 4 * (len(status.get("channel_names") or [None]) + 1)
    if n is not None and n * per_sample > MAX_BYTES:
        raise InputError("--n", f"at most {MAX_BYTES // per_sample} samples of {cfg.data.image_size} px (a set of "
                         f"at most {MAX_BYTES / 2**30:g} GiB in memory; write several sets for more)", str(n))
    info = {"generator_run": str(Path(run.path).resolve()), "arch": cfg.gan.arch}
    if kind == "labels":
        names = status["class_names"]
        images, classes = sample_images(gans, len(names), n or ROI_COUNT, seed)
        info.update({"checkpoints": {m: c for m, _, c in gans}, "seed": seed})
        return write_roi_synthetic(out, images, classes, names, info, overwrite=overwrite, png=png)
    _, gan, ckpt = gans[0]
    info.update({"checkpoint": ckpt, "seed": seed})
    rng = np.random.default_rng(seed)
    k = len(status["class_names"])
    extra = origin = None
    if kind == "label_maps":
        maps, where = _label_maps(cfg, labels, status)
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
        info.update({"label_source": where, "n_label_maps": int(len(maps)), "perturbed": int(perturbed.sum())})
    elif kind == "source":
        src = source or cfg.data.name
        # Copies of every case, each slice tagged with its patient and position: train-seg keeps
        # only the copies of its own training cases, whatever split it draws.
        real = domain_slices(cfg, src)
        count = min(n, len(real)) if n else len(real)
        idx = np.arange(count)
        images = np.concatenate([gan.translate_ab(real.images[idx[s:s + batch_size]] * 2 - 1).numpy()
                                 for s in range(0, count, batch_size)])
        masks = real.masks[idx]
        origin = (real.patient_ids[idx], real.slice_index[idx])
        info.update({"source": src, "direction": "A->B", "labels": "carried over from the source slices",
                     "cases": "all cases of the source; train-seg uses only the copies of its training cases"})
        data_cfg = config_lib.with_data(cfg, src).data

        def nifti(tmp):
            return {"nifti": translate_volumes(gan, source_cases(src, data_cfg)[0], data_cfg, tmp / "nifti",
                                               batch_size)}
        extra = nifti
    else:  # noise
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
                               overwrite=overwrite, extra=extra, origin=origin, previews=16 if png else 0)


def synthesize_served(server: str, model: str, n: int | None, out, *, class_names, seed: int = 0,
                      overwrite: bool = False, png: bool = True, version: int | None = None, body: str = "inputs",
                      batch_size: int = ROI_BATCH, timeout_s: float = 60.0) -> Path:
    """Sample a DCGAN / ACGAN served by TF Serving (the `tfganaug export` signature z, label ->
    image) into the synthetic ROI set `out`: the files and manifest of `synthesize`, with the
    server, model and version in place of the run folder. z and the labels are drawn here from
    `seed` as `synthesize` draws them (`roi_noise`), and requests hold `batch_size` rows, so the
    same seed gives the same images as local synthesis of the exported run. `server` is a REST
    (http://HOST:8501, `body` form) or gRPC (grpc://HOST:8500) endpoint (`serving.connect`)."""
    from tfganaug.serving import connect
    from tfganaug.synthetic import write_roi_synthetic
    n = ROI_COUNT if n is None else n
    if n < 1:
        raise InputError("--n", "a positive number of samples", str(n))
    names = list(class_names or [])
    if not names or len(set(names)) != len(names):
        raise InputError("--classes", "the served model's class names in label order, without repeats "
                         "(class_names in its tfganaug_export.json)", repr(names))
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(out)
    client = connect(server, model, version=version, body=body, batch_size=batch_size, timeout_s=timeout_s)
    meta = client.metadata()
    z_spec, image_spec = meta["inputs"].get("z"), meta["outputs"].get("image")
    if (set(meta["inputs"]) != {"z", "label"} or image_spec is None or len(z_spec[1] or []) != 2
            or z_spec[1][1] is None):
        raise InputError("served model", "a dcgan/acgan generator exported by `tfganaug export` (inputs z "
                         "[None, latent_dim] and label, output image)",
                         f"inputs {sorted(meta['inputs'])}, outputs {sorted(meta['outputs'])}", client.base)
    shape = image_spec[1] or []
    per_sample = int(np.prod([d or 1 for d in shape[1:]])) * 4
    if n * per_sample > MAX_BYTES:
        raise InputError("--n", f"at most {MAX_BYTES // per_sample} samples of shape {shape[1:]}", str(n))
    z, labels = roi_noise(n, len(names), z_spec[1][1], seed)
    images = client.predict({"z": z, "label": labels})["image"]
    if images.ndim != 4 or images.shape[-1] != 1 or not np.isfinite(images).all() \
            or images.min() < 0.0 or images.max() > 1.0:
        raise InputError("served images", "finite (N, H, W, 1) values in [0, 1] (the export's image output)",
                         f"shape {list(images.shape)}, range [{np.nanmin(images):g}, {np.nanmax(images):g}]",
                         client.base)
    info = {"generator_server": client.base, "model": model, "model_version": version,
            "signature": client.signature, "request_body": body if client.transport == "REST" else "gRPC TensorProto",
            "batch_size": batch_size, "seed": seed}
    return write_roi_synthetic(out, images, labels, names, info, overwrite=overwrite, png=png)


def _label_maps(cfg, labels: str, status) -> tuple[np.ndarray, str]:
    """Label maps (N, S, S) uint8 at the run's size: the run's training maps or another source's."""
    if labels in ("train", "perturb"):
        return load_segsets(cfg.data)["train"].masks, f"{cfg.data.name} (training split)"
    if labels.endswith(".npz"):
        # Prepared slices or another generator's synthetic set (e.g. a StyleGAN2's masks, drawn
        # by the labels2image baseline so that both sets share their label maps): every mask.
        from tfganaug.data.npz import read_npz
        from tfganaug.data.segsets import SEG_ARRAYS
        z = read_npz(labels, {"masks": SEG_ARRAYS["masks"], "class_names": SEG_ARRAYS["class_names"]}, "label maps")
        names = [str(n) for n in z.get("class_names", status["class_names"])]
        if names != list(status["class_names"]) or z["masks"].shape[1:] != (cfg.data.image_size,) * 2:
            raise InputError("label maps", f"{cfg.data.image_size} px masks of classes {status['class_names']} like "
                             "the generator's training data", f"{z['masks'].shape[1:]} masks of {names}", labels)
        return z["masks"].astype(np.uint8), labels
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
        m = square_pad(case.mask[keep], 0)  # padded to square with background, as the training slices
        if m.shape[1] != size:
            m = tf.image.resize(m[..., None], (size, size), "nearest").numpy()[..., 0]
        maps.append(m.astype(np.uint8))
    if not maps:
        raise InputError("label source", "at least one labelled slice", "none", labels)
    return np.concatenate(maps), labels


def translate_slices(translate, raw: np.ndarray, units: str, data_cfg, batch_size: int = 16) -> np.ndarray:
    """CycleGAN slices (Z, H, W, C) in the domain's units -> translated, same grid and units.

    Each slice goes through the training preprocessing (window, pad to square, resize), is
    translated, resized back and cropped to the original in-plane size, and mapped back from
    the window to the domain's units (HU: values outside the window were clipped on the way in
    and stay at its edges). The served raw-input signature (stages/export.py) does this in its graph.
    """
    from tfganaug.data.raw_input import from_unit, request_to_unit, to_input_grid
    small = request_to_unit(raw, units, data_cfg)
    fake = np.concatenate([translate(small[s:s + batch_size] * 2 - 1).numpy()
                           for s in range(0, len(small), batch_size)])
    fake = to_input_grid(np.clip((fake + 1) / 2, 0, 1), raw.shape[1], raw.shape[2])
    return from_unit(fake, units, data_cfg)


def translate_volumes(gan, cases, data_cfg, folder: Path, batch_size: int = 16) -> list[dict]:
    """CycleGAN A -> B for whole volumes, slice by slice, written as NIfTI in the original geometry.

    Slice by slice through `translate_slices`; `<patient>_image.nii.gz` (float32 HU) and
    `<patient>_labels.nii.gz` (uint8, the source labels) carry the source's affine, so they
    overlay the original scan.
    """
    import nibabel as nib
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases:
        if case.image is None or case.units != "HU":
            raise InputError("source case", "a CT volume in HU", f"units {case.units}", case.source)
        hu = translate_slices(gan.translate_ab, case.image, "HU", data_cfg, batch_size)[..., 0]
        # phantoms have no scanner geometry: voxel size on the diagonal, in the array's (z, y, x) order
        affine = np.asarray(case.meta.get("affine", np.diag([*case.spacing_mm, 1.0])), np.float64)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in case.patient_id)
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), str(folder / f"{stem}_image.nii.gz"))
        if case.mask is not None:
            nib.save(nib.Nifti1Image(case.mask.astype(np.uint8), affine), str(folder / f"{stem}_labels.nii.gz"))
        written.append({"patient_id": case.patient_id, "shape": list(case.shape), "spacing_mm": list(case.spacing_mm),
                        "image": f"nifti/{stem}_image.nii.gz",
                        "labels": f"nifti/{stem}_labels.nii.gz" if case.mask is not None else None})
    return written
