"""Training resumes from its last checkpoint after the process is killed mid-epoch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kill_mid_training, segen_cli, write_params

pytestmark = pytest.mark.slow


def test_killed_training_resumes_to_the_configured_epochs(tiny_project: Path, run_pipeline
                                                          ) -> None:
    run_pipeline(tiny_project, ["preprocess"])  # every upstream stage, so `segen stage train_unet` can run
    epochs = 40
    write_params(tiny_project, {"unet": {"epochs": epochs}})
    checkpoint, interrupted_at = kill_mid_training(tiny_project, "train_unet")
    assert 1 <= interrupted_at < epochs

    result = segen_cli("stage", "train_unet", "--json", cwd=tiny_project)
    assert result.returncode == 0, result.stderr[-3000:]
    pointer = json.loads((tiny_project / ".segen/stages/train_unet.json").read_text())
    info = pointer["info"]
    assert info["epochs"] == epochs and info["resumed_from_epoch"] >= interrupted_at
    assert not checkpoint.exists()  # work folder cleaned once the model is published

    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tiny_project / '.segen' / 'mlflow.db'}"
    history = MlflowClient(tracking_uri=uri).get_metric_history(info["mlflow_run_id"],
                                                                "train_loss")
    # in the order logged (MLflow sorts the history by timestamp): every epoch exactly once,
    # none lost to the kill and none logged again by the resumed run
    assert [m.step for m in history] == list(range(1, epochs + 1))
