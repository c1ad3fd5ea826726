"""register_kmeans / register_dbscan: one body, one task per kind. The shared routine of
tasks/registration.py with the clustering pyfunc; each kind reads its own params section
(register_kmeans, register_dbscan) and gets the same lineage tags as the U-Net."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task

from segen.project import Project
from segen.stages import CLUSTERING_KINDS
from segen.store import StageResult
from tasks.caching import StageOutput, family_stage_task
from tasks.registration import Registration, model_version_exists, register


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.cluster_pyfunc import log_cluster_model

    return log_cluster_model(model_dir, name)


def register_clustering(name: str, *, project: Project, version_data: StageResult,
                        preprocess: StageResult, out: Path, key: str, **inputs: Any
                        ) -> StageOutput:
    """Log params, metrics, evaluation artifacts, dataset and pyfunc; register a new version
    (the champion alias goes to the first version only).

    inputs: train_<kind> and evaluate_<kind> results, and the register_<kind> section.
    """
    kind = name.removeprefix("register_")
    train, evaluation = f"train_{kind}", f"evaluate_{kind}"
    what = Registration(stage=name, section=name, train=train, evaluation=evaluation,
                        log_model=_log_model)
    upstream = {"version_data": version_data, "preprocess": preprocess,
                train: inputs[train], evaluation: inputs[evaluation]}
    params = inputs[name]
    return StageOutput(register(project, what, upstream, params, params, out))


REGISTER_TASKS: dict[str, Task] = {
    f"register_{kind}": family_stage_task(f"register_{kind}", register_clustering,
                                          still_valid=model_version_exists)
    for kind in CLUSTERING_KINDS}
