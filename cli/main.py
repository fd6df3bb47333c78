"""`tfganaug`: the command line. Thin: parse, validate, call tfganaug.*; user errors -> one line, exit 2."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from cli.params import Choice, FloatRange, FsPath, IntRange, Names, Seeds, Text, usage_line
from tfganaug.config import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_IMAGE_SIZE, MAX_SEED, MAX_WIDTH
from tfganaug.errors import TfganaugError
from tfganaug.gans import GANS
from tfganaug.studies import STUDIES

EPILOG_GAN = """\b
Examples:
  tfganaug train-gan --arch acgan --out runs/acgan                      # phantom data, CPU budget
  tfganaug train-gan --arch dcgan --diffaug translation,cutout --ada-target 0.6 --ema 0.99 --upsample resize \
      --out runs/dcgan-aug                                              # small-data tricks (cpu_* presets have them)
  tfganaug train-gan --arch dcgan --data organamnist --classes liver,kidney-left,spleen --out runs/dcgan
  tfganaug train-gan --preset frid_adar_acgan --data organamnist --out runs/acgan-paper   # paper settings (GPU)
  tfganaug train-gan --arch pix2pix --data kits19 --out runs/p2p                   # label map -> CT slice
  tfganaug train-gan --arch cyclegan --data ircadb --domain-b totalseg-native --out runs/cyc
  tfganaug train-gan --arch stylegan2 --data brats --image-size 64 --out runs/sg2   # 4 contrasts + mask
