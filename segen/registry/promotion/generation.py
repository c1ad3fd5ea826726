"""The generation gate: FID (Heusel et al. 2017; lower is better) of challenger and champion
against the challenger's test split, both in the feature space of the pinned extractor whose
sha256 the challenger's version carries (segen.feature_extractor_sha256), each model asked
for the same samples (the evaluate stage's request and seed).

FID is a statistic of a whole set, not a mean over images, so the paired bootstrap
resamples the set: the same real test images and the same request slots (sample i of both
models answers the same label, mask or image) for both models in every replicate.
scipy.stats.bootstrap draws the indices (real images and request slots, each on its own:
the two sets differ in size) and the statistic applies the slots to both models.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from segen.config import Params
from segen.pipeline.store import ArtifactStore
from segen.project import Project
from segen.registry.promotion.bootstrap import percentile_interval
from segen.registry.promotion.gate import PREPROCESS_TAG

EXTRACTOR_TAG = "segen.feature_extractor_sha256"
EXTRACTOR_KEY_TAG = "segen.key.train_feature_extractor"
_FEATURE_BATCH = 256  # images per extractor pass (memory only)


def fid_report(project: Project, params: Params, name: str, tags: dict[str, str],
               champion_tags: dict[str, str], versions: tuple[int, int]) -> dict[str, Any]:
    """FID of (challenger, champion) and the paired-bootstrap interval of their difference."""
    from segen.engines.gen_references import load_extractor

    where = f"{name} v{versions[0]}"
    store = ArtifactStore.of(project)
    preprocess = _stored(store, "preprocess", tags.get(PREPROCESS_TAG), where)
    extractor_result = _stored(store, "train_feature_extractor", tags.get(EXTRACTOR_KEY_TAG),
                               where)
    if extractor_result.info["extractor"]["sha256"] != tags.get(EXTRACTOR_TAG):
        raise ValueError(f"{where}: the stored feature extractor is not the one pinned in its "
                         f"tags ({tags.get(EXTRACTOR_TAG)}); rerun `segen run`")
    extractor = load_extractor(extractor_result)  # checks the weights' sha256 too
    real, fakes = None, []
    for version in versions:
        real, fake = _real_and_fake(name, version, preprocess, params, extractor.image_size)
        fakes.append(_features(extractor, fake))
    real_f = _features(extractor, real)
    settings = params.promote
    result = paired_fid_bootstrap(real_f, fakes[0], fakes[1],
                                  samples=settings.bootstrap_samples,
                                  confidence=settings.confidence, seed=settings.seed)
    result["extractor_sha256"] = tags.get(EXTRACTOR_TAG)
    result["champion_extractor_sha256"] = champion_tags.get(EXTRACTOR_TAG)
    return result


def paired_fid_bootstrap(real: Any, fake_a: Any, fake_b: Any, *, samples: int,
                         confidence: float, seed: int) -> dict[str, Any]:
    """(N, D) real and (M, D) fake features of models a and b (row i of both answers the
    same request) -> FIDs (models.gen_metrics.fid), difference a - b, its percentile
    interval (replicates by frechet_distance: torchmetrics costs ~0.1 s a call here, too
    slow for thousands of replicates)."""
    import torch

    from models.gen_metrics import fid

    real, fake_a, fake_b = (np.asarray(x, dtype=np.float64) for x in (real, fake_a, fake_b))
    if fake_a.shape != fake_b.shape:
        raise ValueError(f"paired_fid_bootstrap needs both models' samples for the same "
                         f"requests, got {fake_a.shape} and {fake_b.shape} features")

    def fid_difference(real_i: np.ndarray, slot_i: np.ndarray) -> float:
        """One replicate: resampled real images, the same resampled slots of both models."""
        return (frechet_distance(real[real_i], fake_a[slot_i])
                - frechet_distance(real[real_i], fake_b[slot_i]))

    low, high = percentile_interval((np.arange(len(real)), np.arange(len(fake_a))),
                                    fid_difference, paired=False, vectorized=False,
                                    samples=samples, confidence=confidence, seed=seed)
    fid_a, fid_b = (fid(torch.from_numpy(real), torch.from_numpy(f)) for f in (fake_a, fake_b))
    return {"difference": fid_a - fid_b, "ci_low": low, "ci_high": high,
            "n_images": int(len(real)), "n_samples": int(len(fake_a)),
            "challenger_metrics": {"fid": fid_a}, "champion_metrics": {"fid": fid_b}}


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to (N, D) and (M, D) rows:
    |mu_x - mu_y|^2 + tr(Cx + Cy - 2 (Cx Cy)^1/2), with tr((Cx Cy)^1/2) the sum of the square
    roots of the eigenvalues of Cx Cy (real and >= 0 for PSD covariances, up to rounding)."""
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eig = np.linalg.eigvals(cov_x @ cov_y).real.clip(min=0)
    mean = x.mean(0) - y.mean(0)
    return float(mean @ mean + np.trace(cov_x) + np.trace(cov_y) - 2 * np.sqrt(eig).sum())


def _stored(store: ArtifactStore, stage: str, key: str | None, where: str) -> Any:
    result = store.load(stage, key) if key else None
    if result is None:
        raise FileNotFoundError(
            f"{where}: the {stage} output its lineage tags point at (key {key}) is no longer "
            f"in {store.root}. To recreate it, rerun `segen run` on that data version, "
            "then promote again.")
    return result


def _real_and_fake(name: str, version: int, preprocess: Any, params: Params, size: int
                   ) -> tuple[Any, Any]:
    """The test images and the version's samples for the evaluate stage's request, both
    (N, C, size, size) in [-1, 1] (size: the extractor's)."""
    import torch

    from segen.engines.gen_data import load_batch
    from segen.engines.gen_evaluation import (
        generate_for_scoring,
        real_images_and_request,
    )
    from segen.serving.images import to_unit_range
    from segen.serving.predict import load_model

    model, _ = load_model(f"{name}/{version}")
    inner = model.unwrap_python_model()  # segen.serving.gen_pyfunc.GenerativeModel: nets, config
    config = inner.config
    test = load_batch(preprocess, params.generative, "test", config["domains"],
                      config["spec"]["image_size"])
    real, request = real_images_and_request(config, test, params.generative.eval_samples, size)
    images = generate_for_scoring(config, inner.nets, params.generative.eval_samples, request,
                                  params.generative_evaluate.seed)
    return real, to_unit_range(torch.from_numpy(images), size)


def _features(extractor: Any, images: Any) -> Any:
    from models.feature_extractor import extract_features

    return extract_features(extractor, images, _FEATURE_BATCH).double()
