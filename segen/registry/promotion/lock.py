"""One promotion of a model at a time.

Embedded mode: an exclusive filelock.FileLock on .segen/locks/<model>.lock. On Unix that is
a kernel flock, dropped when its holder exits, so a killed promotion never leaves a stale
lock behind (no soft-lock fallback: a marker file would outlive a killed holder). It
serialises processes on one machine (sharing one project folder).

Team mode: when SEGEN_LOCK_DATABASE_URL names a PostgreSQL database (the registry's own:
`segen team up` writes it into team.env), a session-level advisory lock keyed by the model
name, pg_advisory_lock(hashtext(name)), held by one connection for the block: every machine
that promotes against that registry sees it, and a killed holder's session ends with its
connection, which frees the lock. What segen adds on top, re-reading the alias just before
moving it, narrows the window further but is no transaction.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from segen.locking import current_user
from segen.pg_lock import AdvisoryLockBusy, advisory_lock
from segen.project import Project

_POLL_S = 0.2
LOCK_URL_ENV = "SEGEN_LOCK_DATABASE_URL"


class PromotionBusy(RuntimeError):
    """Another promotion of the same model held the lock for longer than the timeout."""


def lock_path(project: Project, model_name: str) -> Path:
    return project.state / "locks" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', model_name)}.lock"


@contextmanager
def model_lock(project: Project, model_name: str, timeout_s: float) -> Iterator[Path | str]:
    """Hold the model's lock for the block; wait up to timeout_s for another holder. Yields
    the lock file, or (team mode) the database that holds the advisory lock."""
    url = os.environ.get(LOCK_URL_ENV)
    if url:
        try:
            with advisory_lock(url, model_name, timeout_s, unset_to_fall_back=LOCK_URL_ENV
                               ) as where:
                yield where
        except AdvisoryLockBusy as busy:
            raise PromotionBusy(
                f"another promotion or rollback of {model_name} ({busy.holder}) still holds "
                f"its PostgreSQL advisory lock in {busy.where} after {timeout_s:g} s. Wait "
                "for it to finish and retry (or raise promote.lock_timeout_s in "
                "params.yaml).") from None
    else:
        with _file_lock(project, model_name, timeout_s) as path:
            yield path


@contextmanager
def _file_lock(project: Project, model_name: str, timeout_s: float) -> Iterator[Path]:
    path = lock_path(project, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, fallback_to_soft=False, on_acquired=_write_holder)
    try:
        lock.acquire(timeout=timeout_s, poll_interval=_POLL_S)
    except Timeout:
        raise PromotionBusy(_busy_message(path, model_name, timeout_s)) from None
    try:
        yield path
    finally:
        lock.release()


def _write_holder(fd: int) -> None:
    """Who holds the lock, for the message a waiting process prints on timeout (waiters
    open the file without truncating it)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, (f"pid {os.getpid()} user {current_user()} since "
                   f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n").encode(), 0)


def _busy_message(path: Path, model_name: str, timeout_s: float) -> str:
    holder = path.read_text().strip() or "another process"
    return (f"another promotion or rollback of {model_name} ({holder}) still holds {path} "
            f"after {timeout_s:g} s. Wait for it to finish and retry (or raise "
            "promote.lock_timeout_s in params.yaml).")


