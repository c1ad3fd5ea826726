"""K-means and DBSCAN in the real flow on tiny params: run, cache, rerun, register, compare."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, statuses, write_params

pytestmark = pytest.mark.slow
CLUSTER_STAGES = ["train_kmeans", "evaluate_kmeans", "register_kmeans", "train_dbscan",
                  "evaluate_dbscan", "register_dbscan", "compare_segmenters"]


def _ran(summary: dict) -> set[str]:
    return {name for name, status in statuses(summary).items() if status == "ran"}


def _client(project: Path):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / '.segen' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _check_grid(path: str) -> None:
    """Rows of test image | truth | clusters, 2 px of white between tiles (segen.serving.grid):
    cluster_evaluate.grid_images (TINY: 4) rows of 32 x 32 tiles, three to a row."""
    from PIL import Image

    rows, step = TINY["cluster_evaluate"]["grid_images"], TINY["preprocess"]["image_size"] + 2
    grid = Image.open(path)
    assert (grid.mode, grid.size) == ("RGB", (3 * step + 2, rows * step + 2))
    tiles = np.asarray(grid)
    for column in range(3):  # image, truth, prediction: none of them blank
        tile = tiles[2:step, 2 + column * step:column * step + step]
        assert np.ptp(tile) > 0, f"tile {column} of the first row is constant"


def test_clustering_stages_run_cache_register_and_compare(tiny_project: Path, run_pipeline
                                                          ) -> None:
    import mlflow

    first = run_pipeline(tiny_project)
    names = [s["name"] for s in first["stages"]]  # later stages may follow (synthetic pairs)
    assert [n for n in names if n in CLUSTER_STAGES] == CLUSTER_STAGES
    assert _ran(first) >= set(CLUSTER_STAGES)
    models = {m["name"]: m for m in first["models"]}
    for name in ("test-kmeans", "test-dbscan"):
        assert models[name]["version"] == 1 and models[name]["champion"]
        metrics = models[name]["metrics"]
        assert 0.0 <= metrics["mean_iou"] <= 1.0 and -1.0 <= metrics["ari"] <= 1.0
        assert -1.0 <= metrics["silhouette"] <= 1.0 and metrics["seconds_per_image"] > 0
    assert "inertia_per_pixel" in models["test-kmeans"]["metrics"]
    assert "noise_fraction" in models["test-dbscan"]["metrics"]
    rows = {r["model"]: r for r in first["comparison"]}
    assert list(rows) == ["unet", "torchvision", "kmeans", "dbscan"]
    for row in rows.values():
        assert 0.0 <= row["mean_iou"] <= 1.0 and row["seconds_per_image"] > 0
    for kind in ("unet", "torchvision"):  # the comparison scores what evaluate_<kind> scored
        registered = models[f"test-{kind}"]
        assert rows[kind]["mean_iou"] == pytest.approx(registered["metrics"]["mean_iou"])
        assert rows[kind]["registered"] == f"test-{kind} v{registered['version']}"
    assert rows["torchvision"]["arch"] == "lraspp_mobilenet_v3_large"

    # registered with the U-Net's lineage, loadable and callable
    client = _client(tiny_project)
    keys = {s["name"]: s["key"] for s in first["stages"]}
    version = client.get_model_version("test-kmeans", "1")
    assert version.tags["segen.data_version"] == first["data_version"]
    assert version.tags["segen.key.train_kmeans"] == keys["train_kmeans"]
    assert len(version.tags["segen.params_hash"]) == 64
    run = client.get_run(version.run_id)
    assert run.data.params["kmeans.n_clusters"] == "4" and "ari" in run.data.metrics
    (dataset_input,) = run.inputs.dataset_inputs
    assert {t.key: t.value for t in dataset_input.tags}["dvc_md5"] == first["data_version"]
    _check_grid(client.download_artifacts(version.run_id, "evaluation/grid.png",
                                          str(tiny_project.parent)))
    compare_run = client.get_run(
        _stage_info(tiny_project, "compare_segmenters")["mlflow_run_id"])
    assert "kmeans.ari" in compare_run.data.metrics
    assert "comparison/comparison.md" in {
        a.path for a in client.list_artifacts(compare_run.info.run_id, "comparison")}
    images = np.load(tiny_project / ".segen/store/preprocess" / keys["preprocess"] /
                     "images.npy")[:3]
    for name in ("test-kmeans", "test-dbscan"):
        labels = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(images)
        assert labels.shape == (3, 32, 32) and labels.dtype == np.int32

    second = run_pipeline(tiny_project)
    assert _ran(second) == set() and "failed" not in statuses(second).values()
    assert second["comparison"] == first["comparison"]

    write_params(tiny_project, {"kmeans": {"n_clusters": 3}})
    assert _ran(run_pipeline(tiny_project)) == {"train_kmeans", "evaluate_kmeans",
                                                "register_kmeans", "compare_segmenters"}
    write_params(tiny_project, {"cluster_evaluate": {"grid_images": 3}})
    assert _ran(run_pipeline(tiny_project)) == {"evaluate_kmeans", "evaluate_dbscan",
                                                "register_kmeans", "register_dbscan",
                                                "compare_segmenters"}

    # a lost fitted segmenter is refitted; same seed, same segmenter: downstream hits
    train_key = {s["name"]: s["key"] for s in second["stages"]}["train_dbscan"]
    shutil.rmtree(tiny_project / ".segen/store/train_dbscan" / train_key)
    again = run_pipeline(tiny_project)
    assert _ran(again) == {"train_dbscan"}
    assert len(client.search_model_versions("name='test-dbscan'")) == 2

    # the torchvision segmenter switched off: its stages are skipped and named so, and the
    # comparison goes on without it, its other rows unchanged
    write_params(tiny_project, {"torchvision": {"enabled": False}})
    off = run_pipeline(tiny_project)
    reasons = {s["name"]: s.get("reason") for s in off["stages"]}
    assert reasons["train_torchvision"] == "torchvision.enabled is false in params.yaml"
    for step in ("evaluate", "register"):  # each names the upstream stage that did not run
        assert reasons[f"{step}_torchvision"] == "train_torchvision skipped"
    assert {statuses(off)[f"{step}_torchvision"] for step in ("train", "evaluate",
                                                               "register")} == {"skipped"}
    assert statuses(off)["compare_segmenters"] == "ran"
    rows_off = {r["model"]: r for r in off["comparison"]}
    assert list(rows_off) == ["unet", "kmeans", "dbscan"]
    assert rows_off["unet"]["mean_iou"] == rows["unet"]["mean_iou"]
    # `segen stage` (what dvc.yaml calls) leaves out the switched-off stage's old pointer too
    from flows.pipeline import single_stage

    alone = single_stage(str(tiny_project), str(tiny_project / "params.yaml"),
                         "compare_segmenters")
    assert statuses(alone) == {"compare_segmenters": "cached"}
    assert [r["model"] for r in alone["comparison"]] == ["unet", "kmeans", "dbscan"]


def _stage_info(project: Path, name: str) -> dict:
    import json

    return json.loads((project / ".segen/stages" / f"{name}.json").read_text())["info"]
