"""The evaluation behind every evaluate_<kind> generative stage (imported only when one runs).

Scores follow the protocol of tasks/gen_references.py (pinned extractor, test split, seeded),
beside that stage's floor and ceiling references as ref_*. Conditional kinds add the
extractor's accuracy per requested class; pix2pix the U-Net's IoU on its images against the
input masks; VAE/CVAE the ELBO, reconstruction error and KL on the test split.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.gen_metrics import class_accuracy
from segen.config import GenerativeEvaluateParams, GenerativeParams
from segen.engines.gen_data import load_batch
from segen.engines.gen_references import load_extractor, protocol_record, scores
from segen.engines.gen_trainer import PER_ROW
from segen.pipeline.store import StageResult
from segen.serving.device import pick_device
from segen.serving.generator import generate_images, load_generator
from segen.serving.grid import save_grid
from segen.serving.images import to_uint8, to_unit_range

GRID = "grid.png"


def evaluate(kind: str, preprocess: StageResult, trained: StageResult,
             extractor_result: StageResult, unet: StageResult | None,
             generative: GenerativeParams, protocol: GenerativeEvaluateParams,
             out: Path) -> dict[str, Any]:
    device = pick_device()
    nets, config = load_generator(Path(trained.path), device)
    extractor = load_extractor(extractor_result).to(device)
    test = load_batch(preprocess, generative, "test", config["domains"],
                      config["spec"]["image_size"])
    real, request = real_images_and_request(config, test, generative.eval_samples,
                                            extractor.image_size)
    images = generate_for_scoring(config, nets, generative.eval_samples, request, protocol.seed)
    fake = to_unit_range(torch.from_numpy(images), extractor.image_size)
    n = len(fake)
    metrics = scores(real, fake, extractor, protocol)
    refs = extractor_result.info["references"]
    if config["conditioning"] == "label":  # beside what the extractor gets right on real ones
        metrics.update(class_accuracy(extractor, fake, request["labels"]),
                       ref_real_accuracy=refs["test_accuracy"])
    if config["conditioning"] == "mask":  # beside the U-Net on the real images, same size
        metrics.update(unet_mean_iou=_unet_iou(unet, images, request["masks"], generative),
                       ref_real_unet_mean_iou=_unet_iou(unet, to_uint8(test["image"]),
                                                        test["mask"], generative))
    if kind in ("vae", "cvae"):
        metrics.update(_vae_terms(kind, nets, test, generative.batch_size, protocol.seed))
    metrics.update({f"ref_{which}_{k}": v for which in ("ceiling", "floor")
                    for k, v in refs[which].items()})
    save_grid((fake[:generative.sample_grid] + 1) / 2, out / GRID, PER_ROW)
    record = protocol_record(extractor_result.info["extractor"]["sha256"], len(real), n,
                             protocol)
    if config["conditioning"] == "image":
        record["fake"] = "every test image translated to the other domain"
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "protocol": record},
                                                 indent=1))
    return {"metrics": metrics, "protocol": record}


def real_images_and_request(config: dict[str, Any], test: dict[str, torch.Tensor], n: int,
                            real_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """The scoring protocol's two halves, shared by this stage and the promotion gate: the
    real test images (N, C, R, R) in [-1, 1] at the extractor's real_size, and the
    conditioning to request n fakes with.

    config: the generator's saved config; test: load_batch(..., "test", ...) at the
    generator's size (its spec's image_size, what the request is drawn at). The request is
    the test labels or masks cycled to n (the test split's own mix); CycleGAN: every test
    image and its domain (translated to the other one, so the fakes cover both domains as
    the test split does, with the domain shares swapped); {} for unconditional kinds. Pass
    it to generate_for_scoring.
    """
    cycle = torch.arange(n) % len(test["image"])
    real = test["image"]
    if real.shape[-1] != real_size:  # uint8 round trip: exact, as if loaded at real_size
        real = to_unit_range(to_uint8(real), real_size)
    needs = config["conditioning"]
    if needs == "label":
        return real, {"labels": test["label"][cycle]}
    if needs == "mask":
        return real, {"masks": test["mask"][cycle]}
    if needs == "image":
        return real, {"images": to_uint8(test["image"]), "domain": test["domain"]}
    return real, {}


def generate_for_scoring(config: dict[str, Any], nets: torch.nn.Module, n: int,
                         request: dict[str, Any], seed: int) -> Any:
    """The fakes a generator makes for a request of real_images_and_request, seeded: (n', S,
    S, C) uint8 through segen.serving.generator, where n' is the request's length (n for
    unconditional kinds); CycleGAN: one call per direction, domain 0's images first.

    Sample i answers slot i of the request, so two generators given the same request and seed
    are paired sample by sample (what the promotion gate's bootstrap relies on).
    """
    import numpy as np

    if config["conditioning"] != "image":
        n = len(next(iter(request.values()))) if request else n
        return generate_images(config, nets, n, seed=seed, **request)
    parts = []
    for domain in (0, 1):
        chosen = (request["domain"] == domain).numpy()
        if chosen.any():
            parts.append(generate_images(config, nets, int(chosen.sum()), seed=seed,
                                         images=request["images"][chosen], domain=domain))
    return np.concatenate(parts)


def _unet_iou(unet: StageResult | None, images: Any, masks: torch.Tensor,
              generative: GenerativeParams) -> float:
    """Mean IoU of the trained U-Net on generated images against the masks they came from."""
    from models.metrics import segmentation_scores
    from segen.serving.unet import load_unet, predict_masks

    if unet is None:
        raise ValueError("evaluate_pix2pix needs the train_unet result to score its images")
    device = pick_device()
    model, config = load_unet(Path(unet.path), device)
    pred = predict_masks(model, images, config, generative.batch_size, device)
    return float(segmentation_scores(torch.from_numpy(pred).long(), masks,
                                     len(config["classes"]))["mean_iou"])


def _vae_terms(kind: str, nets: torch.nn.Module, test: dict[str, torch.Tensor],
               batch_size: int, seed: int) -> dict[str, float]:
    """Mean per-image ELBO, reconstruction error and KL over the test split (one z each)."""
    from models.generative import vae_terms

    device = next(nets.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    sums: dict[str, float] = {}
    for start in range(0, len(test["image"]), batch_size):
        batch = {k: test[k][start:start + batch_size].to(device) for k in ("image", "label")}
        for name, values in vae_terms(kind, nets, batch, generator).items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
    return {name: total / len(test["image"]) for name, total in sums.items()}
