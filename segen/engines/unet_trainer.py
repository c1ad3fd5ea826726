"""The training loop behind the train_unet stage (and the other supervised segmenters:
one trainer for every network of models.segmentation; imported only when a stage runs)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.losses import ce_dice_loss
from models.metrics import SegmentationAccumulator
from segen.config import SegmenterTrainingParams, as_dict, height_width
from segen.data.arrays import dataset_meta
from segen.engines.ddp import (
    Ranks,
    all_sum,
    barrier,
    follower_epoch_end,
    launch,
    params_section,
    section_ref,
)
from segen.engines.loop import (
    LoopResult,
    check_finite,
    checkpoint_path,
    discard_checkpoint,
    follow_epochs,
    run_epochs,
)
from segen.engines.segmentation_data import (
    loader,
    rank_sampler,
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
            "mean": meta["mean"], "std": meta["std"], **_tiling(params)}


def _tiling(params: SegmenterTrainingParams) -> dict[str, Any]:
    """How the model predicts (segen.serving.tiling): tile_size as [height, width] or None."""
    tile = None if params.tile_size is None else list(height_width(params.tile_size))
    return {"tile_size": tile, "tile_overlap": params.tile_overlap}


class Trainer:
    """One training run: model, optimiser, schedule and RNG, restorable from a checkpoint.

    ranks: this process's place in a group (segen.engines.ddp), or None for one process.
    In a group the model trains wrapped in DistributedDataParallel (gradients averaged over
    the ranks), each rank on batch_size / world images of each global batch."""

    def __init__(self, config: dict[str, Any], params: SegmenterTrainingParams,
                 train: Any, val: Any, class_weights: list[float] | None,
                 ranks: Ranks | None = None):
        self.params, self.config, self.ranks = params, config, ranks
        self.device, self.dtype = pick_device(), torch.get_default_dtype()
        torch.manual_seed(params.seed)
        # the sampler's order; the transforms draw from torch's global RNG (in the training
        # process on CPU, seeded per worker from this generator on CUDA): both checkpointed
        self.generator = torch.Generator().manual_seed(params.seed)
        if ranks is None:
            self.train = loader(train, params.batch_size, self.device, generator=self.generator)
        else:
            self.train = loader(train, params.batch_size // ranks.world, self.device,
                                generator=None, sampler=rank_sampler(train, ranks.rank,
                                                                     ranks.world, params.seed))
        self.val = loader(val, params.batch_size * 2, self.device, generator=None)
        self.class_weights = (None if class_weights is None else
                              torch.tensor(class_weights, device=self.device))
        self.model = build_segmenter(config).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        # what trains: the model itself, or its DDP wrapper (same parameters)
        self.step_model = self.model if ranks is None else \
            torch.nn.parallel.DistributedDataParallel(self.model)
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
                        self.config["mean"], self.config["std"]).to(self.dtype)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.device.type == "cuda"):
            logits = model(x)
        logits = logits.to(self.dtype)  # out of bf16 autocast
        loss = ce_dice_loss(logits, y, num_classes=len(self.config["classes"]),
                            dice_weight=self.params.dice_weight,
                            class_weights=self.class_weights)
        return loss, logits

    def train_epoch(self, bar: tqdm) -> dict[str, float]:
        """One pass over the train split; its mean loss (one host sync, at the end)."""
        self.model.train()
        if self.ranks is not None:
            self._start_rank_epoch(self.ranks)
        total, count = torch.zeros((), device=self.device), 0
        for images, masks in self.train:
            x, y = self._inputs(images), masks.to(self.device, non_blocking=True)
            loss, _ = self._loss(self.step_model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total = total + loss.detach() * len(y)  # stays on device: no sync per step
            count += len(y)
            bar.update(len(y) * (1 if self.ranks is None else self.ranks.world))
        self.epoch += 1
        if self.ranks is not None:  # the mean over every rank's images
            sums = all_sum(torch.stack([total, torch.tensor(float(count), device=self.device,
                                                            dtype=total.dtype)]))
            return {"train_loss": float(sums[0] / sums[1])}
        return {"train_loss": float(total) / count}

    def _start_rank_epoch(self, ranks: Ranks) -> None:
        """This epoch's share of the seeded permutation, and transforms seeded by (seed,
        epoch, rank): different draws on each rank, the same again after a restart (one
        rank's RNG state in a checkpoint could not restore the others')."""
        self.train.sampler.set_epoch(self.epoch)
        seed = np.random.SeedSequence([self.params.seed, self.epoch, ranks.rank])
        torch.manual_seed(int(seed.generate_state(1)[0]))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and scores on the val split, accumulated batch by batch."""
        self.model.eval()
        scores = SegmentationAccumulator(len(self.config["classes"])).to(self.device)
        loss_sum, count = torch.zeros((), device=self.device), 0
        for images, masks in self.val:
            y = masks.to(self.device, non_blocking=True)
            loss, logits = self._loss(self.model, self._inputs(images), y)
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
    if params.processes > 1:
        return fit_across_processes(project, preprocess, params, out, key, stage=stage,
                                    extra_train=extra_train, tags=tags)
    train = train_dataset(preprocess, extra_train,
                          train_transform(params.crop_size, params.augment, params.elastic_px))
    trainer = Trainer(segmenter_config(meta, params), params, train,
                      split_dataset(preprocess, "val"), meta.get("class_weights"))
    done = run_epochs(project, stage, key, trainer, params.epochs,
                      **_loop_args(stage, key, params, meta, tags, len(train)),
                      end_of_epoch=_validate_finite(stage, params))
    save_segmenter(trainer.model.cpu(), trainer.config, out)
    discard_checkpoint(project, stage, key)
    return _summary(trainer, params, done, len(train))


