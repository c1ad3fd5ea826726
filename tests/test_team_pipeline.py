"""`segen run` through the team stack's worker, for real (issue 11, item 2): the pipeline is
deployed to the stack's process work pool and run by its worker, COMPLETED in Prefect, its
model registered in the stack's MLflow, its data version pushed to the bucket; the second
run is all cache hits, and so is a run from a second clone in another folder (through the
bucket's shared store); `segen retrain` runs there too, and `segen schedule` deploys the
retraining flow to the pool with its schedule, whose runs the worker takes; a pool nobody serves fails fast, naming the pool and the fix. One
stack for the module (`segen team up`), stopped at the end.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

import pytest
from conftest import UNET, git, init_project, segen_cli, statuses
from servers import s3_client

from segen.team.processes import start_group, stop_group
from segen.team.stack import read_env

pytestmark = [pytest.mark.team, pytest.mark.timeout(900)]
SUBMITTED = re.compile(r"flow run \S+ \(([0-9a-f-]{36})\) submitted to work pool (\S+)")
TARGETS = ("--stages", *UNET)


@pytest.fixture(scope="module")
def team():
    """The variables of a running stack's team.env. The stack lives outside pytest's
    basetemp (see tests/test_team.py: a concurrent session would lock PostgreSQL out)."""
    work = Path(tempfile.mkdtemp(prefix="segen-team-pipeline-", dir="/tmp"))
    folder = work / "stack"
    try:
        up = segen_cli("team", "up", "--dir", str(folder), cwd=work, timeout=700)
        assert up.returncode == 0, up.stderr[-3000:]
        yield read_env(folder / "team.env")
    finally:
        segen_cli("team", "down", "--dir", str(folder), cwd=work, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def _run(project: Path, team: dict[str, str], *args: str) -> tuple[dict, UUID, float]:
    """`segen run --json` with the team's variables: (summary, flow run id, seconds)."""
    start = time.monotonic()
    done = segen_cli("run", *TARGETS, "--json", *args, cwd=project, env=team)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    found = SUBMITTED.search(done.stderr)
    assert found and found.group(2) == team["SEGEN_WORK_POOL"], done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1]), UUID(found.group(1)), seconds


def _flow_run(team: dict[str, str], run_id: UUID) -> tuple[object, object, list[object]]:
    """(the flow run, its deployment, its logs) as the Prefect server has them."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # temporary_settings, not the environment: in the full suite the session's Prefect test
    # harness has set the API URL in the settings context, which wins over the environment
    with temporary_settings({PREFECT_API_URL: team["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        deployment = client.read_deployment(run.deployment_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return run, deployment, logs


def test_pipeline_runs_through_the_worker_then_all_hits(team, tmp_path):
    project = init_project(tmp_path / "proj")
    summary, run_id, _ = _run(project, team)
    assert statuses(summary) == {s: "ran" for s in ("version_data", "validate", "preprocess",
                                                    "train_unet", "evaluate_unet",
                                                    "register_unet")}
    run, deployment, logs = _flow_run(team, run_id)
    deadline = time.monotonic() + 60  # the run's last log batch can reach the API after it ends
    while len({log.task_run_id for log in logs if log.task_run_id}) < 6 and \
            time.monotonic() < deadline:
        time.sleep(1)
        run, deployment, logs = _flow_run(team, run_id)
    assert run.state.is_completed() and run.parameters["project_dir"] == str(project)
    assert deployment.work_pool_name == team["SEGEN_WORK_POOL"]
    messages = [log.message for log in logs]
    assert "Finished in state Completed()" in messages, messages
    assert len({log.task_run_id for log in logs if log.task_run_id}) >= 6  # each stage's
    _assert_registered(team, summary)
    _assert_champion_loads_fresh(team, summary["models"][0]["name"], tmp_path)
    _assert_data_in_bucket(team, summary["data_version"])

    again, second_id, _ = _run(project, team)
    assert set(statuses(again).values()) == {"cached"}, statuses(again)
    assert second_id != run_id and _flow_run(team, second_id)[0].state.is_completed()
    modes = [json.loads(line)["mode"] for line in
             (project / ".segen/runs.jsonl").read_text().splitlines()]
    assert modes == ["worker", "worker"]
    _assert_a_second_clone_hits_through_the_bucket(project, team, summary, tmp_path)


def _assert_a_second_clone_hits_through_the_bucket(project: Path, team: dict[str, str],
                                                   summary: dict, tmp_path: Path) -> None:
    """A clone in another folder (its data pulled from the bucket by DVC, its store empty)
    gets every stage as a Cached task: the artifacts and Prefect's records come from
    $SEGEN_STORE_URL, and the artifact files land in the clone's own store."""
    git(project, "add", "data.dvc", ".gitignore"), git(project, "commit", "-qm", "data")
    clone = tmp_path / "another" / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    shared, _, _ = _run(clone, team)
    assert set(statuses(shared).values()) == {"cached"}, statuses(shared)
    assert shared["data_source"] == "pulled" and shared["models"] == summary["models"]
    trained = next(s for s in shared["stages"] if s["name"] == "train_unet")
    assert any((clone / ".segen/store/train_unet" / trained["key"]).iterdir())


