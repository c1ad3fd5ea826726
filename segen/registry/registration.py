"""The one registration routine behind every register_<model> stage (U-Net, clustering,
generative): an MLflow run with params, metrics, evaluation artifacts and the dataset
input; the model logged through a function the caller passes; a registered version tagged
with its lineage; the champion alias claimed by the first version only (promotion gates
move it later).

A server may die at any step, so the steps are ordered for that: the model is logged in
full (its LoggedModel READY, its MLmodel listed) before a version exists; the version is
created with its lineage tags in one request; only then may the champion alias be claimed.
A failure part way leaves at worst an unregistered run and a logged model no version points
at. A version whose model was never fully logged (by an older segen, or by hand) is deleted
by the next registration of that model, unless an alias holds it.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from segen.config import RegisterParams
from segen.faults import failpoint
from segen.hashing import hash_json
from segen.pipeline.store import StageResult, write_atomic
from segen.project import Project
from segen.redact import redacted
from segen.registry.promotion.history import record_alias_move
from segen.tracking import client, code_root, git_revision, start_run

log = logging.getLogger("segen.registry")

# (trained model folder, registered model name) -> mlflow ModelInfo of the logged model.
# register() passes None for the name: it logs only, and register() creates the version.
LogModel = Callable[[Path, str | None], Any]


@dataclass(frozen=True)
class Registration:
    """What one register stage registers: which upstream results hold the trained model and
    its evaluation, under which params section, logged by which function."""
    stage: str  # e.g. register_unet
    section: str  # params.yaml section of the RegisterParams (register, register_kmeans, ...)
    train: str  # upstream stage whose folder holds the trained model
    evaluation: str  # upstream stage whose info holds "metrics" and whose folder is logged
    log_model: LogModel
    extra_tags: dict[str, str] = field(default_factory=dict)  # beyond the lineage tags


def register_trained(project: Project, stage: str, section: str, log_model: LogModel,
                     upstream: dict[str, StageResult], params: RegisterParams, out: Path
                     ) -> dict[str, Any]:
    """The register_<kind> stage of a trained segmenter: upstream holds version_data,
    preprocess, train_<kind> and evaluate_<kind>; params is its register section."""
    kind = stage.removeprefix("register_")
    what = Registration(stage=stage, section=section, train=f"train_{kind}",
                        evaluation=f"evaluate_{kind}", log_model=log_model)
    return register(project, what, {k: upstream[k] for k in (
        "version_data", "preprocess", what.train, what.evaluation)}, params, params, out)


def model_version_exists(project: Project, result: StageResult) -> bool:
    """A stored registration holds only while the registry still has that version.

    Asked through MLflow's client. With the embedded SQLite store a yes is remembered
    against the database file's (mtime, size): while the file is unchanged the answer
    cannot have changed, and a fully cached run need not import mlflow (~2 s) to know it.
    """
    name, version = result.info["model_name"], str(result.info["version"])
    uri = os.environ["MLFLOW_TRACKING_URI"]
    stamp = _store_stamp(uri)
    memo = _read_memo(project, uri, stamp)
    if f"{name}/{version}" in memo:
        return True
    from mlflow.exceptions import MlflowException

    try:
        client().get_model_version(name, version)
    except MlflowException:
        return False
    if stamp is not None:
        _write_memo(project, uri, stamp, memo | {f"{name}/{version}"})
    return True


def remember_versions(project: Project, versions: list[tuple[str, str]]) -> None:
    """After a run has written the registry: check its versions once, so the next run's
    validity checks are answered from the memo while the store file stays as it is now."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if _store_stamp(uri) is None or not versions:
        return
    from mlflow.exceptions import MlflowException

    known = set()
    for name, version in versions:
        try:
            client().get_model_version(name, version)
        except MlflowException:
            continue
        known.add(f"{name}/{version}")
    stamp = _store_stamp(uri)
    if stamp is not None:
        _write_memo(project, uri, stamp, known)


def _store_stamp(uri: str) -> list[int] | None:
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is None or not db.is_file():
        return None
    stat = db.stat()
    return [stat.st_mtime_ns, stat.st_size]


def _memo_path(project: Project) -> Path:
    return project.state / "registry-checks.json"


def _read_memo(project: Project, uri: str, stamp: list[int] | None) -> set[str]:
    path = _memo_path(project)
    if stamp is None or not path.is_file():
        return set()
    try:
        memo = json.loads(path.read_text())
    except ValueError:  # a torn or foreign file: ask the registry again
        return set()
    if memo.get("store") != uri or memo.get("stamp") != stamp:
        return set()
    return set(memo.get("versions", []))


def _write_memo(project: Project, uri: str, stamp: list[int], versions: set[str]) -> None:
    record = {"store": uri, "stamp": stamp, "versions": sorted(versions)}
    write_atomic(_memo_path(project), json.dumps(record))


def lineage_tags(project: Project, upstream: dict[str, StageResult], params_hash: str
                 ) -> dict[str, str]:
    """Data version, code and project revisions, params hash and every upstream stage key."""
    data = upstream["version_data"].info["data_version"]
    tags = {"segen.data_version": data, "segen.code_revision": git_revision(code_root()),
            "segen.project_revision": git_revision(project.root),
            "segen.params_hash": params_hash}
    tags.update({f"segen.key.{name}": r.key for name, r in upstream.items()})
    return tags


def log_dataset(project: Project, data_version: str) -> None:
    """The manifest as the run's training input; the full DVC md5 in its tags (MLflow's own
    dataset digest keeps only 8 hex characters)."""
    import mlflow
    import pandas as pd

    manifest = pd.read_csv(project.data / "manifest.csv")
    dataset = mlflow.data.from_pandas(manifest, source=str(project.data),
                                      name=f"segen-data-{data_version[:8]}")
    mlflow.log_input(dataset, context="training", tags={"dvc_md5": data_version})