def fit_across_processes(project: Project, preprocess: StageResult,
                         params: SegmenterTrainingParams, out: Path, key: str, *,
                         stage: str = "train_unet", extra_train: StageResult | None = None,
                         tags: dict[str, str] | None = None, dtype: str = "float32"
                         ) -> dict[str, Any]:
    """fit() on params.processes ranks (torch elastic, segen.engines.ddp): rank 0 logs,
    checkpoints, validates and writes the model to out; fit()'s result, plus the processes
    and the group's restarts. dtype: the ranks' default dtype (float64 for exact checks)."""
    work = checkpoint_path(project, stage, key).parent / "ranks"
    job = {"root": str(project.root), "stage": stage, "key": key, "out": str(out),
           "work": str(work), "tags": tags,
           "params": section_ref(params),
           "preprocess": dataclasses.asdict(preprocess),
           "extra_train": extra_train and dataclasses.asdict(extra_train)}
    result = launch(f"{__name__}:train_rank", job, params.processes, work,
                    threads=torch.get_num_threads(), dtype=dtype, what=stage)
    discard_checkpoint(project, stage, key)
    return result


def train_rank(job: dict[str, Any], ranks: Ranks) -> dict[str, Any] | None:
    """One rank of fit_across_processes: rank 0 runs fit()'s loop; the others train the same
    epochs and wait for rank 0's validation at the end of each."""
    project, stage, key, work = Project.at(job["root"]), job["stage"], job["key"], Path(job["work"])
    params = params_section(*job["params"])
    preprocess = StageResult(**job["preprocess"])
    extra = job["extra_train"] and StageResult(**job["extra_train"])
    meta = dataset_meta(preprocess)
    train = train_dataset(preprocess, extra, train_transform(params.crop_size, params.augment, params.elastic_px))
    trainer = Trainer(segmenter_config(meta, params), params, train,
                      split_dataset(preprocess, "val"), meta.get("class_weights"), ranks)
    if not ranks.main:
        follow_epochs(project, stage, key, trainer, params.epochs, before=barrier,
                      end_of_epoch=follower_epoch_end(ranks))
        return None

    def resumed(epoch: int) -> None:
        if ranks.restart == 0:  # where the stage resumed, not where a restart did
            (work / "resumed_from").write_text(str(epoch))
        barrier()  # the checkpoint is read (a damaged one set aside): the others read it now

    done = run_epochs(project, stage, key, trainer, params.epochs,
                      **_loop_args(stage, key, params, meta, job["tags"], len(train)),
                      end_of_epoch=_then_release(_validate_finite(stage, params)),
                      resumed=resumed)
    save_segmenter(trainer.model.cpu(), trainer.config, Path(job["out"]))
    return {**_summary(trainer, params, done, len(train)),
            "resumed_from_epoch": int((work / "resumed_from").read_text()),
            "processes": ranks.world, "restarts": ranks.restart}


def _then_release(end_of_epoch: Any) -> Any:
    """Rank 0's end of epoch: validation runs once, here, while the other ranks wait."""
    def run(trainer: Trainer, losses: dict[str, float], mlflow_run: Any) -> dict[str, float]:
        scores = end_of_epoch(trainer, losses, mlflow_run)
        barrier()
        return scores

    return run


def _loop_args(stage: str, key: str, params: SegmenterTrainingParams, meta: dict[str, Any],
               tags: dict[str, str] | None, n_train: int) -> dict[str, Any]:
    """run_epochs' logging arguments: the run's tags and params, the bar's images."""
    tags = {"segen.stage": stage, "segen.stage_key": key, "segen.arch": params.arch,
            "segen.data_version": meta["data_version"], **(tags or {})}
    return {"images_per_epoch": n_train, "tags": tags,
            "params": {f"{params.section}.{k}": v for k, v in as_dict(params).items()}}


def _summary(trainer: Trainer, params: SegmenterTrainingParams, done: LoopResult,
             n_train: int) -> dict[str, Any]:
    epochs_run = params.epochs - done.resumed_from
    return {
        "mlflow_run_id": done.run_id, "device": trainer.device.type, "arch": params.arch,
        "epochs": params.epochs, "resumed_from_epoch": done.resumed_from, "final": done.metrics,
        "train_images_per_second": epochs_run * n_train / max(done.train_seconds, 1e-9)}


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
