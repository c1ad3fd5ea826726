"""One project, one writer: every command that writes (run, stage, import-*, data add,
retrain, promote, rollback) holds .segen/project.lock for as long as it runs; read-only
commands (lineage, history, predict, runs) never take it.

The lock is a filelock.FileLock, a kernel flock on Unix: the kernel drops it the moment its
holder exits, however it exits, so a lock held by a killed process is free at once (no
soft-lock fallback, whose marker file would outlive a killed holder). The file holds who has
the lock, for the message a second writer prints.

Re-entrant within a process: `segen retrain` holds it and its flow takes it again.
"""
from __future__ import annotations

import getpass
import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from segen.project import Project, ProjectError

_POLL_S = 0.1
_depth: dict[Path, int] = {}  # lock path -> how many blocks of this process hold it


class ProjectBusy(ProjectError):
    """Another segen command is writing to this project and the caller would not wait."""


def lock_path(project: Project) -> Path:
    return project.state / "project.lock"


@contextmanager
def project_lock(project: Project, command: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the project's writer lock for the block.

    wait: block until the holder finishes (saying so on stderr), or raise ProjectBusy at
    once, naming the holder."""
    path = lock_path(project)
    lock = None if _depth.get(path) else _acquire(path, command, wait)
    _depth[path] = _depth.get(path, 0) + 1
    try:
        yield
    finally:
        _depth[path] -= 1
        if lock is not None:
            del _depth[path]
            lock.release()


def _acquire(path: Path, command: str, wait: bool) -> FileLock:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(path, fallback_to_soft=False, thread_local=False,
                    on_acquired=lambda fd: _write_holder(fd, command))
    try:
        lock.acquire(blocking=False)
        return lock
    except Timeout:
        holder = holder_of(path)
    if not wait:
        raise ProjectBusy(
            f"{command}: another segen command is writing to this project ({holder}; lock "
            f"{path}). Wait for it to finish, or run again with --wait to queue behind it.")
    print(f"{command}: waiting for another segen command that writes to this project "
          f"({holder}; lock {path})", file=sys.stderr, flush=True)
    start = time.monotonic()
    lock.acquire(poll_interval=_POLL_S)
    print(f"{command}: got the project lock after {time.monotonic() - start:.1f} s",
          file=sys.stderr, flush=True)
    return lock


def holder_of(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (waiters never truncate the file)."""
    try:
        return path.read_text().strip() or "a segen process"
    except OSError:
        return "a segen process"


def _write_holder(fd: int, command: str) -> None:
    os.ftruncate(fd, 0)
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.pwrite(fd, f"{command}, pid {os.getpid()}, since {since}".encode(), 0)


def current_user() -> str:
    """The login name for lock holders and the alias history ("unknown" when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
        return "unknown"
