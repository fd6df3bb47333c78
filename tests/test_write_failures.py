"""A full disk or a refused write: one clear line, no partial file, the previous output intact.

Failures are simulated where any machine can run them (an `os` whose replace/fsync/open raise
ENOSPC or EACCES, seen only by tfganaug.fsutil), and real where the machine allows it: a
64 KiB tmpfs for a full disk and a read-only bind mount (or `chattr +i`) for a folder that
refuses writes. Root ignores chmod, so permissions are not tested with it. The real tests
skip with their reason when mounting is not permitted; the simulated ones always run.
"""
import contextlib
import errno
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from cli.main import main
from tfganaug import config as C, fsutil
from tfganaug.errors import WriteError
from tfganaug.stages.train_gan import train_gan
from tfganaug.stages.export import export_run
from tfganaug.stages.synthesize import synthesize
from tfganaug.runs import save_checkpoint

REASONS = {errno.ENOSPC: "no space left on device", errno.EACCES: "permission denied"}


class FailingOs:
    """`os` as tfganaug.fsutil sees it, with some calls raising OSError(code)."""

    def __init__(self, code, *names, when=lambda *args: True):
        self.code, self.names, self.when = code, names, when

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.names:
            return real

        def failing(*args, **kwargs):
            if self.when(*args):
                raise OSError(self.code, os.strerror(self.code), str(args[0]))
            return real(*args, **kwargs)
        return failing


def leftovers(folder):
    """Temporary names of fsutil and TensorFlow anywhere below `folder`."""
    return sorted(str(p) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".partial", ".old", ".tmp.keras")) or "_temp" in p.name
                  or ".tmp" in p.name)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    cfg = C.preset("cpu_acgan", data={"image_size": 16, "n_phantom_patients": 40},
                   gan={"width": 16, "latent_dim": 8, "epochs": 1, "steps_per_epoch": 1, "batch_size": 8})
    return train_gan(cfg, tmp_path_factory.mktemp("gan") / "run", verbose=0).path


# --- simulated: runs everywhere -------------------------------------------------------------

@pytest.mark.parametrize("code", sorted(REASONS), ids=errno.errorcode.get)
def test_atomic_file_writers_fail_cleanly(tmp_path, monkeypatch, code):
    target = tmp_path / "status.json"
    fsutil.atomic_write_json(target, {"state": "complete"})
    for names in (("replace",), ("fsync",)):
        with monkeypatch.context() as m:
            m.setattr(fsutil, "os", FailingOs(code, *names))
            with pytest.raises(WriteError, match=f"^{target}: could not write \\({REASONS[code]}\\)$"):
                fsutil.atomic_write_json(target, {"state": "running"})
            with pytest.raises(WriteError, match=REASONS[code]):
                fsutil.atomic_write_bytes(tmp_path / "new.png", b"x" * 1000)
    assert json.loads(target.read_text()) == {"state": "complete"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]

    def refused(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))
    monkeypatch.setattr(fsutil, "open", refused, raising=False)
    with pytest.raises(WriteError, match=f"metrics.jsonl: could not write \\({REASONS[code]}\\)"):
        fsutil.append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 1})


