"""train_unet: AdamW on CE + Dice, seeded, checkpoint every epoch, resumable.

The loop lives in tasks/unet_trainer.py, imported only when the stage runs, so a fully
cached pipeline never pays for importing torch.
"""
from __future__ import annotations

from pathlib import Path

from segen.config import UNetParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("train_unet")
def train_unet(project: Project, preprocess: StageResult, unet: UNetParams, out: Path,
               key: str) -> StageOutput:
    """Train (or resume training) the U-Net; publishes model.pt + model.json."""
    from tasks.unet_trainer import fit

    return StageOutput(fit(project, preprocess, unet, out, key))
