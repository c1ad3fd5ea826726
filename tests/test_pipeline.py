"""The whole flow end to end on tiny params, with real Prefect, DVC and MLflow."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import UNET, statuses

pytestmark = pytest.mark.slow
STAGE_NAMES = ["version_data", "validate", "preprocess", "train_unet", "evaluate_unet",
               "register_unet"]


def _mlflow_client(project: Path):
    """A client on the project's store; also points mlflow's own URI there (for
    load_model), which every pipeline run resets to its own project."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / '.segen' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_cold_run_then_fully_cached(tiny_project: Path, run_pipeline) -> None:
    first = run_pipeline(tiny_project, UNET)
    assert [s["name"] for s in first["stages"]] == STAGE_NAMES
    assert set(statuses(first).values()) == {"ran"}
    assert first["data_source"] == "generated"
    recorded = yaml.safe_load((tiny_project / "data.dvc").read_text())["outs"][0]["md5"]
    assert first["data_version"] == recorded and recorded.endswith(".dir")
    (model,) = first["models"]
    assert model["version"] == 1 and model["champion"]
    assert 0.0 <= model["metrics"]["mean_iou"] <= 1.0

    second = run_pipeline(tiny_project, UNET)
    assert set(statuses(second).values()) == {"cached"}
    assert [s["key"] for s in second["stages"]] == [s["key"] for s in first["stages"]]
    assert second["models"][0]["version"] == 1
    client = _mlflow_client(tiny_project)
    assert len(client.search_model_versions("name='test-unet'")) == 1  # nothing re-registered


def test_registered_model_lineage_and_pyfunc(tiny_project: Path, run_pipeline) -> None:
    import mlflow

    summary = run_pipeline(tiny_project, UNET)
    client = _mlflow_client(tiny_project)
    version = client.get_model_version("test-unet", "1")
    keys = {s["name"]: s["key"] for s in summary["stages"]}
    assert version.tags["segen.data_version"] == summary["data_version"]
    assert version.tags["segen.key.train_unet"] == keys["train_unet"]
    assert len(version.tags["segen.params_hash"]) == 64
    assert version.tags["segen.code_revision"]
    assert str(client.get_registered_model("test-unet").aliases["champion"]) == "1"
    run = client.get_run(version.run_id)
    assert run.data.params["unet.depth"] == "2"
    assert "mean_iou" in run.data.metrics
    (dataset_input,) = run.inputs.dataset_inputs
    assert {t.key: t.value for t in dataset_input.tags}["dvc_md5"] == summary["data_version"]
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert "evaluation/grid.png" in artifacts

    model = mlflow.pyfunc.load_model("models:/test-unet@champion")
    images = np.load(Path(tiny_project / ".segen/stages").parent / "store" / "preprocess" /
                     keys["preprocess"] / "images.npy")[:3]
    masks = model.predict(images)
    assert masks.shape == (3, 32, 32) and masks.dtype == np.uint8
    assert masks.max() < 5
    assert model.predict(images[0]).shape == (1, 32, 32)  # one image alone
    with pytest.raises(ValueError, match="expected images of shape"):
        model.predict(images[..., :2])


def test_training_logged_per_epoch(tiny_project: Path, run_pipeline) -> None:
    summary = run_pipeline(tiny_project, UNET)
    pointer = json.loads((tiny_project / ".segen/stages/train_unet.json").read_text())
    client = _mlflow_client(tiny_project)
    history = client.get_metric_history(pointer["info"]["mlflow_run_id"], "val_mean_iou")
    assert [m.step for m in history] == [1, 2]
    assert summary["stages"][3]["key"] == pointer["key"]
