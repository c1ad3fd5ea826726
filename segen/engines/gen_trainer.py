"""The training loop behind every train_<kind> generative stage (imported only when one runs).

Seeded, device chosen automatically (bf16 autocast on CUDA, except for WGAN-GP whose
gradient penalty takes a double backward), an Adam per parameter group, a checkpoint per
epoch that an interrupted run resumes from, losses and a sample grid per epoch to MLflow.
A NaN/inf or huge epoch loss, or a collapsed generator, raises GenerativeDivergenceError.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.generative import (
    CONDITIONING,
    AdversarialPair,
    GenSpec,
    create,
    default_betas,
    one_hot,
    param_groups,
    sample,
    train_step,
)
from models.generative.noise import batch_shard
from segen.config import GenerativeParams, GeneratorParams, as_dict
from segen.engines.ddp import Ranks, all_sum
from segen.engines.gen_data import (
    domain_values,
    generator_config,
    grid_conditioning,
    load_batch,
)
from segen.engines.loop import (
    DivergenceError,
    LoopResult,
    discard_checkpoint,
    run_epochs,
)
from segen.engines.training import batch_indices, standing_batch_norm
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.serving.device import pick_device
from segen.serving.generator import save_generator
from segen.serving.grid import save_grid

log = logging.getLogger("segen.train_generative")
GRID = "samples.png"
PER_ROW = 8  # samples per grid row
_NO_AUTOCAST = ("wgan_gp",)  # torch.autograd.grad(create_graph=True) of the penalty
STANDING_BATCHES = 8  # generator batches that measure an averaged generator's statistics


class GenerativeDivergenceError(DivergenceError):
    """Training diverged (NaN/inf or huge loss) or the generator collapsed."""


class GenTrainer:
    """Nets, optimisers and RNGs of one run, restorable from a checkpoint."""

    def __init__(self, kind: str, config: dict[str, Any], params: GeneratorParams, seed: int,
                 data: dict[str, torch.Tensor], batch_size: int, ranks: Ranks | None = None):
        self.kind, self.config, self.params = kind, config, params
        self.data, self.batch_size = data, batch_size  # the train split's tensors
        self.device = pick_device()
        self.ranks = ranks if ranks is not None and ranks.world > 1 else None
        torch.manual_seed(seed)  # the init: the same nets on every rank
        self.nets = create(kind, GenSpec(**config["spec"])).to(self.device)
        betas = default_betas(kind)
        # TTUR (Heusel et al. 2017): the discriminator may learn at its own rate
        rates = {"discriminator": getattr(params, "d_lr", params.lr)}
        self.optimizers = {name: torch.optim.Adam(group, lr=rates.get(name, params.lr),
                                                  betas=betas)
                           for name, group in param_groups(kind, self.nets).items()}
        self.ema = weight_average(self.nets, getattr(params, "ema", 0.0))
        self.shuffle = torch.Generator().manual_seed(seed)  # batches, on the CPU
        self.noise = torch.Generator(self.device).manual_seed(seed + 1)  # latents, on device
        double_backward = kind in _NO_AUTOCAST or getattr(params, "r1_weight", 0.0) > 0
        self.autocast = self.device.type == "cuda" and not double_backward
        self.epoch = 0
        self.share = 1.0  # this rank's fraction of the batch being trained on
        if self.ranks is not None:
            grads_averaged(self)
            # torch's global RNG (pix2pix's dropout) after the shared init: a stream per rank
            torch.manual_seed(seed + 7919 * self.ranks.rank)

    def sampler(self) -> torch.nn.Module:
        """The nets samples come from: with EMA, the averaged generator (its batch-norm
        statistics measured under the averaged weights) beside the trained D."""
        if self.ema is None:
            return self.nets
        self._standing_statistics(self.ema.module)
        return AdversarialPair(self.nets.spec, self.ema.module, self.nets.discriminator)

    def _standing_statistics(self, generator: torch.nn.Module) -> None:
        """Averaged weights never produced the running statistics the trained generator
        kept, so measure them on the averaged generator's own batches (BigGAN's "standing
        statistics", Brock et al. 2019, Sec. 3.1), from fixed latents and the data's labels."""
        spec = self.nets.spec
        latents = torch.Generator(self.device).manual_seed(0)
        picks = torch.Generator().manual_seed(0)
        labels = self.data.get("label")
        with standing_batch_norm(generator):
            for _ in range(STANDING_BATCHES):
                z = torch.randn(self.batch_size, spec.latent_dim, device=self.device,
                                generator=latents)
                cond = None
                if CONDITIONING[self.kind] == "label":
                    chosen = labels[torch.randint(len(labels), (self.batch_size,),
                                                  generator=picks)]
                    cond = one_hot(chosen.to(self.device), spec.n_classes)
                generator(z, cond)

    def state(self, run_id: str) -> dict[str, Any]:
        return {"epoch": self.epoch, "run_id": run_id, "nets": self.nets.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "shuffle": self.shuffle.get_state(), "noise": self.noise.get_state(),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {})}

    def restore(self, state: dict[str, Any]) -> None:
        self.nets.load_state_dict(state["nets"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.shuffle.set_state(state["shuffle"])
        self.noise.set_state(state["noise"])
        self.epoch = state["epoch"]

    def train_epoch(self, bar: Any) -> dict[str, float]:
        """One pass; the epoch's mean of each loss (one host sync, at the end)."""
        data, world = self.data, self.ranks.world if self.ranks else 1
        self.nets.train()
        totals, names, count = None, [], 0
        for idx in batch_indices(len(data["image"]), self.batch_size, self.shuffle):
            if len(idx) < 2 * world:
                continue  # batch norm cannot normalise a batch (or a rank's slice) of one
            start, stop = self._slice(len(idx))
            self.share = (stop - start) / len(idx)
            batch = {k: v[idx[start:stop]].to(self.device, non_blocking=True)
                     for k, v in data.items()}
            shard = batch_shard(start, len(idx)) if self.ranks else contextlib.nullcontext()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast), \
                    shard:
                losses = train_step(self.kind, self.nets, self.optimizers, batch,
                                    self.params.weights(), generator=self.noise)
            if self.ema is not None:
                self.ema.update_parameters(self.nets.generator)
            names = list(losses)
            stacked = torch.stack([v.float() for v in losses.values()]) * (stop - start)
            totals = stacked if totals is None else totals + stacked  # NaN/inf carry through
            count += stop - start
            bar.update(len(idx))
        self.epoch += 1
        if self.ranks is not None:  # the epoch's mean over every rank's images
            totals, count = all_sum(torch.cat([totals, totals.new_tensor([count])])).split(
                [len(names), 1])
        return dict(zip(names, (totals / count).tolist()))

    def _slice(self, n: int) -> tuple[int, int]:
        """This rank's rows [start, stop) of a batch of n: contiguous, sizes within one."""
        if self.ranks is None:
            return 0, n
        rank, world = self.ranks.rank, self.ranks.world
        return n * rank // world, n * (rank + 1) // world

    def samples(self, n: int, cond: dict[str, Any]) -> torch.Tensor:
        """(n, C, S, S) in [-1, 1] from a fixed seed, so grids compare across epochs."""
        cond = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                for k, v in cond.items()}
        fixed = torch.Generator(self.device).manual_seed(0)
        return sample(self.kind, self.sampler(), n, generator=fixed, **cond).float().cpu()


