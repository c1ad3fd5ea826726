"""The team stack's PostgreSQL: Debian's server binaries, a cluster under DIR/postgres, the
server on TCP only (no Unix socket), password (scram) login for one role.

initdb and postgres refuse to run as root, so under root they run as the unprivileged user
`segen` (created when absent), which owns DIR/postgres and must be able to reach it: a
parent folder closed to everyone but its owner (mode 0700, like .segen/ or pytest's tmp
folders) gets that user's group with traverse-only permission (g+x), nothing more.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

OS_USER = "segen"
ROLE = "segen"
_INSTALL = ("install them with `apt-get install -y postgresql postgresql-contrib` (`make "
            "install` does when apt-get is there)")


def server_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, postgres): on PATH, else Debian's folder."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed: {_INSTALL}")
    return found


def os_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: None (this user) unless running as root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", OS_USER], check=True)
        entry = pwd.getpwnam(OS_USER)
    return entry.pw_uid, entry.pw_gid


def make_reachable(folder: Path, uid: int, gid: int) -> None:
    """Let uid traverse every parent of folder (see the module's docstring)."""
    for parent in reversed(folder.resolve().parents):
        info = parent.stat()
        if _can_traverse(info, uid, gid):
            continue
        if info.st_mode & 0o070:  # its group has a say: changing the group would take it away
            raise PermissionError(f"the PostgreSQL user {OS_USER} cannot reach {folder}: "
                                  f"{parent} is closed to it; give it o+x, or choose a --dir "
                                  "under a folder it can reach")
        os.chown(parent, -1, gid)
        os.chmod(parent, stat.S_IMODE(info.st_mode) | stat.S_IXGRP)


def _can_traverse(info: os.stat_result, uid: int, gid: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def init_cluster(root: Path, password: str, log: Path, host: str) -> Path:
    """initdb a cluster in root/data for ROLE with password; returns the data folder.
    initdb lets in loopback clients only; on another host address, clients from anywhere
    (with the password)."""
    owner = os_user()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if owner is not None:
        make_reachable(root, *owner)
        os.chown(root, *owner)
    pwfile = root / "initdb.pw"
    pwfile.write_text(password + "\n")
    try:
        pwfile.chmod(0o600)
        if owner is not None:
            os.chown(pwfile, *owner)
        with open(log, "ab") as out:
            done = subprocess.run([server_bin("initdb"), "-D", str(root / "data"), "-U", ROLE,
                                   "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                   "--no-locale"], stdout=out, stderr=subprocess.STDOUT,
                                  env=_env(), user=owner and owner[0],
                                  group=owner and owner[1], extra_groups=[] if owner else None)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {done.returncode}); its log {log}:\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
    finally:
        pwfile.unlink(missing_ok=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        with open(root / "data" / "pg_hba.conf", "a") as hba:
            hba.write("host all all all scram-sha-256  # segen team up --host\n")
    return root / "data"


def server_command(data: Path, host: str, port: int) -> tuple[list[str], dict[str, Any]]:
    """The postgres command line and the Popen user options to run it with."""
    owner = os_user()
    cmd = [server_bin("postgres"), "-D", str(data), "-p", str(port),
           "-c", f"listen_addresses={host}", "-c", "unix_socket_directories=",
           "-c", "shared_buffers=64MB"]  # beside training on one machine: small is enough
    return cmd, {"env": _env(), "user": owner and owner[0], "group": owner and owner[1]}


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def url(host: str, port: int, password: str, database: str, driver: str = "") -> str:
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{ROLE}:{password}@{host}:{port}/{database}"


def answers(host: str, port: int, password: str) -> bool:
    """The health check: a login as ROLE and SELECT 1."""
    import psycopg2

    try:
        with psycopg2.connect(host=host, port=port, user=ROLE, password=password,
                              dbname="postgres", connect_timeout=3) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return True
    except psycopg2.OperationalError:
        return False


def create_databases(host: str, port: int, password: str, names: list[str],
                     trigram_in: str) -> None:
    """Create each database unless present; pg_trgm in trigram_in (Prefect's migrations
    need it, from postgresql-contrib)."""
    from psycopg2 import sql

    with _autocommit(host, port, password, "postgres") as cur:
        for name in names:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _autocommit(host, port, password, trigram_in) as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")


@contextmanager
def _autocommit(host: str, port: int, password: str, database: str) -> Iterator[Any]:
    """A cursor outside any transaction (CREATE DATABASE cannot run in one; psycopg2's
    `with conn` would open one even in autocommit mode)."""
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user=ROLE, password=password,
                            dbname=database)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()
