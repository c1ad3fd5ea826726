"""The one resumable epoch loop every trainer runs: resume from the key's checkpoint, one
MLflow run (continued on resume), per-epoch metrics, a progress bar, a checkpoint after
every epoch, and the trainer's own end-of-epoch checks (validation, divergence).

What is not compute stays off the training path: a background thread logs each epoch's
checkpoint (which carries the epoch's metrics) and then logs those metrics to MLflow, from a
copy of the state taken at the epoch's end (one epoch in flight). The checkpoint appears by
an atomic rename, so a kill never leaves half of one; a kill between the checkpoint and the
log is repaired on resume, which logs the checkpointed epoch's metrics if they are missing.
Each epoch is therefore logged exactly once, however the run was stopped.

The checkpoint before the latest is kept (checkpoint.prev.pt): a latest one that cannot be
read (a damaged disk, a hand edit) is set aside with a warning and the run resumes from the
one before, or from scratch. Checkpoints are read with torch.load(weights_only=True): only
tensors and plain containers, so a crafted file cannot run code when a run resumes.
"""
from __future__ import annotations

import concurrent.futures
import io
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm.auto import tqdm

from segen.disk import writing
from segen.faults import failpoint
from segen.project import Project
from segen.redact import redacted
from segen.tracking import client, start_run

log = logging.getLogger("segen.training")
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"  # the one before: what a resume falls back to
_METRICS = "epoch_metrics"  # in a checkpoint: the metrics of the epoch it holds


class Resumable(Protocol):
    """A trainer the loop can drive: its epoch count, state and restore, one epoch."""
    epoch: int
    device: torch.device

    def state(self, run_id: str) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def train_epoch(self, bar: tqdm) -> dict[str, float]: ...


@dataclass(frozen=True)
class LoopResult:
    run_id: str
    resumed_from: int  # the epoch the checkpoint held (0: a fresh run)
    train_seconds: float  # in train_epoch only
    metrics: dict[str, float]  # the last epoch's


def checkpoint_path(project: Project, stage: str, key: str) -> Path:
    return project.work / stage / key / CHECKPOINT


def run_epochs(project: Project, stage: str, key: str, trainer: Resumable, epochs: int, *,
               images_per_epoch: int, params: dict[str, Any], tags: dict[str, str],
               end_of_epoch: Callable[[Resumable, dict[str, float], Any], dict[str, float]],
               resumed: Callable[[int], None] | None = None) -> LoopResult:
    """Train up to `epochs`, resuming where a killed run of this stage and key stopped.

    params: logged once (a fresh run); end_of_epoch(trainer, losses, run) -> more metrics
    (validation), or raises to stop the stage (divergence); resumed(epoch): called once the
    checkpoint is read (rank 0 of a group: the other ranks may read it now)."""
    import mlflow

    path = checkpoint_path(project, stage, key)
    state = _resume(trainer, path, epochs)
    if resumed is not None:
        resumed(trainer.epoch)
    # a run resumed at its last epoch trains nothing: its result is the checkpoint's
    resumed_from, seconds, metrics = trainer.epoch, 0.0, (state or {}).get(_METRICS, {})
    with start_run(project, stage, run_id=state and state["run_id"], tags=tags) as run, \
            tqdm(total=(epochs - resumed_from) * images_per_epoch, unit="img", desc=stage,
                 mininterval=1.0) as bar, _CheckpointWriter(path) as checkpoints:
        if state is None:
            # redacted: a params value may be a URL with credentials
            mlflow.log_params(redacted({**params, "device": trainer.device.type}))
        else:
            _log_if_missing(run.info.run_id, trainer.epoch, state.get(_METRICS, {}))
        while trainer.epoch < epochs:
            start = time.perf_counter()
            losses = trainer.train_epoch(bar)
            seconds += time.perf_counter() - start
            metrics = {**losses, **end_of_epoch(trainer, losses, run)}
            checkpoints.write(run.info.run_id, trainer.epoch, metrics,
                              trainer.state(run.info.run_id))
            bar.set_postfix(epoch=trainer.epoch, **{k: f"{v:.4g}" for k, v in losses.items()})
        run_id = run.info.run_id
    return LoopResult(run_id, resumed_from, seconds, metrics)


def follow_epochs(project: Project, stage: str, key: str, trainer: Resumable, epochs: int, *,
                  before: Callable[[], None], end_of_epoch: Callable[[Resumable], None]) -> None:
    """The loop of a rank other than 0 in a group: the same resume and epochs as rank 0's
    run_epochs, without MLflow or checkpoints (rank 0 writes those).

    before(): returns once rank 0 has read the checkpoint (and set aside a damaged one), so
    every rank restores the same one; end_of_epoch(trainer): waits for rank 0's validation."""
    before()
    _resume(trainer, checkpoint_path(project, stage, key), epochs)
    with tqdm(disable=True) as bar:
        while trainer.epoch < epochs:
            trainer.train_epoch(bar)
            end_of_epoch(trainer)


