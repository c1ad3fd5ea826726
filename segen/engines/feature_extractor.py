"""Train the pinned feature extractor (models.feature_extractor.FeatureClassifier) on the
preprocess stage's labelled images; a stage body calls fit_feature_extractor and saves it.
Its inputs are segen.serving.images.to_unit_range's: the [-1, 1] tensors the generative
models see."""
from __future__ import annotations

import math
import time

import torch
from torch.nn import functional as F

from models.feature_extractor import FeatureClassifier
from models.gen_metrics import class_accuracy
from segen.engines.training import batch_indices, standing_batch_norm
from segen.serving.device import pick_device
from segen.serving.images import to_unit_range


def fit_feature_extractor(images: torch.Tensor, labels: torch.Tensor, val_images: torch.Tensor,
                          val_labels: torch.Tensor, *, image_size: int, width: int,
                          feature_dim: int, epochs: int, batch_size: int, lr: float, seed: int,
                          n_classes: int) -> tuple[FeatureClassifier, dict[str, float]]:
    """Cross-entropy, AdamW with a one-cycle schedule peaking at lr, random quarter turns and
    mirrors (a shape's class does not change under them), seeded shuffles, batch-norm
    statistics recomputed at the end; returns the model on the CPU in eval mode and
    {"val_accuracy", "train_accuracy", "train_loss", "train_seconds", "epochs"}."""
    _check_labels(labels, val_labels, n_classes)
    x, y = to_unit_range(images, image_size), labels.long()
    x_val = to_unit_range(val_images, image_size)
    device = pick_device()
    with torch.random.fork_rng(devices=[]):  # the seed decides the init without leaking out
        torch.manual_seed(seed)
        model = FeatureClassifier(x.shape[1], image_size, n_classes, width, feature_dim)
    model = model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    # Warm up then anneal: a constant lr stalls or oscillates in a run this short.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=max(steps, 1))
    generator = torch.Generator().manual_seed(seed)
    start, loss = time.perf_counter(), float("nan")
    for _ in range(epochs):
        loss = _train_epoch(model, optimiser, schedule, (x, y), batch_size, generator, device)
    recalibrate_batch_norm(model, x, batch_size, device)
    seconds = time.perf_counter() - start
    model = model.cpu().eval()
    return model, {"val_accuracy": class_accuracy(model, x_val, val_labels)["accuracy"],
                   "train_accuracy": class_accuracy(model, x, y)["accuracy"],
                   "train_loss": loss, "train_seconds": seconds, "epochs": float(epochs)}


def _dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) turned by a random multiple of 90 degrees, then mirrored or not (one draw
    for the whole batch: cheap, and over an epoch every batch gets its own)."""
    k, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=generator))
    x = torch.rot90(x, k, (2, 3))
    return x.flip(3) if flip % 2 else x


def _train_epoch(model: FeatureClassifier, optimiser: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LRScheduler,
                 data: tuple[torch.Tensor, torch.Tensor], batch_size: int,
                 generator: torch.Generator, device: torch.device) -> float:
    """One pass in seeded random order; returns the mean training loss."""
    x, y = data
    model.train()
    total = torch.zeros((), device=device)
    for idx in batch_indices(len(x), batch_size, generator):
        # Without augmentation a few hundred images are memorised (train 0.98, val at chance).
        loss = F.cross_entropy(model(_dihedral(x[idx], generator).to(device)), y[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total = total + loss.detach() * len(idx)  # stays on device: no sync per step
    return float(total) / len(x)


@torch.no_grad()
def recalibrate_batch_norm(model: FeatureClassifier, x: torch.Tensor, batch_size: int,
                           device: torch.device) -> None:
    """Running statistics = exact averages over x under the final weights, so eval-mode
    features do not lag behind the last updates."""
    with standing_batch_norm(model):
        for batch in x.split(batch_size):
            model.feature_map(batch.to(device))


def _check_labels(labels: torch.Tensor, val_labels: torch.Tensor, n_classes: int) -> None:
    for name, tensor in (("labels", labels), ("val_labels", val_labels)):
        if len(tensor) and not (0 <= int(tensor.min()) and int(tensor.max()) < n_classes):
            raise ValueError(f"fit_feature_extractor: {name} must be class ids in "
                             f"0..{n_classes - 1}; got {int(tensor.min())}..{int(tensor.max())}")