Rerun the same command after a crash: training resumes from the last checkpoint."""


def _csv(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# Ranges of the numeric options: what a run on one machine can sensibly ask for (a value past
# them is a typo or would exhaust memory before anything is learned).
SEED = IntRange(0, MAX_SEED)
IMAGE_SIZE = IntRange(8, MAX_IMAGE_SIZE)     # config.validate adds: a power of two (U-Nets: a multiple of 2**depth), the arch's minimum
EPOCHS = IntRange(1, MAX_EPOCHS)
BATCH = IntRange(1, MAX_BATCH_SIZE)
PER_CLASS = IntRange(2, 10**6)
RATIO = FloatRange(0.0, 1.0)


def _build_cfg(kind, preset, config, overrides: dict, seed: int):
    from tfganaug import config as config_lib
    return config_lib.resolve(kind, preset, config, overrides, seed)


def _seed_runs(seeds, out):
    from tfganaug.runs import seed_runs
    return seed_runs(seeds, out)


def served_model_options(command):
    """--model and --model-version: which model of a TF Serving endpoint (synthesize, predict)."""
    command = click.option("--model-version", type=IntRange(1, 2**63 - 1), default=None,
                           help="--server: a version (default: the server's latest).")(command)
    return click.option("--model", type=Text(), metavar="NAME", default=None,
                        help="--server: the served model's name.")(command)


def _only_with(ctx, needed: str, *names):
    """Refuse options the command line gives that apply only together with `needed`."""
    for param in ctx.command.params:
        if param.name in names and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT:
            ctx.fail(f"{param.opts[0]}: expected together with {needed}, which is not given")


def _mr_contrasts(ctx, contrasts, data):
    """--contrasts names MR channels: refused for a data set that has none (it would be ignored)."""
    mr = ("brat" in data.lower() or "brain" in data.lower() or Path(data).is_dir())
    if contrasts and not mr:
        ctx.fail(f"--contrasts: expected MR data (brats, brats2018, phantom-brain or a BraTS folder) as --data, "
                 f"got {data}")


def data_options(f):
    options = [
        click.option("--data", type=Text(), metavar="NAME|PATH", default=None,
                     help="phantom (built-in default), organamnist, or a path to an "
                     ".npz (images, labels[, patient_ids, class_names]) or a class-per-folder PNG tree."),
        click.option("--classes", type=Names(), default=None,
                     help="Comma-separated class names to keep, e.g. liver,kidney-left,spleen."),
        click.option("--image-size", type=IMAGE_SIZE, default=None, help="ROI size in pixels (paper: 64)."),
        click.option("--train-per-class", type=PER_CLASS, default=None,
                     help="Low-data regime: training ROIs per class."),
        click.option("--config", type=FsPath(dir_okay=False), default=None,
                     help="A config.json (e.g. from a run folder) instead of a preset."),
        click.option("--overwrite", is_flag=True, help="Replace an existing run folder instead of resuming it."),
        click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--distribute", type=Choice(["none", "mirrored", "multiworker"]), default=None,
                     help="mirrored: tf.distribute.MirroredStrategy over this machine's GPUs; multiworker: "
                          "MultiWorkerMirroredStrategy over the processes TF_CONFIG lists (start the same command "
                          "on every worker; the chief, worker 0, writes --out, which must be on a file system all "
                          "workers see). Batch size is global."),
        click.option("--on-divergence", type=Choice(["stop", "rollback"]), default=None,
                     help="On a NaN/Inf loss or weight: stop (default), or roll back to the last good checkpoint "
                          "and halve the learning rate (at most max_rollbacks times; may change on resume)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _data_overrides(data, classes, image_size, train_per_class):
    return {"name": data, "classes": _csv(classes), "image_size": image_size, "train_per_class": train_per_class}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tfganaug")
def app():
    """GAN-based data augmentation for medical imaging (TensorFlow/Keras).

    \b
    The Frid-Adar et al. 2018 study, stage by stage:
      tfganaug train-gan --arch acgan --out runs/acgan
      tfganaug synthesize runs/acgan --n 3000 --out synth/acgan
      tfganaug train-cls --augment classic --synthetic synth/acgan --synthetic-ratio 0.5 --out runs/cls
      tfganaug evaluate runs/cls
      tfganaug export runs/acgan --out saved_models/acgan
    or all of it at once: tfganaug study --budget demo --out runs/demo
    """


@app.command("train-gan", epilog=EPILOG_GAN)
@click.option("--arch", type=Choice(GANS.names()), default="acgan",
              show_default=True, help="dcgan: one generator per class; acgan: one class-conditional generator "
              "(lesion ROIs); pix2pix: label map -> image; cyclegan: domain A <-> B; stylegan2: contrasts + mask.")
@click.option("--domain-b", type=Text(), metavar="NAME|PATH", default=None,
              help="cyclegan: the second domain's data (e.g. totalseg-native); "
              "--data is domain A.")
@click.option("--resolution", type=IMAGE_SIZE, default=None, help="Alias of --image-size (stylegan2).")
@click.option("--contrasts", type=Names(), default=None,
              help="MR sources: comma-separated contrasts in channel order, e.g. "
              "t1,t1ce,t2,flair (BraTS 2023 names t1n,t1c,t2w,t2f also work).")
@click.option("--preset", type=Text(), metavar="NAME", default=None,
              help="Config preset (default cpu_<arch>; paper: frid_adar_<arch>).")
@data_options
@click.option("--epochs", type=EPOCHS, default=None, help="Training epochs (paper: DCGAN 70, ACGAN 50).")
@click.option("--width", type=IntRange(8, MAX_WIDTH), default=None,
              help="Generator width: first layer 4x4xWIDTH (paper 1024).")
@click.option("--batch-size", type=BATCH, default=None, help="Global batch size (paper 64).")
@click.option("--lr", type=FloatRange(0.0, 1.0, lo_open=True), default=None,
              help="Adam learning rate (paper: DCGAN 2e-4, ACGAN 1e-4).")
@click.option("--diffaug", type=Names(), default=None,
              help="DiffAugment policies for everything D sees, comma-separated: "
              "translation, cutout, intensity (Zhao et al. 2020), or none.")
@click.option("--ada-target", type=FloatRange(0.0, 1.0, lo_open=True, hi_open=True), default=None,
              help="ADA (Karras et al. 2020): steer the augmentation "
              "probability so E[sign D(real)] stays at this target (paper 0.6).")
@click.option("--ema", "g_ema_beta", type=FloatRange(0.0, 1.0, hi_open=True), default=None,
              help="EMA decay of G's weights used for samples, "
              "synthesis and export, e.g. 0.999 (0: off; stylegan2 always has its own).")
@click.option("--upsample", type=Choice(["transpose", "resize"]), default=None,
              help="G's 2x upsampling: transpose (the papers') or resize (nearest + conv, no checkerboard).")
@click.option("--g-layout", type=Choice(["paper", "sngan"]), default=None,
              help="dcgan/acgan G: paper (starts at image/16) or sngan (Miyato et al. 2018's 32 px "
              "layout: starts at image/8, a 3x3 conv writes the image; the cpu presets').")
@click.option("--precision", type=Choice(["float32", "mixed_bfloat16", "mixed_float16"]), default=None)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", required=True, type=FsPath(file_okay=False), help="Run folder.")
def train_gan_cmd(arch, domain_b, resolution, contrasts, preset, data, classes, image_size, train_per_class, config, overwrite,
                  dry_run, quiet, distribute, on_divergence, epochs, width, batch_size, lr, diffaug, ada_target,
                  g_ema_beta, upsample, g_layout, precision, seed, out):
    """Train a GAN into a run folder: DCGAN/ACGAN (lesion ROIs), Pix2Pix, CycleGAN or StyleGAN2."""
    ctx = click.get_current_context()
    cfg = _build_cfg("gan", preset, config, {
        "data": {**_data_overrides(data, classes, image_size or resolution, train_per_class),
                 "contrasts": _csv(contrasts)},
        "gan": {"arch": arch, "epochs": epochs, "width": width,
                "batch_size": batch_size, "lr": lr, "domain_b": domain_b, "diffaug": diffaug,
                "ada_target": ada_target, "g_ema_beta": g_ema_beta, "upsample": upsample,
                "g_layout": g_layout},
        "precision": precision, "on_divergence": on_divergence, "distribute": distribute}, seed)
    _mr_contrasts(ctx, contrasts, cfg.data.name)
    if domain_b and cfg.gan.arch != "cyclegan":
        ctx.fail(f"--domain-b: expected together with --arch cyclegan, got a {cfg.gan.arch} configuration")
    if dry_run:
        return _print_cfg(cfg)
    from tfganaug.stages.train_gan import train_gan
    run = train_gan(cfg, out, overwrite=overwrite, verbose=0 if quiet else "auto")
    click.echo(f"GAN run complete: {run.path}")


@app.command("synthesize")
@click.argument("run_dir", type=FsPath(), required=False)
@click.option("--n", "count", type=IntRange(1, 2**31 - 1), default=None,
              help="Number of samples (dcgan/acgan: balanced over classes, default 1000; pix2pix: default one per "
                   "label map; cyclegan: at most one per source slice; stylegan2: required).")
@click.option("--out", required=True, type=FsPath(file_okay=False))
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--labels", type=Text(), metavar="NAME|PATH", default="train", show_default=True,
              help="pix2pix: label maps to render: 'train' (the run's training maps), 'perturb' (those, perturbed: "
                   "elastic, tumour scaled/moved, flips), or a source such as kits19-labels or a KiTS19 folder.")
@click.option("--perturb", type=RATIO, default=None, help="pix2pix: share of label maps perturbed (default: 1 for "
              "--labels perturb, else 0).")
@click.option("--from", "source", type=Text(), metavar="NAME|PATH", default=None,
              help="cyclegan: labelled domain-A data to translate (default: the "
              "run's --data); labels are carried over.")
@click.option("--truncation", type=FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="stylegan2: truncation psi.")
@click.option("--no-png", is_flag=True, help="Write only images.npz and the manifest.")
@click.option("--overwrite", is_flag=True)
@click.option("--server", type=Text(), metavar="URL", default=None,
              help="Instead of RUN_DIR: a TF Serving endpoint serving a dcgan/acgan export, REST "
              "(http://localhost:8501) or gRPC (grpc://localhost:8500, needs tfganaug[serving]); noise is drawn "
              "here from --seed, as for a run folder.")
@served_model_options
@click.option("--classes", type=Names(), default=None,
              help="--server: the model's class names in label order, comma-separated "
              "(class_names in its assets.extra/tfganaug_export.json).")
@click.option("--body", type=Choice(["inputs", "instances"]), default="inputs", show_default=True,
              help="--server: columnar (inputs) or row (instances) request bodies.")
@click.option("--batch-size", type=BATCH, default=256, show_default=True,
              help="--server: rows per request.")
@click.option("--timeout", type=FloatRange(0.0, 3600.0, lo_open=True), default=60.0, show_default=True,
              help="--server: seconds to wait for each answer.")
@click.pass_context
def synthesize_cmd(ctx, run_dir, count, out, seed, labels, perturb, source, truncation, no_png, overwrite, server,
                   model, model_version, classes, body, batch_size, timeout):
    """Sample a trained GAN run into images.npz + PNGs + manifest.json.

    \b
    Examples:
      tfganaug synthesize runs/acgan --n 3000 --out synth/acgan
      tfganaug synthesize runs/p2p --labels kits19-labels --perturb 0.5 --n 2000 --out synth/p2p
      tfganaug synthesize runs/cyc --from ircadb --out synth/noncontrast
      tfganaug synthesize runs/sg2 --n 5000 --truncation 1.0 --out synth/sg2
      tfganaug synthesize --server http://localhost:8501 --model acgan --classes cyst,metastasis,hemangioma \\
          --n 3000 --out synth/acgan-served
    """
    from tfganaug.synthetic import read_manifest
    if (run_dir is None) == (server is None):
        ctx.fail("give either RUN_DIR or --server (with --model and --classes)")
    if server is None:
        _only_with(ctx, "--server", "model", "model_version", "classes", "body", "batch_size", "timeout")
        from tfganaug.stages.synthesize import synthesize
        path = synthesize(run_dir, count, out, seed=seed, overwrite=overwrite, png=not no_png, labels=labels,
                          perturb=perturb, source=source, truncation=truncation)
    else:
        from tfganaug.stages.synthesize import synthesize_served
        if not model:
            ctx.fail("--server needs --model (the served model's name)")
        path = synthesize_served(server, model, count, out, class_names=_csv(classes), seed=seed,
                                 overwrite=overwrite, png=not no_png, version=model_version, body=body,
                                 batch_size=batch_size, timeout_s=timeout)
    click.echo(f"wrote {read_manifest(path)['count']} samples to {path}")


@app.command("train-cls")
@click.option("--preset", type=Text(), metavar="NAME", default=None, help="cpu_cnn (default) or frid_adar_cnn (paper).")
@data_options
@click.option("--augment", type=Choice(["none", "classic"]), default=None,
              help="classic: rotation, flips, translation, scale (the paper's).")
@click.option("--synthetic", type=FsPath(), default=None, help="A folder written by `tfganaug synthesize`.")
@click.option("--synthetic-ratio", type=RATIO, default=None,
              help="Share of synthetic ROIs per batch, in [0, 1] (1: synthetic only, train-on-synthetic).")
@click.option("--epochs", type=EPOCHS, default=None)
@click.option("--batch-size", type=BATCH, default=None)
@click.option("--seeds", type=Seeds(MAX_SEED), default="0", show_default=True,
              help="Comma-separated seeds; more than one writes OUT/seed-N per seed.")
@click.option("--out", required=True, type=FsPath(file_okay=False))
def train_cls_cmd(preset, data, classes, image_size, train_per_class, config, overwrite, dry_run, quiet,
                  distribute, on_divergence, augment, synthetic, synthetic_ratio, epochs, batch_size, seeds, out):
    """Train the lesion CNN (Frid-Adar et al.) with classic and/or synthetic augmentation.

    \b
    Example: tfganaug train-cls --augment classic --synthetic synth/acgan --synthetic-ratio 0.5 \\
                 --seeds 0,1,2 --out runs/cls
    """
    for seed, target in _seed_runs(seeds, out):
        cfg = _build_cfg("cls", preset, config, {
            "data": _data_overrides(data, classes, image_size, train_per_class),
            "cls": {"augment": augment, "synthetic": synthetic, "synthetic_ratio": synthetic_ratio,
                    "epochs": epochs, "batch_size": batch_size},
            "on_divergence": on_divergence, "distribute": distribute}, seed)
        if dry_run:
            _print_cfg(cfg)
            continue
        from tfganaug.stages.train_cls import train_classifier
        run = train_classifier(cfg, target, overwrite=overwrite, verbose=0 if quiet else "auto")
        click.echo(f"classifier run complete: {run.path}")


@app.command("evaluate")
@click.argument("run_dir", type=FsPath())
@click.option("--split", type=Choice(["train", "val", "test"]), default=None,
              help="Split to score (default: the run's data.eval_split; segmentation: test, or val where the "
                   "data set fixes only train/val).")
@click.option("--test", "test_data", type=Text(), metavar="NAME|PATH", default=None,
              help="Segmentation: score on another data set (all its slices), e.g. totalseg-native.")
@click.option("--whole-volumes", is_flag=True,
              help="Segmentation: score 2-D runs on every slice of each case, as 3-D runs always are "
                   "(default: the foreground slices and a share of empty ones, as in training).")
@click.option("--fidelity", is_flag=True,
              help="A GAN run or synthetic set: FID/KID/precision-recall per extractor and channel, and the "
                   "memorisation audit; writes fidelity.json and closest_pairs.png into it.")
@click.option("--extractor", "extractors", type=Names(), default="radiomics,domain", show_default=True,
              help="--fidelity: comma-separated feature extractors (radiomics, domain, inception_v3, random_conv, "
                   "pixels).")
@click.option("--weights", type=FsPath(dir_okay=False), default=None,
              help="--fidelity with inception_v3: the local Keras InceptionV3 no-top weights file (.h5).")
@click.pass_context
def evaluate_cmd(ctx, run_dir, split, test_data, whole_volumes, fidelity, extractors, weights):
    """Score classifier or segmentation runs; mean and 95% CI over seed runs. With --fidelity,
    judge a GAN run or synthetic set against the real data instead.

    \b
    Classifier: per-class sensitivity, specificity, accuracy, confusion matrix.
    Segmentation: IoU and Dice per class per slice and per case, volume error, BraTS regions.
    Examples: tfganaug evaluate runs/cls      (a run, or a folder of seed-N runs)
              tfganaug evaluate runs/seg --test totalseg-native --whole-volumes
              tfganaug evaluate synth/p2p --fidelity --extractor radiomics,domain
    """
    for name, flag in (("extractors", "--extractor"), ("weights", "--weights")):
        if not fidelity and ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            ctx.fail(f"{flag}: expected together with --fidelity (it chooses the fidelity features)")
    if fidelity:
        from tfganaug.stages.fidelity import evaluate_fidelity, format_fidelity
        result = evaluate_fidelity(run_dir, _csv(extractors) or [], weights,
                                   log=lambda m: click.echo(m, err=True))
        return click.echo(format_fidelity(result))
    from tfganaug.stages.evaluate import evaluate
    click.echo(evaluate(run_dir, split, test_data, whole_volumes or None))


@app.command("train-seg")
@click.option("--arch", type=Choice(["unet"]), default="unet", show_default=True)
@click.option("--preset", type=Text(), metavar="NAME", default=None,
              help="cpu_unet_kits (default), cpu_unet_abdomen, cpu_unet3d_abdomen, "
              "cpu_unet_brats; paper: kits_unet, sandfort_unet, sandfort_unet3d, son_unet.")
@data_options
@click.option("--unet", "unet_preset", type=Choice(["kits_light", "kits_heavy", "sandfort", "son", "sandfort3d"]),
              default=None, help="U-Net variant (KiTS capstone light/heavy, Sandfort 2-D, Son; sandfort3d: the "
              "paper's 3-D U-Net on windows of slices).")
@click.option("--patch-depth", type=IntRange(1, 512), default=None,
              help="3-D U-Net: slices per training window (default 16).")
@click.option("--padding", type=Choice(["valid", "same"]), default=None,
              help="valid: the paper's unpadded 3x3 convolutions with crop-and-concatenate (overlap-tile input).")
@click.option("--augment", type=Choice(["none", "flip", "standard", "histeq"]), default=None,
              help="standard: flips, crop, rotation <= 30 deg, elastic b-spline (Sandfort); histeq: standard + "
                   "histogram shift toward --histeq-reference.")
@click.option("--histeq-reference", type=Text(), metavar="NAME|PATH", default=None,
              help="Data whose histogram histeq moves toward (non-contrast CT).")
@click.option("--synthetic", type=FsPath(), default=None, help="A folder written by `tfganaug synthesize`.")
@click.option("--synthetic-ratio", type=RATIO, default=None, help="Share of synthetic slices per batch, in [0, 1].")
@click.option("--setting", type=Text(), metavar="NAME", default=None,
              help="Son et al.'s training set: 100R, 100F, 100F+100R, 300F+100R, 300A+100R.")
@click.option("--train-patients", type=IntRange(1, 10**6), default=None,
              help="Small-real-set regime: training patients kept.")
@click.option("--contrasts", type=Names(), default=None, help="MR sources: comma-separated contrasts in channel order.")
@click.option("--folds", type=IntRange(2, 100), default=None,
              help="k-fold cross-validation by patient: number of folds.")
@click.option("--fold", type=IntRange(0, 99), default=None, help="With --folds: the fold used as test set (0-based).")
@click.option("--stream", is_flag=True, default=None,
              help="2-D U-Net: prepare the cases one at a time and read the slices from disk per training element "
                   "(memory flat in the number of cases; data.stream).")
@click.option("--epochs", type=EPOCHS, default=None)
@click.option("--batch-size", type=BATCH, default=None)
@click.option("--seeds", type=Seeds(MAX_SEED), default="0", show_default=True,
              help="Comma-separated seeds; more than one writes OUT/seed-N per seed.")
@click.option("--out", required=True, type=FsPath(file_okay=False))
def train_seg_cmd(arch, preset, data, classes, image_size, train_per_class, config, overwrite, dry_run, quiet,
                  distribute, on_divergence, unet_preset, patch_depth, padding, augment, histeq_reference, synthetic,
                  synthetic_ratio, setting, train_patients, contrasts, folds, fold, stream, epochs, batch_size, seeds,
                  out):
    """Train the segmentation U-Net on real slices, optionally with synthetic ones.

    \b
    Examples:
      tfganaug train-seg --data kits19 --synthetic synth/p2p --synthetic-ratio 0.2 --out runs/seg
      tfganaug train-seg --preset cpu_unet_abdomen --augment histeq --histeq-reference phantom-abdomen-native \\
          --out runs/seg-histeq
      tfganaug train-seg --preset cpu_unet_brats --setting 300F+100R --synthetic synth/sg2 --out runs/seg
      tfganaug train-seg --data ircadb --unet sandfort3d --augment standard --out runs/seg3d
    """
    ctx = click.get_current_context()
    if classes or train_per_class:  # data options shared with the ROI commands; nothing here reads them
        ctx.fail(f"{'--classes' if classes else '--train-per-class'}: expected no class selection for segmentation "
                 "(the U-Net segments every labelled structure; see --train-patients)")
    for seed, target in _seed_runs(seeds, out):
        cfg = _build_cfg("seg", preset, config, {
            "data": {**_data_overrides(data, classes, image_size, train_per_class), "train_patients": train_patients,
                     "contrasts": _csv(contrasts), "folds": folds, "fold": fold, "stream": stream},
            "seg": {"unet": unet_preset, "patch_depth": patch_depth, "padding": padding, "augment": augment,
                    "histeq_reference": histeq_reference, "synthetic": synthetic, "synthetic_ratio": synthetic_ratio,
                    "setting": setting, "epochs": epochs, "batch_size": batch_size},
            "on_divergence": on_divergence, "distribute": distribute}, seed)
        _mr_contrasts(ctx, contrasts, cfg.data.name)
        if histeq_reference and cfg.seg.augment != "histeq":
            ctx.fail(f"--histeq-reference: expected together with --augment histeq, got augment {cfg.seg.augment}")
        if dry_run:
            _print_cfg(cfg)
            continue
        from tfganaug.stages.train_seg import train_seg
        run = train_seg(cfg, target, overwrite=overwrite, verbose=0 if quiet else "auto")
        click.echo(f"segmentation run complete: {run.path}")


@app.command("export")
@click.argument("run_dir", type=FsPath())
@click.option("--out", required=True, type=FsPath(file_okay=False),
              help="Model folder in TF Serving layout: OUT/<version>/saved_model.pb")
@click.option("--version", "model_version", type=IntRange(0, 2**63 - 1), default=None,
              help="Version number (default: next free).")
@click.option("--overwrite", is_flag=True)
def export_cmd(run_dir, out, model_version, overwrite):
    """Export a GAN (z, label -> image) or classifier (image -> probabilities) as a SavedModel.

    \b
    Example: tfganaug export runs/acgan --out saved_models/acgan
             saved_model_cli show --dir saved_models/acgan/1 --all
    """
    from tfganaug.stages.export import export_run
    path = export_run(run_dir, out, version=model_version, overwrite=overwrite)
    click.echo(f"exported to {path}")


@app.command("predict")
@click.argument("paths", nargs=-1, required=True, type=FsPath(), metavar="[MODEL] SCANS...")
@click.option("--out", required=True, type=FsPath(dir_okay=False),
              help="The label map to write (.nii.gz or .nii); the volumes go to <name>.volumes.json beside it.")
@click.option("--batch-size", type=IntRange(1, 1024), default=16, show_default=True,
              help="Slices per forward pass of a 2-D U-Net (served: per request).")
@click.option("--overwrite", is_flag=True, help="Replace an existing mask and volumes file.")
@click.option("--server", type=Text(), metavar="URL", default=None,
              help="Instead of MODEL: a TF Serving endpoint serving an exported segmenter, "
              "REST (http://localhost:8501) or gRPC (grpc://localhost:8500, needs tfganaug[serving]).")
@served_model_options
@click.option("--classes", type=Names(), default=None,
              help="--server: the model's class names in label order, comma-separated, "
              "background first (class_names in its tfganaug_export.json).")
@click.option("--channels", type=Names(), default="CT", show_default=True,
              help="--server: the run's channel names (CT, or MR contrasts in order, e.g. flair,t1ce).")
@click.option("--window", type=Text(), metavar="WW,WL", default=None,
              help="--server, CT: the run's window WW,WL in HU, e.g. 400,50.")
@click.option("--mr-norm", type=Choice(["percentile", "zscore"]), default=None,
              help="--server, MR: the run's mr_norm (default percentile).")
@click.option("--patch-depth", type=IntRange(1, 4096), default=None,
              help="--server, 3-D U-Net: slices per window it was trained on.")
@click.option("--timeout", type=FloatRange(0.0, 3600.0, lo_open=True), default=60.0, show_default=True,
              help="--server: seconds to wait for each answer.")
@click.pass_context
def predict_cmd(ctx, paths, out, batch_size, overwrite, server, model, model_version, classes, channels, window,
                mr_norm, patch_depth, timeout):
    """Segment a scan with a trained U-Net (run folder, exported SavedModel, or a model served by TF
    Serving): a NIfTI label map on the scan's grid, and the volume of each structure in ml.

    \b
    MODEL: a train-seg run folder or a SavedModel exported from one (not with --server).
    SCANS: a DICOM series (folder or .zip), a NIfTI file or an 8-bit PNG slice; MR runs take one
    file per contrast in the run's channel order (or one 4-D NIfTI).
    Examples:
      tfganaug predict runs/seg-cyc patient/PATIENT_DICOM.zip --out patient-organs.nii.gz
      tfganaug predict saved_models/unet scan.nii.gz --out scan-organs.nii.gz
      tfganaug predict runs/seg-brats case_flair.nii.gz case_t1ce.nii.gz --out case-tumour.nii.gz
      tfganaug predict --server grpc://localhost:8500 --model unet --classes background,liver,kidney,spleen \\
          --window 400,50 scan.nii.gz --out scan-organs.nii.gz
    """
    from tfganaug.stages.predict import format_volumes, predict, served_segmenter, volumes_path
    if server is None:
        _only_with(ctx, "--server", "model", "model_version", "classes", "channels", "window", "mr_norm",
                   "patch_depth", "timeout")
        if len(paths) < 2:
            ctx.fail("give MODEL and at least one scan (or --server with --model)")
        segmenter, scans = paths[0], paths[1:]
    else:
        if not model:
            ctx.fail("--server needs --model (the served model's name)")
        if window is not None:
            text = window
            try:
                window = tuple(float(v) for v in text.split(","))
            except ValueError:
                window = ()
            if len(window) != 2 or not all(math.isfinite(v) for v in window) or not 0 < window[0] <= 10_000:
                ctx.fail(f"--window: expected WW,WL in HU with 0 < WW <= 10000, such as 400,50, got {text!r}")
        segmenter = served_segmenter(server, model, class_names=_csv(classes), channel_names=_csv(channels),
                                     window=window, mr_norm=mr_norm, patch_depth=patch_depth,
                                     version=model_version, batch_size=batch_size, timeout_s=timeout)
        scans = paths
    record = predict(segmenter, scans, out, overwrite=overwrite, batch_size=batch_size)
    click.echo(format_volumes(record))
    click.echo(f"wrote {out} and {volumes_path(out)}")


@app.command("study")
@click.option("--paper", type=Choice(STUDIES.names()), default="frid-adar",
              show_default=True, help="frid-adar: DCGAN/ACGAN + lesion CNN; kits: Pix2Pix + U-Net; sandfort: "
              "CycleGAN + U-Net (contrast -> non-contrast); son: StyleGAN2 + U-Net (BraTS).")
@click.option("--budget", type=Choice(["smoke", "demo", "cpu", "cpu-curvas", "paper"]), default="demo",
              show_default=True,
              help="smoke: seconds, plumbing only; demo: minutes on a laptop CPU; cpu: the labelled CPU budget "
                   "of reports/; cpu-curvas (sandfort): cpu on IRCADb + CURVAS; paper: the paper's settings (GPU).")
@click.option("--data", type=Text(), metavar="NAME|PATH", default="phantom", show_default=True,
              help="phantom, organamnist, or a path (see train-gan).")
@click.option("--classes", type=Names(), default=None,
              help="Comma-separated class names (organamnist default: liver,kidney-left,spleen).")
@click.option("--train-per-class", type=PER_CLASS, default=None,
              help="Training ROIs per class (default: the budget's).")
@click.option("--seeds", type=Seeds(MAX_SEED), default=None,
              help="Comma-separated seeds (default: the budget's).")
@click.option("--out", required=True, type=FsPath(file_okay=False))
@click.option("--report", "report_dir", type=FsPath(file_okay=False), default=None,
              help="Write the report here (default: OUT/report).")
@click.option("--gan-training", type=Choice(["small-data", "paper"]), default="small-data", show_default=True,
              help="frid-adar: small-data (DiffAugment, EMA G, resize upsampling: the cpu_* presets) or paper "
                   "(the papers' training at the same budget, for before/after comparisons).")
@click.option("--quiet", is_flag=True)
def study_cmd(paper, budget, data, classes, train_per_class, seeds, out, report_dir, gan_training, quiet):
    """A whole study: GAN(s), synthesis, task models with/without synthetic data, evaluation, report.

    \b
    Example: tfganaug study --budget demo --out runs/demo
             tfganaug study --budget cpu --data organamnist --out runs/frid-adar --report reports/frid-adar
             tfganaug study --paper kits --budget cpu --out runs/kits --report reports/kits-pix2pix
             tfganaug study --paper son --budget smoke --out runs/son-smoke      (seconds; plumbing only)
    Segmentation studies have budgets smoke and cpu (sandfort also cpu-curvas); their data is fixed by the budget.
    Rerun the same command after a crash: finished stages are kept, unfinished ones resume.
    """
    from tfganaug.studies import STUDIES
    report = Path(report_dir or Path(out) / "report")  # checked now, not after hours of training
    if report.exists() and (not report.is_dir() or (any(report.iterdir()) and not (report / "report.md").exists())):
        click.get_current_context().fail(f"--report: expected a new folder or an earlier report (with report.md), "
                                         f"got {report}, which holds other files")
    module = STUDIES.get(paper)
    study = module.run_study(out, budget=budget, seeds=seeds, verbose=0 if quiet else 2, data=data,
                             classes=_csv(classes), train_per_class=train_per_class, gan_training=gan_training)
    click.echo(f"report: {module.write_report(study, report_dir or Path(out) / 'report')}")


@app.command("reproduce")
@click.argument("paper", type=Choice(["all", *STUDIES.names()]))
@click.option("--budget", type=Choice(["smoke", "demo", "cpu", "cpu-curvas", "paper"]), default="smoke",
              show_default=True,
              help="smoke: minutes on phantoms, plumbing only; cpu: the labelled CPU budget of reports/ (hours on "
                   "2 cores); paper: the papers' settings (GPU); demo: frid-adar only. A budget a paper lacks is "
                   "refused before anything runs.")
@click.option("--seeds", type=Seeds(MAX_SEED), default=None, help="Comma-separated seeds (default: each budget's).")
@click.option("--out", required=True, type=FsPath(file_okay=False), help="Study folders, one per paper.")
@click.option("--reports", "report_dir", type=FsPath(file_okay=False), default=None,
              help="Report folders and their README.md summary (default: OUT/reports; reports/ replaces the "
                   "committed ones).")
@click.option("--quiet", is_flag=True)
def reproduce_cmd(paper, budget, seeds, out, report_dir, quiet):
    """A paper's whole protocol, data to report (or all four), then the summary table of the reports.

    \b
    Examples:
      tfganaug reproduce all --budget smoke --out runs/reproduce            (phantoms; plumbing only)
      tfganaug reproduce kits --budget cpu --out runs/kits --reports reports
      tfganaug reproduce all --budget cpu --out runs/all --reports reports  (hours on a CPU)
    Rerun the same command after a crash or a stop: finished stages are kept, unfinished ones resume.
    """
    from tfganaug.studies.reproduce import reproduce
    log = (lambda _: None) if quiet else click.echo
    summary = reproduce(paper, budget, out, reports=report_dir, seeds=seeds, verbose=0 if quiet else 2, log=log)
    click.echo(f"summary: {summary}")


@app.command("report-summary")
@click.argument("reports_dir", type=FsPath(file_okay=False))
@click.option("--out", default=None, type=FsPath(dir_okay=False), help="Default: REPORTS_DIR/README.md.")
def report_summary_cmd(reports_dir, out):
    """One table over all paper reports (claim, paper's figure, ours with CI, data, test patients,
    budget, seeds, verdict), from the summary.json beside each report.

    \b
    Example: tfganaug report-summary reports            (writes reports/README.md)
    """
    from tfganaug.studies.summary import write_summary
    click.echo(f"summary: {write_summary(reports_dir, out or Path(reports_dir) / 'README.md')}")


@app.command("report")
@click.argument("study_dir", type=FsPath())
@click.option("--out", required=True, type=FsPath(file_okay=False))
def report_cmd(study_dir, out):
    """Write report.md + figures from a study folder (tables with the paper's figures beside ours).

    \b
    Example: tfganaug report runs/frid-adar --out reports/frid-adar
    """
    from tfganaug.studies.base import write_study_report
    click.echo(f"report: {write_study_report(study_dir, out)}")


@app.command("report-gan-training")
@click.argument("study_dir", type=FsPath())
@click.option("--out", required=True, type=FsPath(file_okay=False))
def report_gan_training_cmd(study_dir, out):
    """The five GANs with the papers' training against the small-data training (one gan-training study).

    \b
    Example: tfganaug reproduce gan-training --budget cpu --out runs --reports runs/reports
             tfganaug report-gan-training runs/gan-training --out reports/gan-training
    """
    from tfganaug.studies.gan_training import write_report
    click.echo(f"report: {write_report(study_dir, out)}")


@app.command("bench")
@click.option("--preset", type=Choice(["smoke", "quick", "paper"]), default="quick", show_default=True,
              help="quick: 32 px, widths 32/64, U-Nets at 64 px, a few minutes; paper: 64 px, width 1024, batch 64, "
                   "U-Nets at 128 px (slow on CPU); smoke: toy sizes, checks that it runs.")
@click.option("--precision", type=Choice(["float32", "mixed_bfloat16", "all"]), default="float32",
              show_default=True, help="all: every row in float32 and in mixed_bfloat16.")
@click.option("--out", type=FsPath(file_okay=False), default="reports/bench", show_default=True,
              help="Folder for bench.md.")
@click.option("--steps", type=IntRange(1, 10_000), default=None, hidden=True, help="Override timed steps.")
@click.option("--warmup", type=IntRange(1, 10_000), default=None, hidden=True, help="Override warm-up steps.")
@click.option("--only", type=Choice(["serve_latency", "predict_scale", "train_scale"]), multiple=True,
              help="Run only these serving / memory rows (repeatable) and replace them in OUT/bench.json and "
                   "OUT/bench.md, keeping the other rows.")
def bench_cmd(preset, precision, out, steps, warmup, only):
    """Time GAN and CNN training steps, the input chain, SavedModel latency and predict, and peak memory
    as the data grows 10x; print the tables and write OUT/bench.md.

    \b
    Example: tfganaug bench --preset quick --precision all --out reports/bench
             tfganaug bench --only predict_scale --only train_scale --out reports/bench
    """
    from tfganaug.bench import bench_command, format_table, merge_rows, row_summary, run_bench, write_bench_report
    rows = run_bench(preset, precision, steps=steps, warmup=warmup, only=only or None,
                     log=lambda r: click.echo(row_summary(r), err=True))
    click.echo(format_table(rows))
    command = bench_command(preset, precision, out, steps, warmup) + "".join(f" --only {k}" for k in only)
    if only:
        rows, previous = merge_rows(out, rows, only)
        command = f"{previous}, then `{command}`" if previous else command
    path = write_bench_report(rows, out, command=command)
    click.echo(f"report: {path}")


def _print_cfg(cfg):
    from tfganaug import config as config_lib
    click.echo(json.dumps(config_lib.to_dict(cfg), indent=2))


def main(argv=None):
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app.main(args=argv, prog_name="tfganaug", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `tfganaug` alone: the help, as Click prints it
        click.echo(exc.ctx.get_help(), err=True)
        sys.exit(2)
    except click.UsageError as exc:  # one line, as for every other user mistake (Click prints three)
        click.echo(f"error: {usage_line(exc)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(2)
    except TfganaugError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: rerun the same command to resume from the last checkpoint", err=True)
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
