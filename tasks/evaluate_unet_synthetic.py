"""evaluate_unet_synthetic: the evaluate_unet scores (tasks/unet_evaluation.py) of the U-Net
trained with synthetic pairs, on the same test split."""
from __future__ import annotations

from pathlib import Path

from segen.config import EvaluateParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("evaluate_unet_synthetic")
def evaluate_unet_synthetic(project: Project, preprocess: StageResult,
                            train_unet_synthetic: StageResult, evaluate: EvaluateParams,
                            out: Path, key: str) -> StageOutput:
    """metrics.json, per_image.npz and grid.png on the test split."""
    from tasks.unet_evaluation import evaluate as run_evaluation

    return StageOutput(run_evaluation(preprocess, train_unet_synthetic, evaluate, out))
