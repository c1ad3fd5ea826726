"""A Stage as a Prefect task, cached by its content key.

Prefect's cache records sit under .segen/prefect-cache; the outputs sit in the artifact
store. A record whose artifact has gone missing (or no longer holds) is not a hit: the key
policy drops that record and the stage recomputes. So does a record Prefect could not read
(truncated, garbage, or naming the result storage of another folder, as in a copied
project), with a warning: the stage is then answered from the store. Whatever Prefect hands
back, the result is read again from this project's store, so a record made in another
folder never points outside it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from segen.pipeline.store import ArtifactStore, StageResult
from segen.project import Project

if TYPE_CHECKING:
    from segen.pipeline.stage import Stage

log = logging.getLogger("segen.stages")


def _records(project: Project) -> Path:
    return project.prefect_cache / "records"


def _results(project: Project) -> Path:
    return project.prefect_cache / "results"


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
        else:
            _drop_unreadable_record(project, key)
        return key


def _drop_unreadable_record(project: Project, key: str) -> None:
    """Prefect fails the task when the record of a hit cannot be read (it only checks that
    the record's metadata parses before it reads the result): read it the way Prefect
    will, and drop it if that fails, so the stage is answered from the store instead."""
    record = _records(project) / key
    if not record.is_file():
        return
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(_results(project))),
                        metadata_storage=LocalFileSystem(basepath=str(_records(project))),
                        cache_result_in_memory=False)
    try:
        store.read(key)
    except Exception as err:  # whatever reading it raises, Prefect would raise it too
        log.warning("Prefect cache record %s cannot be read (%s: %s): dropped; the stage "
                    "is answered from the store", record, type(err).__name__,
                    str(err)[:200])
        record.unlink(missing_ok=True)
        (_results(project) / key).unlink(missing_ok=True)


def prefect_task(stage: "Stage") -> Task:
    return task(name=stage.name, description=stage.spec.description,
                persist_result=True)(stage.fn)


def configured(stage: "Stage", project: Project) -> Task:
    """The stage's task with its cache in this project."""
    return stage.task.with_options(
        cache_policy=StagePolicy(stage=stage, key_storage=_records(project)),
        result_storage=_results(project))  # apart from the records: both are named by key


def local_result(project: Project, result: StageResult) -> StageResult:
    """The result as this project's store holds it (its folder here, not where it was made)."""
    return ArtifactStore(project.store).load(result.stage, result.key) or result


def status_of(state: Any) -> str:
    return "cached" if state.name == "Cached" else "ran"
