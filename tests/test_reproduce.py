"""`tfganaug reproduce` (a paper's protocol from data to report, resumable) and `report-summary`
(reports/README.md from the summary.json beside each report)."""
import json

import pytest

from cli.main import main
from tfganaug.errors import RunFolderError
from tfganaug.studies.summary import HEADER, read_summary, write_summary


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _summary(**changes):
    values = {"paper": "Frid-Adar et al. 2018", "claim": "GAN ROIs raise sensitivity", "paper_figure": "78.6 -> 85.7",
              "ours": "84.9 [65.7, 100] -> 92.0 [83.0, 100]", "data": "OrganAMNIST, 60 ROIs per class",
              "test_patients": "val: same source scans as train (in-distribution)", "budget": "cpu, 32 px",
              "seeds": [0, 1, 2], "verdict": "not demonstrated (CIs overlap)", "report": "report.md"}
    return {**values, **changes}


def _report(folder, summary=None):
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("# a report\n")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def test_summary_table_has_one_row_per_summarised_report_and_lists_the_others(tmp_path):
    _report(tmp_path / "frid-adar", _summary())
    _report(tmp_path / "kits-pix2pix", _summary(paper="KiTS19 capstone", ours="0.26 | 0.18", seeds=[0]))
    _report(tmp_path / "son-stylegan2")                      # written before summaries existed
    (tmp_path / "bench").mkdir()                             # not a report: no report.md
    text = write_summary(tmp_path, tmp_path / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert len(rows) == 2
    assert rows[0].startswith("| [Frid-Adar et al. 2018](frid-adar/report.md) | GAN ROIs raise sensitivity |")
    assert "| 0, 1, 2 | not demonstrated (CIs overlap) |" in rows[0]
    assert "0.26 \\| 0.18" in rows[1] and rows[1].count(" | ") == len(HEADER) - 1  # a | in a cell stays one cell
    assert "[son-stylegan2](son-stylegan2/report.md)" in text and "bench" not in text


def test_a_summary_missing_a_field_is_refused_naming_the_file(tmp_path):
    values = _summary()
    del values["verdict"]
    _report(tmp_path / "frid-adar", values)
    with pytest.raises(RunFolderError, match=r"frid-adar/summary.json: expected the fields .* missing verdict"):
        read_summary(tmp_path / "frid-adar" / "summary.json")


def test_report_summary_command(tmp_path, capsys):
    _report(tmp_path / "frid-adar", _summary())
    code, out, _ = run_cli(capsys, "report-summary", tmp_path)
    assert code == 0 and (tmp_path / "README.md").exists() and "README.md" in out
    (tmp_path / "frid-adar" / "summary.json").write_text("{not json")
    code, _, err = run_cli(capsys, "report-summary", tmp_path, "--out", tmp_path / "again.md")
    assert code == 2 and "summary.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "again.md").exists()


def test_a_budget_one_paper_lacks_is_refused_before_anything_runs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "reproduce", "all", "--budget", "demo", "--out", tmp_path / "r")
    assert code == 2 and "reproduce kits: expected a budget of this paper (smoke, cpu), got 'demo'" in err
    assert not (tmp_path / "r").exists()
