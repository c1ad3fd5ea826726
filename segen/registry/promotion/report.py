"""The gate report: a readable table of what the gate compared and decided, attached to the
challenger's model version (JSON and text artifacts on its source run, plus version tags)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

GATE_TAG = "segen.gate."


def format_result(result: dict[str, Any]) -> str:
    """The promotion result as a text table (what `segen promote` prints)."""
    report = result["report"]
    head = f"{result['model']} v{result['version']}: {result['decision']}"
    lines = [head, "=" * len(head)]
    if "metric" in report:
        lines += _comparison_table(result, report)
    elif report.get("note"):
        lines.append(report["note"])
    lines += ["", f"decision: {result['decision']} - {result['reason']}"]
    before = "none" if result["previous"] is None else f"v{result['previous']}"
    lines.append(f"{result['alias']}: {before} -> v{result['champion']}"
                 if result["previous"] != result["champion"]
                 else f"{result['alias']}: stays v{result['champion']}")
    return "\n".join(lines)


def _comparison_table(result: dict[str, Any], report: dict[str, Any]) -> list[str]:
    challenger, champion = report["challenger"], report["champion"]
    width = max(len(name) for name in (*challenger["metrics"], "data version")) + 2
    columns = f"{'':{width}}{'challenger v' + str(challenger['version']):>22}" \
              f"{'champion v' + str(champion['version']):>22}"
    rows = [f"{report['family']} gate on the challenger's test split: {report['n_images']} "
            f"images of data version {report['test_data_version']}", "", columns]
    for name, value in challenger["metrics"].items():
        rows.append(f"{name:{width}}{_num(value):>22}{_num(champion['metrics'].get(name)):>22}")
    rows.append(f"{'data version':{width}}{challenger['data_version'][:12]:>22}"
                f"{(champion['data_version'] or '?')[:12]:>22}")
    better = "higher" if report["higher_is_better"] else "lower"
    rows += ["", f"metric       {report['metric']} ({better} is better)",
             f"difference   {report['difference']:+.4f} (challenger - champion, {_over(report)})",
             f"interval     [{report['ci_low']:+.4f}, {report['ci_high']:+.4f}] at "
             f"{report['confidence']:.0%} (paired bootstrap, {report['bootstrap_samples']} "
             f"resamples, seed {report['seed']})",
             f"margin       {report['margin']:g}: the whole interval must lie "
             f"{'above +' if report['higher_is_better'] else 'below -'}{report['margin']:g}"]
    return rows


def _over(report: dict[str, Any]) -> str:
    if report["family"] == "generation":  # FID is a statistic of the whole set
        return f"{report['n_samples']} samples against {report['n_images']} test images"
    return "mean over images"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def attach_report(registry: Any, result: dict[str, Any]) -> str | None:
    """Log the result as JSON and text on the challenger's source run and tag its model
    version with the decision; returns the JSON's runs:/ URI (None when the version has
    no run to hold it)."""
    name, version = result["model"], str(result["version"])
    run_id = registry.get_model_version(name, version).run_id
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = f"promotion/{stamp}-{result['decision']}"
    uri = None
    if run_id:
        registry.log_dict(run_id, result, f"{base}.json")
        registry.log_text(run_id, format_result(result), f"{base}.txt")
        uri = f"runs:/{run_id}/{base}.json"
    report = result["report"]
    tags = {"decision": result["decision"], "reason": result["reason"][:4000],
            "champion": str(result["previous"]), "time": stamp, "report": uri or ""}
    for key in ("metric", "difference", "ci_low", "ci_high", "margin", "confidence"):
        if key in report:
            tags[key] = json.dumps(report[key])
    for key, value in tags.items():
        registry.set_model_version_tag(name, version, GATE_TAG + key, value)
    return uri
