"""One writer of data/ at a time: `segen data add` and a retraining run take this lock, so a
scheduled run never versions a half-added dataset and two `dvc add` never race for DVC's
own lock (which fails at once instead of waiting)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from filelock import FileLock, Timeout

from segen.project import Project


@contextmanager
def data_lock(project: Project, who: str) -> Iterator[None]:
    """Hold .segen/data.lock, waiting as long as another holder keeps it: a filelock.FileLock
    (a kernel flock, released by the OS even if the holder is killed; no soft-lock fallback,
    whose marker file would outlive a killed holder)."""
    project.state.mkdir(parents=True, exist_ok=True)
    path = project.state / "data.lock"
    lock = FileLock(path, fallback_to_soft=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        print(f"{who}: waiting for another segen process that changes or retrains on "
              f"data/ ({path})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
