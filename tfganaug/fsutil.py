"""Writing files so that a crash, a full disk or a second process never leaves a half-written output.

Everything is written under a temporary sibling name and renamed into place once complete
(`os.replace` is atomic on one file system). Folders are built the same way.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tfganaug.errors import OutputExistsError, RunFolderError, TfganaugError, WriteError


_REASONS = {errno.ENOSPC: "no space left on device", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
            errno.EDQUOT: "disk quota exceeded"}


def _os_error(path: os.PathLike | str, exc: OSError, hint: str = "") -> WriteError:
    return WriteError(path, _REASONS.get(exc.errno, exc.strerror or str(exc)), hint)


def write_error(path: os.PathLike | str, exc: BaseException, hint: str = "") -> WriteError | None:
    """The one-line error for a failed write to `path`, or None if `exc` is not a file-system failure.

    A WriteError from a file inside a temporary folder is re-addressed to `path`, the output the
    user asked for. TensorFlow's own writers (checkpoints, SavedModels, TFRecords) raise
    `tf.errors.OpError`, not OSError; their message ends with the C library's text for the
    errno, which is matched.
    """
    if isinstance(exc, WriteError):
        return WriteError(path, exc.reason, hint)
    if isinstance(exc, TfganaugError):
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_error(path, exc, hint)
    text = str(exc)
    for code, reason in _REASONS.items():
        if os.strerror(code) in text:
            return WriteError(path, reason, hint)
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ordinary_mode(path, directory: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual umask modes so
    that other users and servers (TF Serving often runs as its own user) can read them."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write_bytes(path: os.PathLike | str, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _ordinary_mode(tmp, directory=False)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _os_error(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: os.PathLike | str, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: os.PathLike | str, record: dict) -> None:
    """Append one JSON line; a torn last line (crash mid-write) is tolerated by `read_jsonl`."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=float) + "\n")
            f.flush()
    except OSError as exc:
        raise _os_error(path, exc) from exc


def read_jsonl(path: os.PathLike | str) -> list[dict]:
    rows = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a killed process
    return rows


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def slug(text: str, keep: str = "+-.", strip: bool = True) -> str:
    """`text` as one file or folder name: every character that is neither alphanumeric nor in
    `keep` nor "_" becomes "_"; with `strip`, leading and trailing "_" go.

    The two names tfganaug builds this way must not change, or existing study and run folders
    would no longer be found: study conditions (``slug("light, real+fake 0.2")`` is
    ``"light__real+fake_0.2"``) and test-data suffixes of evaluation files
    (``slug(Path(name).name, keep="-", strip=False)``).
    """
    name = "".join(c if c.isalnum() or c == "_" or c in keep else "_" for c in text)
    return name.strip("_") if strip else name


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name; rename it to `path` only if the block succeeds.

    An existing `path` is refused unless `overwrite`, in which case it is replaced only after
    the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        _ordinary_mode(tmp, directory=True)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # the previous output stays where it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from exc


def atomic_write_with(path: os.PathLike | str, write, suffix: str = "") -> Path:
    """Let `write(tmp)` write a file under a temporary sibling name, then rename it to `path`.

    For writers that take a path (`keras.Model.save`); `suffix` keeps the extension they need.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from exc
    return path


class FolderLock:
    """An exclusive lock file (`.lock` holding the pid) so that two runs never share a folder.

    A lock left by a killed process (its pid no longer alive) is taken over.
    """

    def __init__(self, folder: os.PathLike | str):
        self.path = Path(folder) / ".lock"

    def acquire(self) -> "FolderLock":
        try:
            return self._acquire()
        except OSError as exc:
            raise _os_error(self.path, exc) from exc

    def _acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise RunFolderError(
                        f"{self.path.parent}: in use by process {pid} (lock file {self.path}); "
                        "wait for it or choose another --out") from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                self.release()
                raise
            return self
        raise RunFolderError(f"{self.path.parent}: could not take the lock {self.path}")

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
