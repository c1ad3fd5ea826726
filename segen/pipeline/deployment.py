"""Team mode: a flow run through a worker of a Prefect work pool instead of in this process.

When PREFECT_API_URL names a server and SEGEN_WORK_POOL (or `--pool`) a work pool there,
`segen run` deploys the pipeline flow to the pool from this checkout (a local-path source:
the pool's process worker runs on a machine that has the same checkout and environment),
starts a flow run of it, waits for it and reads its result: the run's state and logs are in
the Prefect UI, and the CLI prints the same report as an in-process run.

No worker is waited for forever: the pool must have an ONLINE worker before anything is
submitted, and a run still Scheduled (or Pending) after SCHEDULED_LIMIT_S is cancelled with
a message naming the pool and how to start a worker.

The flow's result (the summary) is persisted by the worker's flow run into a folder of the
project's state that this process reads back (RESULTS under .segen/), since a process
worker on the same machine shares the project folder; nothing else travels through Prefect.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segen.pipeline.prefect_server import is_healthy
from segen.project import Project

# A worker polls every 10 s, then starts a Python process; SEGEN_WORKER_START_TIMEOUT_S
# overrides it (a busy pool, or a test).
SCHEDULED_LIMIT_S = 120.0
_POLL_S = 0.5
_WORKER_CHECK_S = 15.0  # while the run is Running: is a worker of the pool still ONLINE?
RESULTS = "worker-results"  # under .segen/: the flow runs' persisted results


class WorkerUnavailable(RuntimeError):
    """No worker runs the pool's flow runs; the message says which pool and what to do."""


class FlowRunEnded(RuntimeError):
    """The flow run crashed or was cancelled (a failed run raises its own error)."""


@dataclass(frozen=True)
class FlowOnPool:
    """A flow of this checkout, deployed to a work pool."""
    code_root: Path  # the folder the entrypoint is relative to (this checkout)
    entrypoint: str  # e.g. flows/pipeline.py:pipeline
    flow_name: str  # the @flow's name: the deployment is FLOW_NAME/DEPLOYMENT
    deployment: str
    pool: str


def worker_pool(explicit: str | None, in_process: bool) -> str | None:
    """The work pool to run through (--pool, else $SEGEN_WORK_POOL), or None for this
    process; a pool needs a server: PREFECT_API_URL."""
    if in_process:
        return None
    pool = explicit or os.environ.get("SEGEN_WORK_POOL") or None
    if pool is not None and not os.environ.get("PREFECT_API_URL"):
        if explicit:
            raise ValueError(f"--pool {pool}: a work pool lives on a Prefect server, and "
                             "PREFECT_API_URL is not set (`source DIR/team.env` after "
                             "`segen team up`, or export your team's server URL)")
        return None  # SEGEN_WORK_POOL alone, no server: the in-process run, as without it
    return pool


def _no_worker(pool: str, what: str) -> WorkerUnavailable:
    return WorkerUnavailable(
        f"{what}. Start a worker for it, with this project's environment (e.g. `source "
        f"DIR/team.env`): `prefect worker start --pool {pool}` (or `segen team up`, whose "
        "stack runs one), or run in this process with `segen run --in-process`")


def check_pool(client: Any, pool: str) -> None:
    """Fail unless the pool exists on the server and has an ONLINE worker (its heartbeat
    is recent: the server marks a silent worker OFFLINE after three missed heartbeats)."""
    from prefect.exceptions import ObjectNotFound

    api = os.environ["PREFECT_API_URL"]
    if not is_healthy(api):
        raise WorkerUnavailable(f"the Prefect server at {api} does not answer ({api}/health):"
                                " start it (`segen team up`, or `prefect server start`), or "
                                "unset PREFECT_API_URL and SEGEN_WORK_POOL to run in-process")
    try:
        client.read_work_pool(pool)
    except ObjectNotFound:
        raise WorkerUnavailable(f"the Prefect server at {api} has no work pool {pool!r}: "
                                f"create it with `prefect work-pool create {pool} --type "
                                "process` and start a worker with `prefect worker start "
                                f"--pool {pool}`, or choose another with --pool / "
                                "SEGEN_WORK_POOL") from None
    workers = client.read_workers_for_work_pool(work_pool_name=pool)
    if not any(w.status == "ONLINE" for w in workers):
        seen = ", ".join(f"{w.name} {w.status}" for w in workers) or "none ever"
        raise _no_worker(pool, f"no worker is polling work pool {pool!r} on {api} "
                         f"(workers: {seen})")