def register(project: Project, what: Registration, upstream: dict[str, StageResult],
             section: Any, target: RegisterParams, out: Path) -> dict[str, Any]:
    """Log and register one model version; writes out/registration.json and returns it.

    upstream: version_data, preprocess, what.train, what.evaluation (and any other stage
    whose key belongs in the lineage). section: the stage's own params section (recorded);
    target: the registered model name and champion alias it resolves to.
    """
    import mlflow

    train, evaluation = upstream[what.train], upstream[what.evaluation]
    metrics = _loggable(evaluation.info["metrics"])
    params = {name: values for r in upstream.values()
              for name, values in r.info["params"].items()} | {what.section: asdict(section)}
    tags = redacted(lineage_tags(project, upstream, hash_json(params)) | what.extra_tags)
    shown = redacted(params)  # what MLflow records: no credentials (e.g. in data.remote)
    data_version = upstream["version_data"].info["data_version"]
    with start_run(project, what.stage, tags=tags | {"segen.stage": what.stage}) as run:
        mlflow.log_params({f"{name}.{k}": v for name, values in shown.items()
                           for k, v in values.items()})
        run_params = {"data_version": data_version, **{
            f"split.{k}": upstream["preprocess"].info[k] for k in ("train", "val", "test")}}
        if "mlflow_run_id" in train.info:
            run_params["train_run_id"] = train.info["mlflow_run_id"]
        mlflow.log_params(run_params)
        mlflow.log_dict(shown, "params.json")
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(evaluation.path, artifact_path="evaluation")
        log_dataset(project, data_version)
        failpoint("register.run")
        info = what.log_model(Path(train.path), None)
    registry = client()
    discard_unfinished_versions(registry, target.model_name)
    version = create_version(registry, target.model_name, info, run.info.run_id, tags)
    failpoint("register.version")
    champion = claim_first_champion(registry, target)
    summary = {"model_name": target.model_name, "version": int(version),
               "run_id": run.info.run_id, "metrics": metrics, "champion": champion == version}
    (out / "registration.json").write_text(json.dumps(summary, indent=1))
    return summary


def create_version(registry: Any, name: str, info: Any, run_id: str, tags: dict[str, str]
                   ) -> str:
    """A new version of name for the logged model info, with its tags in the same request
    (so no version is ever without its lineage); refused unless the model is fully logged."""
    from mlflow.exceptions import MlflowException

    _check_fully_logged(registry, info)
    try:
        registry.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return str(registry.create_model_version(name, source=info.model_uri, run_id=run_id,
                                             tags=tags, model_id=info.model_id).version)


def _check_fully_logged(registry: Any, info: Any) -> None:
    from mlflow.entities import LoggedModelStatus

    model = registry.get_logged_model(info.model_id)
    files = {Path(f.path).name for f in registry.list_logged_model_artifacts(info.model_id)}
    if model.status != LoggedModelStatus.READY or "MLmodel" not in files:
        raise RuntimeError(f"logged model {info.model_id} is {model.status} with files "
                           f"{sorted(files)}: not registering a model without its files")


def discard_unfinished_versions(registry: Any, name: str) -> list[str]:
    """Delete the versions of name whose logged model never became READY (a registration
    cut short before segen ordered its steps, or one made by hand); a version an alias
    holds is only reported. Returns the deleted versions."""
    if not registry.search_registered_models(filter_string=f"name='{name}'"):
        return []
    held = {str(v) for v in (registry.get_registered_model(name).aliases or {}).values()}
    deleted = []
    for version in registry.search_model_versions(f"name='{name}'"):
        if not _never_fully_logged(registry, version):
            continue
        if str(version.version) in held:
            log.warning("%s version %s has no fully logged model but an alias holds it; "
                        "move the alias, then rerun to delete it", name, version.version)
            continue
        log.warning("deleting %s version %s: its model was never fully logged", name,
                    version.version)
        registry.delete_model_version(name, str(version.version))
        deleted.append(str(version.version))
    return deleted


def _never_fully_logged(registry: Any, version: Any) -> bool:
    """Whether the version's logged model is there but not READY (PENDING: cut short;
    FAILED). A version from before MLflow 3 (no model id), or whose logged model cannot be
    read, is left alone: deleting needs certainty."""
    from mlflow.entities import LoggedModelStatus
    from mlflow.exceptions import MlflowException

    model_id = _logged_model_id(version)
    if model_id is None:
        return False
    try:
        return registry.get_logged_model(model_id).status != LoggedModelStatus.READY
    except MlflowException:
        return False


def _logged_model_id(version: Any) -> str | None:
    """The logged model behind a version: its model_id, which MLflow's stores do not always
    fill in, else read from a source of the form models:/<model id>."""
    if getattr(version, "model_id", None):
        return version.model_id
    rest = (version.source or "").removeprefix("models:/")
    return rest if rest != version.source and rest and "/" not in rest else None


def _loggable(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric metrics (an evaluation may also report lists, names or NaN)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def claim_first_champion(registry: Any, register_params: RegisterParams) -> str:
    """Give the alias to the first version only; promotion gates move it later. Returns the
    version the alias points at."""
    name, alias = register_params.model_name, register_params.champion_alias
    model = registry.get_registered_model(name)
    if alias not in (model.aliases or {}):
        versions = registry.search_model_versions(f"name='{name}'")
        first = str(min(int(v.version) for v in versions))
        record_alias_move(name, alias=alias, previous=None, new=int(first), action="register",
                          decision="first", reason="first registered version",
                          candidate=int(first), registry=registry, move=True)  # history starts
    return str(registry.get_registered_model(name).aliases[alias])
