"""Lineage queries, both ways, through MLflow's API (so the embedded SQLite store and an
`mlflow server` answer alike) plus data.dvc's git history and DVC's listings.

Every registered version carries the lineage tags of tasks/registration.lineage_tags
(segen.data_version, segen.code_revision, segen.project_revision, segen.params_hash,
segen.key.<stage>), whatever the model family; runs carry segen.data_version and
segen.stage. Tracking must be configured first (segen.tracking.configure_tracking).
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from segen.project import Project
from segen.registry.lineage.listings import file_md5, load_listings
from segen.registry.lineage.revisions import data_history, revisions_of, working_version
from segen.serving.predict import parse_model_spec
from segen.tracking import client

DATA_TAG = "segen.data_version"
KEY_PREFIX = "segen.key."
# "name/version" of the generator that made synthetic training pairs: on a registered
# version, or on its training run (tasks/train_unet_synthetic.py writes the second name).
GENERATOR_TAGS = ("segen.synthetic_generator", "segen.synthetic.generator")


def _pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paged MLflow search (fetch(page_token) -> PagedList)."""
    items, token = [], None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _when(millis: int | None) -> str | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="seconds")


class Registry:
    """One MlflowClient and the registered models' aliases, read once per query."""

    def __init__(self) -> None:
        self.client = client()
        self._aliases: dict[str, dict[str, list[str]]] = {}

    def aliases(self, name: str, version: str) -> list[str]:
        if name not in self._aliases:
            by_version: dict[str, list[str]] = {}
            for alias, v in (self.client.get_registered_model(name).aliases or {}).items():
                by_version.setdefault(str(v), []).append(alias)
            self._aliases[name] = by_version
        return sorted(self._aliases[name].get(str(version), []))

    def model_versions(self, filter_string: str = "") -> list[Any]:
        return _pages(lambda token: self.client.search_model_versions(
            filter_string or None, page_token=token))

    def runs(self, filter_string: str = "") -> list[Any]:
        ids = [e.experiment_id for e in _pages(
            lambda token: self.client.search_experiments(page_token=token))]
        if not ids:
            return []
        return _pages(lambda token: self.client.search_runs(
            ids, filter_string, order_by=["attributes.start_time ASC"], page_token=token))

    def version_record(self, mv: Any) -> dict[str, Any]:
        tags = mv.tags or {}
        return {"name": mv.name, "version": int(mv.version),
                "aliases": self.aliases(mv.name, mv.version), "run_id": mv.run_id,
                "data_version": tags.get(DATA_TAG), "created": _when(mv.creation_timestamp),
                "synthetic_generator": generator_of(tags)}


def generator_of(tags: dict[str, str]) -> str | None:
    return next((tags[t] for t in GENERATOR_TAGS if tags.get(t)), None)


def run_record(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    return {"run_id": run.info.run_id, "run_name": run.info.run_name,
            "stage": tags.get("segen.stage"), "experiment_id": run.info.experiment_id,
            "status": run.info.status, "started": _when(run.info.start_time),
            "data_version": tags.get(DATA_TAG), "synthetic_generator": generator_of(tags)}


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r}: a quote cannot appear in a data version or model name")
    return value


def find_version(registry: Registry, spec: str) -> Any:
    """NAME@ALIAS, NAME/VERSION or NAME (its latest version) -> an MLflow ModelVersion."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_spec(spec)
    try:
        if alias:
            return registry.client.get_model_version_by_alias(name, alias)
        if version:
            return registry.client.get_model_version(name, version)
        versions = registry.model_versions(f"name='{_quote(name)}'")
    except MlflowException as err:
        raise ValueError(f"{spec}: {str(err).splitlines()[0]} ({_known_models(registry)})"
                         ) from err
    if not versions:
        raise ValueError(f"{spec}: no registered model of that name ({_known_models(registry)})")
    return max(versions, key=lambda v: int(v.version))


def _known_models(registry: Registry) -> str:
    names = sorted({m.name for m in _pages(lambda token: registry.client
                                           .search_registered_models(page_token=token))})
    return (f"registered models: {', '.join(names)}" if names else "no model is registered "
            "in this tracking store yet: run `segen run` first")


def _run_params(registry: Registry, run: Any) -> dict[str, Any]:
    """The params the registration logged as params.json (per params.yaml section), else
    the run's flat params."""
    from mlflow.exceptions import MlflowException

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar in a query's output
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = registry.client.download_artifacts(run.info.run_id, "params.json", tmp)
            return json.loads(Path(path).read_text())
        except (MlflowException, OSError, ValueError):
            return dict(run.data.params)


