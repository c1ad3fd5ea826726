"""Registration behind register_kmeans / register_dbscan: the same MLflow run, dataset
input and lineage tags as register_unet (its helpers), with the clustering pyfunc."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segen.config import RegisterParams
from segen.hashing import hash_json
from segen.project import Project
from segen.store import StageResult
from segen.tracking import client, start_run
from tasks.register_unet import _claim_first_champion, _log_dataset, lineage_tags


def register(project: Project, stage: str, upstream: dict[str, StageResult],
             register_params: RegisterParams, out: Path) -> dict[str, Any]:
    """Log params, metrics, evaluation artifacts, dataset and pyfunc; register a version.

    upstream: version_data, preprocess, train_<kind>, evaluate_<kind> results.
    """
    import mlflow

    from segen.cluster_pyfunc import log_cluster_model

    kind = stage.removeprefix("register_")
    train, evaluation = upstream[f"train_{kind}"], upstream[f"evaluate_{kind}"]
    metrics = evaluation.info["metrics"]
    params = {section: values for r in upstream.values()
              for section, values in r.info["params"].items()} | {stage: asdict(register_params)}
    tags = lineage_tags(project, upstream, hash_json(params))
    data_version = upstream["version_data"].info["data_version"]
    with start_run(project, stage, tags=tags | {"segen.stage": stage}) as run:
        mlflow.log_params({f"{section}.{k}": v for section, values in params.items()
                           for k, v in values.items()})
        mlflow.log_params({"data_version": data_version, **{
            f"split.{k}": upstream["preprocess"].info[k] for k in ("train", "val", "test")}})
        mlflow.log_dict(params, "params.json")
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(evaluation.path, artifact_path="evaluation")
        _log_dataset(project, data_version)
        info = log_cluster_model(Path(train.path), register_params.model_name)
    registry = client()
    version = str(info.registered_model_version)
    for name, value in tags.items():
        registry.set_model_version_tag(register_params.model_name, version, name, value)
    champion = _claim_first_champion(registry, register_params)
    summary = {"model_name": register_params.model_name, "version": int(version),
               "run_id": run.info.run_id, "metrics": metrics, "champion": champion == version}
    (out / "registration.json").write_text(json.dumps(summary, indent=1))
    return summary
