"""What every study shares: the study.json guard, stage timings and the report skeleton
(machine line, summed wall times, the resolved configs copied beside the report)."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from tfganaug.errors import RunFolderError
from tfganaug.fsutil import append_jsonl, atomic_write_json, read_jsonl


def open_study(out: Path, plan: dict, fixed=None, merge=()) -> dict:
    """Write or check `<out>/study.json`: a folder holding a study whose `fixed` settings (default:
    all of `plan`) differ is refused; the lists named in `merge` (seeds, conditions) grow by what
    `plan` adds. Returns the plan in force."""
    study_json = Path(out) / "study.json"
    fixed = list(plan) if fixed is None else list(fixed)
    if not study_json.exists() and Path(out).is_dir() and any(Path(out).iterdir()):
        raise RunFolderError(f"{out}: expected a new or empty folder or a study folder with study.json, got a folder "
                             "holding other files; choose another --out")
    if study_json.exists():
        try:
            previous = json.loads(study_json.read_text())
        except (OSError, ValueError, RecursionError):
            raise RunFolderError(f"{study_json}: expected the study's plan as JSON, got a damaged file") from None
        if {k: previous.get(k) for k in fixed} != {k: plan[k] for k in fixed}:
            raise RunFolderError(f"{out}: holds a study with other settings ({study_json}); choose another --out")
        grown = {k: list(dict.fromkeys(previous[k] + plan[k])) for k in merge}
        grown = {k: sorted(v) if k == "seeds" else v for k, v in grown.items()}
        if any(grown[k] != previous[k] for k in merge):
            atomic_write_json(study_json, {**previous, **grown})
        return {**plan, **grown}
    atomic_write_json(study_json, {**plan, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return plan


def timing(folder: Path, stage: str, t0: float) -> None:
    """Log a stage's wall time, unless a rerun found it complete and did nothing."""
    if any(r.get("stage") == stage for r in read_jsonl(folder / "timings.jsonl")):
        return
    append_jsonl(folder / "timings.jsonl", {"stage": stage, "seconds": round(time.time() - t0, 2)})


def summed_timings(paths) -> dict[str, float]:
    """Wall seconds per stage, summed over the given timings.jsonl files (e.g. over seeds)."""
    timings: dict[str, float] = {}
    for path in paths:
        for row in read_jsonl(path):
            timings[row["stage"]] = timings.get(row["stage"], 0.0) + row["seconds"]
    return timings


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> str:
    return f"{platform.machine()} CPU, {cpu_count()} cores, no GPU"


def condition_curves(ax, runs: dict, key: str, title: str) -> None:
    """One line per condition on `ax`: `key` of every epoch row of the run's metrics.jsonl."""
    import numpy as np
    for condition, folder in runs.items():
        rows = [r for r in read_jsonl(Path(folder) / "metrics.jsonl") if "event" not in r]
        if rows:
            ax.plot([r["epoch"] for r in rows], [r.get(key, np.nan) for r in rows], label=condition)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)


def save_curves(fig, out: Path) -> str:
    """The figure as `<out>/training_curves.png` (closed afterwards); returns its name."""
    import matplotlib.pyplot as plt
    from tfganaug.viz import save_figure
    save_figure(fig, Path(out) / "training_curves.png")
    plt.close(fig)
    return "training_curves.png"


def copy_configs(report_dir: Path, study: Path, run_configs, extra: dict | None = None) -> None:
    """`<report>/config/`: study.json, the config.json of each run in `run_configs` (named after its
    run folder) and the `extra` {name: file} that exist (e.g. env.json)."""
    folder = Path(report_dir) / "config"
    folder.mkdir()
    (folder / "study.json").write_text((study / "study.json").read_text())
    for cfg in run_configs:
        (folder / f"{cfg.parent.name}.json").write_text(cfg.read_text())
    for name, path in (extra or {}).items():
        if path.exists():
            (folder / name).write_text(path.read_text())


def write_study_report(study_dir, out) -> Path:
    """The report of whichever study the folder holds (its study.json names it; Frid-Adar
    folders from before the name was recorded have none)."""
    from tfganaug.studies import STUDIES
    plan = Path(study_dir) / "study.json"
    if not plan.exists():
        raise RunFolderError(f"{study_dir}: expected a study folder with study.json (from `tfganaug study`), got none")
    return STUDIES.get(json.loads(plan.read_text()).get("study", "frid-adar")).write_report(study_dir, out)


SUMMARY_KEYS = ("paper", "claim", "paper_figure", "ours", "data", "test_patients", "budget", "seeds", "verdict",
                "report")


def write_summary(folder: Path, **fields) -> None:
    """`<folder>/summary.json` beside report.md: one paper's claim, figure and our result in the
    schema that reports/README.md gathers (every key of SUMMARY_KEYS, `report` = report.md)."""
    fields = {"report": "report.md", **fields}
    missing = [k for k in SUMMARY_KEYS if k not in fields]
    if missing or set(fields) - set(SUMMARY_KEYS):
        raise ValueError(f"summary.json: keys {SUMMARY_KEYS}, got {sorted(fields)}")
    atomic_write_json(Path(folder) / "summary.json", {k: fields[k] for k in SUMMARY_KEYS})


def figure_home(study: Path, report_dir: Path, data_names) -> tuple[Path, list[str]]:
    """Where a report's figures that show data (real images, or images from generators trained on
    them) are drawn: the report folder when every source in `data_names` has a licence that lets
    such images be committed (`data.sources.permissive`), else `<study>/figures`, which stays on
    this machine; then also one line for the report saying where they are and why."""
    from tfganaug.data.sources import licence, permissive
    names = [n for n in dict.fromkeys(data_names) if n]
    restricted = [n for n in names if not permissive(n)]
    if not restricted:
        return Path(report_dir), []
    folder = Path(study).resolve() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    which = ", ".join(f"{n} ({licence(n)})" for n in restricted)
    return folder, [f"Figures that show images of {which}, or images generated from them, are drawn by `tfganaug "
                    f"report` into `{folder}` and are not part of this report: that licence does not allow "
                    "committing such images to a repository."]


def figure_link(name: str, home: Path, report_dir: Path) -> str:
    """Markdown for a figure: embedded when it is in the report folder (the loss curves always
    are), else its path in `home`."""
    inside = Path(home) == Path(report_dir) or (Path(report_dir) / name).exists()
    return f"![{name}]({name})" if inside else f"`{Path(home) / name}` (not committed)"


def fidelity_stage(out: Path, name: str, domain_recipe: dict | None = None) -> None:
    """`evaluate --fidelity` (radiomics + domain extractors, memorisation audit) of the synthetic
    set `<out>/<name>`, once: a set with fidelity.json is done."""
    from tfganaug.metrics.domain import DomainRecipe
    from tfganaug.stages.fidelity import FIDELITY_FILE, evaluate_fidelity
    if (out / name / "manifest.json").exists() and not (out / name / FIDELITY_FILE).exists():
        t0 = time.time()
        recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in (domain_recipe or {}).items()}
        evaluate_fidelity(out / name, domain_recipe=DomainRecipe(**recipe))
        timing(out, f"fidelity-{name}", t0)


def grid_notes(study: Path) -> list[str]:
    """`<study>/grids.md`: what the sample grids show, written by a person after looking at them
    (a report cannot judge its own figures); the report prints it under its figures."""
    path = Path(study) / "grids.md"
    return ["", path.read_text().strip(), ""] if path.exists() else []
