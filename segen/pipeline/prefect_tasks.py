"""A Stage as a Prefect task, cached by its content key.

Prefect's cache records sit under .segen/prefect-cache; the outputs sit in the artifact
store. A record whose artifact has gone missing (or no longer holds) is not a hit: the key
policy drops that record and the stage recomputes. Whatever Prefect hands back, the result
is read again from this project's store, so a record made in another folder (a copied
project) never points outside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy

from segen.pipeline.store import ArtifactStore, StageResult
from segen.project import Project

if TYPE_CHECKING:
    from segen.pipeline.stage import Stage


def _records(project: Project) -> Path:
    return project.prefect_cache / "records"


@dataclass
class StagePolicy(CachePolicy):
    """Prefect cache policy: the content key, or None when the stored artifact is gone."""
    stage: Any = None

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        project = inputs["project"]
        key = self.stage.key(project, inputs)
        if self.stage.load_valid(project, key) is None:
            # Prefect would serve its record as a hit: drop it so the stage recomputes
            # and records its new result under the same key.
            (_records(project) / key).unlink(missing_ok=True)
        return key


def prefect_task(stage: "Stage") -> Task:
    return task(name=stage.name, description=stage.spec.description,
                persist_result=True)(stage.fn)


def configured(stage: "Stage", project: Project) -> Task:
    """The stage's task with its cache in this project."""
    return stage.task.with_options(
        cache_policy=StagePolicy(stage=stage, key_storage=_records(project)),
        result_storage=project.prefect_cache / "results")  # apart: both are named by key


def local_result(project: Project, result: StageResult) -> StageResult:
    """The result as this project's store holds it (its folder here, not where it was made)."""
    return ArtifactStore(project.store).load(result.stage, result.key) or result


def status_of(state: Any) -> str:
    return "cached" if state.name == "Cached" else "ran"
