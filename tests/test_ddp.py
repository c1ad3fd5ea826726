"""Training across processes (unet.processes > 1: torch elastic, gloo on these CPUs).

- Two gloo ranks compute what DDP defines: each global batch split into the ranks' halves in
  the DistributedSampler's order (perm[r::2] of the epoch's seeded permutation), each half
  forward/backward, the gradients averaged, one step. U-Net has BatchNorm, so this is not one
  process on the whole batch (each rank normalises its own half, as DDP without SyncBatchNorm
  does): the reference below does exactly the halves, in float64, and the parameters agree to
  1e-10 (BatchNorm's running buffers are not compared: DDP broadcasts rank 0's).
- A group whose rank 1 is killed once restarts (max_restarts) from the last checkpoint,
  finishes the configured epochs, and MLflow has every epoch exactly once, in one run.
- A rank that raises fails with that rank's error, not a bare exit status.
- The pipeline in-process (Prefect's thread pool) trains with processes: 2 and evaluates.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_params

from segen.config import UNetParams, load_params
from segen.project import Project
from segen.tracking import client, configure_tracking

TOLERANCE = 1e-10  # float64: the reference and the ranks differ only in summation order


def _unet(project: Project, **changes: Any) -> UNetParams:
    params = load_params(project.root / "params.yaml")
    configure_tracking(project, params.mlflow)
    return dataclasses.replace(params.unet, processes=2, **changes)


@pytest.mark.slow
def test_two_gloo_ranks_equal_ddp_by_hand_in_float64(prepared, tmp_path: Path) -> None:
    from segen.engines.unet_trainer import fit_across_processes
    from segen.serving.model_folder import load_model_folder
    from segen.serving.unet import CONFIG, WEIGHTS

    project, preprocess = prepared
    params = _unet(project, epochs=2, batch_size=8)
    info = fit_across_processes(project, preprocess, params, tmp_path, "equivalence",
                                dtype="float64")
    assert info["processes"] == 2 and info["epochs"] == 2
    _, trained = load_model_folder(tmp_path, CONFIG, WEIGHTS)
    initial, expected = _by_hand(preprocess, params)

    names = [n for n in expected if n in dict(initial)]  # parameters, not BN buffers
    moved = max((expected[n] - initial[n]).abs().max().item() for n in names)
    assert moved > 1e-3, "training must move the weights for the comparison to mean much"
    worst = max((trained[n].double() - expected[n]).abs().max().item() for n in names)
    assert worst <= TOLERANCE, f"2 ranks differ from DDP by hand by {worst:.3g}"


def _by_hand(preprocess: Any, params: UNetParams
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What DDP defines, in one process in float64: (initial, trained) parameters."""
    from models.losses import ce_dice_loss
    from segen.data.arrays import dataset_meta
    from segen.engines.segmentation_data import split_dataset
    from segen.engines.unet_trainer import segmenter_config
    from segen.serving.images import standardise
    from segen.serving.unet import build_segmenter

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        config = segmenter_config(dataset_meta(preprocess), params)
        train = split_dataset(preprocess, "train")
        torch.manual_seed(params.seed)  # as the Trainer: rank 0's init, which DDP broadcasts
        model = build_segmenter(config).train()
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        epochs = [_rank_batches(len(train), params, epoch) for epoch in range(params.epochs)]
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                      weight_decay=params.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=params.epochs * len(epochs[0]))

        def loss_of(rows: list[int]) -> torch.Tensor:
            images, masks = zip(*(train[i] for i in rows))
            x = standardise(torch.stack(images).permute(0, 2, 3, 1), config["mean"],
                            config["std"]).double()
            return ce_dice_loss(model(x), torch.stack(masks), num_classes=len(config["classes"]),
                                dice_weight=params.dice_weight, class_weights=None)

        for steps in epochs:
            for halves in steps:
                optimizer.zero_grad(set_to_none=True)
                for rows in halves:  # each rank's half: its own forward, BN statistics, grads
                    loss_of(rows).backward()
                for p in model.parameters():
                    p.grad /= len(halves)  # DDP averages the ranks' gradients
                optimizer.step()
                schedule.step()
        return initial, {n: p.detach() for n, p in model.named_parameters()}
    finally:
        torch.set_default_dtype(previous)


def _rank_batches(n: int, params: UNetParams, epoch: int, world: int = 2
                  ) -> list[list[list[int]]]:
    """Each step's [rank 0 rows, rank 1 rows]: the epoch's permutation seeded by seed + epoch,
    padded to a multiple of world, rank r taking perm[r::world], in per-rank batches."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(params.seed + epoch))
    perm = perm.tolist()
    perm += perm[:(-n) % world]
    shards = [perm[r::world] for r in range(world)]
    size = params.batch_size // world
    count = len(shards[0]) // size if len(shards[0]) % size == 1 else -(-len(shards[0]) // size)
    return [[s[k * size:(k + 1) * size] for s in shards] for k in range(count)]


@pytest.mark.slow
def test_a_killed_rank_restarts_from_the_checkpoint(prepared, tmp_path: Path,
                                                    monkeypatch) -> None:
    from segen.engines.unet_trainer import fit

    project, preprocess = prepared
    epochs = 3
    # rank 1 SIGKILLs itself at the end of epoch 2 (its first attempt only): epoch 1's
    # checkpoint is on disk by then, so the group must resume, not start again
    monkeypatch.setenv("SEGEN_FAILPOINT", "ddp.rank1_epoch:2")
    info = fit(project, preprocess, _unet(project, epochs=epochs), tmp_path, "restart")
    assert info["restarts"] == 1 and info["epochs"] == epochs
    assert (tmp_path / "model.pt").is_file()

    mlflow = client()
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("segen").experiment_id],
                              "tags.`segen.stage_key` = 'restart'")
    assert [r.info.run_id for r in runs] == [info["mlflow_run_id"]]  # resumed: one run
    for metric in ("train_loss", "val_loss"):
        history = mlflow.get_metric_history(info["mlflow_run_id"], metric)
        assert sorted(m.step for m in history) == list(range(1, epochs + 1)), metric


def test_a_rank_that_raises_fails_with_its_error(tmp_path: Path) -> None:
    from segen.engines.ddp import RankFailed, launch

    # an entry that cannot take (job, ranks): every rank raises TypeError, twice (a restart)
    with pytest.raises(RankFailed) as failed:
        launch("segen.engines.ddp:current", {}, 2, tmp_path / "ranks", threads=2)
    message = str(failed.value)
    assert "failed on rank" in message and "of 2" in message
    assert "TypeError: current() takes 0 positional arguments" in message
    assert "exit status" not in message


@pytest.mark.slow
def test_pipeline_trains_on_two_processes_and_evaluates(prepared, run_pipeline) -> None:
    project, _ = prepared
    write_params(project.root, {"unet": {"processes": 2, "epochs": 2}})
    run_pipeline(project.root, ["evaluate_unet"])
    trained = json.loads(project.pointer("train_unet").read_text())["info"]
    assert trained["processes"] == 2 and trained["restarts"] == 0
    scored = json.loads(project.pointer("evaluate_unet").read_text())["info"]["metrics"]
    assert 0.0 <= scored["mean_iou"] <= 1.0, scored
    assert not any((project.work / "train_unet").glob("*/checkpoint.pt"))  # cleaned up
