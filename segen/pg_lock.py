"""A lock every machine sees: a PostgreSQL session-level advisory lock,
pg_advisory_lock(hashtext(key)), held by one connection for the block. A killed holder's
session ends with its connection, which frees the lock. The promotion lock uses it in team
mode (segen.registry.promotion.lock); the database is a lock server, not MLflow's tables.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from typing import Any, Iterator

from segen.locking import current_user
from segen.retry import Server, ServerUnavailable

_POLL_S = 0.2


class AdvisoryLockBusy(RuntimeError):
    """Another session held the lock for longer than the timeout."""

    def __init__(self, holder: str, where: str):
        super().__init__(f"{holder} holds the advisory lock in {where}")
        self.holder, self.where = holder, where


@contextmanager
def advisory_lock(url: str, key: str, timeout_s: float, *, unset_to_fall_back: str
                  ) -> Iterator[str]:
    """Hold the advisory lock of key in the database at url for the block, trying every
    _POLL_S (pg_try_advisory_lock) so that a wait can end with a clear message. Yields where
    the lock lives (host:port/db, no password)."""
    conn = _connect(url, unset_to_fall_back)
    where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout_s
            while not _try_lock(cur, key):
                if time.monotonic() >= deadline:
                    raise AdvisoryLockBusy(_holder(cur, key), where)
                time.sleep(_POLL_S)
            try:
                yield where
            finally:
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
    finally:
        conn.close()  # the session's end frees the lock in any case


def _connect(url: str, unset_to_fall_back: str) -> Any:
    import psycopg2  # only team mode needs it

    try:
        conn = psycopg2.connect(url, connect_timeout=10, application_name=_holder_label())
    except psycopg2.OperationalError as err:
        server = Server("PostgreSQL lock database", url, "start it (`segen team up`, then "
                        f"`source` its team.env) or unset {unset_to_fall_back} to use the "
                        "file lock of one machine")
        raise ServerUnavailable(server, 1, 10, str(err).strip()) from None
    conn.autocommit = True  # a session lock, not a transaction's: it lasts for the block
    return conn


def _try_lock(cur: Any, key: str) -> bool:
    cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
    return bool(cur.fetchone()[0])


def _holder_label() -> str:
    """The session's application_name: who holds the lock, for a waiter's message."""
    return f"segen pid {os.getpid()} user {current_user()} on {socket.gethostname()}"[:63]


def _holder(cur: Any, key: str) -> str:
    cur.execute("""
        SELECT a.application_name, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(%s)::bigint
        """, (key,))
    row = cur.fetchone()
    return (f"{row[0] or 'another session'} since {row[1]:%Y-%m-%dT%H:%M:%S%z}" if row
            else "another process")
