"""The promotion gate: challenger and champion predict the same test images (the
challenger's data version, found through the lineage tags of its model version), each
image is scored on its own, and a paired bootstrap of the mean difference decides.

Families, by registered model name:
- segmentation (params.register, register_torchvision): mean IoU or Dice per image (models.metrics);
  every family scores only the valid pixels (not IGNORE_INDEX in the masks: no ignored
  class, no padding; an image with none has a NaN score, which the bootstrap drops);
- clustering (params.register_kmeans / register_dbscan): adjusted Rand index per image
  against the masks, or the silhouette when the data has no masks (models.cluster_metrics);
- generation (register_generative.model_prefix + kind): FID under the pinned feature
  extractor, lower is better (generation.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.labels import IGNORE_INDEX
from segen.config import GateParams, Params
from segen.data.arrays import dataset_meta, load_arrays
from segen.pipeline.store import ArtifactStore
from segen.project import Project
from segen.registry.promotion.bootstrap import clears_margin, paired_bootstrap

DATA_VERSION_TAG = "segen.data_version"
PREPROCESS_TAG = "segen.key.preprocess"


@dataclass(frozen=True)
class Family:
    """How one kind of model is judged."""
    name: str  # segmentation | clustering | generation
    gate: GateParams
    alias: str  # the champion alias of its register section
    higher_is_better: bool


@dataclass(frozen=True)
class TestData:
    """The test split of one preprocess output."""
    data_version: str
    preprocess_key: str
    images: np.ndarray  # (N, H, W, C) uint8
    masks: np.ndarray | None  # (N, H, W) class ids, IGNORE_INDEX = out; None: unlabelled
    classes: list[str]
    valid: np.ndarray | None  # (N, H, W) bool: the pixels scored (no padding, no ignored)


def family_of(params: Params, model_name: str) -> Family:
    """The family of a registered model name, from the register sections of params.yaml."""
    gates = params.promote
    for section in (params.register, params.register_torchvision):
        if model_name == section.model_name:
            return Family("segmentation", gates.segmentation, section.champion_alias, True)
    for section in (params.register_kmeans, params.register_dbscan):
        if model_name == section.model_name:
            return Family("clustering", gates.clustering, section.champion_alias, True)
    if generation_kind(params, model_name):
        return Family("generation", gates.generation,
                      params.register_generative.champion_alias, False)
    known = [params.register.model_name, params.register_torchvision.model_name,
             params.register_kmeans.model_name,
             params.register_dbscan.model_name,
             f"{params.register_generative.model_prefix}<kind>"]
    raise ValueError(f"model {model_name!r}: no promotion gate for it; the gates cover the "
                     f"models params.yaml registers: {', '.join(known)}")


def generation_kind(params: Params, model_name: str) -> str | None:
    """The generative kind of a model name (register_generative.model_prefix + kind), or None."""
    from segen.pipeline.graph import GENERATIVE_KINDS

    prefix = params.register_generative.model_prefix
    kind = model_name.removeprefix(prefix) if model_name.startswith(prefix) else None
    return kind if kind in GENERATIVE_KINDS else None


def load_test_data(project: Project, version_tags: dict[str, str], where: str) -> TestData:
    """The test split the challenger's lineage tags point at (where: 'name vN', for errors)."""
    key, data_version = version_tags.get(PREPROCESS_TAG), version_tags.get(DATA_VERSION_TAG)
    if not key or not data_version:
        raise ValueError(f"{where} has no lineage tags ({PREPROCESS_TAG}, {DATA_VERSION_TAG}): "
                         "it was not registered by segen, so there is no test split to gate "
                         "it on. Use --force --reason to promote it anyway.")
    prepared = ArtifactStore.of(project).load("preprocess", key)
    if prepared is None:
        raise FileNotFoundError(
            f"{where} was trained on data version {data_version}, whose preprocessed test "
            f"split ({project.store / 'preprocess' / key}) is no longer in the store. To "
            "recreate it, rerun `segen run` on that data version (check out its data.dvc "
            "and `dvc checkout`), then promote again.")
    meta = dataset_meta(prepared)
    from segen.engines.cluster_trainer import split_valid_pixels

    images, masks = load_arrays(prepared, "test")
    valid = split_valid_pixels(prepared, "test", masks)
    masks = masks if meta["has_masks"] else None  # class folders: all-0 masks
    classes = meta["classes"]
    return TestData(data_version, key, images, masks, classes, valid)


