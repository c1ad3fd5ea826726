"""Registration behind register_kmeans / register_dbscan: the shared routine of
tasks/registration.py with the clustering pyfunc."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import RegisterParams
from segen.project import Project
from segen.store import StageResult
from tasks.registration import Registration
from tasks.registration import register as register_model


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.cluster_pyfunc import log_cluster_model

    return log_cluster_model(model_dir, name)


def register(project: Project, stage: str, upstream: dict[str, StageResult],
             register_params: RegisterParams, out: Path) -> dict[str, Any]:
    """Log params, metrics, evaluation artifacts, dataset and pyfunc; register a version.

    upstream: version_data, preprocess, train_<kind>, evaluate_<kind> results.
    """
    kind = stage.removeprefix("register_")
    what = Registration(stage=stage, section=stage, train=f"train_{kind}",
                        evaluation=f"evaluate_{kind}", log_model=_log_model)
    return register_model(project, what, upstream, register_params, register_params, out)
