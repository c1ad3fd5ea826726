"""Every stage's key, computed before anything heavy starts. When each one is a valid hit,
the run is answered from the store alone: no Prefect server, no torch, no MLflow import."""
from __future__ import annotations

from typing import Any

from segen.config import Params
from segen.pipeline.graph import STAGES
from segen.pipeline.runner import blocked_reason, stage_inputs
from segen.pipeline.stage import Stage
from segen.pipeline.store import StageResult, read_pointer, write_atomic
from segen.project import Project


def cached_results(project: Project, params: Params, table: dict[str, Stage],
                   names: list[str]) -> tuple[dict[str, StageResult], list[dict[str, Any]]] | None:
    """(results, statuses) when every stage in names is a valid stored hit (or skipped, as a
    run would skip it); None as soon as one would have to run."""
    if not project.data.is_dir():
        return None  # the run has to make or pull data/ first
    results: dict[str, StageResult] = {}
    not_run: dict[str, str] = {}
    statuses: list[dict[str, Any]] = []
    for name in names:
        spec = STAGES[name]
        blocked = blocked_reason(spec, params, results, not_run)
        if blocked is not None:
            not_run[name] = blocked[0]
            statuses.append({"name": name, "status": blocked[0], "key": "",
                             "reason": blocked[1]})
            continue
        stage = table[name]
        key = stage.key(project, {"project": project, **stage_inputs(spec, params, results)})
        hit = stage.load_valid(project, key)
        if hit is None:
            return None
        results[name] = hit
        statuses.append({"name": name, "status": "cached", "key": key, "seconds": 0.0})
    for name, result in results.items():  # dvc.yaml's outs name the results now in force
        current = read_pointer(project, name)
        if current is None or current.key != result.key:
            write_atomic(project.pointer(name), result.to_json())
    return results, statuses