def test_a_file_written_by_a_library_leaves_no_partial_file(tmp_path):
    def save_half(path):  # as keras.Model.save on a full disk: some bytes, then ENOSPC
        path.write_bytes(b"PK" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    with pytest.raises(WriteError, match="model.keras: could not write \\(no space left on device\\)"):
        fsutil.atomic_write_with(tmp_path / "final" / "model.keras", save_half, suffix=".keras")
    assert list((tmp_path / "final").iterdir()) == []


@pytest.mark.parametrize("code", sorted(REASONS), ids=errno.errorcode.get)
def test_a_failed_folder_keeps_the_previous_one(tmp_path, monkeypatch, code):
    out = tmp_path / "synth"
    with fsutil.atomic_dir(out) as tmp:
        (tmp / "manifest.json").write_text("old")
    # Inside the block: the writer fails half-way.
    with pytest.raises(WriteError, match=f"^{out}: could not write \\({REASONS[code]}\\)$"):
        with fsutil.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "images.npz").write_bytes(b"half")
            raise OSError(code, os.strerror(code), str(tmp / "images.npz"))
    # At the end: the new folder is complete, the old one moved aside, then the rename fails.
    monkeypatch.setattr(fsutil, "os", FailingOs(code, "replace", when=lambda src, dst: ".partial" in str(src)))
    with pytest.raises(WriteError, match=REASONS[code]):
        with fsutil.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "manifest.json").write_text("new")
    assert (out / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"] and leftovers(tmp_path) == []


def test_synthesize_on_a_full_disk_through_the_cli(gan_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "synth"
    monkeypatch.setattr(fsutil, "os", FailingOs(errno.ENOSPC, "replace", when=lambda src, dst: "synth" in str(dst)))
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", str(gan_run), "--n", "6", "--out", str(out)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == f"error: {out}: could not write (no space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_be_written_is_not_left_half(tmp_path, monkeypatch):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable([1.0])), str(tmp_path), max_to_keep=3)
    save_checkpoint(manager, 1)
    real_save = manager.save

    def save_then_fail(checkpoint_number):  # as TensorFlow does: shards written, then the merge fails
        (tmp_path / f"ckpt-{checkpoint_number}_temp").mkdir()
        (tmp_path / f"ckpt-{checkpoint_number}_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
        (tmp_path / f"ckpt-{checkpoint_number}.data-00000-of-00001").write_bytes(b"x")
        raise tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/ckpt-2_temp/part; No space left on device")
    monkeypatch.setattr(manager, "save", save_then_fail)
    with pytest.raises(WriteError, match="could not write \\(no space left on device\\); the last good checkpoint"):
        save_checkpoint(manager, 2)
    monkeypatch.setattr(manager, "save", real_save)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


def test_a_refused_lock_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "os", FailingOs(errno.EACCES, "open"))
    with pytest.raises(WriteError, match=f"{tmp_path / '.lock'}: could not write \\(permission denied\\)"):
        fsutil.FolderLock(tmp_path).acquire()


# --- real: a size-limited tmpfs and a read-only folder, where this machine permits --------

def _sh(*command) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def _unmount(folder):
    if not _sh("umount", str(folder)):
        _sh("umount", "-l", str(folder))  # a file TensorFlow still holds open: detach now, free later
    assert not os.path.ismount(folder), f"{folder} is still mounted"


@contextlib.contextmanager
def mounted(folder, *mount_args, check=None):
    """`mount *mount_args folder`, yielding False (and mounting nothing) where not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")
            and _sh("mount", *mount_args, str(folder))):
        yield False
        return
    try:
        yield True if check is None else check()
    finally:
        _unmount(folder)


def tmpfs(folder, size="64k"):
    return mounted(folder, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def test_a_real_full_disk(gan_run, tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk) as ok:
        if not ok:
            pytest.skip("mounting a tmpfs is not permitted here; the simulated tests cover ENOSPC")
        fsutil.atomic_write_json(disk / "small.json", {"kept": True})
        with pytest.raises(WriteError, match=f"{disk / 'small.json'}: could not write \\(no space left on device\\)"):
            fsutil.atomic_write_bytes(disk / "small.json", os.urandom(100_000))
        with pytest.raises(WriteError, match=f"{disk / 'synth'}: could not write \\(no space left on device\\)"):
            synthesize(gan_run, 300, disk / "synth")
        with pytest.raises(WriteError, match=f"{disk / 'model' / '1'}: could not write \\(no space left"):
            export_run(gan_run, disk / "model")  # TensorFlow's own writer: an OpError, not an OSError
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(np.ones(40_000, np.float32))),
                                             str(disk / "ckpt"), max_to_keep=3)
        with pytest.raises(WriteError, match="no space left on device"):
            save_checkpoint(manager, 1)
        assert json.loads((disk / "small.json").read_text()) == {"kept": True}
        assert sorted(p.name for p in disk.rglob("*")) == ["ckpt", "small.json"], leftovers(disk)


def test_a_real_read_only_folder(gan_run, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "previous.json").write_text("{}")

    def read_only():  # older kernels apply ro to a bind mount only on remount
        return _sh("mount", "-o", "remount,bind,ro", str(folder)) and not _sh("touch", str(folder / "probe"))

    with mounted(folder, "--bind", str(folder), check=read_only) as ok:
        reason = "read-only file system"
        if not ok:
            with contextlib.ExitStack() as undo:
                if not _sh("chattr", "+i", str(folder)):
                    pytest.skip("neither a read-only bind mount nor chattr +i is permitted here; "
                                "the simulated tests cover EACCES")
                undo.callback(_sh, "chattr", "-i", str(folder))
                return check_refused(gan_run, folder, "operation not permitted")
        check_refused(gan_run, folder, reason)


def check_refused(gan_run, folder, reason):
    with pytest.raises(WriteError, match=f"{folder / 'a.json'}: could not write \\({reason}\\)"):
        fsutil.atomic_write_json(folder / "a.json", {})
    with pytest.raises(WriteError, match=f"{folder / 'synth'}: could not write \\({reason}\\)"):
        synthesize(gan_run, 4, folder / "synth")
    assert [p.name for p in folder.iterdir()] == ["previous.json"]


def test_outputs_get_ordinary_permissions(tmp_path):
    """Temporary names are private; the renamed outputs must be readable by other users (a TF
    Serving process, a colleague) as the umask allows."""
    from tfganaug.fsutil import atomic_dir, atomic_write_bytes
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "a.bin", b"x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_bytes(b"y")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
