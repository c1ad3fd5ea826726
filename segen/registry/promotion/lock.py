"""One promotion of a model at a time: an exclusive fcntl.flock on
.segen/locks/<model>.lock. The kernel drops the lock when its holder exits, so a killed
promotion never leaves a stale lock behind.

This serialises processes on one machine (sharing one project folder). Promotions from
several machines against one MLflow server need a lock they all see (e.g. a PostgreSQL
advisory lock or a lock row in the database behind the server); what segen adds on top,
re-reading the alias just before moving it, narrows the window but is no transaction.
"""
from __future__ import annotations

import fcntl
import getpass
import os
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from segen.project import Project

_POLL_S = 0.2


class PromotionBusy(RuntimeError):
    """Another promotion of the same model held the lock for longer than the timeout."""


def lock_path(project: Project, model_name: str) -> Path:
    return project.state / "locks" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', model_name)}.lock"


@contextmanager
def model_lock(project: Project, model_name: str, timeout_s: float) -> Iterator[Path]:
    """Hold the model's lock for the block; wait up to timeout_s for another holder."""
    path = lock_path(project, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PromotionBusy(_busy_message(path, model_name, timeout_s)) from None
                time.sleep(_POLL_S)
        try:
            # Who holds it, for the message a waiting process prints on timeout.
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} user {_user()} since "
                         f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
            handle.flush()
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _busy_message(path: Path, model_name: str, timeout_s: float) -> str:
    holder = path.read_text().strip() or "another process"
    return (f"another promotion or rollback of {model_name} ({holder}) still holds {path} "
            f"after {timeout_s:g} s. Wait for it to finish and retry (or raise "
            "promote.lock_timeout_s in params.yaml).")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
        return "unknown"