def test_retrain_and_a_schedule_run_through_the_worker(team, tmp_path):
    """`segen retrain` runs the retraining flow on the pool's worker (it trains, registers
    and gates); `segen schedule` deploys it to the pool with its schedule and returns at
    once, and the worker runs the scheduled runs (nothing changed: the run ends at once)."""
    # its own model and store prefix: the first test's project has the same data and
    # params, so through the shared store its stages would all be hits here
    project = init_project(tmp_path / "proj", {"register": {"model_name": "retrain-unet"}})
    team = {**team, "SEGEN_STORE_URL": team["SEGEN_STORE_URL"] + "/retrain-test"}
    done = segen_cli("retrain", *TARGETS, "--json", cwd=project, env=team)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert "train_unet" in report["stages_ran"]
    assert [p["decision"] for p in report["promotions"]] == ["already_champion"]
    run, deployment, _ = _flow_run(team, UUID(SUBMITTED.search(done.stderr).group(1)))
    assert run.state.is_completed() and deployment.name == "segen-retrain"

    start = time.monotonic()
    scheduled = segen_cli("schedule", "--interval", "5", *TARGETS, "--json", "--name",
                          "every-5s", cwd=project, env=team)
    assert scheduled.returncode == 0, scheduled.stderr[-3000:]
    info = json.loads(scheduled.stdout.splitlines()[-1])
    assert (info["pool"], info["deployment"]) == (team["SEGEN_WORK_POOL"],
                                                  "segen-retrain/every-5s")
    assert time.monotonic() - start < 120  # deployed, not served: the command has ended
    try:
        run = _first_final_run(team, UUID(info["deployment_id"]))
        assert run.state.is_completed(), run.state.message
        again = json.loads((project / ".segen/retrain/runs" / f"{run.id}.json").read_text())
        assert not again["data_changed"] and again["stages_ran"] == []
    finally:
        _delete_deployment(team, UUID(info["deployment_id"]))


