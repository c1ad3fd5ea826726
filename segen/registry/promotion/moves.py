"""promote and rollback: the only code that moves the champion alias, each under the
model's lock (lock.py), judged against the champion that holds once the lock is held, and
recorded in the alias history (history.py) with its gate report (report.py).

Order of writes, so that a failure or a kill leaves the registry as it was: the report and
the version's gate tags first (they move nothing), then the alias with its history event as
one step (history.record_alias_move(move=True): a move whose event was not recorded is
undone, at once or by the next promote or rollback).
"""
from __future__ import annotations

from typing import Any

from segen.config import Params
from segen.project import Project
from segen.registry.promotion import gate
from segen.registry.promotion.history import (
    champion_stack,
    finish_interrupted_move,
    read_history,
    record_alias_move,
)
from segen.registry.promotion.lock import PromotionBusy, model_lock
from segen.registry.promotion.report import attach_report

_ATTEMPTS = 3  # judge again when the alias moved while judging (a writer beyond the lock)
MOVED = ("first", "promoted", "forced")


def promote(project: Project, params: Params, model_name: str, version: int | None = None, *,
            force: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Run the gate for one version (None: the latest) and move the champion alias when it
    passes (or when forced, with a reason). Returns the result with its gate report."""
    if force and not (reason or "").strip():
        raise ValueError("--force needs --reason TEXT: say why the gate is overridden (the "
                         "reason is kept in the alias history)")
    family = gate.family_of(params, model_name)
    registry = _registry(project, params)
    version = _resolve_version(registry, model_name, version)
    with model_lock(project, model_name, params.promote.lock_timeout_s):
        finish_interrupted_move(registry, model_name)  # the champion a killed move left
        for _ in range(_ATTEMPTS):
            champion = _holder(registry, model_name, family.alias)
            result = _judge(project, params, registry, family, model_name, version, champion,
                            force, reason)
            if result["decision"] == "already_champion":
                return result
            if _holder(registry, model_name, family.alias) == champion:  # compare-and-set
                return _commit(registry, result, reason)
    raise PromotionBusy(f"{model_name}: the {family.alias} alias moved {_ATTEMPTS} times while "
                        "the gate ran (promotions from another machine?); retry")


def rollback(project: Project, params: Params, model_name: str, *, reason: str
             ) -> dict[str, Any]:
    """Move the champion back to the version it replaced, by the alias history."""
    if not (reason or "").strip():
        raise ValueError("rollback needs --reason TEXT: say why (it is kept in the history)")
    alias = gate.family_of(params, model_name).alias
    registry = _registry(project, params)
    _resolve_version(registry, model_name, None)  # a clear error for an unknown model
    with model_lock(project, model_name, params.promote.lock_timeout_s):
        finish_interrupted_move(registry, model_name)
        current = _holder(registry, model_name, alias)
        target = _rollback_target(read_history(registry, model_name), alias, current)
        if current is None or target is None:
            raise ValueError(f"{model_name}: no earlier {alias} recorded in its alias history "
                             f"(current: {current}); see `segen history {model_name}`, and "
                             f"use `segen promote {model_name} --version N --force --reason "
                             "TEXT` to pick a version by hand")
        _resolve_version(registry, model_name, target)  # it may have been deleted since
        result = {"model": model_name, "version": target, "alias": alias,
                  "previous": current, "champion": target, "decision": "rollback",
                  "reason": reason, "report": {}}
        result["history"] = _record(registry, result, reason, action="rollback", move=True)
    return result


def alias_history(project: Project, params: Params, model_name: str) -> list[dict[str, Any]]:
    """Every recorded alias move and gate verdict of the model, oldest first."""
    registry = _registry(project, params)
    _resolve_version(registry, model_name, None)
    return read_history(registry, model_name)


def _judge(project: Project, params: Params, registry: Any, family: gate.Family, name: str,
           version: int, champion: int | None, force: bool, reason: str | None
           ) -> dict[str, Any]:
    result = {"model": name, "version": version, "alias": family.alias,
              "previous": champion, "champion": champion}
    if champion == version:
        return result | {"decision": "already_champion", "report": {},
                         "reason": f"v{version} already holds {family.alias}"}
    if champion is None:
        return result | {"decision": "first", "champion": version, "reason": (
            f"no {family.alias} yet: v{version} becomes {family.alias}"), "report": {
            "note": "no champion to compare with: the gate was not run"}}
    try:
        report = _gate_report(project, params, registry, family, name, version, champion)
    except (FileNotFoundError, ValueError) as err:
        if not force:
            raise
        report = {"note": f"gate not run: {err}"}
    if force:
        return result | {"decision": "forced", "champion": version, "report": report,
                         "reason": reason}
    passed = report["passed"]
    return result | {"decision": "promoted" if passed else "rejected", "report": report,
                     "champion": version if passed else champion,
                     "reason": report["explanation"]}


def _gate_report(project: Project, params: Params, registry: Any, family: gate.Family,
                 name: str, version: int, champion: int) -> dict[str, Any]:
    """Both versions scored per image on the challenger's test split, then compared."""
    tags = registry.get_model_version(name, str(version)).tags or {}
    champion_tags = registry.get_model_version(name, str(champion)).tags or {}
    if family.name == "generation":
        from segen.registry.promotion.generation import fid_report

        compared = gate.decide(family, family.gate.metric, fid_report(
            project, params, name, tags, champion_tags, (version, champion)), params)
        return _report(family, compared, version, champion, tags, champion_tags)
    data = gate.load_test_data(project, tags, f"{name} v{version}")
    if data.masks is None and family.name == "segmentation":
        raise ValueError(f"{name} v{version}: its test data has no masks to score a "
                         "segmentation model on")
    metric = gate.gate_metric(family, data)
    scores = {v: gate.per_image_scores(family, gate.predict_labels(name, str(v), data.images),
                                       data, params) for v in (version, champion)}
    compared = gate.compare(family, metric, scores[version], scores[champion], params)
    return _report(family, compared, version, champion, tags, champion_tags)


def _report(family: gate.Family, compared: dict[str, Any], version: int, champion: int,
            tags: dict[str, str], champion_tags: dict[str, str]) -> dict[str, Any]:
    data_version = tags.get(gate.DATA_VERSION_TAG)
    return {"family": family.name, **compared, "explanation": gate.explain(compared),
            "test_data_version": data_version, "preprocess_key": tags.get(gate.PREPROCESS_TAG),
            "challenger": {"version": version, "data_version": data_version,
                           "metrics": compared.pop("challenger_metrics")},
            "champion": {"version": champion,
                         "data_version": champion_tags.get(gate.DATA_VERSION_TAG),
                         "metrics": compared.pop("champion_metrics")}}


def _commit(registry: Any, result: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """Attach the report, then move the alias (unless rejected) with its event."""
    result["report_uri"] = attach_report(registry, result)
    result["history"] = _record(registry, result, reason, action="promote",
                                move=result["decision"] in MOVED)
    return result


def _record(registry: Any, result: dict[str, Any], reason: str | None, action: str,
            move: bool = False) -> dict[str, Any]:
    text = result["reason"] if not reason or reason == result["reason"] else (
        f"{reason} ({result['reason']})")
    return record_alias_move(result["model"], alias=result["alias"],
                             previous=result["previous"], new=result["champion"],
                             action=action, decision=result["decision"], reason=text,
                             candidate=result["version"], report=result.get("report_uri"),
                             registry=registry, move=move)


def _rollback_target(events: list[dict[str, Any]], alias: str, current: int | None
                     ) -> int | None:
    """The version below the current one on the replayed stack; when the alias was moved
    outside segen, the version the last recorded move to it replaced."""
    stack = champion_stack(events, alias)
    if current is not None and len(stack) >= 2 and stack[-1] == current:
        return stack[-2]
    moves = [e for e in events if e["alias"] == alias and e["new"] == current
             and e["previous"] not in (None, current)]
    return moves[-1]["previous"] if moves else None


def _registry(project: Project, params: Params) -> Any:
    """A client on the project's registry (MLFLOW_TRACKING_URI wins, as in every command)."""
    from segen.tracking import client, configure_tracking

    configure_tracking(project, params.mlflow)
    return client()


def _holder(registry: Any, name: str, alias: str) -> int | None:
    aliases = registry.get_registered_model(name).aliases or {}
    return int(aliases[alias]) if alias in aliases else None


def _resolve_version(registry: Any, name: str, version: int | None) -> int:
    """The given version (checked to exist) or the latest one."""
    versions = sorted(int(v.version) for v in
                      registry.search_model_versions(f"name='{name}'"))
    if not versions:
        names = sorted(m.name for m in registry.search_registered_models())
        raise ValueError(f"model {name!r} has no registered version here (registered models: "
                         f"{', '.join(names) or 'none'}; the registry is set by params.yaml's "
                         "mlflow section or MLFLOW_TRACKING_URI)")
    if version is None:
        return versions[-1]
    if int(version) not in versions:
        raise ValueError(f"{name} has no version {version}; its versions: "
                         f"{', '.join(map(str, versions))}")
    return int(version)
