"""register_unet: one MLflow run with params, metrics, artifacts, dataset input and the
pyfunc model; a registered model version tagged with its lineage."""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

from segen.config import RegisterParams
from segen.hashing import hash_json
from segen.project import Project
from segen.store import StageResult
from segen.tracking import client, code_root, git_revision, start_run
from tasks.caching import StageOutput, stage_task


def model_version_exists(project: Project, result: StageResult) -> bool:
    """A stored registration holds only while the registry still has that version."""
    name, version = result.info["model_name"], str(result.info["version"])
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith("sqlite:///"):
        # Embedded store: one SQL lookup instead of importing mlflow (~2 s), which a fully
        # cached run would otherwise pay just for this check.
        return _sqlite_has_version(Path(uri.removeprefix("sqlite:///")), name, version)
    from mlflow.exceptions import MlflowException

    try:
        client().get_model_version(name, version)
    except MlflowException:
        return False
    return True


def _sqlite_has_version(db: Path, name: str, version: str) -> bool:
    """MLflow's model_versions table (name, version): its schema since MLflow 1.x."""
    if not db.is_file():
        return False
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
                           (name, int(version))).fetchone()
    return row is not None


def lineage_tags(project: Project, upstream: dict[str, StageResult], params_hash: str
                 ) -> dict[str, str]:
    data = upstream["version_data"].info["data_version"]
    tags = {"segen.data_version": data, "segen.code_revision": git_revision(code_root()),
            "segen.project_revision": git_revision(project.root),
            "segen.params_hash": params_hash}
    tags.update({f"segen.key.{name}": r.key for name, r in upstream.items()})
    return tags


def _log_dataset(project: Project, data_version: str) -> None:
    import mlflow
    import pandas as pd

    manifest = pd.read_csv(project.data / "manifest.csv")
    dataset = mlflow.data.from_pandas(manifest, source=str(project.data),
                                      name=f"segen-data-{data_version[:8]}")
    mlflow.log_input(dataset, context="training", tags={"dvc_md5": data_version})


@stage_task("register_unet", still_valid=model_version_exists)
def register_unet(project: Project, version_data: StageResult, preprocess: StageResult,
                  train_unet: StageResult, evaluate_unet: StageResult,
                  register: RegisterParams, out: Path, key: str) -> StageOutput:
    """Register a new version; the champion alias goes to the first version only."""
    import mlflow

    upstream = {"version_data": version_data, "preprocess": preprocess,
                "train_unet": train_unet, "evaluate_unet": evaluate_unet}
    metrics = evaluate_unet.info["metrics"]
    params = {section: values for r in upstream.values()
              for section, values in r.info["params"].items()} | {"register": asdict(register)}
    tags = lineage_tags(project, upstream, hash_json(params))
    with start_run(project, "register_unet", tags=tags | {"segen.stage": "register_unet"}) as run:
        mlflow.log_params({f"{section}.{k}": v for section, values in params.items()
                           for k, v in values.items()})
        mlflow.log_params({"data_version": version_data.info["data_version"],
                           "train_run_id": train_unet.info["mlflow_run_id"],
                           **{f"split.{k}": preprocess.info[k] for k in ("train", "val", "test")}})
        mlflow.log_dict(params, "params.json")
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(evaluate_unet.path, artifact_path="evaluation")
        _log_dataset(project, version_data.info["data_version"])
        info = _log_model(Path(train_unet.path), register.model_name)
    registry = client()
    version = str(info.registered_model_version)
    for name, value in tags.items():
        registry.set_model_version_tag(register.model_name, version, name, value)
    champion = _claim_first_champion(registry, register)
    summary = {"model_name": register.model_name, "version": int(version),
               "run_id": run.info.run_id, "metrics": metrics,
               "champion": champion == version}
    (out / "registration.json").write_text(json.dumps(summary, indent=1))
    return StageOutput(summary)


def _log_model(model_dir: Path, name: str):  # noqa: ANN202
    from segen.pyfunc import log_segmentation_model

    return log_segmentation_model(model_dir, name)


def _claim_first_champion(client, register: RegisterParams) -> str:  # noqa: ANN001
    """Give the alias to the first version only; promotion gates move it later."""
    model = client.get_registered_model(register.model_name)
    if register.champion_alias not in (model.aliases or {}):
        versions = client.search_model_versions(f"name='{register.model_name}'")
        first = str(min(int(v.version) for v in versions))
        client.set_registered_model_alias(register.model_name, register.champion_alias, first)
    return str(client.get_registered_model(register.model_name).aliases[register.champion_alias])
