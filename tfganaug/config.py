"""Configurations as dataclasses, one preset per paper, JSON in and out.

Units live in the names or the docstrings. A run folder holds the resolved configuration
(`config.json`) written before training starts, so any result can be reproduced from its
folder: `tfganaug train-gan --config runs/x/config.json --out runs/y`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfganaug.errors import ConfigError


MAX_SEED = 2**32 - 1      # NumPy's and TensorFlow's seed range
MAX_IMAGE_SIZE = 1024     # the papers use 64-256 px; larger is a typo or a whole-scan size
MAX_CONFIG_BYTES = 2**20  # a resolved config.json is about 4 kB
MAX_EPOCHS = 100_000      # the papers train 50-200 epochs
MAX_BATCH_SIZE = 4096     # the papers use 1-64
MAX_WIDTH = 4096          # GAN width (paper 1024); 2**40 would be built before anything else fails
MAX_UNET_DEPTH = 8        # the papers' U-Nets have depth 4; a 1024 px slice halves at most 10 times
DIFFAUG_POLICIES = ("translation", "cutout", "intensity")  # gans/augment.py implements them


def parse_policy(text: str | None) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' / None / 'none' -> (); an unknown
    name raises ValueError listing the known ones. Case-insensitive; duplicates dropped."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in (text or "").split(",") if n.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in DIFFAUG_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment op(s) {unknown}; known: {', '.join(DIFFAUG_POLICIES)} (or 'none')")
    return names


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
    n_phantom_patients: int = 400      # phantom only: patients (lesion phantom: 1-3 lesions each)
    seed: int = 0                      # seeds subsampling and patient splits
    # Segmentation sources (kits19, brats, phantom-kidney, ...: see tfganaug/data/segsets.py)
    window_width: float = 400.0        # CT window in HU (KiTS capstone: WW 400 / WL 0), then [0, 1]
    window_level: float = 0.0
    # MR onto [0, 1] (tfganaug/data/segsets.py), per volume and per contrast: "percentile" clips
    # the brain voxels at the mr_percentiles of that contrast's brain voxels and maps that range
    # linearly onto [0, 1], background 0; "zscore" clips the z-scores at +-zscore_clip and maps
    # [-clip, clip] onto [0, 1] (brain tissue at 0.4-0.6, background 0.5). Every run before
    # mr_norm existed was a z-score run: `load` reads a config.json without mr_norm as "zscore".
    mr_norm: str = "percentile"        # percentile | zscore
    mr_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])  # low, high, in percent
    zscore_clip: float = 5.0           # mr_norm zscore: z-scores clipped to +-this, then mapped to [0, 1]
    contrasts: list[str] | None = None # MR contrasts to read, in channel order (None: the source's default)
    empty_slice_fraction: float = 0.25 # share of slices without foreground kept per case
    max_slices_per_case: int | None = None
    phantom_size: int = 128            # segmentation phantoms: slice side in pixels before resizing
    train_patients: int | None = None  # small-real-set regime: keep this many training patients
    folds: int | None = None           # k-fold by patient (Sandfort et al.): test = fold `fold`, val from the rest
    fold: int = 0
    # train-seg (2-D U-Net): prepare cases one at a time and keep their slices on disk, read per
    # element by the tf.data chain, so memory does not grow with the number of cases (data/slicestore.py)
    stream: bool = False

    def __post_init__(self):
        if isinstance(self.mr_percentiles, tuple):  # as JSON writes it, so a resumed run compares equal
            self.mr_percentiles = list(self.mr_percentiles)


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
    augment: str = "none"              # none | classic (ROIs) | flip (paired images/masks, Son et al.)
    # Pix2Pix (Isola et al. 2017): label map -> image
    lambda_l1: float = 100.0
    g_dropout: float = 0.5             # dropout in the first 3 decoder blocks
    norm: str = "instance"             # instance | batch
    # CycleGAN (Zhu et al. 2017): domain A = data.name, domain B = domain_b
    domain_b: str | None = None
    n_res_blocks: int = 9              # 9 at 256 px, 6 at 128 px
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5       # relative to lambda_cycle
    pool_size: int = 50
    decay_start_epoch: int | None = None  # linear lr decay to 0 from here (None: half of the epochs)
    # StyleGAN2 (Karras et al. 2020); resolution = data.image_size, z_dim = latent_dim
    w_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    style_mixing_prob: float = 0.9
    ema_beta: float = 0.999
    beta_2: float = 0.999              # Adam beta_2 (StyleGAN2: 0.99)
    # Training tricks for 60-200 training images (gans/augment.py, gans/base.py); all off in
    # the paper presets. cpu_dcgan / cpu_acgan switch them on and say so; cpu_pix2pix,
    # cpu_cyclegan and cpu_stylegan2 leave them off, as measured (comments at those presets).
    diffaug: str = "none"              # DiffAugment policies D sees, e.g. "translation,cutout,intensity" (Zhao et al. 2020)
    ada_target: float | None = None    # ADA (Karras et al. 2020): steer p so E[sign D(real)] ~ target (paper 0.6); None: off
    ada_interval: int = 4              # ADA: steps between p updates
    ada_speed_images: int = 20000      # ADA: images for p to move by 1 (paper: 500k on long runs; shorter for CPU budgets)
    g_ema_beta: float = 0.0            # EMA of G's weights for dcgan/acgan/pix2pix/cyclegan (0: off; stylegan2 uses ema_beta)
    conditioning: str = "multiply"     # acgan G: multiply (z x class embedding, the paper's code) | concat (z ++ one-hot)
    d_classifies_fakes: bool = True    # acgan D: class loss on fakes too (Odena et al.); False: on reals only (gans/acgan.py)
    mode_seeking: float = 0.0          # acgan G: weight of Mao et al. 2019's mode-seeking term (0: off, the paper)
    upsample: str = "transpose"        # dcgan/acgan/pix2pix/cyclegan G: transpose (paper) | resize (nearest 2x + conv, no checkerboard)
    g_layout: str = "paper"            # dcgan/acgan G: paper (start at image/16) | sngan (start at image/8, 3x3 conv to the image; gans/dcgan.py)


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
class SegConfig:
    """Segmentation U-Net (tasks/unet.py) trained on real and/or synthetic slices."""

    unet: str = "kits_light"           # kits_light | kits_heavy | sandfort | son (2-D, tasks/unet.py) | sandfort3d (tasks/unet3d.py)
    patch_depth: int = 16              # 3-D U-Net only: slices per training window
    base_filters: int | None = None    # overrides of the preset (None: the preset's)
    depth: int | None = None
    padding: str | None = None         # valid (paper, overlap-tile mirror padding) | same
    output: str | None = None          # sigmoid (one channel per foreground class) | softmax (with background)
    norm: str | None = None            # batch | group | instance | none (None: the preset's)
    loss: str = "dice"                 # dice (soft Dice, s = dice_smooth) | dice_ce
    dice_smooth: float = 1.0           # Sandfort et al.: s = 1 in training (s = 0 when scoring)
    batch_dice: bool = True            # Dice summed over the batch (segmentation_models' DiceLoss), not per image
    lr: float = 1e-3                   # Adam
    lr_schedule: str = "constant"      # constant | cosine (to 0 over the run)
    epochs: int = 50
    batch_size: int = 16
    steps_per_epoch: int | None = None
    augment: str = "flip"              # none | flip | standard (Sandfort: flips, crop, rotation, elastic) | histeq
    histeq_reference: str | None = None  # histeq: source of the target (non-contrast) histogram
    synthetic: str | None = None       # folder written by `tfganaug synthesize`
    synthetic_ratio: float = 0.0       # expected share of synthetic slices per batch
    setting: str | None = None         # Son et al.: 100R, 100F, 100F+100R, 300F+100R, 300A+100R


UNET_2D = ("kits_light", "kits_heavy", "sandfort", "son")   # tasks.unet.UNET_PRESETS
UNET_3D = ("sandfort3d",)                                    # tasks.unet3d.UNET3D_PRESETS
UNET_NAMES = UNET_2D + UNET_3D


@dataclass
class RunConfig:
    """Everything one training run needs; written to `<run>/config.json` before it starts."""

    kind: str = "gan"                  # gan | cls | seg
    data: DataConfig = field(default_factory=DataConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    cls: ClassifierConfig = field(default_factory=ClassifierConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    seed: int = 0                      # seeds weights, noise, shuffling and augmentation
    deterministic: bool = True         # tf.config.experimental.enable_op_determinism()
    precision: str = "float32"         # float32 | mixed_bfloat16 (CPU) | mixed_float16 (GPU)
    keep_checkpoints: int = 3
    distribute: str = "none"           # none | mirrored (this machine's devices) | multiworker (TF_CONFIG)
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
    # Labelled CPU budgets: the same networks, narrower and shorter, plus the small-data tricks
    # the papers did not use (each one is a key of its own, so a run can switch it off):
    # DiffAugment translation + cutout on everything D sees, an EMA generator (beta 0.99) for
    # samples, synthesis and export, and resize-then-convolve upsampling. ACGAN also drops D's
    # dropout (with 40-60 ROIs per class it kept D from learning the classes) and appends the
    # one-hot label to z instead of multiplying z by a class embedding (which collapsed to one
    # image per class), and trains D's class head on real ROIs only (d_classifies_fakes False;
    # with Odena et al.'s fake term G and D agreed on class cues the real ROIs lack: gans/acgan.py)
    # and adds Mao et al.'s mode-seeking term to G's loss (one image per class otherwise).
    # The EMA generators of both recompute their own batch-norm statistics (gans/base.py).
    # Both generators use Miyato et al. 2018's 32 px layout (g_layout sngan: start at image/8, a
    # 3x3 convolution writes the image): the paper's layout, from 2x2 at 32 px, drew near-identical
    # grainy crops (gans/dcgan.py). Without them, 400-2,000 CPU steps gave noise and one collapsed
    # checkerboard (the sample grids of reports/frid-adar before this change).
    "cpu_dcgan": {"kind": "gan", "data": {"image_size": 32},
                  "gan": {"arch": "dcgan", "width": 128, "kernel_size": 5, "lr": 2e-4,
                          "epochs": 60, "batch_size": 32, "diffaug": "translation,cutout",
                          "g_ema_beta": 0.99, "upsample": "resize", "g_layout": "sngan"}},
    "cpu_acgan": {"kind": "gan", "data": {"image_size": 32},
                  "gan": {"arch": "acgan", "width": 128, "kernel_size": 3, "d_dropout": 0.0,
                          "lr": 2e-4, "epochs": 60, "batch_size": 32, "diffaug": "translation,cutout",
                          "g_ema_beta": 0.99, "upsample": "resize", "g_layout": "sngan", "conditioning": "concat",
                          "d_classifies_fakes": False, "mode_seeking": 1.0}},
    # CPU segmentation presets use soft Dice + cross-entropy: with 16-100 training slices, Dice
    # alone (the papers' loss) learned slowly or collapsed to empty predictions in our runs.
    # SGD at lr 1e-2 (paper 1e-3): the paper's 150 epochs over a many-fold augmented set are
    # far more steps than a CPU budget; at 1e-3 the CNN is still at chance after 600 steps.
    "cpu_cnn": {"kind": "cls", "data": {"image_size": 32},
                "cls": {"lr": 1e-2, "epochs": 20, "batch_size": 32, "steps_per_epoch": 30}},
    # KiTS19 capstone: Pix2Pix label map -> CT slice (Isola et al. settings), U-Net kidney/tumour.
    "kits_pix2pix": {"kind": "gan", "data": {"name": "kits19", "image_size": 256},
                     "gan": {"arch": "pix2pix", "width": 64, "lr": 2e-4, "beta_1": 0.5, "epochs": 200,
                             "batch_size": 1, "augment": "flip", "sample_every_epochs": 10}},
    # No DiffAugment / EMA / resize upsampling here: at the kits cpu budget (kits19 128 px, width 32,
    # 600 steps on 16 slices of one case) translation,cutout + g_ema_beta 0.99 + resize made the CT
    # blurrier (Laplacian std of the fakes 0.08-0.10 vs 0.11-0.12 without, real 0.13-0.15), broke the
    # couch into a dotted line and striped the body on unseen label maps, and doubled the
    # checkerboard index (training / other patients' label maps 1.4e-4 / 1.7e-4 vs 0.7e-4 / 0.8e-4;
    # real slices 0.4-0.5e-4). The L1 term (lambda 100) ties G to the pairs, so an overfitting D is
    # not what limits Pix2Pix here; the 16 training slices of one patient are. A joint flip /
    # +-10 degree rotation / 8 % shift / 0.9-1.1 scale of the training pairs did not help either
    # (blurrier body with a grid pattern; fakes from other patients' maps segmented at 0.66x the
    # real kidney Dice after 480 steps vs 0.70x without after 344). What made the kits fakes look
    # like CT is rendering them from perturbed training maps (studies/kits_capstone.py).
    "cpu_pix2pix": {"kind": "gan", "data": {"name": "phantom-kidney", "image_size": 64, "n_phantom_patients": 12},
                    "gan": {"arch": "pix2pix", "width": 16, "lr": 2e-4, "beta_1": 0.5, "epochs": 20,
                            "batch_size": 8, "augment": "flip", "sample_every_epochs": 5}},
    # The zero-training baseline (gans/labels2image.py): one pass over the training pairs fits it.
    "cpu_labels2image": {"kind": "gan", "data": {"name": "phantom-kidney", "image_size": 64, "n_phantom_patients": 12},
                         "gan": {"arch": "labels2image", "epochs": 1, "batch_size": 16, "sample_every_epochs": 1}},
    "kits_unet": {"kind": "seg", "data": {"name": "kits19", "image_size": 256},
                  "seg": {"unet": "kits_light", "loss": "dice", "lr": 1e-3, "lr_schedule": "cosine",
                          "epochs": 100, "batch_size": 8, "augment": "flip"}},
    "cpu_unet_kits": {"kind": "seg", "data": {"name": "phantom-kidney", "image_size": 64, "n_phantom_patients": 12},
                      "seg": {"unet": "kits_light", "base_filters": 8, "depth": 3, "padding": "same", "norm": "batch",
                              "loss": "dice_ce", "lr": 1e-3, "lr_schedule": "cosine", "epochs": 15,
                              "batch_size": 16, "augment": "flip"}},
    # Sandfort et al. 2019: CycleGAN contrast -> non-contrast CT; U-Net liver/kidney/spleen.
    "sandfort_cyclegan": {"kind": "gan", "data": {"name": "ircadb", "image_size": 256},
                          "gan": {"arch": "cyclegan", "domain_b": "totalseg-native", "width": 64,
                                  "n_res_blocks": 9, "lr": 2e-4, "beta_1": 0.5, "epochs": 200,
                                  "batch_size": 1, "sample_every_epochs": 10}},
    # No DiffAugment / EMA / resize upsampling here either: on this phantom (300 steps) they removed
    # the grain of the translations (checkerboard index 3.8e-5 vs 1.4e-4, native target 1.0e-5) but
    # blurred them (Laplacian std 0.05 vs 0.11, target 0.10) and left the contrast-enhanced kidney
    # brighter (mean 0.69 vs 0.61; native target 0.56, contrast source 0.92): the translation
    # itself got worse. On real CT (the sandfort cpu budget, 128 px) the transposed convolutions
    # speckled the translations with a checkerboard, and that budget switches resize on alone
    # (measured in studies/sandfort.py).
    "cpu_cyclegan": {"kind": "gan", "data": {"name": "phantom-abdomen", "image_size": 64, "n_phantom_patients": 12},
                     "gan": {"arch": "cyclegan", "domain_b": "phantom-abdomen-native", "width": 16,
                             "n_res_blocks": 3, "lr": 2e-4, "beta_1": 0.5, "epochs": 10, "batch_size": 4,
                             "steps_per_epoch": 50, "sample_every_epochs": 5}},
    "sandfort_unet": {"kind": "seg", "data": {"name": "ircadb", "image_size": 256, "window_width": 400.0,
                                              "window_level": 50.0, "val_fraction": 0.05, "test_fraction": 0.2},
                      "seg": {"unet": "sandfort", "loss": "dice", "dice_smooth": 1.0, "lr": 1e-3,
                              "epochs": 100, "batch_size": 8, "augment": "standard"}},
    "cpu_unet_abdomen": {"kind": "seg", "data": {"name": "phantom-abdomen", "image_size": 64,
                                                 "n_phantom_patients": 12, "window_width": 400.0,
                                                 "window_level": 50.0},
                         "seg": {"unet": "sandfort", "base_filters": 8, "depth": 3, "loss": "dice_ce",
                                 "lr": 1e-3, "lr_schedule": "cosine", "epochs": 15, "batch_size": 16,
                                 "augment": "standard"}},
    # Sandfort et al.'s 3-D U-Net (leaky ReLU, group norm of 16 channels, strided convolutions) on
    # windows of consecutive slices: the paper's network, for GPUs (volumes at 192 px in-plane)...
    "sandfort_unet3d": {"kind": "seg", "data": {"name": "ircadb", "image_size": 192, "window_width": 400.0,
                                                "window_level": 50.0, "val_fraction": 0.05, "test_fraction": 0.2},
                        "seg": {"unet": "sandfort3d", "patch_depth": 64, "loss": "dice", "dice_smooth": 1.0,
                                "lr": 1e-3, "epochs": 100, "batch_size": 2, "augment": "standard"}},
    # ... and a labelled CPU budget: 64 px, 16-slice windows, depth 3, 8 base filters.
    "cpu_unet3d_abdomen": {"kind": "seg", "data": {"name": "phantom-abdomen", "image_size": 64,
                                                   "n_phantom_patients": 12, "window_width": 400.0,
                                                   "window_level": 50.0},
                           "seg": {"unet": "sandfort3d", "base_filters": 8, "depth": 3, "patch_depth": 16,
                                   "loss": "dice_ce", "lr": 1e-3, "lr_schedule": "cosine", "epochs": 15,
                                   "batch_size": 2, "augment": "standard"}},
    # Son et al.: StyleGAN2 with 4 MR contrasts + tumour mask (256 px), U-Net on real/fake mixtures.
    "son_stylegan2": {"kind": "gan", "data": {"name": "brats", "image_size": 256, "val_fraction": 0.1,
                                              "test_fraction": 0.0},
                      "gan": {"arch": "stylegan2", "latent_dim": 512, "w_dim": 512, "mapping_layers": 8,
                              "channel_base": 16384, "channel_max": 512, "lr": 2.5e-3, "beta_1": 0.0,
                              "beta_2": 0.99, "r1_gamma": 10.0, "epochs": 100, "batch_size": 16,
                              "augment": "flip", "sample_every_epochs": 5}},
    # CPU StyleGAN2. The Son study's cpu budget (studies/son.py: brats2018, 4 contrasts + mask, 32 px,
    # 700 slices, 3,000 steps of batch 8) adds to the paper's training: narrow widths (channel_base
    # 1024, max 64), a 4-layer mapping, no path-length regulariser (pl_weight 0, as StyleGAN2-ADA's
    # small-data configurations; one G pass less every 4 steps) and a faster G EMA (0.995). With the
    # percentile MR normalisation (data.mr_norm) it draws recognisable brains (outline, ventricles,
    # contrasts that agree across channels, though blurred) with oedema masks on FLAIR-bright spots,
    # no necrosis or enhancing labels. No DiffAugment / ADA, measured at that budget (seed 0): ADA
    # (target 0.6) let p rise to 0.25 by step 1,200 and fall to 0 by step 3,000; its fixed-z grid had
    # 3 of 6 near-black slices (none: 1 of 6) and the real-trained U-Net's oedema Dice on its
    # synthetic set was 0.25 (none: 0.27; on real held-out slices 0.27), though it drew some
    # enhancing tumour (0.16% of pixels) that the U-Net never found.
    "cpu_stylegan2": {"kind": "gan", "data": {"name": "phantom-brain", "image_size": 32, "n_phantom_patients": 12,
                                              "phantom_size": 64},
                      "gan": {"arch": "stylegan2", "latent_dim": 64, "w_dim": 64, "mapping_layers": 2,
                              "channel_base": 512, "channel_max": 64, "lr": 2.5e-3, "beta_1": 0.0,
                              "beta_2": 0.99, "r1_gamma": 1.0, "ema_beta": 0.99, "epochs": 10,
                              "batch_size": 16, "steps_per_epoch": 50, "augment": "flip",
                              "sample_every_epochs": 5}},
    "son_unet": {"kind": "seg", "data": {"name": "brats", "image_size": 256, "val_fraction": 0.1,
                                         "test_fraction": 0.0},
                 "seg": {"unet": "son", "loss": "dice", "lr": 1e-3, "epochs": 100, "batch_size": 16,
                         "augment": "none"}},
    "cpu_unet_brats": {"kind": "seg", "data": {"name": "phantom-brain", "image_size": 32, "n_phantom_patients": 12,
                                               "phantom_size": 64},
                       "seg": {"unet": "son", "base_filters": 8, "depth": 3, "loss": "dice_ce", "lr": 1e-3,
                               "lr_schedule": "cosine", "epochs": 15, "batch_size": 16, "augment": "none"}},
}


GAN_ARCHS = ("dcgan", "acgan", "pix2pix", "cyclegan", "stylegan2", "labels2image")


def parse_setting(setting: str) -> dict:
    """Son et al.'s training-set names: '300F+100R' -> {'R': 1.0, 'F': 3.0, 'A': 0.0}
    (F: synthetic, A: flip-augmented real copies, in percent of the real set; '%' optional)."""
    out = {"R": 0.0, "F": 0.0, "A": 0.0}
    for term in setting.replace("%", "").upper().split("+"):
        term = term.strip()
        if len(term) < 2 or term[-1] not in out or not term[:-1].isdigit():
            raise ValueError(f"unknown term '{term}'; terms are <percent>R, <percent>F or <percent>A")
        out[term[-1]] += int(term[:-1]) / 100.0
    if out["R"] == 0 and out["A"] > 0:
        raise ValueError("A (augmented real) needs R")
    if sum(out.values()) == 0:
        raise ValueError("an empty training set")
    return out


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
        if not sub:
            _check_type(names[key], value, f"{where}: {key}" if cls is RunConfig else f"{where}.{key}")
        kwargs[key] = _from_dict(sub, value, f"{where}: {key}") if sub else value
    return cls(**kwargs)


_SCALARS = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
            "bool": ((bool,), "true or false")}
_PLURALS = {"int": "integers", "float": "finite numbers", "str": "strings", "bool": "booleans"}


def _check_type(f: dataclasses.Field, value, where: str) -> None:
    """A field gets a value of its annotated type (an int where a float is wanted, too; never a
    bool for a number; a finite float; a list of such for list[...]), or None where the
    annotation allows it: one line otherwise."""
    parts = [p.strip() for p in str(f.type).split("|")]
    kinds = [p for p in parts if p != "None"]
    if len(kinds) != 1 or (value is None and "None" in parts):
        return
    kind, null = kinds[0], " or null" if "None" in parts else ""
    if kind.startswith("list[") and kind[5:-1] in _SCALARS:
        if not isinstance(value, (list, tuple)) or not all(_is_a(kind[5:-1], v) for v in value):
            raise ConfigError(f"{where}: expected a list of {_PLURALS[kind[5:-1]]}{null}, got {value!r}")
    elif kind in _SCALARS and not _is_a(kind, value):
        finite = kind == "float" and isinstance(value, float)  # the value is NaN or infinite
        raise ConfigError(f"{where}: expected {'a finite number' if finite else _SCALARS[kind][1]}{null}, got {value!r}")


def _is_a(kind: str, value) -> bool:
    types = _SCALARS[kind][0]
    if not isinstance(value, types) or (kind != "bool" and isinstance(value, bool)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


_NESTED = {(RunConfig, "data"): DataConfig, (RunConfig, "gan"): GANConfig,
           (RunConfig, "cls"): ClassifierConfig, (RunConfig, "seg"): SegConfig}


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
    """A paper or CPU preset, with nested overrides: `preset("cpu_acgan", data={"name": "organamnist"})`.
    Names match case-insensitively, as the CLI's choices do (`CPU_ACGAN` is `cpu_acgan`)."""
    name = next((known for known in PRESETS if known.lower() == str(name).lower()), name)
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}'{hint} (known: {', '.join(PRESETS)})")
    values = merge(merge(PRESETS[name], {"preset": name}), overrides)
    return from_dict(values, f"preset {name}")


