"""register_kmeans: one MLflow run and a registered pyfunc version of the K-means segmenter,
tagged with the same lineage as the U-Net."""
from __future__ import annotations

from pathlib import Path

from segen.config import RegisterKMeansParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task
from tasks.register_unet import model_version_exists


@stage_task("register_kmeans", still_valid=model_version_exists)
def register_kmeans(project: Project, version_data: StageResult, preprocess: StageResult,
                    train_kmeans: StageResult, evaluate_kmeans: StageResult,
                    register_kmeans: RegisterKMeansParams, out: Path, key: str) -> StageOutput:
    """Register a new version; the champion alias goes to the first version only."""
    from tasks.cluster_registration import register

    upstream = {"version_data": version_data, "preprocess": preprocess,
                "train_kmeans": train_kmeans, "evaluate_kmeans": evaluate_kmeans}
    return StageOutput(register(project, "register_kmeans", upstream, register_kmeans, out))