def gate_metric(family: Family, data: TestData) -> str:
    """The configured metric, or the silhouette when ARI has no masks to compare with."""
    if family.gate.metric == "ari" and data.masks is None:
        return "silhouette"
    return family.gate.metric


def per_image_scores(family: Family, labels: np.ndarray, data: TestData, params: Params
                     ) -> dict[str, np.ndarray]:
    """(N, H, W) predicted labels -> {metric: (N,) scores} for every metric the family
    reports (the gate metric among them)."""
    if family.name == "segmentation":
        import torch

        from models.metrics import per_image_scores as segmentation_scores

        scores = segmentation_scores(torch.from_numpy(labels.astype(np.int64)),
                                     torch.from_numpy(data.masks.astype(np.int64)),
                                     len(data.classes), ignore_index=IGNORE_INDEX)
        return {name: values.double().numpy() for name, values in scores.items()}
    return _clustering_scores(labels, data, params)


def _clustering_scores(labels: np.ndarray, data: TestData, params: Params
                       ) -> dict[str, np.ndarray]:
    """ARI per image against the masks; silhouette per image in the one colour space of
    cluster_evaluate (seeded per image as the evaluate stages do); both over the valid
    pixels only (IGNORE_INDEX in the masks, padding)."""
    from models import cluster_metrics as cm
    from models.clustering import pixel_features

    settings = params.cluster_evaluate
    valid = (np.ones(labels.shape, bool) if data.valid is None else data.valid)
    silhouette = np.array([
        cm.silhouette(pixel_features(image, settings.silhouette_colour, 0.0), label,
                      settings.silhouette_pixels, np.random.default_rng([settings.seed, i]), ok)
        for i, (image, label, ok) in enumerate(zip(data.images, labels, valid))])
    scores = {"silhouette": silhouette}
    if data.masks is not None:
        truth = np.where(valid, data.masks, IGNORE_INDEX)
        scores["ari"] = np.array([cm.adjusted_rand(p, t, ignore_index=IGNORE_INDEX)
                                  for p, t in zip(labels, truth)])
    return scores


def compare(family: Family, metric: str, challenger: dict[str, np.ndarray],
            champion: dict[str, np.ndarray], params: Params) -> dict[str, Any]:
    """The bootstrap of the gate metric, the mean of every metric, and the decision."""
    settings = params.promote
    result = paired_bootstrap(challenger[metric], champion[metric],
                              samples=settings.bootstrap_samples,
                              confidence=settings.confidence, seed=settings.seed)
    return decide(family, metric, result | {"challenger_metrics": _means(challenger),
                                            "champion_metrics": _means(champion)}, params)


def decide(family: Family, metric: str, result: dict[str, Any], params: Params
           ) -> dict[str, Any]:
    """A bootstrap result with the gate's settings and verdict added."""
    settings = params.promote
    passed = clears_margin(result["ci_low"], result["ci_high"], family.gate.margin,
                           family.higher_is_better)
    return {"metric": metric, "higher_is_better": family.higher_is_better,
            "margin": family.gate.margin, "confidence": settings.confidence,
            "bootstrap_samples": settings.bootstrap_samples, "seed": settings.seed,
            **result, "passed": passed}


def _means(scores: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Mean of each per-image metric over the images where it is defined."""
    return {name: (float(np.nanmean(values)) if np.isfinite(values).any() else None)
            for name, values in scores.items()}


def predict_labels(model_name: str, version: str, images: np.ndarray) -> np.ndarray:
    """(N, H, W) labels from the registered version, loaded through the registry."""
    import os

    from segen.serving.predict import load_model

    # A progress bar per downloaded file would bury the gate report on the terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    model, _ = load_model(f"{model_name}/{version}")
    return np.asarray(model.predict(images))


def explain(report: dict[str, Any]) -> str:
    """One sentence saying why the gate passed or failed."""
    sign = "above +" if report["higher_is_better"] else "below -"
    interval = (f"{report['confidence']:.0%} interval [{report['ci_low']:+.4f}, "
                f"{report['ci_high']:+.4f}] of {report['metric']} (challenger - champion, "
                f"{report['n_images']} test images)")
    if report["passed"]:
        return f"{interval} lies wholly {sign}{report['margin']:g}: clearly better"
    return (f"{interval} does not lie wholly {sign}{report['margin']:g}: not clearly better "
            f"(mean difference {report['difference']:+.4f})")
