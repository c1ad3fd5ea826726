"""The supervised segmenters' stages, one body per step and one task per kind (unet,
torchvision: segen.pipeline.graph.SUPERVISED_KINDS): train_<kind> (AdamW on CE + Dice,
checkpoint every epoch, resumable), evaluate_<kind>, register_<kind>.

The loops live in segen.engines, imported only when a stage runs, so a fully cached
pipeline never imports torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import EvaluateParams
from segen.pipeline.graph import SUPERVISED_KINDS
from segen.pipeline.stage import Stage, StageOutput, family_stage_task
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.registry.registration import model_version_exists, register_trained


def train_segmenter(name: str, *, project: Project, preprocess: StageResult, out: Path,
                    key: str, **section: Any) -> StageOutput:
    """Train (or resume training) one network; publishes model.pt + model.json."""
    from segen.engines.unet_trainer import fit

    params_section, _ = SUPERVISED_KINDS[name.removeprefix("train_")]
    return StageOutput(fit(project, preprocess, section[params_section], out, key, stage=name))


TRAIN_TASKS: dict[str, Stage] = {
    f"train_{kind}": family_stage_task(f"train_{kind}", train_segmenter)
    for kind in SUPERVISED_KINDS}


def evaluate_segmenter(name: str, *, project: Project, preprocess: StageResult,
                       evaluate: EvaluateParams, out: Path, key: str,
                       **trained: StageResult) -> StageOutput:
    """metrics.json, per_image.npz and grid.png of one trained network on the test split."""
    from segen.engines.unet_evaluation import (
        evaluate as run_evaluation,  # torch: only when it runs
    )

    kind = name.removeprefix("evaluate_")
    return StageOutput(run_evaluation(preprocess, trained[f"train_{kind}"], evaluate, out))


EVALUATE_TASKS: dict[str, Stage] = {
    f"evaluate_{kind}": family_stage_task(f"evaluate_{kind}", evaluate_segmenter)
    for kind in SUPERVISED_KINDS}


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.serving.unet_pyfunc import log_segmentation_model

    return log_segmentation_model(model_dir, name)


def register_segmenter(name: str, *, project: Project, out: Path, key: str, **inputs: Any
                       ) -> StageOutput:
    """Register a new version; the champion alias goes to the first version only.

    inputs: version_data, preprocess, train_<kind>, evaluate_<kind> and the kind's register
    section."""
    _, section = SUPERVISED_KINDS[name.removeprefix("register_")]
    return StageOutput(register_trained(project, name, section, _log_model, inputs,
                                        inputs[section], out))


REGISTER_TASKS: dict[str, Stage] = {
    f"register_{kind}": family_stage_task(f"register_{kind}", register_segmenter,
                                          still_valid=model_version_exists)
    for kind in SUPERVISED_KINDS}
