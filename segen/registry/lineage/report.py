"""Readable text for the lineage queries (--json prints their dicts instead)."""
from __future__ import annotations

import json
from typing import Any


def _version(v: dict[str, Any]) -> str:
    aliases = "".join(f" @{a}" for a in v["aliases"])
    return f"{v['name']} v{v['version']}{aliases}  (run {v['run_id']}, {v['created']})"


def _revisions(records: list[dict[str, Any]]) -> list[str]:
    if not records:
        return ["  not recorded in any commit of data.dvc (commit data.dvc to record it)"]
    return [f"  git {r['rev'][:12]}  {r['date']}  {r['subject']}" for r in records]


def format_model(report: dict[str, Any]) -> str:
    model, run = report["model"], report["run"]
    lines = [f"model          {_version(model)}",
             f"data version   {report['data_version']}", "recorded in data.dvc by",
             *_revisions(report["data_revisions"]),
             f"code revision  {report['code_revision']}",
             f"project rev.   {report['project_revision']}",
             f"params hash    {report['params_hash']}"]
    if report["synthetic_generator"]:
        lines.append(f"synthetic data made by generator {report['synthetic_generator']}")
    if run:
        lines.append(f"run            {run['run_id']} ({run['run_name']}, {run['status']}, "
                     f"{run['started']})")
        lines += [f"  {k:<24} {v:.4f}" for k, v in sorted(run["metrics"].items())]
    lines.append("upstream stage keys")
    lines += [f"  {stage:<20} {key}" for stage, key in report["upstream_keys"].items()]
    lines.append("params")
    lines += [f"  {section}: {json.dumps(values, sort_keys=True)}"
              for section, values in sorted(report["params"].items())]
    return "\n".join(lines)


def format_data(report: dict[str, Any]) -> str:
    resolved = f"  (from git {report['resolved_from'][:12]})" if report["resolved_from"] else ""
    lines = [f"data version   {report['data_version']}{resolved}", "recorded in data.dvc by",
             *_revisions(report["data_revisions"]), f"runs ({len(report['runs'])})"]
    lines += [f"  {r['run_id']}  {r['stage'] or r['run_name']:<20} {r['status']:<9} "
              f"{r['started']}" for r in report["runs"]]
    lines.append(f"model versions ({len(report['model_versions'])})")
    lines += [f"  {_version(v)}" for v in report["model_versions"]]
    return "\n".join(lines)


def format_file(report: dict[str, Any]) -> str:
    lines = [f"file {report['file']}  md5 {report['md5']}",
             f"in {len(report['data_versions'])} of {report['searched']} known data versions"]
    for d in report["data_versions"]:
        lines.append(f"  {d['data_version']}  as {', '.join(d['paths'])}  "
                     f"(named by {', '.join(d['named_by'])})")
        lines += [f"    {_version(v)}" for v in d["model_versions"]]
    for u in report["unavailable"]:
        lines.append(f"  {u['data_version']}: listing unavailable, {u['reason']}")
    lines.append(f"model versions that saw it ({len(report['model_versions'])})")
    lines += [f"  {_version(v)}" for v in report["model_versions"]]
    return "\n".join(lines)
