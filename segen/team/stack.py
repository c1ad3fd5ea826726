"""`segen team up/status/down`: the whole stack under one folder.

    FOLDER/team.json     the services: pid (= process group), start time, port, log
    FOLDER/team.env      the client variables to `source` (mode 0600: it holds the keys)
    FOLDER/secrets.json  the stack's generated password and keys (mode 0600)
    FOLDER/logs/*.log    one log per service
    FOLDER/postgres/     the cluster; FOLDER/prefect*/ the Prefect homes

The stack on loopback is disposable: its object store (moto) lives in memory, so `up`
always starts a fresh one, with new credentials, on new free ports. `down` stops only the
process groups that `up` recorded (checked by start time, so a reused pid is left alone).
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from segen.team import postgres, services
from segen.team.processes import (
    free_ports,
    http_ok,
    owns_group,
    pid_alive,
    start_group,
    start_ticks,
    stop_group,
    wait_until,
)

ORDER = ("postgres", "s3", "prefect", "mlflow", "worker")  # start order; down: reversed
START_TIMEOUT_S = 300  # first starts run the servers' migrations: slow on a busy 2-core CI
_DATA = ("postgres", "prefect", "prefect-worker")


class TeamError(RuntimeError):
    """The stack is not in the state the command needs (already up, not up)."""


@dataclass(frozen=True)
class TeamSpec:
    folder: Path
    host: str
    bucket: str
    prefect_db: str
    mlflow_db: str
    pool: str


def up(spec: TeamSpec) -> dict[str, Any]:
    """Start every service, each after its health check, then write team.env."""
    folder = spec.folder.resolve()
    if any(s["alive"] for s in status(folder)["services"].values()):
        raise TeamError(f"a team stack is already running in {folder}: see `segen team "
                        f"status --dir {folder}`, or stop it with `segen team down`")
    _fresh_folder(folder)
    began = time.perf_counter()
    state = {"host": spec.host, "bucket": spec.bucket, "pool": spec.pool,
             "databases": {"prefect": spec.prefect_db, "mlflow": spec.mlflow_db},
             "services": {}}
    keys = _new_secrets(folder)
    try:
        _start_all(folder, spec, state, keys)
    except BaseException as err:
        down(folder)  # a half-started stack is stopped whole
        if not isinstance(err, Exception):
            raise  # Ctrl-C: stopped, and said by the interpreter
        raise TeamError(f"segen team up failed, so the services it had started are stopped "
                        f"again (logs in {folder / 'logs'}): {err}") from err
    state["startup_s"] = round(time.perf_counter() - began, 1)
    _save(folder, state)
    _write_env(folder / "team.env", client_env(state, keys))
    return state


def _start_all(folder: Path, spec: TeamSpec, state: dict, keys: dict[str, str]) -> None:
    host, password = spec.host, keys["pg_password"]
    ports = dict(zip(("postgres", "s3", "prefect", "mlflow"), free_ports(host, 4)))
    _start_postgres(folder, state, password, ports["postgres"])
    postgres.create_databases(host, ports["postgres"], password,
                              [spec.prefect_db, spec.mlflow_db], trigram_in=spec.prefect_db)
    endpoint = f"http://{host}:{ports['s3']}"
    _launch(folder, state, "s3", services.moto(host, ports["s3"]), services.base_env(),
            ports["s3"])
    _wait(folder, state, "s3", lambda: services.s3_answers(endpoint))
    services.create_bucket(endpoint, keys["aws_key_id"], keys["aws_secret"], spec.bucket)
    # The two slow starters (they run their migrations) start together, then are waited for.
    db_url = postgres.url(host, ports["postgres"], password, spec.prefect_db, "asyncpg")
    _launch(folder, state, "prefect", *services.prefect_server(
        host, ports["prefect"], folder / "prefect", db_url), ports["prefect"])
    db_url = postgres.url(host, ports["postgres"], password, spec.mlflow_db, "psycopg2")
    _launch(folder, state, "mlflow", *services.mlflow_server(
        host, ports["mlflow"], db_url, spec.bucket, _s3_env(endpoint, keys)), ports["mlflow"])
    checks = _health(state, keys)
    for name in ("prefect", "mlflow"):
        _wait(folder, state, name, checks[name])
    cmd, env = services.worker(spec.pool, folder / "prefect-worker", client_env(state, keys))
    _launch(folder, state, "worker", cmd, env, None)
    _wait(folder, state, "worker", checks["worker"])


def _start_postgres(folder: Path, state: dict, password: str, port: int) -> None:
    log = folder / "logs" / "postgres.log"
    data = postgres.init_cluster(folder / "postgres", password, log, state["host"])
    cmd, options = postgres.server_command(data, state["host"], port)
    _launch(folder, state, "postgres", cmd, options.pop("env"), port, **options)
    _wait(folder, state, "postgres",
          lambda: postgres.answers(state["host"], port, password))


def _launch(folder: Path, state: dict, name: str, cmd: list[str], env: dict[str, str],
            port: int | None, **options: Any) -> int | None:
    """Start one service and record it at once (a failure later stops it too)."""
    log = folder / "logs" / f"{name}.log"
    process = start_group(cmd, env, log, cwd=folder, **options)
    state["services"][name] = {"pid": process.pid, "started": start_ticks(process.pid),
                               "port": port, "log": str(log)}
    _save(folder, state)
    return port


def _wait(folder: Path, state: dict, name: str, check: Callable[[], bool]) -> None:
    record = state["services"][name]
    wait_until(check, f"the {name} server", lambda: pid_alive(record["pid"]),
               Path(record["log"]), START_TIMEOUT_S)


def _health(state: dict, keys: dict[str, str]) -> dict[str, Callable[[], bool]]:
    """Each service's health check, from the recorded ports."""
    host, ports = state["host"], {n: s["port"] for n, s in state["services"].items()}
    api = f"http://{host}:{ports.get('prefect')}/api"
    return {
        "postgres": lambda: postgres.answers(host, ports["postgres"], keys["pg_password"]),
        "s3": lambda: services.s3_answers(f"http://{host}:{ports['s3']}"),
        "prefect": lambda: http_ok(f"{api}/health"),
        "mlflow": lambda: http_ok(f"http://{host}:{ports['mlflow']}/health"),
        "worker": lambda: services.worker_online(api, state["pool"]),
    }


