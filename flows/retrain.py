"""The retraining flow that schedules run: the pipeline, then the promotion gate on every model
version it registered, and a report of what changed.

With data, code and params unchanged since the last completed run it stops after one cheap
check (else every pipeline stage would be a cache hit anyway). A failed stage (bad new data,
a diverged model, the MLflow server gone) fails the run in Prefect with that error, and
promote_new never runs, so the champion stays as it was.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, runtime, task
from prefect.cache_policies import NO_CACHE

from flows.pipeline import pipeline
from segen.locking import project_lock
from segen.project import Project
from tasks.retraining import (
    check_stages,
    format_report,
    last_data_version,
    promote_new,
    record_success,
    retrain_report,
    skipped_report,
    unchanged_since_last_success,
)

# The gate's step as a Prefect task of its own (state and logs in the UI), never cached.
promote_new_task = task(name="promote_new", cache_policy=NO_CACHE,
                        persist_result=False)(promote_new)


@flow(name="segen-retrain", log_prints=True)
def retrain(project_dir: str, params_path: str, targets: list[str] | None = None,
            skip_unchanged: bool = True) -> dict[str, Any]:
    """Version the data, rerun what changed, gate and promote the new model versions.

    targets: stages to bring up to date (with their upstream stages); None: all of them.
    """
    project = Project.at(project_dir)
    # One writer: a scheduled run waits for `segen data add` (and the reverse); re-entered
    # when `segen retrain` already holds it.
    with project_lock(project, "segen-retrain flow"):
        before = last_data_version(project)
        if skip_unchanged and unchanged_since_last_success(project, params_path, targets):
            report = skipped_report(before)
        else:
            summary = pipeline(project_dir, params_path, targets)
            check_stages(summary)  # a failed stage fails the run before any promotion
            decisions = promote_new_task(project, params_path, summary["stages"])
            report = retrain_report(before, summary, decisions)
        report["flow_run_id"] = str(runtime.flow_run.id)
        record_success(project, params_path, targets, report)
    print(format_report(report))
    return report
