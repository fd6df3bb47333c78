"""Run folders, checkpoints and exact resume for every training command.

A run folder (after NVlabs stylegan2-ada) holds::

    config.json          resolved configuration, written before training starts
    env.json             package / TensorFlow / Keras versions, devices
    status.json          running | complete, epochs done per member
    metrics.jsonl        one JSON line per member and epoch
    checkpoints/<member>/  tf.train.CheckpointManager, the last K kept
    samples/<member>/epoch_0005.png   sample grids (GANs)
    tensorboard/<member>/
    final/<member>.keras  final models (load with safe_mode=True)

"Members" are what one command trains: one DCGAN per lesion class, one ACGAN, or one
classifier. Rerunning the same command on the same folder resumes every unfinished member
from its last checkpoint: weights, both optimizers, noise generator, Dropout seed states
and epoch counter; the data stream is rebuilt from (seed, epoch) (data/pipeline.py), so
with op determinism the resumed run is bitwise equal to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfganaug import __version__, config as config_lib
from tfganaug.errors import ConfigError, DivergenceError, OutputExistsError, RunFolderError
from tfganaug.fsutil import (FolderLock, append_jsonl, atomic_write_json, atomic_write_text, atomic_write_with,
                             read_jsonl, write_error)
from tfganaug.viz import save_grid


def strategy_for(cfg) -> tf.distribute.Strategy:
    """The distribution strategy of a run: the default (one device), MirroredStrategy (this
    machine's devices) or MultiWorkerMirroredStrategy (several processes, described by TF_CONFIG).

    Batch sizes in configs are global: each of N replicas gets batch_size / N, and the losses
    are averaged over the global batch, so a run means the same on 1 or N devices.
    Call it before any other TensorFlow op of the process: collective ops, which the
    multi-worker strategy needs, can only be configured at program start-up. One strategy
    per process, reused by every run of the command.
    """
    if cfg.distribute == "multiworker":
        if "multiworker" not in _STRATEGIES:
            spec = multiworker_cluster()  # a missing or malformed TF_CONFIG is one line, not a gRPC error
            _coordination_service(spec)
            _STRATEGIES["multiworker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES["multiworker"]
    if cfg.distribute == "mirrored":
        # The local GPUs; without any, the logical CPUs (one unless split, as the tests do).
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
        if ("mirrored", devices) not in _STRATEGIES:
            _STRATEGIES["mirrored", devices] = tf.distribute.MirroredStrategy(list(devices))
        return _STRATEGIES["mirrored", devices]
    return tf.distribute.get_strategy()


_STRATEGIES: dict = {}  # "multiworker" or ("mirrored", devices) -> the process's strategy


def multiworker_cluster() -> dict:
    """TF_CONFIG as TensorFlow defines it ({"cluster": {"worker": [host:port, ...], "chief": [...]},
    "task": {"type": "worker", "index": i}}), checked; a wrong one is one line naming the variable."""
    text = os.environ.get("TF_CONFIG", "")
    try:
        spec = json.loads(text) if text else None
    except ValueError:
        spec = "malformed"
    ok = isinstance(spec, dict) and isinstance(spec.get("cluster"), dict) and isinstance(spec.get("task"), dict)
    if ok:
        jobs = {k: v for k, v in spec["cluster"].items() if k in ("chief", "worker")}
        task = spec["task"]
        ok = (bool(jobs) and all(isinstance(v, list) and v and all(isinstance(a, str) for a in v)
                                 for v in jobs.values())
              and task.get("type") in jobs and isinstance(task.get("index"), int)
              and 0 <= task["index"] < len(jobs[task["type"]]))
    if not ok:
        raise ConfigError("TF_CONFIG: expected --distribute multiworker's cluster as JSON, e.g. "
                          '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                          f'"index": 0}}}}, got {text[:120]!r}')
    return spec


HEARTBEAT_TIMEOUT_S = 120


def _coordination_service(spec: dict) -> None:
    """The coordination service MultiWorkerMirroredStrategy would configure, with a peer declared
    dead after HEARTBEAT_TIMEOUT_S (env TFGANAUG_HEARTBEAT_TIMEOUT_S) without a heartbeat instead
    of TensorFlow's 10 s: on a loaded machine (CI's 2 cores running two training processes and
    a test worker) a healthy worker went 10 s without a heartbeat and the chief aborted the run
    ("tasks are unhealthy (stopped sending heartbeats)"). The strategy keeps a service that is
    already configured (collective_all_reduce_strategy, TF 2.21)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context
    timeout_s = float(os.environ.get("TFGANAUG_HEARTBEAT_TIMEOUT_S", HEARTBEAT_TIMEOUT_S))
    jobs = spec["cluster"]
    leader_job = "chief" if "chief" in jobs else "worker"
    coordinated = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(jobs[job]))
                   for job in ("chief", "worker") if job in jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{leader_job}/replica:0/task:0",
        heartbeat_timeout_in_ms=int(timeout_s * 1000), coordinated_jobs=coordinated)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, except for the non-chief workers of a
    multi-worker run (the chief is task "chief", or worker 0 when the cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def setup_determinism(cfg) -> None:
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(cfg.precision)


# What to do on divergence may change when a run is resumed (a run stopped by a NaN can be
# rerun with --on-divergence rollback), and so may the device layout (the data stream and the
# global-batch losses do not depend on it); config.json is then updated. Nothing else may change.
RESUME_POLICY_KEYS = ("on_divergence", "max_rollbacks", "distribute")


def _without(values: dict, keys) -> dict:
    return {k: v for k, v in values.items() if k not in keys}


class RunFolder:
    """A run directory: created with its config, or reopened to resume the same config."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path, cfg, overwrite: bool = False) -> "RunFolder":
        path = Path(path)
        resolved = config_lib.to_dict(cfg)
        policy_changed = False
        if path.exists() and any(path.iterdir()):
            existing = path / "config.json"
            if overwrite:
                shutil.rmtree(path)
            elif not existing.exists():
                raise OutputExistsError(path, "it is not a tfganaug run folder; choose another --out")
            else:
                # Compared after loading, so a config.json from before a key existed matches its default.
                stored = config_lib.to_dict(config_lib.load(existing))
                if _without(stored, RESUME_POLICY_KEYS) != _without(resolved, RESUME_POLICY_KEYS):
                    raise RunFolderError(
                        f"{path}: holds a run with a different configuration ({existing}); to resume, rerun "
                        "the same command; otherwise choose another --out or pass --overwrite")
                policy_changed = stored != resolved
        run = cls(path)
        if policy_changed:
            atomic_write_json(path / "config.json", resolved)
        elif not (path / "config.json").exists():
            atomic_write_json(path / "config.json", resolved)
            atomic_write_json(path / "env.json", environment())
        return run

    @classmethod
    def load(cls, path) -> tuple["RunFolder", object]:
        path = Path(path)
        if not (path / "config.json").exists():
            raise RunFolderError(f"{path}: expected a run folder with config.json, got "
                                 + ("no such folder" if not path.exists() else "a folder without config.json"))
        return cls(path), config_lib.load(path / "config.json")

    def status(self) -> dict:
        p = self.path / "status.json"
        if not p.exists():
            return {"state": "new", "members": {}}
        try:
            status = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{p}: expected the run's status as a JSON object, got a damaged file "
                                 f"({' '.join(str(exc).split())[:120]})") from None
        if not isinstance(status, dict):
            raise RunFolderError(f"{p}: expected the run's status as a JSON object, got {type(status).__name__}")
        return status

    def set_status(self, **updates) -> None:
        atomic_write_json(self.path / "status.json", {**self.status(), **updates})

    def member_done(self, member: str, epochs: int) -> None:
        status = self.status()
        status.setdefault("members", {})[member] = epochs
        atomic_write_json(self.path / "status.json", status)

    def checkpoint_dir(self, member: str) -> Path:
        return self.path / "checkpoints" / member

    def final_model(self, member: str) -> Path:
        return self.path / "final" / f"{member}.keras"

    def load_final_model(self, member: str, what: str, command: str):
        """The finished Keras model of `member` (safe mode), or one line naming the command to finish it."""
        path = self.final_model(member)
        if not path.exists():
            raise RunFolderError(f"{self.path}: expected a finished {what} run with {path}, got none "
                                 f"(rerun its {command} command to finish it)")
        try:
            return keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # a truncated or foreign file fails deep inside Keras, zipfile or h5py
            raise RunFolderError(f"{path}: expected the {what} run's Keras model, got a damaged file "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); rerun its {command} "
                                 "command with --overwrite to train it again") from None


def environment() -> dict:
    return {"tfganaug": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}


class EpochLogger(keras.callbacks.Callback):
    """Writes one metrics line per epoch, checks for divergence, checkpoints, draws samples."""

    def __init__(self, run: RunFolder, member: str, manager: tf.train.CheckpointManager, epoch_var,
                 sample_fn=None, sample_every: int = 0, check_weights=None):
        super().__init__()
        self.run, self.member, self.manager, self.epoch_var = run, member, manager, epoch_var
        self.sample_fn, self.sample_every = sample_fn, sample_every
        self.check_weights = check_weights
        self.t0 = time.time()

    def _kept(self) -> str:
        latest = self.manager.latest_checkpoint
        return f"the last good checkpoint {latest} is kept" if latest else "no checkpoint was written yet"

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: float(np.ravel(v)[0]) for k, v in (logs or {}).items()
               if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))}
        if bad:
            self.model.stop_training = True
            raise DivergenceError(f"{self.run.path}: training diverged in {self.member} at batch {batch + 1} of "
                                  f"epoch {int(self.epoch_var.numpy()) + 1} (non-finite {bad}); {self._kept()}")

    def on_epoch_end(self, epoch, logs=None):
        weights = self.check_weights() if self.check_weights else []
        if any(not np.all(np.isfinite(w)) for w in weights):
            raise DivergenceError(f"{self.run.path}: a weight of {self.member} became non-finite in epoch "
                                  f"{epoch + 1}; {self._kept()}")
        # The metrics line goes first: a crash between the two leaves a line past the last
        # checkpoint, which the resumed run drops and rewrites, never a missing line.
        row = {"member": self.member, "epoch": epoch + 1, "seconds": round(time.time() - self.t0, 3)}
        row.update({k: float(np.ravel(v)[0]) for k, v in (logs or {}).items()})
        append_jsonl(self.run.path / "metrics.jsonl", row)
        self.epoch_var.assign(epoch + 1)
        save_checkpoint(self.manager, epoch + 1)
        if self.sample_fn and self.sample_every and ((epoch + 1) % self.sample_every == 0 or epoch == 0):
            samples = self.sample_fn()  # images, or (images, rows) for a grid with that many rows
            images, rows = samples if isinstance(samples, tuple) else (samples, None)
            save_grid(images, self.run.path / "samples" / self.member / f"epoch_{epoch + 1:04d}.png", rows=rows)


def save_checkpoint(manager: tf.train.CheckpointManager, number: int) -> None:
    """`manager.save`; on a full disk or a write refused, one line and no partial checkpoint left
    (the previous one stays the latest, so the run resumes from it)."""
    try:
        manager.save(checkpoint_number=number)
    except Exception as exc:
        error = write_error(manager.directory, exc, "; the last good checkpoint is kept: once the disk "
                                                    "takes writes again, rerun the same command to resume")
        if error is None:
            raise
        prefix = Path(manager.directory) / f"ckpt-{number}"
        shutil.rmtree(f"{prefix}_temp", ignore_errors=True)  # TensorFlow's shards before their merge
        for leftover in prefix.parent.glob(f"{prefix.name}.*"):
            leftover.unlink(missing_ok=True)
        raise error from exc


def _drop_rows_after(run: RunFolder, member: str, epoch: int) -> None:
    """Forget metric lines a crashed run logged past its last checkpoint (they are redone),
    and a torn last line."""
    path = run.path / "metrics.jsonl"
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if not (r.get("member") == member and r.get("epoch", 0) > epoch)]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text)


def _optimizers(items: dict) -> list:
    """The optimizers among checkpoint items, unwrapped from LossScaleOptimizer (its lr is the inner one's)."""
    found = []
    for item in items.values():
        if isinstance(item, keras.optimizers.Optimizer):
            while hasattr(item, "inner_optimizer"):
                item = item.inner_optimizer
            found.append(item)
    return found


def _lr_handles(optimizers) -> list[tuple[tf.Variable, float]]:
    """(variable, base value) pairs that scale each optimizer's learning rate: the rate itself,
    or the `scale` variable of a schedule (tfganaug.schedules); a schedule without one cannot
    be scaled and is left alone."""
    handles = []
    for opt in optimizers:
        lr = getattr(opt, "_learning_rate", None)
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            if isinstance(getattr(lr, "scale", None), tf.Variable):
                handles.append((lr.scale, 1.0))
        else:
            handles.append((opt.learning_rate, float(opt.learning_rate.numpy())))
    return handles


def _multiworker_shims(model: keras.Model) -> None:
    """Work around two gaps of Keras 3.15's `fit` under MultiWorkerMirroredStrategy, on this
    model instance only (private Keras API: tests/test_multiworker.py pins both):

    * keras-team/keras#20585 (open): `fit` builds the model from its first batch after
      `strategy.reduce("MEAN", batch)` over the whole (x, y) structure, which the collective
      strategy cannot reduce ("Attempt to convert a value (PerReplica...)"). The build needs only
      shapes, so it takes the local replica's values instead.
    * Keras reduces each logged value over axis 0 across workers, which fails for the scalar logs
      of the built-in train/test steps ("Invalid reduction dimension 0 for input with 0
      dimensions"); the steps here return them as rank-1 (the GANs' own steps already do).
    """
    strategy = model.distribute_strategy

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def rank_one(step):
        def wrapped(data):
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data))
        return wrapped

    model._maybe_symbolic_build = build
    model.train_step = rank_one(model.train_step)
    model.test_step = rank_one(model.test_step)