def _upgrade(values: dict) -> dict:
    """A config.json written before a key existed, read with the behaviour it was run with.

    `data.mr_norm` (MR onto [0, 1]) came after `data.zscore_clip`, and every config.json that
    tfganaug writes holds every key: a data section with `zscore_clip` but no `mr_norm` is
    from a z-score run, so it stays one (its resumed training, synthesis and figures read MR
    as before). A hand-written config naming neither gets the current default.
    """
    data = values.get("data") if isinstance(values, dict) else None
    if isinstance(data, dict) and "zscore_clip" in data and "mr_norm" not in data:
        values = {**values, "data": {**data, "mr_norm": "zscore"}}
    return values


def load(path: str | Path) -> RunConfig:
    """A configuration file (e.g. a run folder's config.json); old files keep their behaviour (`_upgrade`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: expected a JSON configuration of at most {MAX_CONFIG_BYTES} bytes, "
                              f"got {size} bytes")
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: expected a JSON configuration, got unreadable content "
                          f"({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise ConfigError(f"{path}: expected a JSON configuration, got one nested too deeply to read "
                          "(RecursionError)") from None
    return from_dict(_upgrade(values), str(path))


def with_data(cfg: RunConfig, name: str) -> RunConfig:
    """A copy of `cfg` reading data set `name` with the same preprocessing."""
    return from_dict(merge(to_dict(cfg), {"data": {"name": name}}))


def validate(cfg: RunConfig, where: str = "config") -> None:
    def need(ok: bool, what: str, got: Any):
        if not ok:
            raise ConfigError(f"{where}: expected {what}, got {got!r}")

    need(cfg.kind in ("gan", "cls", "seg"), "kind gan, cls or seg", cfg.kind)
    need(cfg.gan.arch in GAN_ARCHS, "gan.arch one of " + ", ".join(GAN_ARCHS), cfg.gan.arch)
    _check_ranges(cfg, need)  # first: the image-size check below computes 2**seg.depth
    size = cfg.data.image_size
    smallest = {"stylegan2": 8, "cyclegan": 32}.get(cfg.gan.arch, 16) if cfg.kind == "gan" else 16
    if cfg.kind == "seg":  # a U-Net halves the side `depth` times (sandfort_unet3d: the paper's 192 px)
        step = 2 ** (cfg.seg.depth or 4)  # every U-Net preset has depth 4
        need(isinstance(size, int) and max(smallest, step) <= size <= MAX_IMAGE_SIZE and size % step == 0,
             f"data.image_size a multiple of {step} (2**seg.depth) in [{max(smallest, step)}, {MAX_IMAGE_SIZE}]",
             size)
    else:  # the GANs and the lesion CNN double / halve the side down to 4 px
        need(isinstance(size, int) and smallest <= size <= MAX_IMAGE_SIZE and size & (size - 1) == 0,
             f"data.image_size a power of two in [{smallest}, {MAX_IMAGE_SIZE}]", size)
    classes = [str(c).lower() for c in cfg.data.classes or []]
    need(len(classes) == len(set(classes)), "data.classes without repeats (names match case-insensitively)",
         cfg.data.classes)
    if cfg.gan.arch in ("dcgan", "acgan"):
        need(8 <= cfg.gan.width <= MAX_WIDTH and cfg.gan.width % 8 == 0, f"gan.width a multiple of 8 up to {MAX_WIDTH}",
             cfg.gan.width)
    else:
        need(1 <= cfg.gan.width <= MAX_WIDTH, f"gan.width an integer in [1, {MAX_WIDTH}]", cfg.gan.width)
    need(0.0 <= cfg.cls.synthetic_ratio <= 1.0, "cls.synthetic_ratio in [0, 1]", cfg.cls.synthetic_ratio)
    need(cfg.cls.synthetic_ratio == 0.0 or cfg.cls.synthetic, "cls.synthetic set when synthetic_ratio > 0",
         cfg.cls.synthetic)
    need(cfg.cls.augment in ("none", "classic"), "cls.augment none or classic", cfg.cls.augment)
    need(cfg.gan.augment in ("none", "classic", "flip"), "gan.augment none, classic or flip", cfg.gan.augment)
    need(cfg.gan.arch != "cyclegan" or cfg.kind != "gan" or bool(cfg.gan.domain_b),
         "gan.domain_b (the second domain's data) for cyclegan", cfg.gan.domain_b)
    need(cfg.gan.norm in ("instance", "batch"), "gan.norm instance or batch", cfg.gan.norm)
    try:
        parse_policy(cfg.gan.diffaug)
    except ValueError as exc:
        need(False, f"gan.diffaug a comma-separated list of policies ({exc})", cfg.gan.diffaug)
    need(cfg.gan.ada_target is None or (isinstance(cfg.gan.ada_target, (int, float))
                                        and 0.0 < cfg.gan.ada_target < 1.0),
         "gan.ada_target in (0, 1) or null", cfg.gan.ada_target)
    need(cfg.gan.upsample in ("transpose", "resize"), "gan.upsample transpose or resize", cfg.gan.upsample)
    need(cfg.gan.g_layout in ("paper", "sngan"), "gan.g_layout paper or sngan", cfg.gan.g_layout)
    need(cfg.gan.conditioning in ("multiply", "concat"), "gan.conditioning multiply or concat", cfg.gan.conditioning)
    seg = cfg.seg
    need(seg.unet in UNET_NAMES, "seg.unet one of " + ", ".join(UNET_NAMES), seg.unet)
    if seg.unet in UNET_3D:
        need(seg.padding in (None, "same"), "seg.padding same for the 3-D U-Net", seg.padding)
        need(seg.setting is None, "no seg.setting for the 3-D U-Net (Son et al.'s settings are 2-D)", seg.setting)
    need(seg.loss in ("dice", "dice_ce"), "seg.loss dice or dice_ce", seg.loss)
    need(seg.augment in ("none", "flip", "standard", "histeq"), "seg.augment none, flip, standard or histeq",
         seg.augment)
    need(seg.augment != "histeq" or bool(seg.histeq_reference), "seg.histeq_reference for augment histeq",
         seg.histeq_reference)
    need(seg.lr_schedule in ("constant", "cosine"), "seg.lr_schedule constant or cosine", seg.lr_schedule)
    need(seg.output in (None, "sigmoid", "softmax"), "seg.output sigmoid or softmax", seg.output)
    need(seg.padding in (None, "valid", "same"), "seg.padding valid or same", seg.padding)
    need(seg.norm in (None, "none", "batch", "group", "instance"), "seg.norm none, batch, group or instance",
         seg.norm)
    need(0.0 <= seg.synthetic_ratio <= 1.0, "seg.synthetic_ratio in [0, 1]", seg.synthetic_ratio)
    need(seg.synthetic_ratio == 0.0 or seg.synthetic, "seg.synthetic set when synthetic_ratio > 0",
         seg.synthetic)
    if seg.setting is not None:
        try:
            parse_setting(seg.setting)
        except ValueError as exc:
            need(False, f"seg.setting like 300F+100R ({exc})", seg.setting)
        need("F" not in seg.setting.upper() or bool(seg.synthetic), "seg.synthetic for a setting with F",
             seg.synthetic)
    need(cfg.data.folds is None or (isinstance(cfg.data.folds, int) and cfg.data.folds >= 2),
         "data.folds >= 2 or null", cfg.data.folds)
    need(cfg.data.folds is None or 0 <= cfg.data.fold < cfg.data.folds, "data.fold in [0, folds)", cfg.data.fold)
    need(0.0 <= cfg.data.empty_slice_fraction < 1.0, "data.empty_slice_fraction in [0, 1)",
         cfg.data.empty_slice_fraction)
    need(cfg.data.mr_norm in ("percentile", "zscore"), "data.mr_norm percentile or zscore", cfg.data.mr_norm)
    pct = cfg.data.mr_percentiles
    numbers = isinstance(pct, (list, tuple)) and len(pct) == 2 and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in pct)
    need(numbers and 0 <= pct[0] < pct[1] <= 100,
         "data.mr_percentiles [low, high] with 0 <= low < high <= 100", pct)
    need(isinstance(cfg.data.zscore_clip, (int, float)) and cfg.data.zscore_clip > 0, "data.zscore_clip > 0",
         cfg.data.zscore_clip)
    need(cfg.distribute in ("none", "mirrored", "multiworker"), "distribute none, mirrored or multiworker",
         cfg.distribute)
    need(cfg.precision in ("float32", "mixed_bfloat16", "mixed_float16"),
         "precision float32, mixed_bfloat16 or mixed_float16", cfg.precision)
    need(cfg.on_divergence in ("stop", "rollback"), "on_divergence stop or rollback", cfg.on_divergence)


MAX_COUNT = 10**6
"""The largest value any integer setting takes without a bound of its own (filters, steps, layers,
cases): the papers' largest is StyleGAN2's channel base 32,768; 10**9 would be allocated before
anything else fails."""
_RUN_LENGTH = {"epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH_SIZE)}
INT_BOUNDS = {"": {"seed": (0, MAX_SEED), "max_rollbacks": (1, MAX_COUNT)},
              "data": {"seed": (0, MAX_SEED), "train_per_class": (2, MAX_COUNT)},
              "gan": _RUN_LENGTH, "cls": _RUN_LENGTH, "seg": {**_RUN_LENGTH, "depth": (1, MAX_UNET_DEPTH)}}
"""Integer settings with bounds of their own, (low, high)."""
POSITIVE_INTS = {"data": ("n_phantom_patients", "phantom_size", "max_slices_per_case", "train_patients"),
                 "gan": ("latent_dim", "kernel_size", "steps_per_epoch", "w_dim", "mapping_layers", "channel_base",
                         "channel_max", "r1_interval", "pl_interval", "ada_interval", "ada_speed_images"),
                 "cls": ("kernel_size", "dense_units", "steps_per_epoch"),
                 "seg": ("patch_depth", "base_filters", "steps_per_epoch"),
                 "": ("keep_checkpoints",)}
"""Integer settings that must be at least 1 (the others, e.g. gan.pool_size or
gan.sample_every_epochs, take 0 for "none" / "never")."""
FLOAT_RANGES = {
    "data": {"val_fraction": (0.0, 1.0, "[0, 1)"), "test_fraction": (0.0, 1.0, "[0, 1)"),
             "window_width": (0.0, float("inf"), "> 0")},
    "gan": {"d_dropout": (0.0, 1.0, "[0, 1)"), "g_dropout": (0.0, 1.0, "[0, 1)"), "lr": (0.0, float("inf"), "> 0"),
            "beta_1": (0.0, 1.0, "[0, 1)"), "beta_2": (0.0, 1.0, "[0, 1)"), "ema_beta": (0.0, 1.0, "[0, 1)"),
            "g_ema_beta": (0.0, 1.0, "[0, 1)"), "style_mixing_prob": (0.0, 1.0, "[0, 1]"), "lambda_l1": (0.0, float("inf"), ">= 0"),
            "lambda_cycle": (0.0, float("inf"), ">= 0"), "lambda_identity": (0.0, float("inf"), ">= 0"),
            "r1_gamma": (0.0, float("inf"), ">= 0"), "pl_weight": (0.0, float("inf"), ">= 0"),
            "mode_seeking": (0.0, float("inf"), ">= 0")},
    "cls": {"dropout": (0.0, 1.0, "[0, 1)"), "lr": (0.0, float("inf"), "> 0"), "momentum": (0.0, 1.0, "[0, 1)")},
    "seg": {"lr": (0.0, float("inf"), "> 0"), "dice_smooth": (0.0, float("inf"), ">= 0")},
}


def _in_range(value: float, low: float, high: float, text: str) -> bool:
    """`text` says which ends are open: "[0, 1)", "[0, 1]", "> 0", ">= 0". A learning rate has
    no upper bound: a diverging one (tests/test_divergence.py) is what `on_divergence` is for."""
    above = value > low if text.startswith(("(", ">")) and not text.startswith(">=") else value >= low
    below = value <= high if text.endswith("]") or high == float("inf") else value < high
    return above and below


def _check_ranges(cfg: RunConfig, need) -> None:
    """Every integer setting in its INT_BOUNDS, else in [0, MAX_COUNT] (POSITIVE_INTS from 1;
    None, "not set", is not an integer and passes: its type was checked on reading), and every number of
    FLOAT_RANGES in its range: a config that would build a network of 10**12 filters or train at a
    learning rate of -1 is refused with the key named, before anything is built (issue 16)."""
    sections = {"": cfg, "data": cfg.data, "gan": cfg.gan, "cls": cfg.cls, "seg": cfg.seg}
    for section, obj in sections.items():
        prefix = f"{section}." if section else ""
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            low, high = INT_BOUNDS.get(section, {}).get(
                f.name, (1 if f.name in POSITIVE_INTS.get(section, ()) else 0, MAX_COUNT))
            need(low <= value <= high, f"{prefix}{f.name} an integer in [{low}, {high}]", value)
        for name, (low, high, text) in FLOAT_RANGES.get(section, {}).items():
            value = getattr(obj, name)
            need(_in_range(value, low, high, text), f"{prefix}{name} {text}", value)


# ------------------------------------------------------------------ one command's configuration

SYNTHETIC_RATIO = 0.5  # share of synthetic examples per batch when a synthetic set is given without one


def default_preset(kind: str, arch: str | None = None, data: str | None = None, unet: str | None = None) -> str:
    """The CPU preset of a command when none is named: cpu_<arch> for GANs, cpu_cnn for the
    classifier, and for U-Nets the preset of the data's anatomy (brain, abdomen, kidney) or
    the 3-D U-Net's."""
    if kind == "gan":
        return f"cpu_{arch or 'acgan'}"
    if kind == "cls":
        return "cpu_cnn"
    name = (data or "").lower()
    if unet == "sandfort3d":
        return "cpu_unet3d_abdomen"
    if "brat" in name or "brain" in name:
        return "cpu_unet_brats"
    if any(k in name for k in ("abdomen", "ircadb", "totalseg")):
        return "cpu_unet_abdomen"
    return "cpu_unet_kits"