def grads_averaged(trainer: GenTrainer) -> None:
    """Before each optimiser step, every rank's gradients become their mean over the global
    batch (each weighted by its rank's share of it: the gradient one process would take),
    so the nets stay identical on every rank. A hook on each optimiser rather than a DDP
    wrapper: a GAN step runs the nets several times per update (D on reals and fakes, then
    G through a frozen D), which DistributedDataParallel's one-forward-one-backward
    bookkeeping does not follow."""
    def average(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]  # the same parameters on every rank
        if not grads:
            return
        flat = all_sum(torch.cat([g.reshape(-1) for g in grads]) * trainer.share)
        for grad, mean in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(mean.view_as(grad))

    for optimizer in trainer.optimizers.values():
        optimizer.register_step_pre_hook(average)


def weight_average(nets: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the generator's weights, which samples are drawn
    from (Karras et al. 2018, Sec. A.1; Yazici et al., "The Unusual Effectiveness of
    Averaging in GAN Training", ICLR 2019); None when decay is 0."""
    if decay == 0:
        return None
    # parameters only: the batch-norm buffers are measured when sampling (_standing_statistics)
    return AveragedModel(nets.generator, multi_avg_fn=get_ema_multi_avg_fn(decay))


def check_divergence(kind: str, epoch: int, epochs: int, losses: dict[str, float],
                     grid: torch.Tensor, params: GenerativeParams) -> None:
    """Raise GenerativeDivergenceError on a NaN/inf or huge loss, or a collapsed generator
    in the second half of training (early on, e.g. with DCGAN's N(0, 0.02) init, every
    sample is near constant: not trained yet, not collapsed)."""
    limit = params.divergence.max_loss
    for name, value in losses.items():
        if not torch.isfinite(torch.tensor(value)) or abs(value) > limit:
            raise GenerativeDivergenceError(
                f"train_{kind} diverged at epoch {epoch}: loss {name} = {value} "
                f"({'not finite' if abs(value) <= limit else f'|loss| > {limit}'}). "
                f"Lower {kind}.lr in params.yaml, or raise generative.divergence.max_loss "
                "if losses this large are expected.")
    spread = float(grid.std(dim=0).mean())  # per-pixel std over the batch, averaged
    if 2 * epoch > epochs and spread < params.divergence.collapse_std:
        raise GenerativeDivergenceError(
            f"train_{kind} collapsed at epoch {epoch}: every sample looks the same (per-pixel "
            f"std {spread:.2g} < generative.divergence.collapse_std = "
            f"{params.divergence.collapse_std}). Lower {kind}.lr or change generative.seed in "
            "params.yaml (or lower collapse_std if such uniform images are expected).")


@dataclass(frozen=True)
class GenJob:
    """What training one generator needs, derived from its stage's inputs."""
    kind: str
    key: str
    config: dict[str, Any]  # the generator folder's config (spec, data version, ...)
    data: dict[str, torch.Tensor]  # the train split: "image" and the conditioning's keys
    cond: dict[str, Any]  # the sample grid's conditioning
    tags: dict[str, str]
    logged: dict[str, Any]  # the params logged to MLflow

    @property
    def stage(self) -> str:
        return f"train_{self.kind}"


def prepare(kind: str, preprocess: StageResult, generative: GenerativeParams,
            params: GeneratorParams, key: str) -> GenJob:
    conditioning = CONDITIONING[kind]
    domains = domain_values(preprocess, generative) if conditioning == "image" else None
    config = generator_config(kind, conditioning, preprocess, generative, params, domains)
    data = load_batch(preprocess, generative, "train", domains, config["spec"]["image_size"])
    dtype = torch.get_default_dtype()  # float64 in the exactness checks
    data = {k: data[k].to(dtype) if data[k].is_floating_point() else data[k]
            for k in ("image", *_batch_keys(conditioning))}
    cond = grid_conditioning(conditioning, data, generative.sample_grid,
                             sorted(set(data["label"].tolist())) if "label" in data else [])
    tags = {"segen.stage": f"train_{kind}", "segen.stage_key": key,
            "segen.data_version": config["data_version"]}
    logged = {**{f"{kind}.{k}": v for k, v in as_dict(params).items()},
              **{f"generative.{k}": v for k, v in as_dict(generative).items()}}
    return GenJob(kind, key, config, data, cond, tags, logged)


def fit(project: Project, kind: str, preprocess: StageResult, generative: GenerativeParams,
        params: GeneratorParams, out: Path, key: str) -> dict[str, Any]:
    """Train in this process, or resume from this key's checkpoint; writes the generator
    folder into out (segen.engines.gen_ranks.fit: on generative.processes)."""
    job = prepare(kind, preprocess, generative, params, key)
    trainer = GenTrainer(kind, job.config, params, generative.seed, job.data,
                         generative.batch_size)
    done = train_and_log(project, job, trainer, generative, params)
    result = finish(job, trainer, done, generative, params, out)
    discard_checkpoint(project, job.stage, key)
    return result


def train_and_log(project: Project, job: GenJob, trainer: GenTrainer,
                  generative: GenerativeParams, params: GeneratorParams, *,
                  after_epoch: Callable[[], None] | None = None,
                  resumed: Callable[[int], None] | None = None) -> LoopResult:
    """run_epochs with the generators' end of epoch: stop on divergence or collapse, log the
    epoch's sample grid to MLflow, then after_epoch() (a group's barrier)."""
    with tempfile.TemporaryDirectory() as tmp:
        def end_of_epoch(trainer: GenTrainer, losses: dict[str, float], run: Any
                         ) -> dict[str, float]:
            grid = trainer.samples(generative.sample_grid, job.cond)
            check_divergence(job.kind, trainer.epoch, params.epochs, losses, grid, generative)
            _log_grid(grid, Path(tmp) / f"epoch_{trainer.epoch:03d}.png")
            if after_epoch is not None:
                after_epoch()
            return {}

        return run_epochs(project, job.stage, job.key, trainer, params.epochs,
                          images_per_epoch=len(job.data["image"]), params=job.logged,
                          tags=job.tags, end_of_epoch=end_of_epoch, resumed=resumed)


def finish(job: GenJob, trainer: GenTrainer, done: LoopResult, generative: GenerativeParams,
           params: GeneratorParams, out: Path) -> dict[str, Any]:
    """Write the generator folder and its final grid into out; the stage's training info."""
    save_generator(trainer.sampler(), job.config, out)
    _save_samples(trainer.samples(generative.sample_grid, job.cond), out / GRID)
    epochs_run = params.epochs - done.resumed_from
    return {"kind": job.kind, "mlflow_run_id": done.run_id, "device": trainer.device.type,
            "epochs": params.epochs, "resumed_from_epoch": done.resumed_from,
            "final": done.metrics,
            "train_images_per_second": epochs_run * len(job.data["image"])
            / max(done.train_seconds, 1e-9)}


def _batch_keys(conditioning: str | None) -> tuple[str, ...]:
    return {None: (), "label": ("label",), "mask": ("mask",), "image": ("domain",)}[conditioning]


def _save_samples(x: torch.Tensor, path: Path) -> None:
    """(N, C, S, S) in [-1, 1] as a grid PNG, PER_ROW to a row."""
    save_grid((x + 1) / 2, path, PER_ROW)


def _log_grid(grid: torch.Tensor, path: Path) -> None:
    import mlflow

    _save_samples(grid, path)
    mlflow.log_artifact(str(path), artifact_path="samples")
