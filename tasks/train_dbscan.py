"""train_dbscan: DBSCAN on a bounded sample of training-split pixel features.

The fit lives in tasks/cluster_training.py, imported only when the stage runs.
"""
from __future__ import annotations

from pathlib import Path

from segen.config import DBSCANParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("train_dbscan")
def train_dbscan(project: Project, preprocess: StageResult, dbscan: DBSCANParams, out: Path,
                 key: str) -> StageOutput:
    """Fit DBSCAN on a train-split pixel sample (global mode); publishes the segmenter."""
    from tasks.cluster_training import fit

    return StageOutput(fit(preprocess, "dbscan", dbscan, out))
