"""compare_segmenters: the U-Net, the torchvision model, K-means and DBSCAN side by side on
the same test split."""
from __future__ import annotations

from pathlib import Path

from segen.config import ClusterEvaluateParams, EvaluateParams
from segen.pipeline.stage import StageOutput, family_stage_task
from segen.pipeline.store import StageResult
from segen.project import Project


def compare(name: str, *, project: Project, version_data: StageResult, preprocess: StageResult,
            evaluate: EvaluateParams, cluster_evaluate: ClusterEvaluateParams,
            out: Path, key: str, **upstream: StageResult) -> StageOutput:
    """comparison.json / comparison.md of the four segmenters, logged to MLflow.

    upstream: train_ and register_ of each network, evaluate_ and register_ of each clusterer
    (the StageSpec's list)."""
    from segen.registry.comparison import (
        compare as run_comparison,  # torch: only when it runs
    )

    upstream = {"version_data": version_data, "preprocess": preprocess, **upstream}
    return StageOutput(run_comparison(project, upstream, evaluate, cluster_evaluate, out))


compare_segmenters = family_stage_task("compare_segmenters", compare)
