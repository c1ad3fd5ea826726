"""register_<kind> for every generative model: the shared registration routine
(tasks/registration.py) with the generative pyfunc (segen/gen_pyfunc.py), registered as
model_prefix + kind. Besides the lineage of every model, each version is tagged with the
evaluation protocol its scores were measured under (the pinned feature extractor's sha256,
sample counts, split, seed), so scores are compared only where they are comparable."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task

from segen.config import RegisterGenerativeParams, RegisterParams
from segen.project import Project
from segen.stages import GENERATIVE_KINDS
from segen.store import StageResult
from tasks.caching import StageOutput, family_stage_task
from tasks.registration import Registration, model_version_exists, register


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
    from segen.gen_pyfunc import log_generative_model

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


REGISTER_TASKS: dict[str, Task] = {
    f"register_{kind}": family_stage_task(f"register_{kind}", register_generative,
                                          still_valid=model_version_exists)
    for kind in GENERATIVE_KINDS}
