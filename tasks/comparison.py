"""compare_segmenters: the U-Net, K-means and DBSCAN side by side on the same test split."""
from __future__ import annotations

from pathlib import Path

from segen.config import ClusterEvaluateParams, EvaluateParams
from segen.pipeline.stage import StageOutput, stage_task
from segen.pipeline.store import StageResult
from segen.project import Project


@stage_task("compare_segmenters")
def compare_segmenters(project: Project, version_data: StageResult, preprocess: StageResult,
                       train_unet: StageResult, register_unet: StageResult,
                       evaluate_kmeans: StageResult, register_kmeans: StageResult,
                       evaluate_dbscan: StageResult, register_dbscan: StageResult,
                       evaluate: EvaluateParams, cluster_evaluate: ClusterEvaluateParams,
                       out: Path, key: str) -> StageOutput:
    """comparison.json / comparison.md of the three segmenters, logged to MLflow."""
    from segen.registry.comparison import compare  # torch: only when it runs

    upstream = {"version_data": version_data, "preprocess": preprocess,
                "train_unet": train_unet, "register_unet": register_unet,
                "evaluate_kmeans": evaluate_kmeans, "register_kmeans": register_kmeans,
                "evaluate_dbscan": evaluate_dbscan, "register_dbscan": register_dbscan}
    return StageOutput(compare(project, upstream, evaluate, cluster_evaluate, out))
