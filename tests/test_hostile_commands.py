"""Every option of every `tfganaug` command, fuzzed (issue 16): the hostile command lines are
generated from the Click commands themselves, so an option added later is fuzzed too.

From each option's type (cli/params.py): numbers just past both ends of their range, negative,
huge, NaN, infinities, non-numbers and empty; names in a wrong spelling, empty, with empty items
or repeats; paths missing, a folder where a file is expected and the reverse, random bytes, an
empty file, and run folders of other kinds; and config files (`--config`) with a wrong type in
every key of every section, a JSON that is not an object, deep nesting and other damage.

Each case runs in the subprocess harness of test_hostile_inputs.py (address-space cap, a time
limit per case) and must end with exit code 2, one stderr line naming the option or the file,
no traceback, and nothing written anywhere under the corpus folder. Controls: the edges of every
range, another case of every name and a valid config are accepted.
"""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import click
import numpy as np
import pytest

from cli.main import app
from cli.params import Names, Seeds, Text

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "runs-v0.1"
RUN_KINDS = ("gan-acgan", "gan-pix2pix", "cls", "seg", "synth-acgan")

# A valid command line per command (the cases change one thing in it); train commands train at
# most one epoch at 16 px should a hostile value ever be accepted.
BASES = {
    "train-gan": ["--image-size", "16", "--epochs", "1", "--quiet"],
    "train-cls": ["--image-size", "16", "--epochs", "1", "--quiet"],
    "train-seg": ["--data", "phantom-kidney", "--image-size", "16", "--epochs", "1", "--quiet"],
    "synthesize": ["{runs}/gan-acgan", "--n", "4", "--no-png"],
    "evaluate": ["{runs}/cls"],
    "export": ["{runs}/gan-acgan"],
    "predict": ["{runs}/seg", "{files}/scan.nii.gz"],
    "report": ["{files}/empty-dir"],
    "report-gan-training": ["{files}/empty-dir"],
    "study": ["--budget", "smoke", "--quiet"],
    "reproduce": ["frid-adar", "--budget", "smoke", "--quiet"],
    "report-summary": ["{files}/empty-dir"],
    "bench": ["--preset", "smoke"],
}
OUT_NAME = {"predict": "out.nii.gz"}  # --out of predict is a file
# Run folders a path parameter takes (every other kind is a hostile value for it).
ACCEPTS = {("synthesize", "run_dir"): {"gan-acgan", "gan-pix2pix"}, ("evaluate", "run_dir"): {"cls", "seg"},
           ("export", "run_dir"): {"gan-acgan", "gan-pix2pix", "cls", "seg"}, ("predict", "paths"): {"seg"},
           ("train-cls", "synthetic"): {"synth-acgan"}}
# The command given a config file whose one wrong key is in this section (the loader is shared).
SECTION_COMMAND = {"top": "train-gan", "gan": "train-gan", "data": "train-cls", "cls": "train-cls", "seg": "train-seg"}
# Parameters whose base has no valid input to pair them with (no study folder among the fixtures).
NOT_FUZZED = {("report", "out"), ("report-summary", "out"), ("report-gan-training", "out")}


def _interval_values(t) -> tuple[list[str], list[str]]:
    """(hostile, accepted) texts for an IntRange/FloatRange: just past each end, and the ends."""
    is_int = isinstance(t, click.IntRange)
    step = 1 if is_int else max(1e-3, abs(t.max - t.min) * 1e-3)
    lo_open, hi_open = getattr(t, "min_open", False), getattr(t, "max_open", False)
    hostile = [str(t.min if lo_open else t.min - step), str(t.max if hi_open else t.max + step),
               "-1", str(2**64), "", "abc", "nan", "inf", "-inf"] + (["1.5", "0x10", "1e3"] if is_int else ["1e400"])
    accepted = [str(t.min)] * (not lo_open) + [str(t.max)] * (not hi_open)
    hostile = [v for v in dict.fromkeys(hostile) if v not in accepted]
    if not is_int:
        hostile = [v for v in hostile if not _inside(v, t)]
    return hostile, accepted


def _inside(text, t) -> bool:
    try:
        x = float(text)
    except ValueError:
        return False
    return math.isfinite(x) and (t.min < x if t.min_open else t.min <= x) and (x < t.max if t.max_open else x <= t.max)


