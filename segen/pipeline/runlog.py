"""A small local log of `segen run`s (.segen/runs.jsonl), whichever way they ran: through
Prefect, or answered from the store when every stage was cached."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from segen.project import Project

FIELDS = ("ran", "cached", "skipped", "failed")


def record_run(project: Project, summary: dict[str, Any], mode: str, seconds: float,
               targets: list[str] | None) -> dict[str, Any]:
    """Append one line per run; a line is written with one write() call (O_APPEND), so
    concurrent runs never interleave within a line."""
    counts = Counter(s["status"] for s in summary["stages"])
    entry = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": mode,
             "seconds": round(seconds, 3), "targets": targets,
             "data_version": summary.get("data_version"),
             **{f: counts.get(f, 0) for f in FIELDS}}
    path = project.state / "runs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def read_runs(project: Project, last: int) -> list[dict[str, Any]]:
    path = project.state / "runs.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()[-last:]
    return [json.loads(line) for line in lines if line.strip()]


def format_runs(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs recorded yet (.segen/runs.jsonl)"
    head = f"{'finished':<25} {'mode':<8} {'seconds':>8} " + " ".join(f"{f:>7}" for f in FIELDS)
    rows = [f"{r['finished']:<25} {r['mode']:<8} {r['seconds']:>8.2f} "
            + " ".join(f"{r[f]:>7}" for f in FIELDS) for r in runs]
    return "\n".join([head, *rows])
