"""The U-Net stages: train_unet (AdamW on CE + Dice, checkpoint every epoch, resumable), evaluate_unet, register_unet.

The loops live in segen.engines, imported only when a stage runs, so a fully cached
pipeline never imports torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import EvaluateParams, RegisterParams, UNetParams
from segen.pipeline.stage import StageOutput, stage_task
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.registry.registration import Registration, model_version_exists
from segen.registry.registration import register as register_model


@stage_task("train_unet")
def train_unet(project: Project, preprocess: StageResult, unet: UNetParams, out: Path,
               key: str) -> StageOutput:
    """Train (or resume training) the U-Net; publishes model.pt + model.json."""
    from segen.engines.unet_trainer import fit

    return StageOutput(fit(project, preprocess, unet, out, key))


@stage_task("evaluate_unet")
def evaluate_unet(project: Project, preprocess: StageResult, train_unet: StageResult,
                  evaluate: EvaluateParams, out: Path, key: str) -> StageOutput:
    """metrics.json, per_image.npz and grid.png for the trained U-Net on the test split."""
    from segen.engines.unet_evaluation import (
        evaluate as run_evaluation,  # torch: only when it runs
    )

    return StageOutput(run_evaluation(preprocess, train_unet, evaluate, out))





def _log_model(model_dir: Path, name: str) -> Any:
    from segen.serving.unet_pyfunc import log_segmentation_model

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
