"""User-facing errors.

Every mistake a user can make (a wrong file, a bad option, an existing output) raises a
subclass of :class:`TfganaugError`. Its message is one line that names the file, what was
expected and what came; the CLI prints exactly that line and exits with code 2, never a
traceback.
"""
from __future__ import annotations

import os


class TfganaugError(Exception):
    """Base class of errors caused by input, configuration or the file system (not bugs)."""


class InputError(TfganaugError, ValueError):
    """A file or array is not what was expected.

    >>> str(InputError("image", expected="2-D or 3-D array", got="shape (4,)", path="a.png"))
    'a.png: expected image as 2-D or 3-D array, got shape (4,)'
    """

    def __init__(self, what: str, expected: str, got: str, path: str | os.PathLike | None = None):
        self.what, self.expected, self.got = what, expected, got
        self.path = None if path is None else os.fspath(path)
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}expected {what} as {expected}, got {got}")


class ConfigError(TfganaugError, ValueError):
    """A configuration key or value is not valid."""


class OutputExistsError(TfganaugError, FileExistsError):
    """An output already exists and would be overwritten."""

    def __init__(self, path: str | os.PathLike, hint: str = "pass --overwrite to replace it"):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: output already exists; {hint}")


class RunFolderError(TfganaugError):
    """A run folder is missing, incomplete, locked or from another configuration."""


class WriteError(TfganaugError):
    """An output could not be written (full disk, no permission, read-only file system)."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: could not write ({reason}){hint}")


class DivergenceError(TfganaugError, FloatingPointError):
    """Training produced a non-finite loss or weight."""


class ServingError(TfganaugError):
    """A model server could not be reached, refused a request or answered something unexpected."""