def fit_member(run: RunFolder, member: str, model: keras.Model, items: dict, make_batches, *, epochs: int,
               steps_per_epoch: int, keep: int = 3, sample_fn=None, sample_every: int = 0,
               validation=None, verbose="auto", check_weights=None, on_divergence: str = "stop",
               max_rollbacks: int = 3) -> int:
    """Train one member to `epochs`, resuming from its last checkpoint; returns epochs run now.

    On divergence, "stop" raises DivergenceError; "rollback" restores the last good checkpoint,
    halves the learning rate of every optimizer and goes on, at most `max_rollbacks` times per
    member over the whole run. The scale lives in the checkpoint (`lr_scale`), so a resumed run
    keeps the lowered rate.
    """
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    lr_scale = tf.Variable(1.0, dtype=tf.float64, trainable=False, name="lr_scale")
    ckpt = tf.train.Checkpoint(epoch=epoch_var, lr_scale=lr_scale, **items)
    manager = tf.train.CheckpointManager(ckpt, str(run.checkpoint_dir(member)), max_to_keep=keep)
    handles = _lr_handles(_optimizers(items))

    def set_learning_rates():
        for variable, base in handles:
            variable.assign(base * float(lr_scale.numpy()))

    def restore(path):
        names = {name for name, _ in tf.train.list_variables(path)}
        # A checkpoint written before lr_scale existed holds everything else; its scale is 1.
        restorer = ckpt if "lr_scale/.ATTRIBUTES/VARIABLE_VALUE" in names else tf.train.Checkpoint(
            epoch=epoch_var, **items)
        restorer.restore(path).assert_consumed()

    def restore_latest():
        """The newest kept checkpoint that restores; a damaged newer one (truncated, zeroed, a
        data file missing) is passed over for the one before it, and metrics.jsonl says so."""
        kept = [manager.latest_checkpoint] + [c for c in reversed(manager.checkpoints)
                                              if c != manager.latest_checkpoint]
        failed = []
        for path in kept:
            try:
                restore(path)
            except (AssertionError, ValueError, IndexError, tf.errors.OpError) as exc:  # IndexError: truncated
                failed.append((path, " ".join(str(exc).split())[:200]))
                continue
            if failed:
                append_jsonl(run.path / "metrics.jsonl", {
                    "member": member, "event": "checkpoint_unreadable", "skipped": [p for p, _ in failed],
                    "reason": failed[0][1], "restored": path, "restored_epoch": int(epoch_var.numpy())})
                print(f"warning: {failed[0][0]} could not be read ({failed[0][1][:120]}); resuming from {path}",
                      file=sys.stderr)
            return
        raise RunFolderError(f"{failed[0][0]}: expected a checkpoint of this run's models, got one that does not "
                             f"match or is damaged ({failed[0][1]}); no older kept checkpoint restores either "
                             "(rerun with --overwrite to start again)") from None

    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _multiworker_shims(model)
    if manager.latest_checkpoint:
        restore_latest()
    elif on_divergence == "rollback":
        save_checkpoint(manager, 0)  # the state a divergence in the first epoch rolls back to
    set_learning_rates()
    start = int(epoch_var.numpy())
    _drop_rows_after(run, member, start)
    if start >= epochs:
        return 0
    first = start
    while True:
        logger = EpochLogger(run, member, manager, epoch_var, sample_fn, sample_every, check_weights)
        callbacks = [logger, keras.callbacks.TensorBoard(str(run.path / "tensorboard" / member),
                                                         write_graph=False, update_freq="epoch")]
        try:
            model.fit(make_batches(start), epochs=epochs, initial_epoch=start, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, validation_data=validation, verbose=verbose)
            return epochs - first
        except DivergenceError as exc:
            if on_divergence != "rollback":
                raise DivergenceError(f"{exc}; rerun with --on-divergence rollback to retry with half the "
                                      "learning rate") from None
            # Rollbacks are counted from the scale, so a resumed run does not start the count afresh.
            done = round(-math.log2(float(lr_scale.numpy())))
            if done >= max_rollbacks:
                raise DivergenceError(f"{exc}; gave up after {done} rollbacks (learning rate x "
                                      f"{float(lr_scale.numpy()):g}); raise max_rollbacks or lower the "
                                      "learning rate") from None
            diverged = int(epoch_var.numpy()) + 1
            scale = float(lr_scale.numpy()) / 2
            restore_latest()
            lr_scale.assign(scale)
            set_learning_rates()
            start = int(epoch_var.numpy())
            append_jsonl(run.path / "metrics.jsonl", {"member": member, "event": "rollback", "epoch": diverged,
                                                      "restored_epoch": start, "lr_scale": scale})


