"""The team stack, for real, on 127.0.0.1 (issue 11, items 1 and 4): `segen team up` starts
PostgreSQL, moto S3, Prefect and MLflow servers and a work-pool worker; MLflow keeps its
rows in PostgreSQL and its model files in the bucket, DVC pushes and pulls through the
bucket, promotions serialise on a PostgreSQL advisory lock, and `segen team down` leaves
no process behind. One stack for the module (it takes ~20-60 s to start); the last test
stops it, the fixture makes sure of it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from conftest import segen_cli
from servers import bucket_keys

from segen.team.processes import pid_alive, port_open, start_group, stop_group
from segen.team.stack import read_env

pytestmark = [pytest.mark.team, pytest.mark.timeout(900)]
MODEL = "segen-team-test"


@contextmanager
def _stack_folder() -> Iterator[Path]:
    """A folder for a stack outside pytest's basetemp: each pytest session that starts
    (another's, on a shared machine) resets /tmp/pytest-of-USER to 0700, which would lock
    the PostgreSQL user out of a cluster under it while it starts."""
    work = Path(tempfile.mkdtemp(prefix="segen-team-test-", dir="/tmp"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    """(folder, the recorded state, the variables of team.env) of one running stack."""
    with _stack_folder() as work:
        folder = work / "stack"
        up = segen_cli("team", "up", "--dir", str(folder), "--json", cwd=work, timeout=700)
        try:
            assert up.returncode == 0, up.stderr[-3000:]
            yield folder, json.loads(up.stdout), read_env(folder / "team.env")
        finally:
            segen_cli("team", "down", "--dir", str(folder), cwd=work, timeout=120)


def _python(code: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          text=True, capture_output=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _client_env(team: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **team}


def test_status_reports_every_service_up(stack, tmp_path):
    folder, state, team = stack
    done = segen_cli("team", "status", "--dir", str(folder), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["up"] and set(report["services"]) == {"postgres", "s3", "prefect",
                                                        "mlflow", "worker"}
    assert all(s["alive"] and s["healthy"] for s in report["services"].values())
    assert (folder / "team.env").stat().st_mode & 0o777 == 0o600
    password = json.loads((folder / "secrets.json").read_text())["pg_password"]
    for log in (folder / "logs").glob("*.log"):  # no credential in any log
        text = log.read_text(errors="replace")
        assert password not in text and team["AWS_SECRET_ACCESS_KEY"] not in text, log
    again = segen_cli("team", "up", "--dir", str(folder), cwd=tmp_path)
    assert again.returncode == 1 and "already running" in again.stderr
    _assert_prefect_in_postgres(team["SEGEN_LOCK_DATABASE_URL"].rsplit("/", 1)[0] + "/prefect")


def _assert_prefect_in_postgres(url: str) -> None:
    """Prefect's server keeps its state in PostgreSQL: the pool and its worker are rows."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT p.type, count(w.id) FROM work_pool p JOIN worker w "
                        "ON w.work_pool_id = p.id WHERE p.name = 'segen' GROUP BY p.type")
            assert cur.fetchall() == [("process", 1)]
    finally:
        conn.close()


