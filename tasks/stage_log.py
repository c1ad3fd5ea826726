"""Runs stages inside a flow, wiring each one's inputs from the stage graph, and keeps
what the run summary reports (ran, cached, skipped or failed; key; reason).

A model stage that fails (e.g. a diverged generator) is recorded as failed with its reason,
and so are the stages that depend on it; the other stages still run. Stages that need
masks are skipped when the dataset has none (class folders). A failure of version_data,
validate or preprocess, which every stage needs, still stops the run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import Task

from segen.config import Params
from segen.project import Project
from segen.stages import StageSpec, stage
from segen.store import StageResult
from tasks.caching import StageSkipped, run_stage

log = logging.getLogger("segen.stages")
_SHARED = ("version_data", "validate", "preprocess")  # their failure stops the whole run


def stage_tasks() -> dict[str, Task]:
    """Stage name -> Prefect task (imports torch, so only when a flow runs)."""
    from tasks import (cluster_evaluation, cluster_registration, cluster_training,
                       evaluate_generative, register_generative, train_generative)
    from tasks.compare_segmenters import compare_segmenters
    from tasks.evaluate_unet import evaluate_unet
    from tasks.evaluate_unet_synthetic import evaluate_unet_synthetic
    from tasks.preprocess import preprocess
    from tasks.register_unet import register_unet
    from tasks.synthesize_pairs import synthesize_pairs
    from tasks.train_feature_extractor import train_feature_extractor
    from tasks.train_unet import train_unet
    from tasks.train_unet_synthetic import train_unet_synthetic
    from tasks.validate import validate
    from tasks.version_data import version_data

    tasks = {t.name: t for t in (
        version_data, validate, preprocess, train_unet, evaluate_unet, register_unet,
        train_feature_extractor, compare_segmenters, synthesize_pairs, train_unet_synthetic,
        evaluate_unet_synthetic)}
    for family in (train_generative.TRAIN_TASKS, evaluate_generative.EVALUATE_TASKS,  # per kind
                   register_generative.REGISTER_TASKS, cluster_training.TRAIN_TASKS,
                   cluster_evaluation.EVALUATE_TASKS, cluster_registration.REGISTER_TASKS):
        tasks.update(family)
    return tasks


@dataclass
class StageLog:
    project: Project
    params: Params
    results: dict[str, StageResult] = field(default_factory=dict)
    statuses: list[dict[str, str]] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)  # stage -> "skipped" | "failed"

    def run(self, name: str) -> StageResult | None:
        """Run one stage with its upstream results and its own params sections; None when
        it was skipped or failed (recorded with the reason)."""
        spec = stage(name)
        blocked = self._blocked(spec)
        if blocked is not None:
            self._record(name, *blocked)
            return None
        inputs: dict[str, Any] = {u: self.results[u] for u in spec.upstream}
        inputs.update({s: getattr(self.params, s) for s in spec.params})
        start = time.perf_counter()
        try:
            result, status = run_stage(stage_tasks()[name], self.project, **inputs)
        except StageSkipped as err:
            self._record(name, "skipped", str(err))
            return None
        except Exception as err:
            if name in _SHARED:
                raise
            log.error("stage %s failed: %s", name, err)  # Prefect logged the traceback
            self._record(name, "failed", f"{type(err).__name__}: {err}")
            return None
        self.results[name] = result
        self.statuses.append({"name": name, "status": status, "key": result.key,
                              "seconds": round(time.perf_counter() - start, 2)})
        return result

    def _blocked(self, spec: StageSpec) -> tuple[str, str] | None:
        """(status, reason) when the stage cannot run: an upstream stage did not, or it
        needs masks and the dataset has none."""
        for upstream in spec.upstream:
            if upstream in self.not_run:
                return self.not_run[upstream], f"{upstream} {self.not_run[upstream]}"
        if spec.enabled_by and not getattr(self.params, spec.enabled_by).enabled:
            return "skipped", f"{spec.enabled_by}.enabled is false in params.yaml"
        prepared = self.results.get("preprocess")
        if spec.needs_masks and prepared is not None and not prepared.info["has_masks"]:
            return "skipped", "the dataset has no masks (class folders)"
        return None

    def _record(self, name: str, status: str, reason: str) -> None:
        self.not_run[name] = status
        self.statuses.append({"name": name, "status": status, "key": "", "reason": reason})

    @property
    def failed(self) -> bool:
        return "failed" in self.not_run.values()
