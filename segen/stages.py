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
              _COMMON + ("tasks.register_unet", "segen.pyfunc", "segen.tracking")),
)}

STAGE_DESCRIPTIONS = {
    "version_data": "make data.dvc record what is in data/ (dvc add), push it, return its md5",
    "validate": "check every image and mask; stop with a report naming each bad file",
    "preprocess": "resize, split train/val/test by seed, store uint8 arrays",
    "train_unet": "train the U-Net (AdamW, CE + Dice), checkpoint every epoch, resumable",
    "evaluate_unet": "per-class and mean IoU/Dice, pixel accuracy, prediction grid",
    "register_unet": "log run, model and lineage to MLflow; register a model version",
}


def stage(name: str) -> StageSpec:
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}") from None