def test_mlflow_rows_in_postgres_files_in_bucket_model_loads_fresh(stack, tmp_path):
    _, state, team = stack
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import mlflow.pyfunc
        from mlflow.models import set_model

        class Double(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return [2 * x for x in model_input["x"]]

        set_model(Double())
    """))
    run_id = _python(f"""
        import mlflow
        mlflow.set_experiment("team-test")
        with mlflow.start_run() as run:
            mlflow.log_metric("iou", 0.75)
            mlflow.pyfunc.log_model(name="model", python_model="model.py",
                                    registered_model_name={MODEL!r})
        print(run.info.run_id)
    """, _client_env(team), tmp_path).split()[-1]
    _assert_rows_in_postgres(team["SEGEN_LOCK_DATABASE_URL"], run_id)
    keys = bucket_keys(team, state["bucket"], "mlflow/")
    assert any(k.endswith("/MLmodel") for k in keys), keys
    fresh = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
             "MLFLOW_TRACKING_URI": team["MLFLOW_TRACKING_URI"]}  # no S3 keys: the proxy
    out = _python(f"""
        import mlflow, pandas
        model = mlflow.pyfunc.load_model("models:/{MODEL}/1")
        print(list(model.predict(pandas.DataFrame({{"x": [1, 2]}}))))
    """, fresh, tmp_path)
    assert out.strip().endswith("[2, 4]")


def _assert_rows_in_postgres(url: str, run_id: str) -> None:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'iou'", (run_id,))
        assert cur.fetchone() == (0.75,)
        cur.execute("SELECT version, run_id FROM model_versions WHERE name = %s", (MODEL,))
        assert cur.fetchall() == [(1, run_id)]
    conn.close()


def _run(*cmd: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"


def _md5s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dvc_push_then_pull_into_a_fresh_clone(stack, tmp_path):
    _, state, team = stack
    env, dvc = _client_env(team), str(Path(sys.executable).parent / "dvc")
    repo, clone = tmp_path / "repo", tmp_path / "clone"
    (repo / "data").mkdir(parents=True)
    for i in range(3):
        (repo / "data" / f"{i}.bin").write_bytes(os.urandom(2048 + i))
    git = ["git", "-c", "user.email=t@segen", "-c", "user.name=t"]
    _run(*git, "init", "-q", cwd=repo, env=env)
    _run(dvc, "init", "-q", cwd=repo, env=env)
    _run(dvc, "remote", "add", "-d", "team", team["SEGEN_DVC_REMOTE_URL"], cwd=repo, env=env)
    _run(dvc, "remote", "modify", "team", "endpointurl", team["SEGEN_DVC_ENDPOINT_URL"],
         cwd=repo, env=env)
    _run(dvc, "add", "data", cwd=repo, env=env)
    _run(*git, "add", "-A", cwd=repo, env=env)
    _run(*git, "commit", "-qm", "data", cwd=repo, env=env)
    _run(dvc, "push", cwd=repo, env=env)
    assert bucket_keys(team, state["bucket"], "dvc/")  # the objects are in the bucket
    _run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path, env=env)
    _run(dvc, "pull", cwd=clone, env=env)
    assert _md5s(clone / "data") == _md5s(repo / "data")


HOLD = """
import os, sys, time
from segen.project import Project
from segen.registry.promotion.lock import model_lock
with model_lock(Project.at("."), sys.argv[1], 120):
    print("held", time.time(), flush=True)
    sys.stdin.readline()  # the test says when to let go
    print("releasing", time.time(), flush=True)
"""


def _holder(name: str, team: dict[str, str], cwd: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, name], cwd=cwd, text=True,
                              env=_client_env(team), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    line = holder.stdout.readline()
    assert line.startswith("held"), line
    return holder


def _release(holder: subprocess.Popen) -> float:
    holder.stdin.write("\n")
    holder.stdin.flush()
    released = float(holder.stdout.readline().split()[1])
    holder.wait(30)
    return released


def test_second_promotion_waits_for_the_advisory_lock(stack, tmp_path):
    _, _, team = stack
    first = _holder(MODEL, team, tmp_path)
    second = subprocess.Popen([sys.executable, "-c", HOLD, MODEL], cwd=tmp_path, text=True,
                              env=_client_env(team), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        time.sleep(3)  # the second is at the lock by now (it polls every 0.2 s)
        assert second.poll() is None
        released = _release(first)
        line = second.stdout.readline()  # it gets the lock only now
        assert line.startswith("held") and float(line.split()[1]) >= released, line
        _release(second)
    finally:
        for proc in (first, second):
            proc.kill()


PROMOTE = """
import json, sys, time
from contextlib import contextmanager
from pathlib import Path
from segen.config import load_params
from segen.project import Project
from segen.registry.promotion import moves

locked, real_commit = moves.model_lock, moves._commit

@contextmanager
def timed_lock(*args):
    with locked(*args) as where:
        start = time.time()
        yield where
    print(json.dumps({"held": [start, time.time()], "where": where}), flush=True)

def slow_commit(*args):
    time.sleep(3)  # the window in which an unserialised second promotion reads champion v1
    return real_commit(*args)

moves.model_lock, moves._commit = timed_lock, slow_commit
result = moves.promote(Project.at(Path.cwd()), load_params(Path("params.yaml")), sys.argv[1],
                       int(sys.argv[2]), force=True, reason="concurrency test")
print(json.dumps(result), flush=True)
"""


def _register_versions(team: dict[str, str], name: str, count: int, cwd: Path) -> None:
    _python(f"""
        import mlflow
        from mlflow import MlflowClient
        client = MlflowClient()
        client.create_registered_model({name!r})
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        for _ in range({count}):
            client.create_model_version({name!r}, f"runs:/{{run.info.run_id}}/model",
                                        run.info.run_id)
    """, _client_env(team), cwd)


def test_two_machines_promoting_at_once_one_wins(stack, tmp_path):
    """Two project folders (two machines: each has its own file locks) force v2 of one
    model at the same moment against the PostgreSQL registry. The advisory lock lets one
    in; it moves the alias while the other waits, which then finds v2 champion already:
    one promotion, and a history whose events follow one another."""
    from conftest import TINY, init_project

    _, _, team = stack
    name = TINY["register"]["model_name"]
    _register_versions(team, name, 2, tmp_path)
    first, second = (init_project(tmp_path / f"machine-{m}") for m in "ab")
    cmd = [sys.executable, "-c", PROMOTE, name]
    start = subprocess.run([*cmd, "1"], cwd=first, env=_client_env(team), text=True,
                           capture_output=True, timeout=300)
    assert start.returncode == 0, start.stderr[-3000:]
    assert json.loads(start.stdout.splitlines()[-1])["decision"] == "first"

    procs = [subprocess.Popen([*cmd, "2"], cwd=folder, env=_client_env(team), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for folder in (first, second)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    held = [json.loads(out.splitlines()[0]) for out, _ in outs]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    assert sorted(r["decision"] for r in results) == ["already_champion", "forced"]
    assert all(h["where"].endswith("/mlflow") for h in held)  # the advisory lock, not a file
    (a_start, a_end), (b_start, b_end) = sorted(h["held"] for h in held)
    assert b_start >= a_end and a_end - a_start >= 3  # held one after the other
    history = json.loads(segen_cli("history", name, "--json", cwd=second,
                                   env=team).stdout.splitlines()[-1])["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    moves = [(e["decision"], e["previous"], e["new"]) for e in history]
    assert moves == [("first", None, 1), ("forced", 1, 2)], moves


def _negative_hash_name(url: str) -> str:
    """A model name whose hashtext is negative: the holder lookup's key arithmetic."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT n FROM (SELECT 'model-' || i AS n FROM generate_series(1, 50)"
                        " i) names WHERE hashtext(n) < 0 LIMIT 1")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_advisory_lock_timeout_names_the_holder(stack, tmp_path, monkeypatch):
    from segen.project import Project
    from segen.registry.promotion.lock import PromotionBusy, model_lock

    _, state, team = stack
    name = _negative_hash_name(team["SEGEN_LOCK_DATABASE_URL"])
    monkeypatch.setenv("SEGEN_LOCK_DATABASE_URL", team["SEGEN_LOCK_DATABASE_URL"])
    holder = _holder(name, team, tmp_path)
    try:
        port = state["services"]["postgres"]["port"]
        with pytest.raises(PromotionBusy, match=rf"{name} \(segen pid {holder.pid} user .+ "
                           rf"since .+\) still holds its PostgreSQL advisory lock in "
                           rf"127\.0\.0\.1:{port}/mlflow after 0\.5 s"):
            with model_lock(Project.at(tmp_path), name, 0.5):
                pass
        _release(holder)
        with model_lock(Project.at(tmp_path), name, 0.5) as where:  # free again
            assert where == f"127.0.0.1:{port}/mlflow"
    finally:
        holder.kill()


