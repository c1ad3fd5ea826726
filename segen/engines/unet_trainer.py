"""The training loop behind the train_unet stage (and the other supervised segmenters:
one trainer for every network of models.segmentation; imported only when a stage runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from models.losses import ce_dice_loss
from models.metrics import SegmentationAccumulator
from segen.config import SegmenterTrainingParams, as_dict, height_width
from segen.data.arrays import dataset_meta
from segen.engines.loop import check_finite, discard_checkpoint, run_epochs
from segen.engines.segmentation_data import (
    loader,
    split_dataset,
    train_dataset,
    train_transform,
)
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.serving.device import pick_device
from segen.serving.images import standardise
from segen.serving.unet import ARCH_FIELDS, build_segmenter, save_segmenter


def segmenter_config(meta: dict[str, Any], params: SegmenterTrainingParams) -> dict[str, Any]:
    """Everything needed to rebuild the model and its input pipeline at inference."""
    return {"arch": params.arch, "in_channels": meta["channels"], "classes": meta["classes"],
            "ignore_ids": meta["ignore_ids"],
            **{k: getattr(params, k) for k in ARCH_FIELDS.get(params.arch, ())},
            "geometry": meta["geometry"], "height": meta["height"], "width": meta["width"],
            "mean": meta["mean"], "std": meta["std"]}


class Trainer:
    """One training run: model, optimiser, schedule and RNG, restorable from a checkpoint."""

    def __init__(self, config: dict[str, Any], params: SegmenterTrainingParams,
                 train: Any, val: Any, class_weights: list[float] | None):
        self.params, self.config = params, config
        self.device = pick_device()
        torch.manual_seed(params.seed)
        # the sampler's order; the transforms draw from torch's global RNG (in the training
        # process on CPU, seeded per worker from this generator on CUDA): both checkpointed
        self.generator = torch.Generator().manual_seed(params.seed)
        self.train = loader(train, params.batch_size, self.device, generator=self.generator)
        self.val = loader(val, params.batch_size * 2, self.device, generator=None)
        self.class_weights = (None if class_weights is None else
                              torch.tensor(class_weights, device=self.device))
        self.model = build_segmenter(config).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=params.lr,
                                           weight_decay=params.weight_decay)
        # Cosine decay over the whole run: a fixed recipe, so no extra knob in params.yaml.
        steps = params.epochs * len(self.train)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.epoch = 0

    def state(self, run_id: str) -> dict[str, Any]:
        return {"epoch": self.epoch, "run_id": run_id, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self.epoch = state["epoch"]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) uint8 from the loader; standardise takes (B, H, W, C)
        x = standardise(images.to(self.device, non_blocking=True).permute(0, 2, 3, 1),
                        self.config["mean"], self.config["std"])
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.device.type == "cuda"):
            logits = self.model(x)
        logits = logits.float()
        loss = ce_dice_loss(logits, y, num_classes=len(self.config["classes"]),
                            dice_weight=self.params.dice_weight,
                            class_weights=self.class_weights)
        return loss, logits

    def train_epoch(self, bar: tqdm) -> dict[str, float]:
        """One pass over the train split; its mean loss (one host sync, at the end)."""
        self.model.train()
        total, count = torch.zeros((), device=self.device), 0
        for images, masks in self.train:
            x, y = self._inputs(images), masks.to(self.device, non_blocking=True)
            loss, _ = self._loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total = total + loss.detach() * len(y)  # stays on device: no sync per step
            count += len(y)
            bar.update(len(y))
        self.epoch += 1
        return {"train_loss": float(total) / count}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and scores on the val split, accumulated batch by batch."""
        self.model.eval()
        scores = SegmentationAccumulator(len(self.config["classes"])).to(self.device)
        loss_sum, count = torch.zeros((), device=self.device), 0
        for images, masks in self.val:
            y = masks.to(self.device, non_blocking=True)
            loss, logits = self._loss(self._inputs(images), y)
            loss_sum, count = loss_sum + loss * len(y), count + len(y)
            scores.update(logits.argmax(1), y)
        result = scores.compute()
        return {"val_loss": float(loss_sum) / count, "val_mean_iou": result["mean_iou"],
                "val_mean_dice": result["mean_dice"]}


def fit(project: Project, preprocess: StageResult, params: SegmenterTrainingParams, out: Path,
        key: str, *, stage: str = "train_unet", extra_train: StageResult | None = None,
        tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train params.arch, or resume from the checkpoint of this key; writes model.pt +
    model.json to out.

    extra_train: a folder of pairs in the preprocess layout (synthesize_pairs) added to the
    train split; normalisation stays that of the real train split.
    """
    meta = dataset_meta(preprocess)
    _check_crop(params, meta)
    train = train_dataset(preprocess, extra_train,
                          train_transform(params.crop_size, params.augment))
    trainer = Trainer(segmenter_config(meta, params), params, train,
                      split_dataset(preprocess, "val"), meta.get("class_weights"))
    tags = {"segen.stage": stage, "segen.stage_key": key, "segen.arch": params.arch,
            "segen.data_version": meta["data_version"], **(tags or {})}
    done = run_epochs(project, stage, key, trainer, params.epochs,
                      images_per_epoch=len(train), tags=tags,
                      params={f"{params.section}.{k}": v for k, v in as_dict(params).items()},
                      end_of_epoch=_validate_finite(stage, params))
    save_segmenter(trainer.model.cpu(), trainer.config, out)
    discard_checkpoint(project, stage, key)
    epochs_run = params.epochs - done.resumed_from
    return {
        "mlflow_run_id": done.run_id, "device": trainer.device.type, "arch": params.arch,
        "epochs": params.epochs, "resumed_from_epoch": done.resumed_from, "final": done.metrics,
        "train_images_per_second": epochs_run * len(train) / max(done.train_seconds, 1e-9)}


def _validate_finite(stage: str, params: SegmenterTrainingParams) -> Any:
    """The end_of_epoch check: a NaN/inf train or val loss fails the stage (DivergenceError,
    before the epoch is checkpointed), else the epoch's validation scores."""
    fix = (f"Lower {params.section}.lr in params.yaml (now {params.lr}), or look for NaN/inf "
           "values in the training data.")

    def end_of_epoch(trainer: Trainer, losses: dict[str, float], run: Any) -> dict[str, float]:
        check_finite(stage, trainer.epoch, losses, fix)
        scores = trainer.validate()
        check_finite(stage, trainer.epoch, {"val_loss": scores["val_loss"]}, fix)
        return scores

    return end_of_epoch


def _check_crop(params: SegmenterTrainingParams, meta: dict[str, Any]) -> None:
    canvas, key = (meta["height"], meta["width"]), f"{params.section}.crop_size"
    if params.crop_size and any(c > s for c, s in zip(height_width(params.crop_size), canvas)):
        raise ValueError(f"{key}={params.crop_size} is larger than the preprocessed images "
                         f"({canvas[0]}x{canvas[1]} px). Lower {key} or raise "
                         "preprocess.image_size / long_side in params.yaml.")
