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
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from segen.env import TELEMETRY_OFF
from segen.team.processes import free_port, stop_group, wait_healthy

BIN = Path(sys.executable).parent
__all__ = ["bucket_keys", "free_port", "mlflow_server", "prefect_server", "s3_client",
           "s3_server", "wait_healthy"]


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
    """Stop the child's whole process group (SIGTERM, then SIGKILL) and reap it."""
    stop_group(process.pid, reap=process.poll)


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


@contextmanager
def s3_server(root: Path, bucket: str = "segen", timeout: float = 120
              ) -> Iterator[dict[str, str]]:
    """moto's S3 server with one bucket; yields the client variables a team.env sets for
    it (AWS_ENDPOINT_URL, the keys, the region)."""
    from segen.team.services import REGION, create_bucket, moto

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "segen-test",
           "AWS_SECRET_ACCESS_KEY": "segen-test-secret", "AWS_DEFAULT_REGION": REGION}
    with _serving(moto("127.0.0.1", port), {**os.environ, **TELEMETRY_OFF},
                  f"{endpoint}/moto-api/", root / "moto.log", timeout):
        create_bucket(endpoint, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], bucket)
        yield env


def s3_client(env: dict[str, str]):
    """A boto3 S3 client from the variables a team.env (or s3_server) sets."""
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        region_name=env["AWS_DEFAULT_REGION"])


def bucket_keys(env: dict[str, str], bucket: str, prefix: str) -> list[str]:
    """Every object key under prefix in the bucket."""
    pages = s3_client(env).get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
