"""evaluate_<kind> for every generative model: one body, one task per kind. FID, KID and
precision/recall with the pinned extractor, beside the floor and ceiling references; the
per-kind extras (class accuracy, U-Net IoU, ELBO). The work lives in
tasks/gen_evaluation.py, imported only when a stage runs."""
from __future__ import annotations

from pathlib import Path

from prefect import Task

from segen.config import GenerativeEvaluateParams, GenerativeParams
from segen.project import Project
from segen.stages import GENERATIVE_KINDS
from segen.store import StageResult
from tasks.caching import StageOutput, family_stage_task


def evaluate_generative(name: str, *, project: Project, preprocess: StageResult,
                        train_feature_extractor: StageResult, generative: GenerativeParams,
                        generative_evaluate: GenerativeEvaluateParams, out: Path, key: str,
                        train_unet: StageResult | None = None,
                        **trained: StageResult) -> StageOutput:
    """metrics.json and grid.png of one trained generator on the test split."""
    from tasks.gen_evaluation import evaluate

    kind = name.removeprefix("evaluate_")
    return StageOutput(evaluate(kind, preprocess, trained[f"train_{kind}"],
                                train_feature_extractor, train_unet, generative,
                                generative_evaluate, out))


EVALUATE_TASKS: dict[str, Task] = {
    f"evaluate_{kind}": family_stage_task(f"evaluate_{kind}", evaluate_generative)
    for kind in GENERATIVE_KINDS}
