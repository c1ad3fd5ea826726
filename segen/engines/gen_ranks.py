"""A generator trained across processes (generative.processes > 1): torch elastic ranks
(segen.engines.ddp), each on its contiguous slice of every global batch, with the noise of
the whole batch drawn from one seeded generator and sliced per rank
(models.generative.noise) and the gradients averaged before each optimiser step
(gen_trainer.grads_averaged). Without batch norm (the MLP GAN) the ranks train what one
process trains; with it each rank normalises its own slice, as DDP without SyncBatchNorm.

Rank 0 alone logs to MLflow, samples the epoch's grid, checks for divergence, writes the
checkpoints and the generator folder; the others wait for it at a barrier each epoch. A
killed rank restarts the group, which resumes from the last checkpoint.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from segen.config import GenerativeParams, GeneratorParams
from segen.engines import gen_trainer
from segen.engines.ddp import (
    Ranks,
    barrier,
    follower_epoch_end,
    launch,
    params_section,
    section_ref,
)
from segen.engines.gen_trainer import GenTrainer, finish, prepare, train_and_log
from segen.engines.loop import checkpoint_path, discard_checkpoint, follow_epochs
from segen.pipeline.store import StageResult
from segen.project import Project


def fit(project: Project, kind: str, preprocess: StageResult, generative: GenerativeParams,
        params: GeneratorParams, out: Path, key: str) -> dict[str, Any]:
    """Train the generator on generative.processes processes (1: gen_trainer.fit, here)."""
    if generative.processes == 1:
        return gen_trainer.fit(project, kind, preprocess, generative, params, out, key)
    return fit_across_processes(project, kind, preprocess, generative, params, out, key)


def fit_across_processes(project: Project, kind: str, preprocess: StageResult,
                         generative: GenerativeParams, params: GeneratorParams, out: Path,
                         key: str, *, dtype: str = "float32") -> dict[str, Any]:
    """gen_trainer.fit on generative.processes ranks; its result, plus the processes and the
    group's restarts. dtype: the ranks' default dtype (float64 for exact checks)."""
    stage = f"train_{kind}"
    work = checkpoint_path(project, stage, key).parent / "ranks"
    job = {"root": str(project.root), "kind": kind, "key": key, "out": str(out),
           "work": str(work), "preprocess": dataclasses.asdict(preprocess),
           "generative": section_ref(generative), "params": section_ref(params)}
    result = launch(f"{__name__}:train_rank", job, generative.processes, work,
                    threads=torch.get_num_threads(), dtype=dtype, what=stage)
    discard_checkpoint(project, stage, key)
    return result


def train_rank(job: dict[str, Any], ranks: Ranks) -> dict[str, Any] | None:
    """One rank of fit_across_processes."""
    project, work = Project.at(job["root"]), Path(job["work"])
    generative, params = params_section(*job["generative"]), params_section(*job["params"])
    gen = prepare(job["kind"], StageResult(**job["preprocess"]), generative, params,
                  job["key"])
    trainer = GenTrainer(gen.kind, gen.config, params, generative.seed, gen.data,
                         generative.batch_size, ranks)
    if not ranks.main:
        follow_epochs(project, gen.stage, gen.key, trainer, params.epochs, before=barrier,
                      end_of_epoch=follower_epoch_end(ranks))
        return None

    def resumed(epoch: int) -> None:
        if ranks.restart == 0:  # where the stage resumed, not where a restart did
            (work / "resumed_from").write_text(str(epoch))
        barrier()  # the checkpoint is read: the others read it now

    done = train_and_log(project, gen, trainer, generative, params, after_epoch=barrier,
                         resumed=resumed)
    return {**finish(gen, trainer, done, generative, params, Path(job["out"])),
            "resumed_from_epoch": int((work / "resumed_from").read_text()),
            "processes": ranks.world, "restarts": ranks.restart}
