"""The comparison behind compare_segmenters: the U-Net, the torchvision model, K-means and
DBSCAN side by side on the same test split (imported only when it runs: torch for the U-Net's predictions).

Every row is scored by the same code (segen.engines.label_map_scores) on the same images,
streamed a batch at a time: the networks' labels are class ids already, the clusters are
named by Hungarian matching. Pixels whose mask holds IGNORE_INDEX (an ignored class,
padding) are out of every score. seconds_per_image is prediction alone (fitting and
training are the train stages' business; a per_image segmenter's fits are part of its
prediction).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from segen.config import ClusterEvaluateParams, EvaluateParams
from segen.data.arrays import dataset_meta, split_batches
from segen.engines.label_map_scores import LabelMapScores
from segen.hashing import hash_json
from segen.pipeline.graph import CLUSTERING_KINDS, SUPERVISED_KINDS
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.registry.registration import lineage_tags
from segen.tracking import start_run

COLUMNS = ("mean_iou", "pixel_accuracy", "ari", "silhouette", "seconds_per_image")


def supervised_row(preprocess: StageResult, trained: StageResult, evaluate: EvaluateParams,
                   params: ClusterEvaluateParams) -> dict[str, Any]:
    """A trained network's scores on the test split, predicted (and timed) here on the
    preprocessed canvases, the network's own input."""
    import torch

    from segen.serving.device import pick_device
    from segen.serving.unet import load_segmenter, predict_canvas

    device = pick_device()
    model, config = load_segmenter(Path(trained.path), device)
    scorer = LabelMapScores(len(config["classes"]), params, "classes")

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_canvas(model, torch.from_numpy(batch), config, device).cpu().numpy()

    seconds, n_images, warm = 0.0, 0, False
    for _, images, masks in split_batches(preprocess, "test", evaluate.batch_size):
        if not warm:
            predict(images)  # warm-up, out of the timing
            warm = True
        start = time.perf_counter()
        pred = predict(images)
        seconds += time.perf_counter() - start
        scorer.add(pred, masks, images)
        n_images += len(images)
    scores, _, _ = scorer.result()
    return {**{k: scores[k] for k in COLUMNS if k in scores},
            "seconds_per_image": seconds / max(n_images, 1), "matching": "classes",
            "arch": config.get("arch", "unet")}


def clustering_row(evaluation: StageResult) -> dict[str, Any]:
    """A clustering segmenter's scores, as its evaluate stage measured them."""
    root = Path(evaluation.path)
    metrics = json.loads((root / "metrics.json").read_text())
    metrics.update(json.loads((root / "timing.json").read_text()))
    return {**{k: metrics.get(k) for k in COLUMNS},
            "matching": f"hungarian per {metrics['matching']}"}


def compare(project: Project, upstream: dict[str, StageResult], evaluate: EvaluateParams,
            params: ClusterEvaluateParams, out: Path) -> dict[str, Any]:
    """comparison.json and comparison.md, logged to MLflow as one run's artifacts."""
    import mlflow

    rows = []
    for model in (*SUPERVISED_KINDS, *CLUSTERING_KINDS):
        if f"register_{model}" not in upstream:
            continue  # switched off in params.yaml (StageSpec.optional)
        if model in SUPERVISED_KINDS:
            row = supervised_row(upstream["preprocess"], upstream[f"train_{model}"], evaluate,
                                 params)
        else:
            row = clustering_row(upstream[f"evaluate_{model}"])
        registered = upstream[f"register_{model}"].info
        rows.append({"model": model, "registered": f"{registered['model_name']} "
                     f"v{registered['version']}", **row})
    meta = dataset_meta(upstream["preprocess"])
    report = {"data_version": meta["data_version"], "split": "test",
              "n_test_images": upstream["preprocess"].info["test"], "rows": rows}
    (out / "comparison.json").write_text(json.dumps(report, indent=1).replace("NaN", "null"))
    (out / "comparison.md").write_text(format_table(rows) + "\n")
    params_used = {"evaluate": asdict(evaluate), "cluster_evaluate": asdict(params)}
    tags = lineage_tags(project, upstream, hash_json(params_used))
    with start_run(project, "compare_segmenters",
                   tags=tags | {"segen.stage": "compare_segmenters"}) as run:
        mlflow.log_metrics({f"{r['model']}.{k}": r[k] for r in rows for k in COLUMNS
                            if isinstance(r.get(k), float) and np.isfinite(r[k])})
        mlflow.log_artifacts(str(out), artifact_path="comparison")
    return {"comparison": rows, "mlflow_run_id": run.info.run_id}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one row per model, the COLUMNS side by side."""
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    header = ["model", "registered", *COLUMNS, "matching"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(r.get(h)) for h in header) + " |" for r in rows]
    return "\n".join(lines)
