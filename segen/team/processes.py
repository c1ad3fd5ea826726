"""Servers as detached process groups: start one with its output in a log file, wait for its
health check, tell whether it is alive, and stop the whole group.

A server started by `segen team up` outlives the command, so it is no child of whoever stops
it later: liveness and stopping go by the recorded pid and process group, read from /proc
(a zombie counts as gone; it holds no port and no memory).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

_POLL_S = 0.3


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(host: str, count: int) -> list[int]:
    """count distinct free ports (all held open at once, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when url answers 200 (a health endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def start_group(cmd: list[str], env: dict[str, str], log: Path, *, cwd: Path | None = None,
                user: int | None = None, group: int | None = None) -> subprocess.Popen:
    """Start cmd in a new session (its own process group: stopped whole), output to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                user=user, group=group, extra_groups=[] if user else None)


def wait_until(check: Callable[[], bool], what: str, alive: Callable[[], bool], log: Path,
               timeout: float) -> None:
    """Poll check until it is true; fail at once with the log's tail when the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise RuntimeError(f"{what} exited before it answered; its log {log}:\n"
                               f"{_tail(log)}")
        time.sleep(_POLL_S)
    raise TimeoutError(f"{what} did not answer within {timeout:.0f} s; its log {log}:\n"
                       f"{_tail(log)}")


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until the child process's health URL answers 200."""
    wait_until(lambda: http_ok(url), url, lambda: process.poll() is None, log, timeout)


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else "(no log)"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks after boot) of a process, from
    /proc/PID/stat; None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[2]), int(fields[19])


def start_ticks(pid: int) -> int | None:
    """When the process started: with its pid, what tells it from a later one that reused
    the pid."""
    stat = _stat(pid)
    return None if stat is None else stat[2]


def owns_group(pgid: int, started: int) -> bool:
    """The group led by the process recorded as (pgid, started) is still there: its leader
    with that start time, or members left after the leader ended (Linux hands out no pid
    still in use as a process group id, so they are that leader's)."""
    stat = _stat(pgid)
    if stat is not None and stat[0] != "Z":
        return stat[2] == started
    return bool(group_members(pgid))


def pid_alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """The live (non-zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry))
    return members


def stop_group(pgid: int, *, first: int = signal.SIGTERM, grace_s: float = 15,
               reap: Callable[[], object] | None = None) -> None:
    """Send first to the group (to its leader only for SIGINT: PostgreSQL's fast shutdown),
    wait up to grace_s for every member to end, then SIGKILL what is left. reap: the
    Popen.poll of a child, so that it does not linger as a zombie."""
    for sig, wait in ((first, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pgid, sig) if sig == signal.SIGINT else os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if reap is not None:
                reap()
            if not group_members(pgid):
                return
            time.sleep(_POLL_S)
