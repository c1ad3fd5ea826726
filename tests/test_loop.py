"""The epoch loop logs each epoch exactly once, whichever moment a run is stopped at.

The stop is injected where a SIGKILL can land and leave a window: after an epoch's
checkpoint is on disk and before its metrics reach MLflow (the end-to-end kill tests in
test_resume.py hit that window only by chance)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import CounterTrainer, Stopped

from segen.config import MlflowParams
from segen.engines import loop
from segen.project import Project
from segen.tracking import client, configure_tracking


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    project = Project.at(tmp_path)
    configure_tracking(project, MlflowParams(tracking_uri=None, experiment="loop-test"))
    return project


def _run(project: Project, epochs: int) -> loop.LoopResult:
    return loop.run_epochs(project, "train_counter", "k", CounterTrainer(), epochs,
                           images_per_epoch=1, params={"epochs": epochs}, tags={},
                           end_of_epoch=lambda trainer, losses, run: {})


def _steps(run_id: str) -> list[tuple[int, float]]:
    history = client().get_metric_history(run_id, "loss")
    return sorted((m.step, m.value) for m in history)


def test_stop_between_checkpoint_and_log_is_repaired_on_resume(project, monkeypatch) -> None:
    real_log = loop._log_metrics

    def log_until_epoch_3(run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 3:
            raise Stopped  # epoch 3's checkpoint is written, its metrics are not
        real_log(run_id, epoch, metrics)

    monkeypatch.setattr(loop, "_log_metrics", log_until_epoch_3)
    with pytest.raises(Stopped):
        _run(project, 5)
    checkpoint = torch.load(loop.checkpoint_path(project, "train_counter", "k"),
                            weights_only=True)
    assert checkpoint["epoch"] == 3
    assert _steps(checkpoint["run_id"]) == [(1, 1.0), (2, 2.0)]

    monkeypatch.setattr(loop, "_log_metrics", real_log)
    result = _run(project, 5)
    assert result.resumed_from == 3 and result.run_id == checkpoint["run_id"]
    assert _steps(result.run_id) == [(e, float(e)) for e in range(1, 6)]  # each epoch once


def test_resume_after_a_logged_checkpoint_logs_nothing_twice(project, monkeypatch) -> None:
    real_log = loop._log_metrics

    def stop_after_epoch_2(run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        real_log(run_id, epoch, metrics)
        if epoch == 2:
            raise Stopped  # checkpoint and metrics of epoch 2 both written

    monkeypatch.setattr(loop, "_log_metrics", stop_after_epoch_2)
    with pytest.raises(Stopped):
        _run(project, 4)
    monkeypatch.setattr(loop, "_log_metrics", real_log)
    result = _run(project, 4)
    assert result.resumed_from == 2
    assert _steps(result.run_id) == [(e, float(e)) for e in range(1, 5)]
