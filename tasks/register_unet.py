"""register_unet: one MLflow run with params, metrics, artifacts, dataset input and the
pyfunc model; a registered model version tagged with its lineage (tasks/registration.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import RegisterParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task
from tasks.registration import Registration, lineage_tags, model_version_exists
from tasks.registration import register as register_model

__all__ = ["register_unet", "model_version_exists", "lineage_tags"]  # the last two: re-exported


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.pyfunc import log_segmentation_model

    return log_segmentation_model(model_dir, name)


UNET = Registration(stage="register_unet", section="register", train="train_unet",
                    evaluation="evaluate_unet", log_model=_log_model)


@stage_task("register_unet", still_valid=model_version_exists)
def register_unet(project: Project, version_data: StageResult, preprocess: StageResult,
                  train_unet: StageResult, evaluate_unet: StageResult,
                  register: RegisterParams, out: Path, key: str) -> StageOutput:
    """Register a new version; the champion alias goes to the first version only."""
    upstream = {"version_data": version_data, "preprocess": preprocess,
                "train_unet": train_unet, "evaluate_unet": evaluate_unet}
    return StageOutput(register_model(project, UNET, upstream, register, register, out))