def deploy(target: FlowOnPool, **options: Any) -> Any:
    """Create or update the deployment from this checkout; returns its id. Loading the flow
    from its entrypoint imports it here, so a broken flow file fails now. options: more of
    Flow.deploy's (a schedule, parameters)."""
    from prefect import flow

    source = flow.from_source(source=str(target.code_root), entrypoint=target.entrypoint)
    with contextlib.redirect_stdout(io.StringIO()):  # its table of one row, on every run
        return source.deploy(name=target.deployment, work_pool_name=target.pool,
                             print_next_steps=False, ignore_warnings=True, **options)


def schedule_on_pool(target: FlowOnPool, parameters: dict[str, Any], *,
                     interval: float | None, cron: str | None) -> Any:
    """Deploy the flow to the pool with a schedule: the server creates the runs and the
    pool's workers run them, one at a time (the runs share the project's data/ and store);
    nothing here keeps running. Returns the deployment id."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        check_pool(client, target.pool)
    return deploy(target, parameters=parameters, interval=interval, cron=cron,
                  concurrency_limit=1, job_variables={"env": _shared_store_env()})


def run_on_pool(target: FlowOnPool, project: Project, parameters: dict[str, Any]
                ) -> tuple[Any, Any]:
    """Deploy, submit one flow run, wait until it is final; returns (flow run, result).
    A failed run raises its own exception, as calling the flow here would."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        check_pool(client, target.pool)
        deploy(target)
        results = project.state / RESULTS
        run = run_deployment(f"{target.flow_name}/{target.deployment}", parameters=parameters,
                             timeout=0, as_subflow=False,  # wait below, bounded
                             job_variables={"env": _result_env(results)})
        print(f"flow run {run.name} ({run.id}) submitted to work pool {target.pool}",
              file=sys.stderr, flush=True)
        run = _wait(client, run.id, target.pool)
    return run, _result(run, results)


def _result_env(results: Path) -> dict[str, str]:
    """The flow run persists its result where this process reads it back."""
    return {"PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(results), **_shared_store_env()}


def _shared_store_env() -> dict[str, str]:
    """This process's $SEGEN_STORE_URL for the flow run, so that it shares the cache this
    process would (a bucket name, no secret: the S3 keys are the worker's own)."""
    from segen.pipeline.shared_store import URL_VARIABLE

    return {URL_VARIABLE: os.environ[URL_VARIABLE]} if os.environ.get(URL_VARIABLE) else {}


def _wait(client: Any, run_id: Any, pool: str) -> Any:
    """Poll the run until it is final. Still Scheduled/Pending after the limit: it is
    cancelled (so that a worker started later does not run it behind the user's back);
    that, or Running while the pool has no ONLINE worker, raises WorkerUnavailable."""
    limit = float(os.environ.get("SEGEN_WORKER_START_TIMEOUT_S", SCHEDULED_LIMIT_S))
    start = checked = time.monotonic()
    while True:
        run = client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return run
        waiting = state is None or state.is_scheduled() or state.is_pending()
        if waiting and time.monotonic() - start > limit:
            _cancel(client, run_id)
            where = state.name if state else "unscheduled"
            raise _no_worker(pool, f"flow run {run.name} stayed {where} for {limit:.0f} s: "
                             f"no worker of pool {pool!r} took it (it is cancelled now)")
        if not waiting and time.monotonic() - checked > _WORKER_CHECK_S:
            checked = time.monotonic()
            _check_still_served(client, run, pool)
        time.sleep(_POLL_S)


def _check_still_served(client: Any, run: Any, pool: str) -> None:
    """A process worker that dies leaves its runs Running for good (prefect#16746)."""
    workers = client.read_workers_for_work_pool(work_pool_name=pool)
    if not any(w.status == "ONLINE" for w in workers):
        raise _no_worker(pool, f"the worker of pool {pool!r} went OFFLINE while flow run "
                         f"{run.name} ({run.id}) was Running; Prefect may show it Running "
                         "for good: cancel it in the UI (`prefect flow-run cancel "
                         f"{run.id}`) and run again")


def _cancel(client: Any, run_id: Any) -> None:
    from prefect.states import Cancelled

    client.set_flow_run_state(run_id, Cancelled(message="no worker took it"), force=True)


def _result(run: Any, results: Path) -> Any:
    """The run's return value (or its exception raised), read from the results folder."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    if run.state.is_crashed() or run.state.is_cancelled():
        raise FlowRunEnded(f"flow run {run.name} ({run.id}) ended {run.state.name}: "
                           f"{run.state.message}; its logs: `prefect flow-run logs {run.id}`")
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}):
        return run.state.result(raise_on_failure=True)
