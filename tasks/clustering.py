"""The clustering stages, one body per step and one task per kind (kmeans, dbscan): train_<kind>,
evaluate_<kind>, register_<kind>. Importing this module loads numpy only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import ClusterEvaluateParams
from segen.pipeline.graph import CLUSTERING_KINDS
from segen.pipeline.stage import Stage, StageOutput, family_stage_task
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.registry.registration import model_version_exists, register_trained


def train_clustering(name: str, *, project: Project, preprocess: StageResult, out: Path,
                     key: str, **section: Any) -> StageOutput:
    """Fit one segmenter on a train-split pixel sample (global mode); publishes it."""
    from segen.engines.cluster_trainer import fit

    kind = name.removeprefix("train_")
    return StageOutput(fit(preprocess, kind, section[kind], out))


TRAIN_TASKS: dict[str, Stage] = {
    f"train_{kind}": family_stage_task(f"train_{kind}", train_clustering)
    for kind in CLUSTERING_KINDS}


def evaluate_clustering(name: str, *, project: Project, preprocess: StageResult,
                        cluster_evaluate: ClusterEvaluateParams, out: Path, key: str,
                        **trained: StageResult) -> StageOutput:
    """metrics.json, per_image.npz and grid.png of one segmenter on the test split."""
    from segen.engines.cluster_evaluation import evaluate

    kind = name.removeprefix("evaluate_")
    return evaluate(preprocess, trained[f"train_{kind}"], cluster_evaluate, out)


EVALUATE_TASKS: dict[str, Stage] = {
    f"evaluate_{kind}": family_stage_task(f"evaluate_{kind}", evaluate_clustering)
    for kind in CLUSTERING_KINDS}


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.serving.cluster_pyfunc import log_cluster_model

    return log_cluster_model(model_dir, name)


def register_clustering(name: str, *, project: Project, out: Path, key: str, **inputs: Any
                        ) -> StageOutput:
    """Log params, metrics, evaluation artifacts, dataset and pyfunc; register a new version
    (the champion alias goes to the first version only).

    inputs: version_data, preprocess, train_<kind>, evaluate_<kind> and register_<kind>."""
    return StageOutput(register_trained(project, name, name, _log_model, inputs, inputs[name],
                                        out))


REGISTER_TASKS: dict[str, Stage] = {
    f"register_{kind}": family_stage_task(f"register_{kind}", register_clustering,
                                          still_valid=model_version_exists)
    for kind in CLUSTERING_KINDS}
