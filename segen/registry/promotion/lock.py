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

import getpass
import os
import re
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from segen.project import Project
from segen.retry import Server, ServerUnavailable

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
        with advisory_lock(url, model_name, timeout_s) as where:
            yield where
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


def current_user() -> str:
    """The login name for lock files and the alias history ("unknown" when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers) and no $USER
        return "unknown"


@contextmanager
def advisory_lock(url: str, model_name: str, timeout_s: float) -> Iterator[str]:
    """pg_advisory_lock(hashtext(model_name)) in the database at url, for the block: tried
    every _POLL_S (pg_try_advisory_lock) so that a wait can end with a clear message."""
    conn = _connect(url)
    where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"  # no password
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout_s
            while not _try_lock(cur, model_name):
                if time.monotonic() >= deadline:
                    raise PromotionBusy(_pg_busy_message(cur, model_name, where, timeout_s))
                time.sleep(_POLL_S)
            try:
                yield where
            finally:
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (model_name,))
    finally:
        conn.close()  # the session's end frees the lock in any case


def _connect(url: str):  # -> psycopg2 connection (imported here: only team mode needs it)
    import psycopg2

    try:
        conn = psycopg2.connect(url, connect_timeout=10, application_name=_holder_label())
    except psycopg2.OperationalError as err:
        server = Server("PostgreSQL lock database", url, "start it (`segen team up`, then "
                        f"`source` its team.env) or unset {LOCK_URL_ENV} to use the file lock "
                        "of one machine")
        raise ServerUnavailable(server, 1, 10, str(err).strip()) from None
    conn.autocommit = True  # a session lock, not a transaction's: it lasts for the block
    return conn


def _try_lock(cur, model_name: str) -> bool:
    cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (model_name,))
    return bool(cur.fetchone()[0])


def _holder_label() -> str:
    """The session's application_name: who holds the lock, for a waiter's message."""
    return f"segen pid {os.getpid()} user {current_user()} on {socket.gethostname()}"[:63]


def _pg_busy_message(cur, model_name: str, where: str, timeout_s: float) -> str:
    cur.execute("""
        SELECT a.application_name, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(%s)::bigint
        """, (model_name,))
    row = cur.fetchone()
    holder = (f"{row[0] or 'another session'} since {row[1]:%Y-%m-%dT%H:%M:%S%z}" if row
              else "another process")
    return (f"another promotion or rollback of {model_name} ({holder}) still holds its "
            f"PostgreSQL advisory lock in {where} after {timeout_s:g} s. Wait for it to "
            "finish and retry (or raise promote.lock_timeout_s in params.yaml).")
