"""The retraining flow that schedules run: the pipeline, then the promotion gate on every model
version it registered, and a report of what changed.

With data, code and params unchanged since the last completed run it stops after one cheap
check (else every pipeline stage would be a cache hit anyway). A failed stage (bad new data,
a diverged model, the MLflow server gone) raises: the run is FAILED in Prefect with that
error, and promote_new never runs, so the champion and the registry stay as they were.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from flows.pipeline import pipeline
from segen.project import Project
from tasks.retraining import (format_report, promote_new, record_success, retrain_report,
                              skipped_report, unchanged_since_last_success)
from tasks.version_data import recorded_version


@flow(name="segen-retrain", log_prints=True)
def retrain(project_dir: str, params_path: str, skip_unchanged: bool = True) -> dict[str, Any]:
    """Version the data, rerun what changed, gate and promote the new model versions."""
    project = Project.at(project_dir)
    before = recorded_version(project)
    if skip_unchanged and unchanged_since_last_success(project, params_path):
        report = skipped_report(before)
    else:
        summary = pipeline(project_dir, params_path)  # a subflow: its stages show in the UI
        decisions = promote_new(project, params_path, summary["stages"])
        report = retrain_report(before, summary, decisions)
    report["flow_run_id"] = str(runtime.flow_run.id)
    record_success(project, params_path, report)
    print(format_report(report))
    return report
