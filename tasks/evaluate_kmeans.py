"""evaluate_kmeans: silhouette, inertia, ARI and IoU after Hungarian matching on the test split."""
from __future__ import annotations

from pathlib import Path

from segen.config import ClusterEvaluateParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("evaluate_kmeans")
def evaluate_kmeans(project: Project, preprocess: StageResult, train_kmeans: StageResult,
                    cluster_evaluate: ClusterEvaluateParams, out: Path, key: str
                    ) -> StageOutput:
    """metrics.json, per_image.npz and grid.png for the K-means segmenter on the test split."""
    from tasks.cluster_evaluation import evaluate  # scikit-learn: only when it runs

    return evaluate(preprocess, train_kmeans, cluster_evaluate, out)
