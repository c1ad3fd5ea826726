"""Runs stages inside a flow, each as soon as the results it consumes exist, and keeps what
the run summary reports (ran, cached, skipped or failed; key; reason).

Independent stages run side by side on the flow's thread-pool task runner, at most
`run.max_parallel_stages` at once, with `run.threads_per_stage` CPU threads each (so the
total stays within the cores) and at most `run.stages_per_gpu` on one GPU.

A model stage that fails (e.g. a diverged generator) is recorded as failed with its reason,
and so are the stages that depend on it; the other stages still run. Stages that need
masks are skipped when the dataset has none (class folders). A failure of version_data,
validate or preprocess, which every stage needs, still stops the run.
"""
from __future__ import annotations

import concurrent.futures
import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from segen.config import Params
from segen.pipeline import budget
from segen.pipeline.graph import STAGES, StageSpec
from segen.pipeline.sources import external_imports
from segen.pipeline.stage import Stage, StageSkipped, source_files_of
from segen.pipeline.store import StageResult, write_atomic
from segen.project import Project

log = logging.getLogger("segen.stages")
SHARED = ("version_data", "validate", "preprocess")  # their failure stops the whole run


def blocked_reason(spec: StageSpec, params: Params, results: dict[str, StageResult],
                   not_run: dict[str, str]) -> tuple[str, str] | None:
    """(status, reason) when a stage cannot run: an upstream stage did not, it is switched
    off in params.yaml, or it needs masks and the dataset has none."""
    for upstream in spec.upstream:
        if upstream in not_run and not (upstream in spec.optional
                                        and not_run[upstream] == "skipped"):
            return not_run[upstream], f"{upstream} {not_run[upstream]}"
    if switched_off(spec, params):
        return "skipped", f"{spec.enabled_by}.enabled is false in params.yaml"
    prepared = results.get("preprocess")
    if spec.needs_masks and prepared is not None and not prepared.info["has_masks"]:
        return "skipped", "the dataset has no masks (class folders)"
    return None


def switched_off(spec: StageSpec, params: Params) -> bool:
    return spec.enabled_by is not None and not getattr(params, spec.enabled_by).enabled


def stage_inputs(spec: StageSpec, params: Params, results: dict[str, StageResult]
                 ) -> dict[str, Any]:
    """What the graph hands a stage: its upstream results and its own params sections."""
    inputs: dict[str, Any] = {u: results[u] for u in spec.upstream
                             if u in results or u not in spec.optional}
    inputs.update({s: getattr(params, s) for s in spec.params})
    return inputs


def in_graph_order(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {name: i for i, name in enumerate(STAGES)}
    return sorted(statuses, key=lambda s: order[s["name"]])


@dataclass
class StageLog:
    project: Project
    params: Params
    table: dict[str, Stage]  # every stage by name (tasks.stage_table())
    results: dict[str, StageResult] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)  # stage -> "skipped" | "failed"

    def run_all(self, names: list[str]) -> None:
        """Run names (in graph order) as their inputs become ready, max_parallel at once."""
        from segen.pipeline.prefect_tasks import configured

        budget.apply(self.params.run)
        if self.params.run.max_parallel_stages > 1:
            import_libraries([self.table[n] for n in names])
        waiting, running = list(names), {}
        while waiting or running:
            for name in [n for n in waiting if self._ready(n, waiting, running)]:
                if len(running) >= self.params.run.max_parallel_stages:
                    break
                waiting.remove(name)
                submitted = self._submit(name, configured)
                if submitted is not None:
                    running[name] = submitted
            if running:
                done, _ = concurrent.futures.wait(
                    [f.wrapped_future for f, _ in running.values()],
                    return_when=concurrent.futures.FIRST_COMPLETED)
                for name in [n for n, (f, _) in running.items() if f.wrapped_future in done]:
                    self._collect(name, *running.pop(name))
        self.statuses = in_graph_order(self.statuses)

    def _ready(self, name: str, waiting: list[str], running: dict[str, Any]) -> bool:
        return not any(u in waiting or u in running for u in STAGES[name].upstream)

    def _submit(self, name: str, configured: Any) -> tuple[Any, float] | None:
        spec = STAGES[name]
        blocked = blocked_reason(spec, self.params, self.results, self.not_run)
        if blocked is not None:
            self._record(name, *blocked)
            return None
        task = configured(self.table[name], self.project)
        inputs = stage_inputs(spec, self.params, self.results)
        return task.submit(project=self.project, **inputs), time.perf_counter()

    def _collect(self, name: str, future: Any, start: float) -> None:
        from segen.pipeline.prefect_tasks import local_result, status_of

        try:
            result = local_result(self.project, future.result())  # re-raises the stage's error
        except StageSkipped as err:
            self._record(name, "skipped", str(err))
            return
        except Exception as err:
            if name in SHARED:
                raise
            log.error("stage %s failed: %s", name, err)  # Prefect logged the traceback
            self._record(name, "failed", f"{type(err).__name__}: {err}")
            return
        write_atomic(self.project.pointer(name), result.to_json())
        self.results[name] = result
        self.statuses.append({"name": name, "status": status_of(future.state),
                              "key": result.key,
                              "seconds": round(time.perf_counter() - start, 2)})

    def _record(self, name: str, status: str, reason: str) -> None:
        self.not_run[name] = status
        self.statuses.append({"name": name, "status": status, "key": "", "reason": reason})

    @property
    def failed(self) -> bool:
        return "failed" in self.not_run.values()



def import_libraries(stages: list[Stage]) -> None:
    """Import, on this thread, every library the stages' code imports (also lazily).

    Two stage threads importing one package at the same moment can each see it half
    initialised (torchmetrics raised "partially initialized module" here), so the imports
    happen once, before the stages run side by side."""
    needed = set().union(*(external_imports(source_files_of(s)) for s in stages))
    for name in sorted(needed):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional dependency the code itself guards
            continue
