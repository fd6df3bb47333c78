"""`tfganaug evaluate <gan run or synthetic set> --fidelity`: is it realistic, did it copy?

Writes ``fidelity.json`` and ``closest_pairs.png`` into the folder (each atomically; the
figure first, so a folder with fidelity.json has its figure):

* **Fidelity**, per named feature extractor (:mod:`tfganaug.metrics.fidelity`: ``radiomics``,
  ``domain``, ``inception_v3`` from ``--weights``, ``random_conv``, ``pixels``) and per image
  channel (each MR contrast on its own): FID, KID (mean and std over subsets) and k-NN
  precision/recall of the synthetic images against the real training split the generator
  learned from, each with the extractor's version and sha256. Beside them the same numbers for
  held-out real images against the same training split: the value a perfect generator would
  get with that many samples (FID is biased upwards for small sets).
* **Memorisation audit** (:func:`tfganaug.metrics.privacy.memorisation_audit`), in pixel space
  and in domain-feature space: every synthetic sample's distance to its nearest training
  image, against the same distance for held-out real images; the share closer than the 5th
  percentile of the held-out distances and whether that share exceeds 5 % beyond chance. The
  figure shows the closest pairs (synthetic above, its nearest training image below). A
  flag means "closer to the training images than new patients are", which is copying only
  when the held-out patients resemble the training ones: with one training patient (the
  KiTS PNG slices) any image drawn from its statistics is flagged; look at the figure.

Synthetic images come from a synthetic set's images.npz (its manifest names the generator run,
whose config names the real data) or, for a GAN run folder, are sampled from it as
`tfganaug synthesize` would (one image per training label map for Pix2Pix and labels2image,
which therefore sit close to their paired training images by construction: audit a set made
from other patients' label maps, ``synthesize --labels <source>``, for those).

The real reference is what the GAN trained on: its data's training split (CycleGAN: all of
domain B, which has no held-out part, so no audit). Held-out real images are the validation
and test splits. Feature statistics use at most ``max_real`` training images (seeded draw);
the audit uses every training image. :func:`fidelity_section` turns fidelity.json into the
"Fidelity" section of a study report.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np

from tfganaug import __version__
from tfganaug.errors import InputError, RunFolderError
from tfganaug.fsutil import atomic_write_json

FIDELITY_FILE = "fidelity.json"
FIGURE_FILE = "closest_pairs.png"
DEFAULT_EXTRACTORS = ("radiomics", "domain")
AUDIT_QUANTILE = 0.05


@dataclasses.dataclass
class RealSets:
    """The real images a generator is judged against (float32 (N, S, S, C) in [0, 1])."""

    train: np.ndarray
    targets: np.ndarray | None        # (N, K) one-hot classes of ROI data (domain encoder's auxiliary head)
    heldout: np.ndarray | None
    channel_names: tuple[str, ...]
    data: str
    reference: str                    # which split `train` is, in words


def real_sets(cfg) -> RealSets:
    """The training split the GAN of `cfg` learned from, its targets, and held-out real images."""
    from tfganaug.gans import GANS

    kind = GANS.get(cfg.gan.arch).data_kind
    if kind == "rois":
        from tfganaug.data.datasets import load_rois
        sets = load_rois(cfg.data)
        train = sets["train"]
        # OrganAMNIST's test split is its val split (the same object): each held-out set once
        held = [s.images for s in {id(s): s for name, s in sets.items() if name != "train"}.values()
                if len(s) and s is not train]
        return RealSets(train.images, np.eye(len(train.class_names), dtype=np.float32)[train.labels],
                        np.concatenate(held) if held else None, ("grey",), cfg.data.name, "training split")
    if kind == "paired":
        from tfganaug.data.segsets import concat_segsets, load_segsets
        sets = load_segsets(cfg.data)
        train = sets["train"]
        held = concat_segsets(sets["val"], sets["test"])
        return RealSets(train.images, None, held.images if len(held) else None, tuple(train.channel_names), cfg.data.name,
                        "training split")
    from tfganaug.stages.train_gan import domain_slices
    b = domain_slices(cfg, cfg.gan.domain_b)
    return RealSets(b.images, None, None, tuple(b.channel_names),
                    cfg.gan.domain_b, "domain B (all of it: the CycleGAN target)")


def _synthetic_of_set(folder: Path) -> tuple[np.ndarray, dict]:
    from tfganaug.synthetic import read_manifest, read_synthetic_manifest, read_synthetic_pairs, read_synthetic_rois
    kind = read_manifest(folder).get("kind", "classification")
    manifest = read_synthetic_manifest(folder, kind, {})
    images = read_synthetic_rois(folder)[0] if kind == "classification" else read_synthetic_pairs(folder)["images"]
    return np.asarray(images, np.float32), manifest


def _synthetic_of_run(run_dir: Path, n_train: int, max_samples: int) -> tuple[np.ndarray, dict]:
    from tfganaug.gans import GANS
    from tfganaug.runs import RunFolder
    from tfganaug.stages.synthesize import synthesize

    _, cfg = RunFolder.load(run_dir)
    # StyleGAN2 needs a count; ROI GANs get as many as the training set: both capped
    n = min(n_train, max_samples) if GANS.get(cfg.gan.arch).synthesises_from in ("noise", "labels") else None
    with tempfile.TemporaryDirectory(prefix="tfganaug-fidelity-") as tmp:
        out = Path(tmp) / "synthetic"
        synthesize(run_dir, n, out, seed=0, png=False)
        return _synthetic_of_set(out)


def _generator_config(folder: Path):
    """(GAN run config, "synthetic set" | "gan run", the generator run's path) of `folder`."""
    from tfganaug.runs import RunFolder
    from tfganaug.synthetic import read_manifest

    if (folder / "manifest.json").exists():
        run = read_manifest(folder).get("generator_run")
        if not run or not (Path(run) / "config.json").exists():
            raise InputError("a synthetic set's generator run", "the GAN run folder named in manifest.json",
                             f"{run!r}, which is not a run folder", folder / "manifest.json")
        return RunFolder.load(run)[1], "synthetic set", Path(run)
    if not (folder / "config.json").exists():
        raise InputError("--fidelity input", "a GAN run folder (train-gan) or a synthetic set (synthesize)",
                         "neither config.json nor manifest.json" if folder.exists() else "no such folder", folder)
    _, cfg = RunFolder.load(folder)
    if cfg.kind != "gan":
        raise RunFolderError(f"{folder}: expected a GAN run (train-gan) or a synthetic set for --fidelity, "
                             f"got a '{cfg.kind}' run")
    return cfg, "gan run", folder


def _seeded_subset(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def _metrics(real_f, fake_f, standardize: bool) -> dict:
    from tfganaug.metrics.fidelity import fidelity_from_features
    # subsets of half the smaller set (at most 1000), so that they differ and KID's std means something
    subset = min(1000, max(2, min(len(real_f), len(fake_f)) // 2))
    out = fidelity_from_features(real_f, fake_f, "", kid_subset_size=subset, standardize=standardize)
    out.pop("extractor")
    return out


def evaluate_fidelity(folder, extractors=DEFAULT_EXTRACTORS, weights=None, max_real: int = 2000,
                      max_samples: int = 2000, domain_recipe=None, log=None) -> dict:
    """Fidelity and memorisation audit of a GAN run or synthetic set; writes fidelity.json and
    closest_pairs.png into `folder` and returns the fidelity.json content. `domain_recipe`: how
    the domain encoder is trained (default :class:`~tfganaug.metrics.domain.DomainRecipe`)."""
    from tfganaug.metrics.domain import DomainRecipe, domain_encoder
    from tfganaug.metrics.fidelity import EXTRACTORS, get_extractor
    from tfganaug.metrics.privacy import memorisation_audit

    folder = Path(folder)
    extractors = list(dict.fromkeys(extractors))
    if not extractors:
        raise InputError("--extractor", "at least one feature extractor name", "none")
    for name in extractors:
        EXTRACTORS.get(name)  # an unknown name fails before any work
    if "inception_v3" in extractors and not weights:
        raise InputError("--weights", "the InceptionV3 no-top weights file (.h5) for --extractor inception_v3",
                         "none (tfganaug never downloads weights)")
    cfg, source_kind, generator_run = _generator_config(folder)
    real = real_sets(cfg)
    fake, manifest = (_synthetic_of_set(folder) if source_kind == "synthetic set"
                      else _synthetic_of_run(folder, len(real.train), max_samples))
    if fake.shape[1:] != real.train.shape[1:]:
        raise InputError("synthetic images", f"shape (N, {', '.join(map(str, real.train.shape[1:]))}) like the "
                         f"real {real.data} images", f"{fake.shape}", folder)
    if len(fake) < 4 or len(real.train) < 4:
        raise InputError("image sets", "at least 4 synthetic and 4 real training images",
                         f"{len(fake)} and {len(real.train)}", folder)
    train_f = _seeded_subset(real.train, max_real)
    heldout = real.heldout if real.heldout is not None and len(real.heldout) >= 4 else None

    result = {"source": str(folder.resolve()), "source_kind": source_kind, "generator_run": str(generator_run),
              "arch": cfg.gan.arch, "data": real.data, "reference": real.reference,
              "image_size": int(real.train.shape[1]), "channels": list(real.channel_names),
              "n_synthetic": int(len(fake)), "n_real_train": int(len(real.train)),
              "n_real_for_features": int(len(train_f)), "n_heldout": 0 if heldout is None else int(len(heldout)),
              "extractors": {}}
    encoder = None
    for name in extractors:
        options = {}
        if name == "domain":
            encoder = domain_encoder(real.train, real.targets, domain_recipe or DomainRecipe(), log=log)
            options = {"encoder": str(encoder)}
        elif name == "inception_v3":
            options = {"weights_path": str(weights)}
        ext = get_extractor(name, value_range=(0.0, 1.0), **options)
        entry = {**ext.identity(), "per_channel": {}}
        for c, channel in enumerate(real.channel_names):
            real_c, fake_c = ext(train_f[..., c:c + 1]), ext(fake[..., c:c + 1])
            row = {"synthetic": _metrics(real_c, fake_c, ext.standardize)}
            if heldout is not None:
                row["heldout_real"] = _metrics(real_c, ext(heldout[..., c:c + 1]), ext.standardize)
            entry["per_channel"][channel] = row
        result["extractors"][name] = entry
        if log:
            log(f"{name}: done")

    pairs = {}
    if heldout is None:
        result["memorisation"] = {"skipped": f"no held-out real images ({real.reference})"}
    else:
        spaces = {"pixels": (real.train, heldout, fake)}
        if encoder is not None:
            domain = get_extractor("domain", value_range=(0.0, 1.0), encoder=str(encoder))
            spaces["domain"] = (domain(real.train), domain(heldout), domain(fake))
        result["memorisation"] = {}
        for space, (tr, ho, sy) in spaces.items():
            audit = memorisation_audit(tr, ho, sy, quantile=AUDIT_QUANTILE, batch_size=128)
            result["memorisation"][space] = audit
            pairs[space] = audit
        from tfganaug.viz import save_figure
        save_figure(closest_pairs_figure(fake, real.train, pairs, real.channel_names[0]), folder / FIGURE_FILE)
        result["figure"] = FIGURE_FILE
    result.update({"synthetic_manifest": {k: manifest.get(k) for k in ("arch", "seed", "checkpoint", "checkpoints",
                                                                        "label_source", "created") if k in manifest},
                   "tfganaug": __version__,
                   "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    atomic_write_json(folder / FIDELITY_FILE, result)
    return result


def closest_pairs_figure(synthetic, train, audits: dict, channel: str):
    """Per space two rows: the closest synthetic samples, and below each its nearest training image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(a["closest_pairs"]) for a in audits.values())
    fig, axes = plt.subplots(2 * len(audits), cols, figsize=(1.3 * cols, 2.9 * len(audits)), squeeze=False)
    for r, (space, audit) in enumerate(audits.items()):
        for j in range(cols):
            top, bottom = axes[2 * r, j], axes[2 * r + 1, j]
            for ax in (top, bottom):
                ax.axis("off")
            if j >= len(audit["closest_pairs"]):
                continue
            p = audit["closest_pairs"][j]
            top.imshow(synthetic[p["synthetic_index"], ..., 0], cmap="gray", vmin=0, vmax=1)
            bottom.imshow(train[p["train_index"], ..., 0], cmap="gray", vmin=0, vmax=1)
            top.set_title(f"d={p['distance']:.3g}", fontsize=7)
        axes[2 * r, 0].text(-0.1, 0.5, f"{space}\nsynthetic", transform=axes[2 * r, 0].transAxes, ha="right",
                            va="center", fontsize=7)
        axes[2 * r + 1, 0].text(-0.1, 0.5, "nearest\ntraining", transform=axes[2 * r + 1, 0].transAxes,
                                ha="right", va="center", fontsize=7)
    fig.suptitle(f"closest synthetic-training pairs ({channel}); held-out 5th-percentile distance: "
                 + ", ".join(f"{s} {a['threshold']:.3g}" for s, a in audits.items()), fontsize=8)
    return fig


# ------------------------------------------------------------------ text and report section

def _number(value, fmt: str) -> str:
    """A metric, or n/a where it is undefined (a FID with fewer images than features)."""
    return "n/a" if value is None else format(value, fmt)


def _kid(m: dict) -> str:
    return f"{m['kid_mean']:.3g} ± {m['kid_std']:.2g}"


def read_fidelity(path) -> dict:
    """fidelity.json from a folder or a file path."""
    path = Path(path)
    path = path / FIDELITY_FILE if path.is_dir() else path
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError("fidelity results", "a fidelity.json written by `tfganaug evaluate --fidelity`",
                         " ".join(f"{type(exc).__name__}: {exc}".split())[:160], path) from None


def fidelity_section(fidelity, heading: str = "## Fidelity") -> str:
    """The markdown "Fidelity" section of a report, from fidelity.json (a dict, file or folder), or
    from a list of them (one synthetic set per seed): then every number is the mean over the sets."""
    runs = [r if isinstance(r, dict) else read_fidelity(r) for r in
            (fidelity if isinstance(fidelity, (list, tuple)) else [fidelity])]
    r = runs[0]

    def mean(get):
        return float(np.mean([get(run) for run in runs]))

    def cells(get_row):
        rows = [get_row(run) for run in runs]
        if any(x is None for x in rows):
            return "- | - | - | -"
        m = {k: float(np.mean([x[k] for x in rows])) for k in ("kid_mean", "kid_std", "precision", "recall")}
        fids = [x["fid"] for x in rows]
        fid = f"{np.mean(fids):.3g}" if None not in fids else "n/a"
        return f"{fid} | {_kid(m)} | {m['precision']:.2f} | {m['recall']:.2f}"
    several = len(runs) > 1
    count = lambda key: f"{r[key]}" if len({run[key] for run in runs}) == 1 else \
        f"{min(run[key] for run in runs)}-{max(run[key] for run in runs)}"
    lines = [heading, "",
             (f"{len(runs)} synthetic sets (one per seed; every number below is the mean over them), each of "
              if several else "") +
             f"{count('n_synthetic')} synthetic images ({r['arch']}, {r['source_kind']}) against {r['data']}'s "
             f"{r['reference']}: {count('n_real_for_features')} of its {count('n_real_train')} images for the feature "
             f"statistics; {count('n_heldout')} held-out real images as the reference a perfect generator would reach. "
             "KID: mean ± std over subsets; precision/recall with k = 3; radiomics features z-scored with the "
             "real training images' statistics.", "",
             "| extractor (version, sha256) | channel | FID | KID | precision | recall "
             "| held-out real: FID | KID | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in r["extractors"].items():
        hashes = sorted({run["extractors"][name]["extractor_sha256"][:12] for run in runs})
        ident = f"{name} (v{e['extractor_version']}, {', '.join(hashes)})"
        for channel in e["per_channel"]:
            row = lambda run: run["extractors"][name]["per_channel"][channel]
            lines.append(f"| {ident} | {channel} | {cells(lambda run: row(run)['synthetic'])} | "
                         f"{cells(lambda run: row(run).get('heldout_real'))} |")
    lines += ["", "Memorisation audit (nearest training image of each synthetic one, against held-out real "
              f"images' nearest training images; {AUDIT_QUANTILE:.0%} of held-out images fall below the threshold "
              "by construction):", ""]
    mem = r.get("memorisation", {})
    if "skipped" in mem:
        lines.append(f"not run: {mem['skipped']}.")
    for space in mem:
        if space == "skipped":
            continue
        audits = [run["memorisation"][space] for run in runs]
        a = audits[0]
        flagged = sum(x["flagged"] for x in audits)
        verdict = ("**flagged: closer to training images than new patients are**" if flagged else "not flagged") \
            if not several else (f"**flagged in {flagged} of {len(audits)} sets**" if flagged else
                                 f"not flagged in any of the {len(audits)} sets")
        p_value = f"p = {a['p_value']:.2g}" if not several else f"smallest p = {min(x['p_value'] for x in audits):.2g}"
        lines.append(f"* {space}: {mean(lambda run: run['memorisation'][space]['fraction_below']):.1%} of "
                     f"{a['n_synthetic']} synthetic images below the held-out {a['quantile']:.0%} quantile "
                     f"({mean(lambda run: run['memorisation'][space]['threshold']):.3g}); median nearest-training "
                     f"distance {mean(lambda run: run['memorisation'][space]['median_synthetic_nn']):.3g} vs "
                     f"{mean(lambda run: run['memorisation'][space]['median_heldout_nn']):.3g} held-out; "
                     f"one-sided binomial {p_value}: {verdict}.")
    figures = [f"{Path(run['source']) / run['figure']}" for run in runs if run.get("figure")]
    if figures:
        lines += ["", "Closest pairs: " + ", ".join(f"`{f}`" for f in figures) + "."]
    return "\n".join(lines) + "\n"


def format_fidelity(r: dict) -> str:
    """A short text summary for the command line."""
    lines = [f"fidelity of {r['n_synthetic']} synthetic images vs {r['n_real_for_features']} real ({r['data']}, "
             f"{r['reference']}); held-out real in brackets"]
    for name, e in r["extractors"].items():
        lines.append(f"  {name} v{e['extractor_version']} sha256 {e['extractor_sha256'][:12]}")
        for channel, row in e["per_channel"].items():
            s, h = row["synthetic"], row.get("heldout_real") or {}

            def held(key, fmt):
                return f" [{_number(h[key], fmt)}]" if h else ""
            lines.append(f"    {channel:<8} FID {_number(s['fid'], '.4g')}{held('fid', '.4g')}  KID {_kid(s)}  "
                         f"precision {s['precision']:.2f}{held('precision', '.2f')}  "
                         f"recall {s['recall']:.2f}{held('recall', '.2f')}")
    for space, a in r.get("memorisation", {}).items():
        if space == "skipped":
            lines.append(f"  memorisation audit not run: {a}")
        else:
            lines.append(f"  memorisation ({space}): {a['fraction_below']:.1%} below the held-out 5% quantile, "
                         f"p = {a['p_value']:.2g}: {'FLAGGED' if a['flagged'] else 'not flagged'}")
    lines.append(f"  written: {Path(r['source']) / FIDELITY_FILE}")
    return "\n".join(lines)
