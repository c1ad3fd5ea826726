"""Runs stages inside a flow, wiring each one's inputs from the stage graph, and keeps
what the run summary reports (ran or cached, key)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import Task

from segen.config import Params
from segen.project import Project
from segen.stages import stage
from segen.store import StageResult
from tasks.caching import run_stage


def stage_tasks() -> dict[str, Task]:
    """Stage name -> Prefect task (imports torch, so only when a flow runs)."""
    from tasks.evaluate_unet import evaluate_unet
    from tasks.preprocess import preprocess
    from tasks.register_unet import register_unet
    from tasks.train_unet import train_unet
    from tasks.validate import validate
    from tasks.version_data import version_data
    from tasks.compare_segmenters import compare_segmenters
    from tasks.evaluate_dbscan import evaluate_dbscan
    from tasks.evaluate_kmeans import evaluate_kmeans
    from tasks.register_dbscan import register_dbscan
    from tasks.register_kmeans import register_kmeans
    from tasks.train_dbscan import train_dbscan
    from tasks.train_kmeans import train_kmeans

    return {t.name: t for t in (version_data, validate, preprocess, train_unet, evaluate_unet,
                                register_unet)} | {
        t.name: t for t in (train_kmeans, evaluate_kmeans, register_kmeans, train_dbscan,
                            evaluate_dbscan, register_dbscan, compare_segmenters)}


@dataclass
class StageLog:
    project: Project
    params: Params
    results: dict[str, StageResult] = field(default_factory=dict)
    statuses: list[dict[str, str]] = field(default_factory=list)

    def run(self, name: str) -> StageResult:
        """Run one stage with its upstream results and its own params sections."""
        spec = stage(name)
        inputs: dict[str, Any] = {u: self.results[u] for u in spec.upstream}
        inputs.update({s: getattr(self.params, s) for s in spec.params})
        result, status = run_stage(stage_tasks()[name], self.project, **inputs)
        self.results[name] = result
        self.statuses.append({"name": name, "status": status, "key": result.key})
        return result
