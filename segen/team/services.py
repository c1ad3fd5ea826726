"""The stack's servers other than PostgreSQL: their command lines, environments and health
checks. Secrets go in environments, never on a command line (where `ps` shows them) nor in
a log: MLflow reads its PostgreSQL URI from MLFLOW_BACKEND_STORE_URI, Prefect from
PREFECT_API_DATABASE_CONNECTION_URL.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

from segen.env import TELEMETRY_OFF
from segen.team.processes import http_ok

BIN = Path(sys.executable).parent
REGION = "us-east-1"  # moto's default; boto3 wants one
# What a server must not inherit from the shell that started it: it would point it at
# another stack (or at the one it is itself part of, as a client).
_CLIENT_PREFIXES = ("PREFECT_", "MLFLOW_", "AWS_", "SEGEN_")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_PREFIXES)}
    return {**env, **TELEMETRY_OFF}


def moto(host: str, port: int) -> list[str]:
    return [str(BIN / "moto_server"), "-H", host, "-p", str(port)]


def s3_answers(endpoint: str) -> bool:
    return http_ok(f"{endpoint}/moto-api/")  # moto's own page: no signed request needed


def create_bucket(endpoint: str, key_id: str, secret: str, bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                      aws_secret_access_key=secret, region_name=REGION)
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)


def prefect_server(host: str, port: int, home: Path, database_url: str
                   ) -> tuple[list[str], dict[str, str]]:
    cmd = [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port),
           "--no-ui", "--analytics-off"]
    env = {**base_env(), "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_API_DATABASE_CONNECTION_URL": database_url}
    return cmd, env


def mlflow_server(host: str, port: int, database_url: str, bucket: str, s3: dict[str, str]
                  ) -> tuple[list[str], dict[str, str]]:
    """One worker: several on a fresh database race on its migrations (mlflow#19299).
    The S3 endpoint and keys are the server's alone: clients go through its artifact proxy."""
    cmd = [str(BIN / "mlflow"), "server", "--host", host, "--port", str(port),
           "--workers", "1", "--artifacts-destination", f"s3://{bucket}/mlflow",
           "--serve-artifacts"]
    env = {**base_env(), **s3, "MLFLOW_BACKEND_STORE_URI": database_url,
           "MLFLOW_S3_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return cmd, env


def worker(pool: str, home: Path, client_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """A process worker on pool (created if absent). It gets the stack's client variables,
    so the flow runs it starts track to this MLflow and store in this bucket; it installs
    nothing (install-policy never): everything comes from this project's environment."""
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
           "--name", f"{pool}-worker-1", "--install-policy", "never"]
    # Prefect's worker asks for scheduled runs every 10 s by default: most of a cold run's
    # wait through it (bench/worker_overhead.py); every 2 s costs one small query.
    return cmd, {**base_env(), **client_env, "PREFECT_HOME": str(home),
                 "PREFECT_WORKER_QUERY_SECONDS": "2"}


def worker_online(api: str, pool: str) -> bool:
    """The pool has an ONLINE worker (it has sent its heartbeat to the server)."""
    request = urllib.request.Request(f"{api}/work_pools/{pool}/workers/filter", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            workers = json.load(response)
    except (OSError, ValueError):
        return False
    return any(w.get("status") == "ONLINE" for w in workers)
