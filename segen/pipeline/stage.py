"""Stages cached by content: a stage body wrapped so that its result is stored by key.

A stage's key hashes its name, the normalised source of its body's import closure
(segen.pipeline.sources), the digests of its upstream results, its own params sections and
(for version_data) the content of data/. Outputs sit in the artifact store; a stored result
whose artifact no longer holds (e.g. a model version deleted from the registry) is not a hit.

Defining a stage imports nothing heavy: the Prefect task is made only when a flow runs it
(segen.pipeline.prefect_tasks), so a fully cached run can be answered without Prefect.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from segen.hashing import hash_json
from segen.pipeline import budget
from segen.pipeline.graph import StageSpec, stage
from segen.pipeline.sources import stage_sources, uses_torch
from segen.pipeline.store import ArtifactStore, StageResult
from segen.project import Project

# Body signature: (project, *inputs, out=<staging dir>, key=<stage key>) -> StageOutput.
# Inputs are named after what they are: upstream stage names (StageResult) and
# params.yaml section names (frozen params), so the graph in segen.pipeline.graph wires them.
Body = Callable[..., "StageOutput"]
ContentKey = Callable[[Project], str]  # extra content beyond the inputs (data/)
StillValid = Callable[[Project, StageResult], bool]  # does a stored hit still hold?


@dataclass(frozen=True)
class StageOutput:
    info: dict[str, Any]
    digest: str | None = None  # None: hash the staged files


class StageSkipped(Exception):
    """A stage body's way to say it does not apply to this data (the reason says why);
    the run records the stage and its dependents as skipped, not failed."""


@dataclass(frozen=True)
class Stage:
    """One stage: its place in the graph, its body, and where its code lives."""
    spec: StageSpec
    body: Body  # body(**inputs, out=<staging dir>, key=<stage key>) -> StageOutput
    inputs: inspect.Signature  # (project, *upstream results, *params sections)
    source: tuple[str, str]  # (module, function): the key covers its import closure
    content_key: ContentKey | None = None
    still_valid: StillValid | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, project: Project, inputs: dict[str, Any]) -> str:
        parts: dict[str, Any] = {"stage": self.name, "sources": stage_sources(*self.source)[0]}
        for name, value in sorted(self.given(inputs).items()):
            if isinstance(value, Project):
                continue  # where the project lives is not content
            if isinstance(value, StageResult):
                parts[name] = value.digest
            elif dataclasses.is_dataclass(value):
                parts[name] = dataclasses.asdict(value)
            else:
                parts[name] = value
        if self.content_key is not None:
            parts["content"] = self.content_key(project)
        return hash_json(parts)

    def given(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """inputs without the optional upstream results that are absent (switched off; Prefect
        passes their default, None)."""
        return {k: v for k, v in inputs.items() if v is not None or k not in self.spec.optional}

    def load_valid(self, project: Project, key: str) -> StageResult | None:
        """The stored result for key if it is complete and still holds, else None."""
        result = ArtifactStore.of(project).load(self.name, key)
        return result if result is not None and self._holds(project, result) else None

    def _holds(self, project: Project, result: StageResult) -> bool:
        return self.still_valid is None or self.still_valid(project, result)

    @functools.cached_property
    def fn(self) -> Callable[..., StageResult]:
        """fn(project, *inputs) -> StageResult: the stored result when the key is a valid
        hit, else the body run into a staging folder and published under the key."""
        def run(*args: Any, **kwargs: Any) -> StageResult:
            inputs = self.given(self.inputs.bind(*args, **kwargs).arguments)
            project: Project = inputs["project"]
            key = self.key(project, inputs)
            store = ArtifactStore.of(project)
            stored = store.load(self.name, key)
            if stored is not None and self._holds(project, stored):
                return stored  # e.g. Prefect's record was cleared, the artifact is here
            if stored is not None:  # it no longer holds: make way (here and in the bucket)
                store.discard(self.name, key)
            with store.staging(self.name) as staged, budget.gpu_slot(self.uses_torch):
                output = self.body(**inputs, out=staged, key=key)
                info = {**output.info, "params": _params_of(inputs)}
                return store.publish(self.name, key, staged, info, output.digest)

        run.__signature__ = self.inputs  # type: ignore[attr-defined]
        run.__name__ = run.__qualname__ = self.name
        run.__doc__ = self.spec.description
        run.__module__ = self.source[0]
        return run

    @functools.cached_property
    def uses_torch(self) -> bool:
        return uses_torch(stage_sources(*self.source)[1])

    @functools.cached_property
    def task(self) -> Any:
        """The Prefect task that runs fn (made on first use: importing Prefect takes ~1.5 s)."""
        from segen.pipeline.prefect_tasks import prefect_task

        return prefect_task(self)


def stage_task(name: str, *, content_key: ContentKey | None = None,
               still_valid: StillValid | None = None) -> Callable[[Body], Stage]:
    """Turn `body(project, *inputs, out, key)` into the Stage `name`."""
    def decorate(body: Body) -> Stage:
        signature = inspect.signature(body)
        inputs = signature.replace(
            parameters=[p for p in signature.parameters.values() if p.name not in ("out", "key")],
            return_annotation=StageResult)
        return Stage(stage(name), body, inputs, (body.__module__, body.__name__),
                     content_key, still_valid)

    return decorate


def family_stage_task(name: str, body: Callable[..., StageOutput], *,
                      content_key: ContentKey | None = None,
                      still_valid: StillValid | None = None) -> Stage:
    """A Stage from a body shared by several stages: body(name, **inputs, out, key), its
    inputs named by the StageSpec of `name` (e.g. train_gan and train_vae share one)."""
    spec = stage(name)
    return Stage(spec, functools.partial(body, name), _spec_signature(spec),
                 (body.__module__, body.__name__), content_key, still_valid)


def _spec_signature(spec: StageSpec) -> inspect.Signature:
    """(project, *upstream results, *params sections): the inputs the graph gives a stage."""
    from segen.config import Params

    kind, sections = inspect.Parameter.POSITIONAL_OR_KEYWORD, typing.get_type_hints(Params)
    required = [u for u in spec.upstream if u not in spec.optional]
    names = [("project", Project), *((u, StageResult) for u in required),
             *((s, sections[s]) for s in spec.params)]
    # an optional upstream that was switched off is absent: not an input, not in the key
    optional = [inspect.Parameter(u, inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation=StageResult | None) for u in spec.optional]
    return inspect.Signature([inspect.Parameter(n, kind, annotation=a) for n, a in names]
                             + optional, return_annotation=StageResult)


def _params_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """The params sections a stage ran with, recorded with its result for lineage."""
    return {name: dataclasses.asdict(v) for name, v in inputs.items()
            if dataclasses.is_dataclass(v) and not isinstance(v, (Project, StageResult))}


def collect_stages(modules: list[Any]) -> dict[str, Stage]:
    """Every Stage the given modules define (as a name or in a dict of them), by name."""
    found: dict[str, Stage] = {}
    for module in modules:
        for value in vars(module).values():
            for item in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(item, Stage):
                    found[item.name] = item
    return found


def source_files_of(stage_: Stage) -> tuple[Path, ...]:
    return stage_sources(*stage_.source)[1]