def _run_or_none(registry: Registry, run_id: str | None) -> Any:
    """The run a version came from; None when it was deleted (the version's tags remain)."""
    from mlflow.exceptions import MlflowException

    try:
        return registry.client.get_run(run_id) if run_id else None
    except MlflowException:
        return None


def _run_generator(registry: Registry, run: Any) -> str | None:
    """The generator named by the registration run or by the training run it logged."""
    train = _run_or_none(registry, run.data.params.get("train_run_id"))
    return generator_of(run.data.tags) or (train and generator_of(train.data.tags))


def model_lineage(project: Project, spec: str) -> dict[str, Any]:
    """What made one model version: data (and the commits recording it), code, params, run,
    upstream stage keys, and the generator of synthetic training data."""
    registry = Registry()
    mv = find_version(registry, spec)
    tags = mv.tags or {}
    run = _run_or_none(registry, mv.run_id)
    data_version = tags.get(DATA_TAG) or (run and run.data.tags.get(DATA_TAG))
    generator = generator_of(tags) or (run and _run_generator(registry, run))
    return {
        "model": registry.version_record(mv) | {"source": mv.source},
        "data_version": data_version,
        "data_revisions": [r.as_dict() for r in revisions_of(project, data_version)]
        if data_version else [],
        "code_revision": tags.get("segen.code_revision"),
        "project_revision": tags.get("segen.project_revision"),
        "params_hash": tags.get("segen.params_hash"),
        "params": _run_params(registry, run) if run else {},
        "run": run_record(run) | {"metrics": dict(run.data.metrics)} if run else None,
        "upstream_keys": {k.removeprefix(KEY_PREFIX): v for k, v in sorted(tags.items())
                          if k.startswith(KEY_PREFIX)},
        "synthetic_generator": generator,
    }


def data_lineage(project: Project, data_version: str, rev: str | None = None
                 ) -> dict[str, Any]:
    """Every run and model version trained or evaluated on data_version."""
    registry = Registry()
    where = f"tags.`{DATA_TAG}` = '{_quote(data_version)}'"
    runs = [run_record(r) for r in registry.runs(where)]
    versions = [registry.version_record(v) for v in registry.model_versions(where)]
    return {"data_version": data_version, "resolved_from": rev,
            "data_revisions": [r.as_dict() for r in revisions_of(project, data_version)],
            "runs": runs, "model_versions": _sorted_versions(versions)}


def _sorted_versions(versions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(versions, key=lambda v: (v["name"], v["version"]))


def known_data_versions(project: Project, registry: Registry) -> dict[str, list[str]]:
    """Every data version segen knows of -> where it is named (git commits of data.dvc,
    the working tree's data.dvc, the registry's tags), oldest commit first."""
    known: dict[str, list[str]] = {}
    for record in reversed(data_history(project)):
        known.setdefault(record.data_version, []).append(f"git {record.rev[:12]}")
    current = working_version(project)
    if current:
        known.setdefault(current, []).append("data.dvc (working tree)")
    for mv in registry.model_versions():
        version = (mv.tags or {}).get(DATA_TAG)
        if version:
            known.setdefault(version, []).append(f"registry {mv.name}/{mv.version}")
    return known


def file_lineage(project: Project, remote_url: str | None, path: Path) -> dict[str, Any]:
    """Which data versions hold this file's content, and which model versions saw them."""
    md5 = file_md5(path)
    registry = Registry()
    known = known_data_versions(project, registry)
    listings = load_listings(project, remote_url, list(known))
    versions = registry.model_versions()
    containing, unavailable = [], []
    for data_version, listing in listings.items():
        if listing.source is None:
            unavailable.append({"data_version": data_version, "named_by": known[data_version],
                                "reason": listing.detail})
            continue
        paths = listing.paths_with(md5)
        if paths:
            trained = [registry.version_record(v) for v in versions
                       if (v.tags or {}).get(DATA_TAG) == data_version]
            containing.append({"data_version": data_version, "paths": paths,
                               "listing_from": listing.source,
                               "named_by": known[data_version],
                               "model_versions": _sorted_versions(trained)})
    return {"file": str(path), "md5": md5, "data_versions": containing,
            "model_versions": _sorted_versions({(v["name"], v["version"]): v for d in containing
                                                for v in d["model_versions"]}.values()),
            "unavailable": unavailable, "searched": len(known)}
