"""train_kmeans: K-means (k-means++) on pixel features of the training split.

The fit lives in tasks/cluster_training.py, imported only when the stage runs, so a fully
cached pipeline never imports scikit-learn.
"""
from __future__ import annotations

from pathlib import Path

from segen.config import KMeansParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("train_kmeans")
def train_kmeans(project: Project, preprocess: StageResult, kmeans: KMeansParams, out: Path,
                 key: str) -> StageOutput:
    """Fit K-means on a train-split pixel sample (global mode); publishes the segmenter."""
    from tasks.cluster_training import fit

    return StageOutput(fit(preprocess, "kmeans", kmeans, out))
