"""Stage tasks cached by content.

A stage's key hashes its name, the source of the modules it depends on, the digests
of its upstream results, its own params sections and (for version_data) the content
of data/. Prefect's cache records sit under .segen/prefect-cache; the outputs sit in
the artifact store. A record whose artifact has gone missing (or no longer holds,
e.g. a model version deleted from the registry) is not a hit: the key policy drops
that record and the stage recomputes.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect import Task, task
from prefect.cache_policies import CachePolicy

from segen.hashing import hash_json, hash_sources
from segen.project import Project
from segen.stages import StageSpec, stage
from segen.store import ArtifactStore, StageResult, write_atomic

# Body signature: (project, *inputs, out=<staging dir>, key=<stage key>) -> StageOutput.
# Inputs are named after what they are: upstream stage names (StageResult) and
# params.yaml section names (frozen params), so the graph in segen.stages wires them.
Body = Callable[..., "StageOutput"]


@dataclass(frozen=True)
class StageOutput:
    info: dict[str, Any]
    digest: str | None = None  # None: hash the staged files


@dataclass(frozen=True)
class StageHooks:
    content_key: Callable[[Project], str] | None  # extra content beyond inputs (data/)
    still_valid: Callable[[Project, StageResult], bool] | None  # is a stored hit still true?


_HOOKS: dict[str, StageHooks] = {}


def stage_key(spec: StageSpec, project: Project, inputs: dict[str, Any]) -> str:
    parts: dict[str, Any] = {"stage": spec.name, "sources": hash_sources(spec.sources)}
    for name, value in sorted(inputs.items()):
        if isinstance(value, Project):
            continue  # where the project lives is not content
        if isinstance(value, StageResult):
            parts[name] = value.digest
        elif dataclasses.is_dataclass(value):
            parts[name] = dataclasses.asdict(value)
        else:
            parts[name] = value
    hooks = _HOOKS[spec.name]
    if hooks.content_key is not None:
        parts["content"] = hooks.content_key(project)
    return hash_json(parts)


def load_valid(spec: StageSpec, project: Project, key: str) -> StageResult | None:
    """The stored result for key if it is complete and still holds, else None."""
    result = ArtifactStore(project.store).load(spec.name, key)
    check = _HOOKS[spec.name].still_valid
    if result is None or (check is not None and not check(project, result)):
        return None
    return result


@dataclass
class StagePolicy(CachePolicy):
    """Prefect cache policy: the content key, or None when the stored artifact is gone."""
    stage_name: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        spec = stage(self.stage_name)
        project = inputs["project"]
        key = stage_key(spec, project, inputs)
        if load_valid(spec, project, key) is None:
            # Prefect would serve its record as a hit: drop it so the stage recomputes
            # and records its new result under the same key.
            (_records(project) / key).unlink(missing_ok=True)
        return key


def stage_task(name: str, *, content_key: Callable[[Project], str] | None = None,
               still_valid: Callable[[Project, StageResult], bool] | None = None
               ) -> Callable[[Body], Task]:
    """Turn `body(project, *inputs, out, key)` into a Prefect task returning a StageResult."""
    spec = stage(name)
    _HOOKS[name] = StageHooks(content_key, still_valid)

    def decorate(body: Body) -> Task:
        signature = inspect.signature(body)
        public = signature.replace(
            parameters=[p for p in signature.parameters.values() if p.name not in ("out", "key")],
            return_annotation=StageResult)

        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> StageResult:
            inputs = public.bind(*args, **kwargs).arguments
            project: Project = inputs["project"]
            key = stage_key(spec, project, inputs)
            existing = load_valid(spec, project, key)
            if existing is not None:  # e.g. Prefect's record was cleared but the artifact is here
                return existing
            store = ArtifactStore(project.store)
            store.discard(name, key)  # a stored result that no longer holds: make way for the new
            with store.staging(name) as staged:
                output = body(**inputs, out=staged, key=key)
                info = {**output.info, "params": _params_of(inputs)}
                return store.publish(name, key, staged, info, output.digest)

        run.__signature__ = public  # type: ignore[attr-defined]
        del run.__wrapped__  # Prefect must see the public signature, not the body's
        return task(name=name, description=spec.description, persist_result=True)(run)

    return decorate


def spec_signature(spec: StageSpec) -> inspect.Signature:
    """(project, *upstream results, *params sections, out, key): a body's signature as the
    stage graph defines it, for bodies shared by a family of stages."""
    import typing

    from segen.config import Params

    kind, sections = inspect.Parameter.POSITIONAL_OR_KEYWORD, typing.get_type_hints(Params)
    names = [("project", Project), *((u, StageResult) for u in spec.upstream),
             *((s, sections[s]) for s in spec.params), ("out", Path), ("key", str)]
    return inspect.Signature([inspect.Parameter(n, kind, annotation=a) for n, a in names],
                             return_annotation=StageOutput)


def family_stage_task(name: str, body: Callable[..., StageOutput], **hooks: Any) -> Task:
    """A stage task from a body shared by several stages: body(name, **inputs, out, key),
    its inputs named by the StageSpec of `name` (e.g. train_gan and train_vae share one)."""
    def run(**inputs: Any) -> StageOutput:
        return body(name, **inputs)

    run.__signature__ = spec_signature(stage(name))  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = name
    run.__doc__ = stage(name).description
    run.__module__ = body.__module__
    return stage_task(name, **hooks)(run)


class StageSkipped(Exception):
    """A stage body's way to say it does not apply to this data (the reason says why);
    the run records the stage and its dependents as skipped, not failed."""


def _records(project: Project) -> Path:
    return project.prefect_cache / "records"


def _params_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """The params sections a stage ran with, recorded with its result for lineage."""
    return {name: dataclasses.asdict(v) for name, v in inputs.items()
            if dataclasses.is_dataclass(v) and not isinstance(v, (Project, StageResult))}


def run_stage(stage_task_: Task, project: Project, **inputs: Any) -> tuple[StageResult, str]:
    """Run a stage task in the current flow; returns its result and "ran" or "cached"."""
    configured = stage_task_.with_options(
        cache_policy=StagePolicy(stage_name=stage_task_.name, key_storage=_records(project)),
        result_storage=project.prefect_cache / "results")  # apart: both are named by key
    state = configured(project=project, **inputs, return_state=True)
    result: StageResult = state.result()  # re-raises the stage's own error
    write_atomic(project.pointer(result.stage), result.to_json())
    return result, "cached" if state.name == "Cached" else "ran"
