"""train_feature_extractor: the pinned classifier whose features FID, KID and precision/recall
are measured in (no Inception weights can be downloaded), plus the floor and ceiling
references measured once with it. The work lives in tasks/gen_references.py, imported only
when the stage runs."""
from __future__ import annotations

from pathlib import Path

from segen.config import FeatureExtractorParams, GenerativeEvaluateParams, GenerativeParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("train_feature_extractor")
def train_feature_extractor(project: Project, preprocess: StageResult,
                            generative: GenerativeParams,
                            feature_extractor: FeatureExtractorParams,
                            generative_evaluate: GenerativeEvaluateParams, out: Path,
                            key: str) -> StageOutput:
    """extractor.pt (+ its sha256), extractor.json and references.json."""
    from tasks.gen_references import fit_and_reference

    return StageOutput(fit_and_reference(preprocess, generative, feature_extractor,
                                         generative_evaluate, out))
