"""register_dbscan: one MLflow run and a registered pyfunc version of the DBSCAN segmenter,
tagged with the same lineage as the U-Net."""
from __future__ import annotations

from pathlib import Path

from segen.config import RegisterDBSCANParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task
from tasks.register_unet import model_version_exists


@stage_task("register_dbscan", still_valid=model_version_exists)
def register_dbscan(project: Project, version_data: StageResult, preprocess: StageResult,
                    train_dbscan: StageResult, evaluate_dbscan: StageResult,
                    register_dbscan: RegisterDBSCANParams, out: Path, key: str) -> StageOutput:
    """Register a new version; the champion alias goes to the first version only."""
    from tasks.cluster_registration import register

    upstream = {"version_data": version_data, "preprocess": preprocess,
                "train_dbscan": train_dbscan, "evaluate_dbscan": evaluate_dbscan}
    return StageOutput(register(project, "register_dbscan", upstream, register_dbscan, out))
