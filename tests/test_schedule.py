"""Scheduled retraining on a real `prefect server` (127.0.0.1, started by the test):
`segen schedule --interval 5` serves segen-retrain; its runs complete (the first trains and
registers, an unchanged one is skipped); after `segen data add` the next run retrains on the
new data version and gates the new model; bad data written by hand into data/ makes the
next run FAILED in Prefect with the reason, and the champion stays where it was.

The schedule runs only the U-Net's stages (--stages register_unet) on the TINY project, so a
retraining run takes seconds; the whole pipeline is the same code with more stages. Its gate
asks for a margin no mean IoU difference can clear (differences lie in [-1, 1]), so the
retrained model's verdict is decided: rejected, the first version stays champion."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import TINY, init_project, segen_cli
from PIL import Image
from servers import _stop_group, prefect_server

from segen.data.shapes import CLASSES, generate_shapes_dataset
from segen.pipeline import prefect_server as local_server
from segen.project import Project

WAIT_S = 420  # per scheduled run: CI machines with 2 busy cores are slow
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
UNREACHABLE = {"promote": {"segmentation": {"metric": "mean_iou", "margin": 1.0}}}


def _final_runs(api: str) -> list[Any]:
    """segen-retrain flow runs in a final state, oldest first (through Prefect's client)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    states = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in FINAL]))
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["segen-retrain"])),
            flow_run_filter=FlowRunFilter(state=states), sort=FlowRunSort.START_TIME_ASC)


