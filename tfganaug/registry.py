"""One named lookup for everything a config or the command line refers to by name (after
stylegan2-ada-pytorch's `metrics/metric_main.py`): GAN architectures (`tfganaug.gans.GANS`),
studies (`tfganaug.studies.STUDIES`), feature extractors (`tfganaug.metrics.fidelity.EXTRACTORS`).

An entry is an object, or a "module:attribute" (or "module") string imported on first use, so the
names (for Click choices and config validation) are known without importing TensorFlow.
"""
from __future__ import annotations

import difflib
import importlib

from tfganaug.errors import ConfigError


class Registry:
    """`registry.get(name)` returns the entry or raises one ConfigError line with a did-you-mean;
    `registry.names()` lists the names in registration order."""

    def __init__(self, kind: str, entries: dict | None = None):
        self.kind = kind
        self._entries: dict = dict(entries or {})

    def register(self, name: str, entry=None):
        """`registry.register("x", obj)`, or `@registry.register("x")` on a class or function."""
        if entry is None:
            return lambda obj: self.register(name, obj)
        self._entries[name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str):
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(self._entries)})")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = importlib.import_module(module)
            entry = self._entries[name] = getattr(entry, attribute) if attribute else entry
        return entry