def status(folder: Path) -> dict[str, Any]:
    """Each recorded service: pid, port, whether its process lives and its check answers."""
    folder = folder.resolve()
    state, keys = _load(folder, "team.json"), _load(folder, "secrets.json")
    checks = _health(state, keys) if state else {}
    report = {}
    for name in ORDER:
        record = state.get("services", {}).get(name)
        if record is None:
            continue
        alive = owns_group(record["pid"], record["started"]) and pid_alive(record["pid"])
        report[name] = {"pid": record["pid"], "port": record["port"], "alive": alive,
                        "healthy": alive and checks[name](), "log": record["log"]}
    every = bool(report) and len(report) == len(ORDER)
    return {"folder": str(folder), "env_file": str(folder / "team.env"), "services": report,
            "up": every and all(s["healthy"] for s in report.values())}


def down(folder: Path) -> list[str]:
    """Stop the recorded services, last started first; returns the names stopped."""
    folder = folder.resolve()
    stopped = []
    for name, record in reversed(list(_load(folder, "team.json").get("services", {}).items())):
        if owns_group(record["pid"], record["started"]):
            first = signal.SIGINT if name == "postgres" else signal.SIGTERM  # fast shutdown
            stop_group(record["pid"], first=first)
            stopped.append(name)
    for name in ("team.json", "team.env", "secrets.json"):
        (folder / name).unlink(missing_ok=True)  # a stopped stack's keys open nothing
    return stopped


def client_env(state: dict, keys: dict[str, str]) -> dict[str, str]:
    """The variables that point segen (Prefect, MLflow, DVC, the shared artifact store, the
    promotion lock) at it."""
    host, ports = state["host"], {n: s["port"] for n, s in state["services"].items()}
    endpoint = f"http://{host}:{ports['s3']}"
    lock_db = state["databases"]["mlflow"]  # the registry's own database
    return {
        "PREFECT_API_URL": f"http://{host}:{ports['prefect']}/api",
        "MLFLOW_TRACKING_URI": f"http://{host}:{ports['mlflow']}",
        **_s3_env(endpoint, keys),
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "SEGEN_DVC_REMOTE_URL": f"s3://{state['bucket']}/dvc",
        "SEGEN_DVC_ENDPOINT_URL": endpoint,
        "SEGEN_STORE_URL": f"s3://{state['bucket']}/store",  # shared cache hits
        "SEGEN_WORK_POOL": state["pool"],
        "SEGEN_LOCK_DATABASE_URL": postgres.url(host, ports["postgres"], keys["pg_password"],
                                                lock_db),
    }


def _s3_env(endpoint: str, keys: dict[str, str]) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": keys["aws_key_id"],
            "AWS_SECRET_ACCESS_KEY": keys["aws_secret"],
            "AWS_DEFAULT_REGION": services.REGION}


def _write_env(path: Path, env: dict[str, str]) -> None:
    lines = [f"# segen team stack in {path.parent}: `source` this file; it holds keys "
             "(mode 0600). `segen team down --dir ...` stops the stack."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    _write_private(path, "\n".join(lines) + "\n")


def read_env(path: Path) -> dict[str, str]:
    """The variables a team.env (as _write_env writes it) exports."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0]
    return env


def _new_secrets(folder: Path) -> dict[str, str]:
    keys = {"pg_password": secrets.token_urlsafe(24),
            "aws_key_id": "SEGEN" + secrets.token_hex(8).upper(),
            "aws_secret": secrets.token_urlsafe(30)}
    _write_private(folder / "secrets.json", json.dumps(keys))
    return keys


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # 0600 from the start
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _fresh_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in _DATA:
        shutil.rmtree(folder / name, ignore_errors=True)
    logs = folder / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    for log in logs.glob("*.log"):
        log.unlink()


def _save(folder: Path, state: dict) -> None:
    tmp = folder / "team.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / "team.json")


def _load(folder: Path, name: str) -> dict:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else {}