def _option_values(command: str, param) -> list[tuple[str, str, str, str]]:
    """(label, value, expect, mode) per case of one option; mode: dry (with --dry-run where the
    command has it), run (no --dry-run: the check needs the data) or parse (Click only)."""
    t = param.type
    if isinstance(t, (click.IntRange, click.FloatRange)):
        hostile, accepted = _interval_values(t)
        return [(f"value {v!r}", v, "error", "dry") for v in hostile] + [(f"edge {v}", v, "ok", "parse") for v in accepted]
    if isinstance(t, click.Choice):
        first = t.choices[0]
        return [("unknown name", "no-such-name", "error", "dry"), ("empty", "", "error", "dry"),
                ("upper case", first.upper(), "ok", "parse"), ("partial name", first[:2], "error", "dry")]
    if isinstance(t, Seeds):
        return [(f"seeds {v!r}", v, "error", "dry") for v in ("1,1", "0,-1", f"0,{2**32}", "0,,1", "a", "", "1.5")]
    if isinstance(t, Names):
        return ([(f"names {v!r}", v, "error", "dry") for v in ("", " ", ",", "a,,b", "a,a", "x,X")]
                + [("unknown name", "no-such-name", "error", "run"), ("two names", "a,B", "ok", "parse")])
    if isinstance(t, Text):
        cases = [("empty", "", "error", "dry"), ("blank", "  ", "error", "dry")]
        if "PATH" in (param.metavar or "") or "NAME" in (param.metavar or ""):
            cases.append(("unknown name", "no-such-name", "error", "run"))
        if "PATH" in (param.metavar or ""):
            cases += _path_values(command, param)
        if "URL" in (param.metavar or ""):
            cases += [("not a URL", "not a url", "error", "run"), ("no host", "http://", "error", "run"),
                      ("other scheme", "ftp://localhost:1", "error", "run")]
        return cases
    if isinstance(t, click.Path):
        return _path_values(command, param)
    return []


def _path_values(command: str, param) -> list[tuple[str, str, str, str]]:
    """Paths: for an input, ones that do not exist or hold the wrong thing; for an output, an
    existing thing of the wrong kind in its place."""
    if param.name in ("out", "report_dir"):
        if isinstance(param.type, click.Path) and not param.type.dir_okay:
            return [("a folder for a file", "{files}/empty-dir", "error", "run")]
        return [("a file for a folder", "{files}/random.bin", "error", "run"),
                ("below a file", "{files}/random.bin/sub", "error", "run"),
                *[(f"a {kind} run", f"{{runs}}/{kind}", "error", "run") for kind in RUN_KINDS if command != "bench"]]
    cases = [("missing", "{files}/missing", "error", "run"), ("random bytes", "{files}/random.bin", "error", "run"),
             ("empty file", "{files}/empty.file", "error", "run")]
    if not (isinstance(param.type, click.Path) and not param.type.dir_okay):
        cases.append(("empty folder", "{files}/empty-dir", "error", "run"))
    if param.name != "config":
        accepts = ACCEPTS.get((command, param.name), set())
        cases += [(f"a {kind} run", f"{{runs}}/{kind}", "error", "run") for kind in RUN_KINDS if kind not in accepts]
    return cases


def _config_files(root: Path) -> dict[str, object]:
    """Config files: one wrong type per key of every section, then whole-file damage."""
    from tfganaug import config as config_lib
    files = {}
    sections = {"": config_lib.RunConfig, "data": config_lib.DataConfig, "gan": config_lib.GANConfig,
                "cls": config_lib.ClassifierConfig, "seg": config_lib.SegConfig}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if section == "" and f.name in sections:
                continue
            wrong = 1.5 if "str" in str(f.type) else "x"
            for label, value in (("nested-list", [[1]]), ("wrong-type", wrong)):
                files[f"{section or 'top'}.{f.name}.{label}"] = {section: {f.name: value}} if section else {f.name: value}
            if "float" in str(f.type):
                files[f"{section}.{f.name}.nan"] = f'{{"{section}": {{"{f.name}": NaN}}}}' if section else \
                    f'{{"{f.name}": Infinity}}'
    files.update({
        "data.image_size.float": {"data": {"image_size": 16.0}}, "gan.lr.string": {"gan": {"lr": "1e-4"}},
        "unknown-key": {"gan": {"lerning_rate": 1}}, "unknown-section": {"train": {}},
        "a-list": [1, 2], "a-string": "config", "a-number": 3, "null": None, "section-a-list": {"gan": [1]},
        "deep": "[" * 100_000 + "]" * 100_000, "deep-object": '{"a":' * 100_000 + "1" + "}" * 100_000,
        "empty": "", "binary": np.random.default_rng(5).bytes(512), "cut": '{"kind": "gan", "gan": {"lr": ',
        "huge": " " * (17 * 2**20) + "{}", "kind-seg": {"kind": "seg"},
        "epochs-huge": {"gan": {"epochs": 10**12}}, "batch-zero": {"gan": {"batch_size": 0}},
        "image-size-huge": {"data": {"image_size": 65536}}, "width-huge": {"gan": {"width": 2**40}},
        "filters-strings": {"cls": {"filters": ["a", "b"]}}, "percentiles-nan": '{"data": {"mr_percentiles": [NaN, 1]}}',
    })
    for name, content in files.items():
        path = root / f"{name}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    return files