def _next_run(api: str, seen: set[str], schedule: subprocess.Popen, log: Path,
              accept: Callable[[Any], bool] = lambda run: True) -> Any:
    """The first final run not seen yet that `accept`s (runs it skips are marked seen)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert schedule.poll() is None, f"segen schedule exited:\n{log.read_text()[-3000:]}"
        for run in _final_runs(api):
            if str(run.id) in seen:
                continue
            seen.add(str(run.id))
            if accept(run):
                return run
        time.sleep(1.0)
    raise TimeoutError(f"no scheduled run within {WAIT_S} s:\n{log.read_text()[-3000:]}")


def _report(project: Project, run: Any) -> dict[str, Any]:
    return json.loads((project.state / "retrain" / "runs" / f"{run.id}.json").read_text())


def _champion(project: Project, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project.mlflow_db}")
    return str(client.get_model_version_by_alias(name, "champion").version)  # an int here


def _new_pairs(tmp_path: Path) -> Path:
    shapes = tmp_path / "shapes-new"
    generate_shapes_dataset(shapes, seed=4242, n_images=3, image_size=TINY["dataset"]
                            ["image_size"], min_shapes=1, max_shapes=2)
    return shapes


def _write_bad_mask(project: Project) -> str:
    """A mask with an out-of-range class id, written by hand (bypassing `segen data add`)."""
    path = sorted((project.data / "masks").iterdir())[0]
    ids = np.asarray(Image.open(path)).copy()
    ids[:3, :3] = len(CLASSES) + 2
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(ids, "L").save(tmp)
    os.replace(tmp, path)  # never write through a file DVC's cache may share
    return path.name


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_scheduled_retraining(tmp_path: Path) -> None:
    project = Project.at(init_project(tmp_path / "proj", UNREACHABLE))
    model = TINY["register"]["model_name"]
    with prefect_server(tmp_path / "prefect-server") as api:
        log = tmp_path / "schedule.log"
        with open(log, "wb") as out:
            schedule = subprocess.Popen(
                [sys.executable, "-m", "segen.cli.main", "schedule", "--interval", "5",
                 "--stages", "register_unet", "--json"], cwd=project.root,
                env={**os.environ, "PREFECT_API_URL": api,
                     "PREFECT_RUNNER_POLL_FREQUENCY": "2"}, stdout=out,  # default 10 s
                stderr=subprocess.STDOUT, start_new_session=True)
        seen: set[str] = set()
        try:
            first = _next_run(api, seen, schedule, log)
            assert first.state.type.value == "COMPLETED", first.state.message
            report = _report(project, first)
            assert "train_unet" in report["stages_ran"]
            # the first registration claims champion; its gate finds it there already
            assert [(p["model"], p["decision"]) for p in report["promotions"]] == [
                (model, "already_champion")]
            assert _champion(project, model) == "1"

            second = _next_run(api, seen, schedule, log)  # nothing changed: ends at once
            assert second.state.type.value == "COMPLETED", second.state.message
            assert not _report(project, second)["data_changed"]

            added = segen_cli("data", "add", str(_new_pairs(tmp_path) / "images"),
                              str(tmp_path / "shapes-new" / "masks"), "--json",
                              cwd=project.root)
            assert added.returncode == 0, added.stderr
            new_version = json.loads(added.stdout)["data_version"]
            retrained = _next_run(api, seen, schedule, log, lambda run: run.state.type.value
                                  != "COMPLETED" or _report(project, run)[
                                      "data_version_after"] == new_version)
            assert retrained.state.type.value == "COMPLETED", retrained.state.message
            report = _report(project, retrained)
            assert report["data_changed"] and "train_unet" in report["stages_ran"]
            (decision,) = report["promotions"]
            assert (decision["model"], decision["version"], decision["decision"]) == (
                model, "2", "rejected")
            gate = decision["gate"]["report"]
            assert (gate["metric"], gate["margin"], gate["champion"]["version"]) == (
                "mean_iou", 1.0, 1)
            assert gate["test_data_version"] == new_version and not gate["passed"]
            assert _champion(project, model) == "1"

            bad_mask = _write_bad_mask(project)
            written = time.time()
            failed = _next_run(api, seen, schedule, log, lambda run: run.start_time is not None
                               and run.start_time.timestamp() > written)
            assert failed.state.type.value == "FAILED"
            assert "DataValidationError" in failed.state.message
            assert bad_mask in failed.state.message and "out of range" in failed.state.message
            assert _champion(project, model) == "1"
        finally:
            _stop_group(schedule)
        assert "segen-retrain" in log.read_text()


@pytest.mark.slow
def test_local_server_start_stop(tmp_path: Path) -> None:
    """segen's own background server (used when PREFECT_API_URL is unset): healthy, reused,
    stopped with its whole process group by `segen schedule --stop-server`."""
    project = Project.at(init_project(tmp_path / "proj"))
    record, started = local_server.ensure_server(project)
    try:
        assert started and local_server.is_healthy(record.api_url)
        assert json.loads(local_server.record_path(project).read_text())["pid"] == record.pid
        again, started_again = local_server.ensure_server(project)
        assert again == record and not started_again
        env_free = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        stop = subprocess.run([sys.executable, "-m", "segen.cli.main", "schedule", "--stop-server",
                               "--json"], cwd=project.root, env=env_free, text=True,
                              capture_output=True, timeout=300)
        assert stop.returncode == 0, stop.stderr
        assert json.loads(stop.stdout) == {"stopped": True, "pid": record.pid}
        assert not local_server.is_healthy(record.api_url)
        assert not local_server.record_path(project).exists()
    finally:
        local_server.stop_process_group(record.pid)
    shutil.rmtree(tmp_path / "proj" / ".segen" / "prefect-server", ignore_errors=True)


def test_schedule_rejects_bad_arguments(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    bad_cron = segen_cli("schedule", "--cron", "every day", cwd=project)
    assert bad_cron.returncode == 2 and "cron" in bad_cron.stderr
    bad_stage = segen_cli("schedule", "--interval", "5", "--stages", "train_nothing",
                          cwd=project)
    assert bad_stage.returncode == 2 and "train_nothing" in bad_stage.stderr
    assert not (project / ".segen" / "prefect-server.json").exists()


def test_retraining_steps_refuse_failed_or_diverged_runs(tmp_path: Path) -> None:
    """The checks that keep promotion away from a failed run (no servers needed)."""
    from segen.pipeline.graph import stages_for
    from segen.pipeline.store import StageResult, write_atomic
    from tasks.retraining import (
        DivergedModelError,
        RetrainFailed,
        check_finite,
        check_stages,
        mark_gated,
        new_versions,
        retrain_report,
    )

    assert stages_for(["register_unet"]) == ["version_data", "validate", "preprocess",
                                             "train_unet", "evaluate_unet", "register_unet"]
    with pytest.raises(ValueError, match="train_nothing"):
        stages_for(["train_nothing"])
    stages = [{"name": "train_unet", "status": "ran", "key": "k1"},
              {"name": "register_unet", "status": "ran", "key": "k2"},
              {"name": "register_kmeans", "status": "cached", "key": "k3"}]
    with pytest.raises(RetrainFailed, match="train_gan: RuntimeError: loss is nan"):
        check_stages({"stages": stages + [{"name": "train_gan", "status": "failed", "key": "",
                                           "reason": "RuntimeError: loss is nan"}]})
    check_stages({"stages": stages})
    project = Project.at(tmp_path)
    for name, version in (("register_unet", 3), ("register_kmeans", 2)):
        write_atomic(project.pointer(name), StageResult(name, "k", "d", "p", {
            "model_name": f"m-{name}", "version": version,
            "metrics": {"mean_iou": float("nan") if version == 3 else 0.5}}).to_json())
    mark_gated(project, "m-register_kmeans", "2", "rejected")  # judged by an earlier run
    found = new_versions(project, stages)
    assert [(v["model_name"], v["version"]) for v in found] == [("m-register_unet", "3")]
    with pytest.raises(DivergedModelError, match="m-register_unet v3 \\(mean_iou\\)"):
        check_finite(found)
    report = retrain_report("a.dir", {"stages": stages, "data_version": "b.dir",
                                      "models": []}, [])
    assert report["data_changed"] and report["stages_ran"] == ["train_unet", "register_unet"]
    assert report["stages_cached"] == ["register_kmeans"]
