"""The stage graph: one definition that the Prefect tasks, the cache keys and
dvc.yaml are all built from."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    upstream: tuple[str, ...]  # stages whose results this one consumes
    params: tuple[str, ...]  # params.yaml sections it reads (and nothing else)
    sources: tuple[str, ...]  # modules whose source enters the cache key

    @property
    def description(self) -> str:
        return STAGE_DESCRIPTIONS[self.name]


_COMMON = ("segen.store", "segen.hashing", "tasks.caching")
_CLUSTERING = ("segen.clustering", "models.clustering")


def _clustering_stages(kind: str) -> tuple[StageSpec, ...]:
    """train/evaluate/register of one clustering segmenter (kind: kmeans or dbscan)."""
    return (
        StageSpec(f"train_{kind}", ("preprocess",), (kind,),
                  _COMMON + (f"tasks.train_{kind}", "tasks.cluster_training") + _CLUSTERING),
        StageSpec(f"evaluate_{kind}", ("preprocess", f"train_{kind}"), ("cluster_evaluate",),
                  _COMMON + (f"tasks.evaluate_{kind}", "tasks.cluster_evaluation",
                             "tasks.cluster_training", "tasks.unet_evaluation",
                             "models.cluster_metrics") + _CLUSTERING),
        StageSpec(f"register_{kind}",
                  ("version_data", "preprocess", f"train_{kind}", f"evaluate_{kind}"),
                  (f"register_{kind}",),
                  _COMMON + (f"tasks.register_{kind}", "tasks.cluster_registration",
                             "tasks.registration", "segen.cluster_pyfunc", "segen.tracking")
                  + _CLUSTERING),
    )


STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("version_data", (), ("data",),
              _COMMON + ("tasks.version_data",)),
    StageSpec("validate", ("version_data",), ("validate",),
              _COMMON + ("tasks.validate", "segen.validation")),
    StageSpec("preprocess", ("version_data", "validate"), ("preprocess",),
              _COMMON + ("tasks.preprocess",)),
    StageSpec("train_unet", ("preprocess",), ("unet",),
              _COMMON + ("tasks.train_unet", "tasks.unet_trainer", "tasks.training",
                         "segen.inference", "models.unet", "models.losses", "models.metrics")),
    StageSpec("evaluate_unet", ("preprocess", "train_unet"), ("evaluate",),
              _COMMON + ("tasks.evaluate_unet", "tasks.unet_evaluation", "tasks.training",
                         "segen.inference", "models.unet", "models.metrics")),
    StageSpec("register_unet", ("version_data", "preprocess", "train_unet", "evaluate_unet"),
              ("register",),
              _COMMON + ("tasks.register_unet", "tasks.registration", "segen.pyfunc",
                         "segen.tracking")),
    *(stage_spec for kind in ("kmeans", "dbscan") for stage_spec in _clustering_stages(kind)),
    StageSpec("compare_segmenters",
              ("version_data", "preprocess", "train_unet", "register_unet", "evaluate_kmeans",
               "register_kmeans", "evaluate_dbscan", "register_dbscan"),
              ("evaluate", "cluster_evaluate"),
              _COMMON + ("tasks.compare_segmenters", "tasks.segmenter_comparison",
                         "tasks.cluster_evaluation", "tasks.cluster_training",
                         "tasks.registration", "segen.tracking", "segen.inference",
                         "models.unet", "models.cluster_metrics", "models.clustering")),
)}

STAGE_DESCRIPTIONS = {
    "version_data": "make data.dvc record what is in data/ (dvc add), push it, return its md5",
    "validate": "check every image and mask; stop with a report naming each bad file",
    "preprocess": "resize, split train/val/test by seed, store uint8 arrays",
    "train_unet": "train the U-Net (AdamW, CE + Dice), checkpoint every epoch, resumable",
    "evaluate_unet": "per-class and mean IoU/Dice, pixel accuracy, prediction grid",
    "register_unet": "log run, model and lineage to MLflow; register a model version",
    "train_kmeans": "fit K-means (k-means++) on pixel colour/position of the training split",
    "evaluate_kmeans": "silhouette, inertia, ARI and IoU after Hungarian matching; grid",
    "register_kmeans": "log run, pyfunc and lineage of the K-means segmenter to MLflow",
    "train_dbscan": "fit DBSCAN on a bounded pixel sample of the training split",
    "evaluate_dbscan": "silhouette, noise, ARI and IoU after Hungarian matching; grid",
    "register_dbscan": "log run, pyfunc and lineage of the DBSCAN segmenter to MLflow",
    "compare_segmenters": "U-Net, K-means and DBSCAN side by side on the test split",
}


def stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}") from None
