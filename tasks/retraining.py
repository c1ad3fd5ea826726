"""The steps of the retraining flow around the pipeline: a cheap check that nothing changed,
the promote_new task that gates every model version the run registered, and the report of
what changed (data version, stages ran vs cached, promotion decisions).

promote_new runs only after every pipeline stage succeeded (the flow raises before it
otherwise), so a failed run never touches the champion. Promotion is
segen.registry.promotion.moves.promote.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from segen.config import load_params
from segen.data.versioning import recorded_version
from segen.hashing import hash_file, hash_json, hash_tree
from segen.pipeline.sources import modules_digest, stage_sources
from segen.pipeline.store import read_pointer, write_atomic
from segen.project import Project

# Besides every stage's own sources: the flows (and what they import) decide what a run does.
_FLOW_SOURCES = ("flows.pipeline", "flows.retrain")


def fingerprint(project: Project, params_path: str, targets: list[str] | None) -> str | None:
    """Hash of what decides a retraining run: data/ content and its recorded DVC version, the
    params file, the stages asked for and every stage's source. None while data/ is absent
    (the run makes it)."""
    if not project.data.is_dir():
        return None
    from tasks import stage_table

    sources = [stage_sources(*s.source)[0] for s in stage_table().values()]
    return hash_json({"data": hash_tree(project.data), "recorded": recorded_version(project),
                      "params": hash_file(Path(params_path)), "targets": targets,
                      "sources": sources, "flows": modules_digest(_FLOW_SOURCES)})


def _last_path(project: Project) -> Path:
    return project.state / "retrain" / "last-success.json"


def unchanged_since_last_success(project: Project, params_path: str,
                                 targets: list[str] | None) -> bool:
    """True when the last completed retraining run saw exactly this data, code and params."""
    path, mark = _last_path(project), fingerprint(project, params_path, targets)
    return mark is not None and path.is_file() and json.loads(path.read_text()).get(
        "fingerprint") == mark


def last_data_version(project: Project) -> str | None:
    """The data version the last completed retraining run ended on (else data.dvc's now):
    `segen data add` records its version in data.dvc before the run that trains on it."""
    path = _last_path(project)
    if path.is_file():
        return json.loads(path.read_text())["report"]["data_version_after"]
    return recorded_version(project)


def record_success(project: Project, params_path: str, targets: list[str] | None,
                   report: dict[str, Any]) -> None:
    """Remember this run's fingerprint (after it: version_data may have rewritten data.dvc)."""
    runs = project.state / "retrain" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str) + "\n"
    write_atomic(runs / f"{report['flow_run_id']}.json", text)
    mark = fingerprint(project, params_path, targets)
    write_atomic(_last_path(project), json.dumps({"fingerprint": mark, "report": report},
                                                 default=str))


class RetrainFailed(RuntimeError):
    """A stage of the retraining run failed; nothing was promoted."""


class DivergedModelError(RetrainFailed):
    """A newly registered model scored NaN/inf: it must not be gated, let alone promoted."""


def check_stages(summary: dict[str, Any]) -> None:
    """Raise when a stage failed (the pipeline records a failed model stage and goes on)."""
    failed = [f"{s['name']}: {s.get('reason', 'failed')}" for s in summary["stages"]
              if s["status"] == "failed"]
    if failed:
        raise RetrainFailed(f"{len(failed)} stage(s) failed, so nothing was promoted (the "
                            "champions are unchanged): " + "; ".join(failed))


def _gated_path(project: Project) -> Path:
    return project.state / "retrain" / "gated.json"


def gated(project: Project) -> dict[str, str]:
    """"name/version" -> decision of every version a retraining run has gated."""
    path = _gated_path(project)
    return json.loads(path.read_text()) if path.is_file() else {}


def mark_gated(project: Project, model_name: str, version: str, decision: str) -> None:
    done = gated(project) | {f"{model_name}/{version}": decision}
    _gated_path(project).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_gated_path(project), json.dumps(done, indent=1, sort_keys=True) + "\n")


