"""The generative stages: train_feature_extractor (the pinned classifier behind FID/KID), and for
every generative kind train_<kind>, evaluate_<kind>, register_<kind> (one body, one task per
kind). The loops live in segen.engines, imported only when a stage runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.config import (
    FeatureExtractorParams,
    GenerativeEvaluateParams,
    GenerativeParams,
    RegisterGenerativeParams,
    RegisterParams,
)
from segen.pipeline.graph import GENERATIVE_KINDS
from segen.pipeline.stage import Stage, StageOutput, family_stage_task, stage_task
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.registry.registration import Registration, model_version_exists, register


@stage_task("train_feature_extractor")
def train_feature_extractor(project: Project, preprocess: StageResult,
                            generative: GenerativeParams,
                            feature_extractor: FeatureExtractorParams,
                            generative_evaluate: GenerativeEvaluateParams, out: Path,
                            key: str) -> StageOutput:
    """extractor.pt (+ its sha256), extractor.json and references.json."""
    from segen.engines.gen_references import fit_and_reference

    return StageOutput(fit_and_reference(preprocess, generative, feature_extractor,
                                         generative_evaluate, out))


def train_generative(name: str, *, project: Project, preprocess: StageResult,
                     generative: GenerativeParams, out: Path, key: str,
                     **section: Any) -> StageOutput:
    """Train (or resume) one generator; publishes generator.pt, generator.json, samples.png."""
    from segen.engines.gen_ranks import fit  # here, or on generative.processes

    kind = name.removeprefix("train_")
    return StageOutput(fit(project, kind, preprocess, generative, section[kind], out, key))


TRAIN_TASKS: dict[str, Stage] = {
    f"train_{kind}": family_stage_task(f"train_{kind}", train_generative)
    for kind in GENERATIVE_KINDS}


def evaluate_generative(name: str, *, project: Project, preprocess: StageResult,
                        train_feature_extractor: StageResult, generative: GenerativeParams,
                        generative_evaluate: GenerativeEvaluateParams, out: Path, key: str,
                        train_unet: StageResult | None = None,
                        **trained: StageResult) -> StageOutput:
    """metrics.json and grid.png of one trained generator on the test split."""
    from segen.engines.gen_evaluation import evaluate

    kind = name.removeprefix("evaluate_")
    return StageOutput(evaluate(kind, preprocess, trained[f"train_{kind}"],
                                train_feature_extractor, train_unet, generative,
                                generative_evaluate, out))


EVALUATE_TASKS: dict[str, Stage] = {
    f"evaluate_{kind}": family_stage_task(f"evaluate_{kind}", evaluate_generative)
    for kind in GENERATIVE_KINDS}


def model_name(kind: str, params: RegisterGenerativeParams) -> str:
    return f"{params.model_prefix}{kind}"


def protocol_tags(extractor: StageResult, evaluation: StageResult) -> dict[str, str]:
    """segen.feature_extractor_sha256 and segen.eval.<field> (split, counts, seed, ...)."""
    protocol = evaluation.info.get("protocol", {})
    tags = {"segen.feature_extractor_sha256": extractor.info["extractor"]["sha256"]}
    tags.update({f"segen.eval.{k}": str(v) for k, v in protocol.items()
                 if k != "extractor_sha256"})
    return tags


def _log_model(model_dir: Path, name: str) -> Any:
    from segen.serving.gen_pyfunc import log_generative_model

    return log_generative_model(model_dir, name)


def register_generative(name: str, *, project: Project, version_data: StageResult,
                        preprocess: StageResult, train_feature_extractor: StageResult,
                        register_generative: RegisterGenerativeParams, out: Path, key: str,
                        **trained: StageResult) -> StageOutput:
    """Register a new version of model_prefix + kind; the champion alias goes to the first
    version only."""
    kind = name.removeprefix("register_")
    train, evaluation = trained[f"train_{kind}"], trained[f"evaluate_{kind}"]
    what = Registration(stage=name, section="register_generative", train=f"train_{kind}",
                        evaluation=f"evaluate_{kind}", log_model=_log_model,
                        extra_tags={"segen.kind": kind,
                                    **protocol_tags(train_feature_extractor, evaluation)})
    upstream = {"version_data": version_data, "preprocess": preprocess,
                f"train_{kind}": train, f"evaluate_{kind}": evaluation,
                "train_feature_extractor": train_feature_extractor}
    target = RegisterParams(model_name=model_name(kind, register_generative),
                            champion_alias=register_generative.champion_alias)
    return StageOutput(register(project, what, upstream, register_generative, target, out))


REGISTER_TASKS: dict[str, Stage] = {
    f"register_{kind}": family_stage_task(f"register_{kind}", register_generative,
                                          still_valid=model_version_exists)
    for kind in GENERATIVE_KINDS}