def _corpus(root: Path) -> list[dict]:
    runs, files = root / "runs", root / "files"
    shutil.copytree(FIXTURES, runs)
    for kind in RUN_KINDS:
        assert (runs / kind).is_dir(), kind
    files.mkdir()
    (files / "empty-dir").mkdir()
    (files / "random.bin").write_bytes(np.random.default_rng(4).bytes(4096))
    (files / "empty.file").write_bytes(b"")
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.arange(4096, dtype=np.int16).reshape(16, 16, 16), np.eye(4)), files / "scan.nii.gz")
    configs = root / "configs"
    configs.mkdir()
    config_names = list(_config_files(configs))
    cases, counter = [], iter(range(10**6))

    def fill(text: str) -> str:
        return text.format(runs=runs, files=files)

    def add(command, param, label, value, expect, mode):
        n = next(counter)
        out = root / "out" / f"{n}" / OUT_NAME.get(command, "o")
        base = [fill(a) for a in BASES[command]]
        flag = param.opts[0] if isinstance(param, click.Option) else None
        argv = [command, *base]
        if value is None:  # the base alone
            value = ""
        elif flag is None:  # an argument: in its place among the base's
            position = [p for p in app.commands[command].params if isinstance(p, click.Argument)].index(param)
            argv[1 + position] = fill(value)
        else:
            argv += [flag, fill(value)]
        if any(isinstance(p, click.Option) and p.name == "out" for p in app.commands[command].params) \
                and param.name != "out":
            argv += ["--out", str(out)]
        has_dry = any(p.name == "dry_run" for p in app.commands[command].params)
        if mode == "dry" and has_dry:
            argv.append("--dry-run")
        # what the error line must name: the option, or the file (a path) or value (a name) that came
        given = fill(value).strip()
        names = [flag or param.name.upper()] + ([Path(given).name if "/" in given else given] if given else [])
        cases.append({"id": f"{command}:{flag or param.name}:{label}", "call": "parse" if mode == "parse" else "cli",
                      "path": fill(value), "expect": expect, "names": names,
                      "kwargs": {"argv": argv, "out": str(out), "watch": str(root)}})

    for command, cmd in sorted(app.commands.items()):
        for param in cmd.params:
            if (command, param.name) in NOT_FUZZED:
                continue
            for label, value, expect, mode in _option_values(command, param):
                add(command, param, label, value, expect, mode)
        if any(p.name == "config" for p in cmd.params):
            config = next(p for p in cmd.params if p.name == "config")
            kind = command.split("-")[1]
            for name in config_names:  # one key's wrong type goes to the command of its section
                section = name.split(".")[0] if "." in name else None
                if section is None or SECTION_COMMAND.get(section, "train-gan") == command:
                    valid = name == f"kind-{kind}"  # a config naming only its own kind is a whole, valid one
                    add(command, config, f"config {name}", str(configs / f"{name}.json"), "ok" if valid else "error",
                        "dry")
            fixture = {"gan": "gan-acgan", "cls": "cls", "seg": "seg"}[kind]
            add(command, config, "config of its kind", f"{{runs}}/{fixture}/config.json", "ok", "dry")
        if any(p.name == "dry_run" for p in cmd.params):  # the base itself is valid
            add(command, next(p for p in cmd.params if p.name == "quiet"), "base", None, "ok", "dry")
    return cases


def _build():
    import atexit
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="hostile-commands-"))
    atexit.register(shutil.rmtree, root, True)
    return root, _corpus(root)


ROOT, CASES = _build()


@pytest.fixture(scope="module")
def outcomes():
    from test_hostile_inputs import run_cases  # the harness: memory cap, time limit, one process for many cases
    results_path = ROOT.parent / f"{ROOT.name}-results.json"  # outside the watched folder
    try:
        results = run_cases(CASES, ROOT, results_path, cwd=ROOT, timeout=1200)
    finally:
        results_path.unlink(missing_ok=True)
    return {c["id"]: (c, results[c["id"]]) for c in CASES}


def test_every_numeric_option_has_a_range():
    """A number without a range is not fuzzed past its ends, and NaN would pass it."""
    plain = [f"{name} {p.opts[0]}" for name, cmd in app.commands.items() for p in cmd.params
             if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))
             and not isinstance(p.type, (click.IntRange, click.FloatRange))]
    assert not plain


def test_the_corpus_covers_every_command():
    assert len(CASES) >= 300 and {c["kwargs"]["argv"][0] for c in CASES} == set(app.commands)


@pytest.mark.parametrize("case_id", [c["id"] for c in CASES])
def test_hostile_command_line(outcomes, case_id):
    case, result = outcomes[case_id]
    details = json.dumps({"argv": case["kwargs"]["argv"], **result}, indent=1)[-3000:]
    if case["expect"] == "ok":
        assert result["outcome"] in ("ok", "exit 0"), details
        return
    assert result["outcome"] == "exit 2", details
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result["stderr"], details
    assert any(name in lines[0] for name in case["names"]), details
    assert not result["out_exists"] and not result["written"], details
