"""A Stage as a Prefect task, cached by its content key.

Prefect's cache records sit under .segen/prefect-cache; the outputs sit in the artifact
store. A record whose artifact has gone missing (or no longer holds) is not a hit: the key
policy drops that record and the stage recomputes. So does a record Prefect could not read
(truncated, garbage, or naming the result storage of another folder, as in a copied
project), with a warning: the stage is then answered from the store. Whatever Prefect hands
back, the result is read again from this project's store, so a record made in another
folder never points outside it.

With $SEGEN_STORE_URL the records and results live in the shared bucket instead
(segen.pipeline.shared_store), so a stage cached by one clone or worker is a Cached task in
every other.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from segen.hashing import hash_json
from segen.pipeline.shared_store import shared_store
from segen.pipeline.store import ArtifactStore, StageResult
from segen.project import Project

if TYPE_CHECKING:
    from segen.pipeline.stage import Stage

log = logging.getLogger("segen.stages")


def _records(project: Project) -> Path:
    return project.prefect_cache / "records"


def _results(project: Project) -> Path:
    return project.prefect_cache / "results"


def _storages(project: Project) -> tuple[Any, Any]:
    """(records, results): Prefect filesystem blocks on the shared bucket, or the folders of
    this project's .segen/prefect-cache."""
    shared = shared_store()
    if shared is not None:
        return shared.prefect_storage("records"), shared.prefect_storage("results")
    return (LocalFileSystem(basepath=str(_records(project))),
            LocalFileSystem(basepath=str(_results(project))))


def _drop_record(project: Project, key: str) -> None:
    shared = shared_store()
    if shared is not None:
        shared.remove_record(key)
    else:
        (_records(project) / key).unlink(missing_ok=True)
        (_results(project) / key).unlink(missing_ok=True)


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
            _drop_record(project, key)
        else:
            _drop_unreadable_record(project, key)
        return key


def _drop_unreadable_record(project: Project, key: str) -> None:
    """Prefect fails the task when the record of a hit cannot be read (it only checks that
    the record's metadata parses before it reads the result): read it the way Prefect
    will, and drop it if that fails, so the stage is answered from the store instead."""
    shared = shared_store()
    where = f"{shared.url}/prefect/records/{key}" if shared else str(_records(project) / key)
    if not (shared.has_record(key) if shared else (_records(project) / key).is_file()):
        return
    records, results = _storages(project)
    store = ResultStore(result_storage=results, metadata_storage=records,
                        cache_result_in_memory=False)
    try:
        store.read(key)
    except Exception as err:  # whatever reading it raises, Prefect would raise it too
        log.warning("Prefect cache record %s cannot be read (%s: %s): dropped; the stage "
                    "is answered from the store", where, type(err).__name__, str(err)[:200])
        _drop_record(project, key)


def prefect_task(stage: "Stage") -> Task:
    return task(name=stage.name, description=stage.spec.description,
                persist_result=True)(stage.fn)


def configured(stage: "Stage", project: Project) -> Task:
    """The stage's task with its cache in this project (or the shared store)."""
    records, results = _storages(project)
    return stage.task.with_options(
        cache_policy=StagePolicy(stage=stage, key_storage=records),
        result_storage=_task_storage(results))  # apart from the records: both named by key


def _task_storage(results: Any) -> Any:
    """What a task takes as its result storage: a folder as a Path; any other filesystem
    only as a block saved on the Prefect server (Task refuses an unsaved one), so the
    shared one is saved there once per server and process, under a name derived from it."""
    if isinstance(results, LocalFileSystem):
        return Path(results.basepath)
    return _saved_block(os.environ.get("PREFECT_API_URL", ""), results)


def _saved_block(api_url: str, block: Any) -> str:
    name = "segen-results-" + hash_json(block.model_dump(mode="json"))[:16]
    if (api_url, name) not in _SAVED:
        block.save(name, overwrite=True)
        _SAVED.add((api_url, name))
    return f"{block.get_block_type_slug()}/{name}"


_SAVED: set[tuple[str, str]] = set()  # (Prefect API, block name) saved by this process


def local_result(project: Project, result: StageResult) -> StageResult:
    """The result as this project's store holds it (its folder here, not where it was made)."""
    return ArtifactStore.of(project).load(result.stage, result.key) or result


def status_of(state: Any) -> str:
    return "cached" if state.name == "Cached" else "ran"
