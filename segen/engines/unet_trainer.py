"""The U-Net training loop behind the train_unet stage (imported only when it runs)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from models.losses import ce_dice_loss
from models.metrics import segmentation_scores
from segen.config import UNetParams, as_dict
from segen.data.arrays import dataset_meta
from segen.engines.loop import discard_checkpoint, run_epochs
from segen.engines.training import (
    augment,
    batch_indices,
    load_split,
    random_crop,
)
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.serving.device import pick_device
from segen.serving.images import standardise
from segen.serving.unet import build_unet, save_unet


def unet_config(meta: dict[str, Any], params: UNetParams) -> dict[str, Any]:
    """Everything needed to rebuild the model and its input pipeline at inference."""
    return {"in_channels": meta["channels"], "classes": meta["classes"], "depth": params.depth,
            "base_width": params.base_width, "image_size": meta["image_size"],
            "mean": meta["mean"], "std": meta["std"]}


class Trainer:
    """One training run: model, optimiser, schedule and RNG, restorable from a checkpoint."""

    def __init__(self, config: dict[str, Any], params: UNetParams, steps: int,
                 train_split: tuple[torch.Tensor, torch.Tensor],
                 val_split: tuple[torch.Tensor, torch.Tensor]):
        self.params, self.config = params, config
        self.train_split, self.val_split = train_split, val_split  # uint8 images, masks
        self.device = pick_device()
        torch.manual_seed(params.seed)
        self.generator = torch.Generator().manual_seed(params.seed)
        self.model = build_unet(config).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=params.lr,
                                           weight_decay=params.weight_decay)
        # Cosine decay over the whole run: a fixed recipe, so no extra knob in params.yaml.
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps)
        self.epoch = 0

    def state(self, run_id: str) -> dict[str, Any]:
        return {"epoch": self.epoch, "run_id": run_id, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "generator": self.generator.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.generator.set_state(state["generator"])
        self.epoch = state["epoch"]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = standardise(images.to(self.device, non_blocking=True), self.config["mean"],
                        self.config["std"])
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.device.type == "cuda"):
            logits = self.model(x)
        logits = logits.float()
        loss = ce_dice_loss(logits, y, num_classes=len(self.config["classes"]),
                            dice_weight=self.params.dice_weight)
        return loss, logits

    def train_epoch(self, bar: tqdm) -> dict[str, float]:
        """One pass over the train split; its mean loss (one host sync, at the end)."""
        images, masks = self.train_split
        self.model.train()
        total, count = torch.zeros((), device=self.device), 0
        for idx in batch_indices(len(images), self.params.batch_size, self.generator):
            x, y = self._inputs(images[idx]), masks[idx].to(self.device, non_blocking=True)
            if self.params.augment:
                x, y = augment(x, y, self.generator)
            if self.params.crop_size:
                x, y = random_crop(x, y, self.params.crop_size, self.generator)
            loss, _ = self._loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total = total + loss.detach() * len(idx)  # stays on device: no sync per step
            count += len(idx)
            bar.update(len(idx))
        self.epoch += 1
        return {"train_loss": float(total) / count}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        images, masks = self.val_split
        self.model.eval()
        losses, preds = [], []
        for idx in batch_indices(len(images), self.params.batch_size * 2, None):
            y = masks[idx].to(self.device)
            loss, logits = self._loss(self._inputs(images[idx]), y)
            losses.append(loss.item() * len(idx))
            preds.append(logits.argmax(1).cpu())
        scores = segmentation_scores(torch.cat(preds), masks, len(self.config["classes"]))
        return {"val_loss": sum(losses) / len(images), "val_mean_iou": scores["mean_iou"],
                "val_mean_dice": scores["mean_dice"]}


def fit(project: Project, preprocess: StageResult, unet: UNetParams, out: Path,
        key: str, *, stage: str = "train_unet",
        extra_train: tuple[torch.Tensor, torch.Tensor] | None = None,
        tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train, or resume from the checkpoint of this key; writes model.pt + model.json to out.

    extra_train: (N, H, W, C) uint8 images and (N, H, W) int64 masks added to the train
    split (train_unet_synthetic); normalisation stays that of the real train split.
    """
    meta = dataset_meta(preprocess)
    train_x, train_y = load_split(preprocess, "train")
    if extra_train is not None:
        train_x = torch.cat([train_x, extra_train[0]])
        train_y = torch.cat([train_y, extra_train[1]])
    _check_crop(unet, meta)
    steps = unet.epochs * math.ceil(len(train_x) / unet.batch_size)
    trainer = Trainer(unet_config(meta, unet), unet, steps, (train_x, train_y),
                      load_split(preprocess, "val"))
    tags = {"segen.stage": stage, "segen.stage_key": key,
            "segen.data_version": meta["data_version"], **(tags or {})}
    done = run_epochs(project, stage, key, trainer, unet.epochs,
                      images_per_epoch=len(train_x), tags=tags,
                      params={f"unet.{k}": v for k, v in as_dict(unet).items()},
                      end_of_epoch=lambda trainer, losses, run: trainer.validate())
    save_unet(trainer.model.cpu(), trainer.config, out)
    discard_checkpoint(project, stage, key)
    epochs_run = unet.epochs - done.resumed_from
    return {
        "mlflow_run_id": done.run_id, "device": trainer.device.type, "epochs": unet.epochs,
        "resumed_from_epoch": done.resumed_from, "final": done.metrics,
        "train_images_per_second": epochs_run * len(train_x) / max(done.train_seconds, 1e-9)}


def _check_crop(params: UNetParams, meta: dict[str, Any]) -> None:
    if params.crop_size and params.crop_size > meta["image_size"]:
        raise ValueError(f"unet.crop_size={params.crop_size} is larger than the preprocessed "
                         f"images ({meta['image_size']} px). Lower unet.crop_size or raise "
                         "preprocess.image_size in params.yaml.")
