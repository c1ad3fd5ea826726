"""A local `prefect server` that segen starts in the background for schedules, and stops.

The temporary (ephemeral) Prefect server of a plain run cannot run schedules, so
`segen schedule` needs a real server: the one at PREFECT_API_URL, or this one. It runs on
127.0.0.1 in its own process group, with telemetry and the UI off and its state under
.segen/prefect-server/; its pid and URL are recorded in .segen/prefect-server.json so a
later `segen schedule` reuses it and `segen schedule --stop-server` stops it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from segen.env import TELEMETRY_OFF
from segen.pipeline.store import write_atomic
from segen.project import Project

HOST = "127.0.0.1"
START_TIMEOUT_S = 180.0  # 4-17 s to healthy here (TOOL-NOTES.md); CI machines are slower
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServerRecord:
    pid: int  # also the process group id: the server starts a session of its own
    port: int
    api_url: str  # what PREFECT_API_URL should be, e.g. http://127.0.0.1:4321/api
    home: str  # its PREFECT_HOME (SQLite database, logs)
    log: str


def record_path(project: Project) -> Path:
    return project.state / "prefect-server.json"


def server_home(project: Project) -> Path:
    # Apart from .segen/prefect (the temporary servers' home): one SQLite file per server.
    return project.state / "prefect-server"


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """GET <api>/health answers 200 with `true` once the server accepts requests."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def read_record(project: Project) -> ServerRecord | None:
    path = record_path(project)
    if not path.is_file():
        return None
    try:
        return ServerRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a damaged record names no server we can trust


def running_server(project: Project) -> ServerRecord | None:
    """The recorded server if its process is alive and healthy, else None."""
    record = read_record(project)
    if record is None or not _alive(record.pid) or not is_healthy(record.api_url):
        return None
    return record


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(home: Path) -> dict[str, str]:
    """The server's environment: telemetry and UI off, state in home, no client API URL."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(TELEMETRY_OFF)
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_UI_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false"})
    return env


def start_server(home: Path, log: Path, port: int | None = None,
                 timeout: float = START_TIMEOUT_S) -> ServerRecord:
    """Start `prefect server start` in the background and wait until /api/health answers."""
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", HOST,
               "--port", str(port), "--no-ui", "--analytics-off"]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=server_env(home),
                                   start_new_session=True)  # its own group: stop takes all
    record = ServerRecord(process.pid, port, f"http://{HOST}:{port}/api", str(home), str(log))
    deadline = time.monotonic() + timeout
    while not is_healthy(record.api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process_group(process.pid)
            raise RuntimeError(f"`prefect server start` on port {port} did not become healthy "
                               f"within {timeout:.0f} s (exit code {process.poll()}); see its "
                               f"log {log}")
        time.sleep(0.5)
    return record


def ensure_server(project: Project) -> tuple[ServerRecord, bool]:
    """The project's running local server, started if needed; (record, started_now)."""
    record = running_server(project)
    if record is not None:
        return record, False
    home = server_home(project)
    home.mkdir(parents=True, exist_ok=True)
    record = start_server(home, home / "server.log")
    write_atomic(record_path(project), json.dumps(asdict(record), indent=1) + "\n")
    return record, True


def stop_server(project: Project) -> ServerRecord | None:
    """Stop the project's recorded server (if any) and forget it; returns what was stopped."""
    record = read_record(project)
    if record is not None and _alive(record.pid):
        stop_process_group(record.pid)
    record_path(project).unlink(missing_ok=True)
    return record


def stop_process_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group led by pid, then SIGKILL whatever is left after timeout."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not _group_alive(pid):
                return
            time.sleep(0.2)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child would otherwise linger as a zombie
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
