"""One writer of data/ at a time: `segen data add` and a retraining run take this lock, so a
scheduled run never versions a half-added dataset and two `dvc add` never race for DVC's
own lock (which fails at once instead of waiting)."""
from __future__ import annotations

import fcntl
import sys
from contextlib import contextmanager
from typing import Iterator

from segen.project import Project


@contextmanager
def data_lock(project: Project, who: str) -> Iterator[None]:
    """Hold .segen/data.lock (an flock: released by the OS even if the holder is killed)."""
    project.state.mkdir(parents=True, exist_ok=True)
    with open(project.state / "data.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{who}: waiting for another segen process that changes or retrains on "
                  f"data/ ({project.state / 'data.lock'})", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