def new_versions(project: Project, stages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """{stage, model_name, version, metrics} of each model version this run's register
    stages hold that no retraining run has gated yet: the ones registered now, and any a
    failed earlier run registered (its next run finds that register stage cached)."""
    done, found = gated(project), []
    for entry in stages:
        result = read_pointer(project, entry["name"])
        if entry["status"] not in ("ran", "cached") or result is None:
            continue
        info = result.info
        if "model_name" in info and "version" in info and (
                f"{info['model_name']}/{info['version']}" not in done):
            found.append({"stage": entry["name"], "model_name": info["model_name"],
                          "version": str(info["version"]), "metrics": info.get("metrics", {})})
    return found


def check_finite(versions: list[dict[str, Any]]) -> None:
    """Refuse to gate anything when one new model diverged (NaN/inf metrics)."""
    bad = []
    for v in versions:
        if names := [k for k, x in v["metrics"].items() if not _finite(x)]:
            bad.append(f"{v['model_name']} v{v['version']} ({', '.join(names)})")
    if bad:
        raise DivergedModelError(
            f"model(s) diverged, their metrics are NaN or infinite: {'; '.join(bad)}. Nothing "
            "was promoted: the champions are unchanged. Lower the learning rate or check the "
            "new data, then rerun.")


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def promote_new(project: Project, params_path: str, stages: list[dict[str, str]]
                ) -> list[dict[str, Any]]:
    """Run the promotion gate on every model version registered and not gated yet."""
    from segen.registry.promotion.gate import family_of
    from segen.registry.promotion.moves import promote
    from segen.tracking import configure_tracking

    versions = new_versions(project, stages)
    check_finite(versions)
    params = load_params(Path(params_path))
    configure_tracking(project, params.mlflow)
    decisions = []
    for v in versions:
        try:
            family_of(params, v["model_name"])
        except ValueError as err:  # a model family without a gate in params.yaml (yet)
            decisions.append({"model": v["model_name"], "version": v["version"],
                              "decision": "no_gate", "reason": str(err)})
            continue
        outcome = promote(project, params, v["model_name"], int(v["version"]),
                          reason="scheduled retraining (segen-retrain)")
        mark_gated(project, v["model_name"], v["version"], outcome["decision"])
        decisions.append({"model": v["model_name"], "version": v["version"],
                          "decision": outcome["decision"], "gate": outcome})
    return decisions


def retrain_report(data_before: str | None, summary: dict[str, Any],
                   decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """What this retraining run changed, for the CLI, the logs and .segen/retrain/."""
    by_status: dict[str, list[str]] = {"ran": [], "cached": [], "skipped": []}
    for entry in summary["stages"]:
        by_status.setdefault(entry["status"], []).append(entry["name"])
    return {"data_version_before": data_before, "data_version_after": summary["data_version"],
            "data_changed": data_before != summary["data_version"],
            "stages_ran": by_status["ran"], "stages_cached": by_status["cached"],
            "stages_skipped": by_status["skipped"], "promotions": decisions,
            "models": [{k: m[k] for k in ("name", "version", "champion")}
                       for m in summary["models"]]}


def skipped_report(data_version: str | None) -> dict[str, Any]:
    """The report of a run that found nothing changed since the last completed one."""
    return {"data_version_before": data_version, "data_version_after": data_version,
            "data_changed": False, "skipped": "data, code and params unchanged since the last "
            "completed retraining run", "stages_ran": [], "stages_cached": [],
            "stages_skipped": [], "promotions": [], "models": []}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"data version  {report['data_version_before']} -> {report['data_version_after']}"
             + ("" if report["data_changed"] else "  (unchanged)")]
    if report.get("skipped"):
        lines.append(f"skipped: {report['skipped']}")
    else:
        lines.append(f"stages ran    {', '.join(report['stages_ran']) or 'none'}")
        lines.append(f"stages cached {', '.join(report['stages_cached']) or 'none'}")
    lines += [f"promotion     {d['model']} v{d['version']}: {d['decision']}"
              for d in report["promotions"]] or ["promotion     no new model version"]
    return "\n".join(lines)
