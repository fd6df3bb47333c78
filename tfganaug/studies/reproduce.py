"""`tfganaug reproduce <paper>|all --budget ...`: each paper's whole protocol, from data to report.

For every paper asked for, in order: the study (GANs, synthesis, task models per condition and
seed, evaluation; studies/<paper>.py) in `<out>/<paper>`, its report in `<reports>/<report
name>` (the names of the committed reports/ folders), and at the end one summary table of all
reports that hold a `summary.json` (studies/summary.py). Every stage of a study is resumable,
so the same command after a crash or a stop goes on where it ended; a finished paper costs
only its report.

The data follows the budget: the Frid-Adar study reads OrganAMNIST at the `cpu` and `paper`
budgets (the committed report; the paper's liver-lesion ROIs are not public) and the built-in
lesion phantom at `smoke` and `demo`; the segmentation studies fix their data in each budget.
"""
from __future__ import annotations

from pathlib import Path

from tfganaug.errors import ConfigError
from tfganaug.studies import STUDIES

# The folder of each paper's committed report under reports/.
REPORT_NAMES = {"frid-adar": "frid-adar", "kits": "kits-pix2pix", "sandfort": "sandfort-cyclegan",
                "son": "son-stylegan2", "gan-training": "gan-training"}
FRID_ADAR_DATA = {"smoke": "phantom", "demo": "phantom", "cpu": "organamnist", "paper": "organamnist"}


def budgets_of(paper: str) -> list[str]:
    """The budgets a paper's study module defines (Frid-Adar: BUDGETS; the others: STUDY["budgets"])."""
    module = STUDIES.get(paper)
    budgets = getattr(module, "BUDGETS", None) or module.STUDY["budgets"]
    return list(budgets)


def papers_of(name: str) -> list[str]:
    """`all` or one paper's name, checked before anything runs."""
    if name == "all":
        return list(STUDIES.names())
    STUDIES.get(name)  # one line naming the known papers when unknown
    return [name]


def check_budget(papers: list[str], budget: str) -> None:
    """Refuse a budget a paper lacks before any paper runs, so `all` never stops half-way for it."""
    for paper in papers:
        known = budgets_of(paper)
        if budget not in known:
            raise ConfigError(f"reproduce {paper}: expected a budget of this paper ({', '.join(known)}), "
                              f"got '{budget}'")


def reproduce(name: str, budget: str, out, reports=None, seeds=None, verbose: int = 2, log=print) -> Path:
    """Run the study and write the report of each paper in `name` (a paper or `all`), then the
    summary; returns the summary's path (`<reports>/README.md`)."""
    from tfganaug.studies.summary import check_container, write_summary

    papers = papers_of(name)
    check_budget(papers, budget)
    out = Path(out)
    reports = Path(reports) if reports is not None else out / "reports"
    check_container(out, "the studies")
    check_container(reports, "the reports")
    for paper in papers:
        module = STUDIES.get(paper)
        options = {"data": FRID_ADAR_DATA[budget]} if paper == "frid-adar" else {}
        log(f"{paper}: study in {out / paper} (budget {budget}; finished stages are kept)")
        study = module.run_study(out / paper, budget=budget, seeds=seeds, verbose=verbose, **options)
        report = module.write_report(study, reports / REPORT_NAMES[paper])
        log(f"{paper}: report {report}")
    return write_summary(reports, reports / "README.md")