def test_unreachable_lock_database_names_it(tmp_path, monkeypatch):
    from segen.project import Project
    from segen.registry.promotion.lock import model_lock
    from segen.retry import ServerUnavailable
    from segen.team.processes import free_port

    monkeypatch.setenv("SEGEN_LOCK_DATABASE_URL",
                       f"postgresql://u:secret@127.0.0.1:{free_port()}/mlflow")
    with pytest.raises(ServerUnavailable, match="PostgreSQL lock database") as err:
        with model_lock(Project.at(tmp_path), "m", 1):
            pass
    assert "secret" not in str(err.value)


def test_a_failed_up_stops_what_it_started():
    with _stack_folder() as work:
        _check_failed_up(work / "stack")


def _check_failed_up(folder: Path) -> None:
    done = segen_cli("team", "up", "--dir", str(folder), "--bucket", "x", cwd=folder.parent,
                     timeout=300)  # "x": too short for an S3 bucket name, after two starts
    assert done.returncode == 1 and "segen team up failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "bucket" in done.stderr.lower()
    assert not (folder / "team.json").exists() and not (folder / "team.env").exists()
    assert not _in_folder(folder)  # every service runs in the folder (PostgreSQL in its data)


def _in_folder(folder: Path) -> list[int]:
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{entry}/cwd").resolve().is_relative_to(folder.resolve()) and pid_alive(
                    int(entry)):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _tree(pids: list[int]) -> set[int]:
    """The pids and all their descendants (PostgreSQL's backends leave its process group)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def test_down_stops_the_stack_and_nothing_else(stack, tmp_path):
    folder, state, _ = stack
    bystander = start_group(["sleep", "300"], dict(os.environ), tmp_path / "sleep.log")
    services = state["services"].values()
    pids = _tree([s["pid"] for s in services])
    assert len(pids) > len(services)  # the servers' workers and backends too
    try:
        done = segen_cli("team", "down", "--dir", str(folder), cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "stopped worker, mlflow, prefect, s3, postgres" in done.stdout
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in pids if pid_alive(p)]
        assert not [s["port"] for s in services if s["port"] and port_open("127.0.0.1",
                                                                           s["port"])]
        assert pid_alive(bystander.pid)  # not the stack's: left alone
        status = segen_cli("team", "status", "--dir", str(folder), cwd=tmp_path)
        assert status.returncode == 1 and "no team stack recorded" in status.stdout
        assert not (folder / "team.env").exists()
    finally:
        stop_group(bystander.pid, reap=bystander.poll)