def resolve(kind: str, preset_name: str | None, config_path, overrides: dict, seed: int) -> RunConfig:
    """The configuration of one training command: a config.json (`config_path`) or a preset
    (default: `default_preset`), then `overrides` ({section: {key: value}} or top-level keys;
    None means "not given"), then the seed. A synthetic set given without a ratio gets
    SYNTHETIC_RATIO (segmentation: unless a Son et al. setting says how much)."""
    if config_path:
        base = to_dict(load(config_path))
    else:
        base = to_dict(preset(preset_name or default_preset(
            kind, (overrides.get("gan") or {}).get("arch"), (overrides.get("data") or {}).get("name"),
            (overrides.get("seg") or {}).get("unet"))))
    overrides = {k: {kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v
                 for k, v in overrides.items() if v is not None}
    task = overrides.get(kind, {}) if kind in ("cls", "seg") else {}
    if task.get("synthetic") and task.get("synthetic_ratio") is None and not task.get("setting"):
        task["synthetic_ratio"] = SYNTHETIC_RATIO
    if config_path or preset_name:  # a named config keeps its architecture
        overrides.get("gan", {}).pop("arch", None)
    values = merge(base, overrides)
    values["seed"] = seed
    values["data"]["seed"] = seed
    cfg = from_dict(values, str(config_path) if config_path else f"preset {values.get('preset')}")
    if cfg.kind != kind:
        raise ConfigError(f"{config_path or 'preset ' + str(values.get('preset'))}: expected a '{kind}' configuration, got kind "
                          f"'{cfg.kind}'")
    return cfg
