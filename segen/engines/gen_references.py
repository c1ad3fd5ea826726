"""The pinned feature extractor behind the train_feature_extractor stage (imported only when
it, or an evaluation, runs): fit, save with its sha256, load checking that hash, and the
floor and ceiling references every generative model's scores are read against.

Protocol (the same for the references and the models): real = the test split at
generative.image_size; fake = generative.eval_samples images, quantised to uint8 like real
images; features of the pinned extractor; KID subsets and draws seeded by
generative_evaluate.seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.feature_extractor import FeatureClassifier
from models.gen_metrics import class_accuracy, generative_scores
from segen.config import (
    FeatureExtractorParams,
    GenerativeEvaluateParams,
    GenerativeParams,
)
from segen.data.arrays import dataset_meta, load_images, load_labels
from segen.engines.feature_extractor import fit_feature_extractor
from segen.hashing import hash_file
from segen.pipeline.store import StageResult
from segen.serving.images import to_uint8, to_unit_range
from segen.serving.model_folder import load_model_folder, save_model_folder

WEIGHTS = "extractor.pt"
CONFIG = "extractor.json"


def _split(prepared: StageResult, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, C) uint8 images and (N,) labels of one split."""
    return (torch.from_numpy(load_images(prepared, split)),
            torch.from_numpy(load_labels(prepared, split)))


def fit_and_reference(prepared: StageResult, generative: GenerativeParams,
                      params: FeatureExtractorParams, protocol: GenerativeEvaluateParams,
                      out: Path) -> dict[str, Any]:
    """Train the extractor on the train split, save it, measure the references."""
    meta = dataset_meta(prepared)
    (train_x, train_y), (val_x, val_y) = _split(prepared, "train"), _split(prepared, "val")
    config = {"channels": meta["channels"], "image_size": generative.image_size,
              "n_classes": len(meta["classes"]), "width": params.width,
              "feature_dim": params.feature_dim}
    model, fit_info = fit_feature_extractor(
        train_x, train_y, val_x, val_y, image_size=generative.image_size, width=params.width,
        feature_dim=params.feature_dim, epochs=params.epochs, batch_size=params.batch_size,
        lr=params.lr, seed=params.seed, n_classes=config["n_classes"])
    save_model_folder(out, CONFIG, config, WEIGHTS, model.state_dict())
    sha256 = hash_file(out / WEIGHTS)
    test_x, test_y = _split(prepared, "test")
    real = to_unit_range(test_x, generative.image_size)
    n = generative.eval_samples
    rng = torch.Generator().manual_seed(protocol.seed)
    pick = torch.randperm(len(train_x), generator=rng)[:n]  # the train split, as a "model"
    ceiling = to_unit_range(train_x[pick], generative.image_size)
    floor = _trivial_samples(to_unit_range(train_x, generative.image_size), n, rng)
    references = {
        "ceiling": scores(real, ceiling, model, protocol),
        "floor": scores(real, floor, model, protocol),
        "test_accuracy": class_accuracy(model, real, test_y)["accuracy"]}
    (out / "references.json").write_text(json.dumps(references, indent=1))
    return {"extractor": {"sha256": sha256, **config, **fit_info},
            "references": references,
            "protocol": protocol_record(sha256, len(real), n, protocol)}


def _trivial_samples(train: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
    """The floor: per-pixel train mean plus Gaussian noise of the per-pixel train std."""
    mean, std = train.mean(0), train.std(0)  # (C, S, S)
    noise = torch.randn((n, *mean.shape), generator=rng)
    return quantise(mean + std * noise)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images through uint8, as stored real images are."""
    return to_unit_range(to_uint8(x), x.shape[-1])


def scores(real: torch.Tensor, fake: torch.Tensor, extractor: FeatureClassifier,
           protocol: GenerativeEvaluateParams) -> dict[str, float]:
    return generative_scores(real, fake, extractor, kid_subset_size=protocol.kid_subset_size,
                             k=protocol.k, generator_seed=protocol.seed)


def protocol_record(sha256: str, n_real: int, n_fake: int,
                    protocol: GenerativeEvaluateParams) -> dict[str, Any]:
    """What every score is recorded with, so two scores can be told comparable or not."""
    return {"extractor_sha256": sha256, "real_split": "test", "n_real": n_real,
            "n_fake": n_fake, "seed": protocol.seed, "kid_subset_size": protocol.kid_subset_size,
            "k": protocol.k}


def load_extractor(result: StageResult) -> FeatureClassifier:
    """The pinned extractor of a train_feature_extractor result, its hash checked."""
    folder = Path(result.path)
    expected = result.info["extractor"]["sha256"]
    if hash_file(folder / WEIGHTS) != expected:
        raise ValueError(f"{folder / WEIGHTS} does not match its recorded sha256 {expected}: "
                         "the pinned extractor was altered. Delete that folder and rerun "
                         "`segen stage train_feature_extractor`.")
    config, state = load_model_folder(folder, CONFIG, WEIGHTS)
    model = FeatureClassifier(config["channels"], config["image_size"], config["n_classes"],
                              config["width"], config["feature_dim"])
    model.load_state_dict(state)
    return model.eval()