def discard_checkpoint(project: Project, stage: str, key: str) -> None:
    """Once the stage's outputs are written, its resumable work is no longer needed."""
    shutil.rmtree(checkpoint_path(project, stage, key).parent, ignore_errors=True)


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf loss: the stage stops, naming the loss and the epoch."""


def check_finite(stage: str, epoch: int, losses: dict[str, float], fix: str) -> None:
    """Raise DivergenceError if a loss is NaN or infinite (an end_of_epoch check: it runs
    before the epoch's checkpoint, so no NaN weights are saved to resume from)."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise DivergenceError(f"{stage}: loss {name} became {value} at epoch {epoch}. "
                                  f"{fix}")


def _resume(trainer: Resumable, path: Path, epochs: int) -> dict[str, Any] | None:
    """Restore the trainer from the checkpoint a killed run left (its run_id: the MLflow run
    to go on with), or from the one before it when that cannot be read; None: a fresh run."""
    for candidate in (path, path.with_name(PREVIOUS)):
        state = _read_checkpoint(candidate)
        if state is not None:
            trainer.restore(state)
            log.info("resuming from epoch %d/%d (%s)", trainer.epoch, epochs, candidate)
            return state
    return None


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint's state, or None when there is none or it is unusable (then set aside
    as <name>.corrupt, so the next save does not keep it as the fallback)."""
    if not path.is_file():
        return None
    try:
        # weights_only: tensors and plain containers only, never code (a crafted pickle
        # is refused here instead of run)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(state, dict) and isinstance(state.get("epoch"), int)
                and isinstance(state.get("run_id"), str)):
            raise ValueError("not a segen checkpoint (no epoch and run_id)")
    except Exception as err:  # truncated, garbage or refused: all mean unusable
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("checkpoint %s cannot be used (%s: %s); set aside as %s, falling back "
                    "to the checkpoint before it or to a fresh start", path,
                    type(err).__name__, str(err)[:300], aside)
        return None
    return state


def _log_metrics(run_id: str, epoch: int, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)  # the run's active-run context is the training thread's
    client().log_batch(run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])


def _log_if_missing(run_id: str, epoch: int, metrics: dict[str, float]) -> None:
    """The killed run may have checkpointed `epoch` without logging it: log it once."""
    if not metrics:
        return
    history = client().get_metric_history(run_id, next(iter(metrics)))
    if all(m.step != epoch for m in history):
        _log_metrics(run_id, epoch, metrics)


class _CheckpointWriter:
    """Writes an epoch's checkpoint, then logs its metrics, on a background thread."""

    def __init__(self, path: Path):
        self.path = path
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self.pending: concurrent.futures.Future | None = None

    def write(self, run_id: str, epoch: int, metrics: dict[str, float],
              state: dict[str, Any]) -> None:
        snapshot = _cpu_copy(state)  # the live tensors change in the next epoch
        self._wait()
        self.pending = self.pool.submit(self._save_and_log, run_id, epoch, metrics, snapshot)

    def _save_and_log(self, run_id: str, epoch: int, metrics: dict[str, float],
                      state: dict[str, Any]) -> None:
        save_checkpoint(self.path, {**state, _METRICS: metrics})
        _log_metrics(run_id, epoch, metrics)

    def _wait(self) -> None:
        if self.pending is not None:
            self.pending.result()  # re-raises a failed write (e.g. a full disk)

    def __enter__(self) -> "_CheckpointWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown()


def _cpu_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file then rename: a kill never leaves half a checkpoint.
    The checkpoint it replaces becomes PREVIOUS (a rename too), the fallback of a resume
    whose latest checkpoint turns out unreadable; a kill between the two renames leaves
    PREVIOUS, which a resume reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    buffer = io.BytesIO()  # serialised in memory: torch's own file writer turns a full disk
    torch.save(state, buffer)  # into a bare RuntimeError, Python's write gives ENOSPC/EFBIG
    try:
        with writing(tmp, "the previous checkpoint is kept: free space and rerun to resume "
                     "from it"):
            tmp.write_bytes(buffer.getbuffer())
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written checkpoint left behind
        raise
    failpoint("checkpoint.write")
    if path.is_file():
        os.replace(path, path.with_name(PREVIOUS))
    os.replace(tmp, path)
