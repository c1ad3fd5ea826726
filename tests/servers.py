"""Real servers on 127.0.0.1 for the tests that are about a server: an `mlflow server`
(one worker, as TOOL-NOTES.md advises) and a `prefect server`. Each runs in its own process
group, is health-checked before use and is always stopped (the whole group) afterwards.

    with mlflow_server(tmp_path / "mlflow") as uri:      # "http://127.0.0.1:PORT"
        ...
    with prefect_server(tmp_path / "prefect") as api:   # "http://127.0.0.1:PORT/api"
        ...

Restarting on the same folder keeps the store: that is how a test checks that something
survives a server restart.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from segen.env import TELEMETRY_OFF

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def _serving(cmd: list[str], env: dict[str, str], health: str, log: Path,
             timeout: float) -> Iterator[None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # own group: stop it whole
    try:
        wait_healthy(health, process, log, timeout)
        yield
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def mlflow_server(root: Path, port: int | None = None, timeout: float = 300) -> Iterator[str]:
    """`mlflow server` with a SQLite store and served artifacts under root; yields its URI."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    env = {**os.environ, **TELEMETRY_OFF, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = f"http://127.0.0.1:{port}"
    with _serving(cmd, env, f"{uri}/health", root / "server.log", timeout):
        yield uri


@contextmanager
def prefect_server(root: Path, port: int | None = None, timeout: float = 300) -> Iterator[str]:
    """`prefect server start` (SQLite, no UI) with its state under root; yields the API URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
           "--no-ui", "--analytics-off"]
    env = {**os.environ, **TELEMETRY_OFF, "PREFECT_HOME": str(root),
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    api = f"http://127.0.0.1:{port}/api"
    with _serving(cmd, env, f"{api}/health", root / "server.log", timeout):
        yield api
