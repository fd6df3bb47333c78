"""Option types of the command line that refuse a bad value in one line naming the option,
what was expected and what came (`--seed: expected an integer in [0, 4294967295], got '-1'`).

Every number has a range (NaN and infinities are outside every range), names are matched in
any case, and lists of names have neither empty items nor repeats. tests/test_hostile_commands.py
reads these types off the commands to generate its hostile values, so a new option declared with
them is fuzzed without further work.
"""
from __future__ import annotations

import math
from pathlib import Path

import click


def _interval(lo, hi, lo_open=False, hi_open=False) -> str:
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


class IntRange(click.IntRange):
    """An integer in [lo, hi]; '1.5', 'nan' and '' are not integers."""

    def __init__(self, lo: int, hi: int):
        super().__init__(lo, hi)

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"expected an integer in {_interval(self.min, self.max)}, got {value!r}", param, ctx)


class FloatRange(click.FloatRange):
    """A finite number in the interval (NaN compares false with both ends, so it is refused here)."""

    def __init__(self, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
        super().__init__(lo, hi, min_open=lo_open, max_open=hi_open)

    def convert(self, value, param, ctx):
        expected = f"expected a number in {_interval(self.min, self.max, self.min_open, self.max_open)}"
        try:
            number = super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{expected}, got {value!r}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{expected}, got {value!r}", param, ctx)
        return number


class Choice(click.Choice):
    """One of `choices`, in any case; the canonical spelling is what the command gets."""

    def __init__(self, choices):
        super().__init__(choices, case_sensitive=False)

    def get_invalid_choice_message(self, value, ctx) -> str:
        return f"expected one of {', '.join(self.choices)}, got {value!r}"


class Text(click.ParamType):
    """A name or path that is not empty (an empty value is a slip, not 'the default')."""

    name = "text"

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not value.strip():
            self.fail(f"expected a non-empty value, got {value!r}", param, ctx)
        return value.strip()


class Names(Text):
    """Comma-separated names such as liver,kidney-left: no empty item, no repeat in any case."""

    name = "names"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        names = [n.strip() for n in super().convert(value, param, ctx).split(",")]
        folded = [n.lower() for n in names]
        if "" in names or len(set(folded)) != len(folded):
            self.fail(f"expected comma-separated names without repeats or empty items, got {value!r}", param, ctx)
        return ",".join(names)


class Seeds(Text):
    """Comma-separated distinct seeds in [0, max_seed], e.g. 0,1,2; converted to a list of ints."""

    name = "seeds"

    def __init__(self, max_seed: int):
        self.max_seed = max_seed

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        expected = f"expected distinct comma-separated integers in [0, {self.max_seed}] such as 0,1,2"
        try:
            seeds = [int(s) for s in super().convert(value, param, ctx).split(",")]
        except (click.BadParameter, ValueError):
            self.fail(f"{expected}, got {value!r}", param, ctx)
        if len(set(seeds)) != len(seeds) or not all(0 <= s <= self.max_seed for s in seeds):
            self.fail(f"{expected}, got {value!r}", param, ctx)
        return seeds


def usage_line(exc: click.UsageError) -> str:
    """Click's usage error as one line: `--seed: expected ..., got ...` or its own message."""
    if isinstance(exc, click.BadParameter) and exc.param is not None and not isinstance(exc, click.MissingParameter):
        hint = exc.param_hint or (exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.name.upper())
        if isinstance(hint, (list, tuple)):
            hint = " / ".join(hint)
        return f"{hint}: {exc.message}"
    command = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    return " ".join(exc.format_message().split()) + command


class FsPath(click.Path):
    """click.Path that also refuses a path below a file (`notes.txt/run`), which click.Path takes
    for a path that does not exist yet."""

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        for parent in Path(path).parents:
            if parent.exists():
                if not parent.is_dir():
                    self.fail(f"expected a path in a folder, got {str(path)!r} below the file {str(parent)!r}",
                              param, ctx)
                break
        return path
