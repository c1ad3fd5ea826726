"""evaluate_unet: IoU, Dice and pixel accuracy on the test split, plus a prediction grid."""
from __future__ import annotations

from pathlib import Path

from segen.config import EvaluateParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("evaluate_unet")
def evaluate_unet(project: Project, preprocess: StageResult, train_unet: StageResult,
                  evaluate: EvaluateParams, out: Path, key: str) -> StageOutput:
    """metrics.json, per_image.npz and grid.png for the trained U-Net on the test split."""
    from tasks.unet_evaluation import evaluate as run_evaluation  # torch: only when it runs

    return StageOutput(run_evaluation(preprocess, train_unet, evaluate, out))