def seed_runs(seeds, out) -> list[tuple[int, Path]]:
    """(seed, run folder) per seed: `out` itself for one seed, `out/seed-N` for several; every
    seed is checked first, so a bad one stops the command before any run starts."""
    bad = [s for s in seeds if not (isinstance(s, int) and 0 <= s <= config_lib.MAX_SEED)]
    if bad or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct integers in [0, {config_lib.MAX_SEED}], got "
                          + ",".join(map(str, seeds)))
    return [(seed, Path(out) / f"seed-{seed}" if len(seeds) > 1 else Path(out)) for seed in seeds]


def save_keras(model, path: Path) -> None:
    """A final model as `.keras`, written atomically (Keras needs the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, model.save, suffix=".keras")


def steps_for(n_examples: int, batch_size: int, override: int | None) -> int:
    return override or max(1, math.ceil(n_examples / batch_size))


def lock(run: RunFolder) -> FolderLock:
    return FolderLock(run.path)


@contextlib.contextmanager
def start_run(cfg, out, overwrite: bool = False):
    """Open (or reopen to resume) the run folder of `cfg`, hold its lock, seed and pick the
    distribution strategy. Yields (run, strategy); strategy is None when the run is complete.

    In a multi-worker run only the chief writes `out`. Every other worker trains in a private
    copy of it (`worker_copy`): it resumes from the chief's checkpoints, which therefore must be
    on a file system all workers see (as for Keras' BackupAndRestore), and its own checkpoints,
    samples and final models go to that copy, which is deleted when the command ends.
    """
    strategy = strategy_for(cfg)
    if is_chief(strategy):
        run = RunFolder.open(out, cfg, overwrite)
        with lock(run):
            yield from _started(run, cfg, strategy)
        return
    resolver = strategy.cluster_resolver
    copy = worker_copy(out, f"{resolver.task_type}{resolver.task_id}", fresh=overwrite)
    run = RunFolder.open(copy, cfg)
    try:
        yield from _started(run, cfg, strategy)
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
        run.path = Path(out)  # what the command trained is the chief's folder


def _started(run: RunFolder, cfg, strategy):
    if run.status().get("state") == "complete":
        yield run, None
        return
    run.set_status(state="running")
    setup_determinism(cfg)
    run.set_status(replicas=strategy.num_replicas_in_sync)
    yield run, strategy


def worker_copy(out, task: str, fresh: bool = False) -> Path:
    """A non-chief worker's private run folder: a copy of what it needs of the chief's `out`
    (config, status, metrics, checkpoints) to resume exactly as the chief does, in a temporary
    folder named after `out` and the task, so that the rerun of a killed worker first removes
    what the killed one left; empty when `fresh` (--overwrite) or when the chief's folder does
    not exist yet."""
    key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"tfganaug-worker-{key}-{task}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    copy = home / "run"
    source = Path(out)
    if not fresh and (source / "config.json").exists():
        try:
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("tensorboard", "samples", "final", ".lock"))
        except (OSError, shutil.Error) as exc:
            shutil.rmtree(copy.parent, ignore_errors=True)
            raise RunFolderError(f"{source}: expected the chief's run folder to be readable by every worker, got "
                                 f"{' '.join(str(exc).split())[:160]}") from None
    return copy
