"""The registered clustering segmenters: an MLflow pyfunc whose predict maps images to
label maps (numpy + scikit-learn; no torch).

    model = mlflow.pyfunc.load_model("models:/segen-kmeans@champion")
    labels = model.predict(images)  # (N, H, W, C) or (H, W, C) uint8 -> (N, H, W) int32

Labels are cluster ids (0, 1, ...); -1 marks DBSCAN noise. A global-mode segmenter
applies what it learnt on the training split; a per_image one fits every image anew.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.serving import clustering
from segen.serving.pyfunc import FolderModel


class ClusterSegmentationModel(FolderModel):
    """K-means or DBSCAN behind a stable predict(): images in, cluster-id label maps out."""

    ARTIFACT = "segmenter"

    def load(self, folder: Path) -> None:
        self.config, self.fitted = clustering.load(folder)

    # No type hints on model_input: MLflow 3 would turn them into input validation that
    # rejects plain ndarrays.
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return clustering.segment(self.config, self.fitted, model_input)


def log_cluster_model(model_dir: Path, registered_name: str) -> Any:
    """Log the pyfunc with its segmenter folder and code; register a new version of it."""
    import numpy
    import scipy
    import sklearn

    return ClusterSegmentationModel.log(
        model_dir, registered_name,
        [f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}",
         f"scipy=={scipy.__version__}", "threadpoolctl"])
