"""Generators trained across processes (generative.processes > 1: torch elastic, gloo here).

- The MLP GAN has no batch norm or dropout, so two gloo ranks, each on its half of every
  global batch with the batch's noise sliced from one seeded draw and the gradients averaged
  before every step, must train what one process trains on the whole batch: in float64 the
  generator and discriminator agree to 1e-10 after two epochs (D and G steps, Adam, EMA).
- A DCGAN (batch norm) group whose rank 1 is killed once restarts from the last checkpoint,
  finishes the configured epochs, logs each epoch once in one MLflow run, and its generator
  folder loads and samples.
- The pipeline trains a generator on two processes and evaluates it once.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_params

from segen.config import load_params
from segen.project import Project
from segen.tracking import client, configure_tracking

pytestmark = pytest.mark.slow
TOLERANCE = 1e-10  # float64: one process and two ranks differ only in summation order


def _sections(project: Project, kind: str, processes: int, **changes: Any) -> tuple[Any, Any]:
    params = load_params(project.root / "params.yaml")
    configure_tracking(project, params.mlflow)
    generative = dataclasses.replace(params.generative, processes=processes, batch_size=16)
    return generative, dataclasses.replace(getattr(params, kind), **changes)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from segen.serving.generator import load_generator

    nets, _ = load_generator(folder)
    return {n: p.detach().double() for n, p in nets.named_parameters()}


def test_two_gloo_ranks_train_the_mlp_gan_as_one_process_in_float64(prepared,
                                                                     tmp_path: Path) -> None:
    from segen.engines import gen_trainer
    from segen.engines.gen_ranks import fit_across_processes

    project, preprocess = prepared
    generative, gan = _sections(project, "gan", 2, epochs=2, ema=0.9)
    (tmp_path / "ranks").mkdir(), (tmp_path / "one").mkdir()  # as a stage's staging folders
    info = fit_across_processes(project, "gan", preprocess, generative, gan,
                                tmp_path / "ranks", "gan-two", dtype="float64")
    assert (info["processes"], info["restarts"], info["epochs"]) == (2, 0, 2)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        one = gen_trainer.fit(project, "gan", preprocess,
                              dataclasses.replace(generative, processes=1), gan,
                              tmp_path / "one", "gan-one")
    finally:
        torch.set_default_dtype(previous)
    two, single = _weights(tmp_path / "ranks"), _weights(tmp_path / "one")
    assert set(two) == set(single) and any("discriminator" in n for n in two)
    worst = max((two[n] - single[n]).abs().max().item() for n in two)
    assert worst <= TOLERANCE, f"2 ranks differ from one process by {worst:.3g}"
    for name in ("d_loss", "g_loss"):  # the epoch means are over both ranks' images
        assert info["final"][name] == pytest.approx(one["final"][name], abs=1e-9), name


def test_a_killed_rank_restarts_from_the_checkpoint(prepared, tmp_path: Path,
                                                    monkeypatch) -> None:
    from segen.engines.gen_ranks import fit
    from segen.serving.generator import load_generator

    project, preprocess = prepared
    epochs = 3
    # rank 1 SIGKILLs itself at the end of epoch 2 (its first attempt only)
    monkeypatch.setenv("SEGEN_FAILPOINT", "ddp.rank1_epoch:2")
    generative, dcgan = _sections(project, "dcgan", 2, epochs=epochs)
    info = fit(project, "dcgan", preprocess, generative, dcgan, tmp_path, "restart")
    assert info["restarts"] == 1 and info["epochs"] == epochs

    mlflow = client()
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("segen").experiment_id],
                              "tags.`segen.stage_key` = 'restart'")
    assert [r.info.run_id for r in runs] == [info["mlflow_run_id"]]  # resumed: one run
    history = mlflow.get_metric_history(info["mlflow_run_id"], "d_loss")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    nets, config = load_generator(tmp_path)
    assert config["kind"] == "dcgan" and nets.generator(torch.randn(2, config["spec"][
        "latent_dim"])).shape[0] == 2


def test_pipeline_trains_a_generator_on_two_processes_and_evaluates(prepared,
                                                                    run_pipeline) -> None:
    project, _ = prepared
    write_params(project.root, {"generative": {"processes": 2, "batch_size": 16},
                                "vae": {"epochs": 2}})
    run_pipeline(project.root, ["evaluate_vae"])
    trained = json.loads(project.pointer("train_vae").read_text())["info"]
    assert trained["processes"] == 2 and trained["restarts"] == 0
    scored = json.loads(project.pointer("evaluate_vae").read_text())["info"]["metrics"]
    assert scored["fid"] > 0, scored
    assert not any((project.work / "train_vae").glob("*/checkpoint.pt"))  # cleaned up