def _first_final_run(team: dict[str, str], deployment_id: UUID, timeout: float = 420):
    """The first scheduled run of the deployment that reaches a final state."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: team["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])))
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if final:
                return final[0]
            time.sleep(1)
    raise TimeoutError(f"no scheduled run of {deployment_id} ended within {timeout:.0f} s")


def _delete_deployment(team: dict[str, str], deployment_id: UUID) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: team["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


def _assert_registered(team: dict[str, str], summary: dict) -> None:
    """The model version is in the team's MLflow server, trained on this run's data."""
    from mlflow import MlflowClient

    (model,) = summary["models"]
    version = MlflowClient(team["MLFLOW_TRACKING_URI"]).get_model_version(
        model["name"], str(model["version"]))
    assert version.tags["segen.data_version"] == summary["data_version"]
    keys = {s["name"]: s["key"] for s in summary["stages"]}
    assert version.tags["segen.key.train_unet"] == keys["train_unet"]


_LOAD_CHAMPION = """
import json, sys
import mlflow, numpy as np
model = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}@champion")
masks = model.predict(np.zeros((2, 20, 30, 3), dtype=np.uint8))
print(json.dumps({"shape": list(masks.shape)}))
"""


def _assert_champion_loads_fresh(team: dict[str, str], name: str, tmp_path: Path) -> None:
    """The champion, its files in the bucket, loads and predicts in a fresh interpreter that
    knows only the tracking URI (no S3 keys: MLflow's server proxies the artifacts)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": team["MLFLOW_TRACKING_URI"]}
    done = subprocess.run([sys.executable, "-c", _LOAD_CHAMPION, name], cwd=tmp_path,
                          env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"shape": [2, 20, 30]}


def _assert_data_in_bucket(team: dict[str, str], md5: str) -> None:
    """DVC pushed the data version to the team's remote: its .dir object is in the bucket."""
    bucket, _, prefix = team["SEGEN_DVC_REMOTE_URL"].removeprefix("s3://").partition("/")
    key = f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"
    s3 = s3_client({**team, "AWS_ENDPOINT_URL": team["SEGEN_DVC_ENDPOINT_URL"]})
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def _create_pool(team: dict[str, str], name: str) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "prefect"), "work-pool",
                           "create", name, "--type", "process"], text=True,
                          capture_output=True, env={**os.environ, **team}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pool_without_a_worker_fails_at_once(team, tmp_path):
    project = init_project(tmp_path / "proj")
    _create_pool(team, "idle")
    start = time.monotonic()
    done = segen_cli("run", *TARGETS, "--pool", "idle", cwd=project, env=team)
    assert done.returncode == 69, done.stderr[-3000:]
    assert time.monotonic() - start < 60  # the CLI's imports; no run is waited for
    assert "no worker is polling work pool 'idle'" in done.stderr
    assert "prefect worker start --pool idle" in done.stderr and "Traceback" not in done.stderr
    missing = segen_cli("run", *TARGETS, "--pool", "nowhere", cwd=project, env=team)
    assert missing.returncode == 69 and "no work pool 'nowhere'" in missing.stderr
    assert "prefect work-pool create nowhere --type process" in missing.stderr


def _wait_online(team: dict[str, str], pool: str, timeout: float = 180) -> None:
    from segen.team.services import worker_online

    deadline = time.monotonic() + timeout
    while not worker_online(team["PREFECT_API_URL"], pool):
        assert time.monotonic() < deadline, f"no worker of {pool} came online"
        time.sleep(0.5)


def test_a_dead_worker_still_online_is_waited_for_a_bounded_time(team, tmp_path):
    """A killed worker reads ONLINE until its heartbeats are overdue (~90 s): the run is
    submitted, nobody takes it, and after SEGEN_WORKER_START_TIMEOUT_S it is cancelled."""
    project = init_project(tmp_path / "proj")
    _create_pool(team, "flaky")
    worker = start_group([str(Path(sys.executable).parent / "prefect"), "worker", "start",
                          "--pool", "flaky", "--install-policy", "never"],
                         {**os.environ, **team, "PREFECT_HOME": str(tmp_path / "home")},
                         tmp_path / "worker.log")
    try:
        _wait_online(team, "flaky")
    finally:
        stop_group(worker.pid, first=9, reap=worker.poll)  # SIGKILL: no goodbye to the server
    done = segen_cli("run", *TARGETS, "--pool", "flaky", cwd=project,
                     env={**team, "SEGEN_WORKER_START_TIMEOUT_S": "5"})
    assert done.returncode == 69, done.stderr[-3000:]
    assert "stayed Scheduled for 5 s: no worker of pool 'flaky' took it" in done.stderr
    run_id = UUID(SUBMITTED.search(done.stderr).group(1))
    assert _flow_run(team, run_id)[0].state.is_cancelled()
