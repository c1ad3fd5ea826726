"""What running the pipeline through the team stack's worker costs, against in-process.

On one `segen team up` stack (PostgreSQL, moto S3, Prefect and MLflow servers, a process
worker), two tiny projects (tests/conftest.py's TINY params, the U-Net's stages:
`--stages register_unet`), both with the stack's variables, so both use the same Prefect
server, MLflow server and DVC remote in the bucket; only where the flow runs differs:
  cold in-process   `segen run --in-process`: the flow in the CLI's own process.
  cold worker       `segen run` with SEGEN_WORK_POOL: deployed to the pool, run by its worker.
  cached X          the same command again, nothing changed (all hits, checked), --repeats
                    times alternated between the two; medians.
  fresh clone       a git clone of the worker's project in another folder, run through the
                    worker: data/ pulled by DVC, every stage a hit from the shared store.
Each project has its own prefix of the shared store (SEGEN_STORE_URL), so that neither
project's cold run hits the other's stages.
Wall seconds of the CLI subprocess, ratios worker / in-process, and for the worker's runs
where the time goes, from the flow run's state history: waiting for the worker to poll
(Scheduled), the worker starting the flow's process (Pending), the flow itself (Running),
and the rest (the CLI's imports, the deployment, reading the result).
The code runs from a copy of this checkout made at the start (PYTHONPATH, inherited by the
stack's worker): an edit to the checkout meanwhile would change the stages' cache keys.

Usage:  .venv/bin/python bench/worker_overhead.py [--repeats 3]
Writes bench/out/worker_overhead.json.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    bench_environment,
    busy_warning,
    fresh_dir,
    init_project,
    last_json,
    machine,
    median,
    segen_exe,
    table,
    timed_run,
    write_json,
)

TINY = {  # as tests/conftest.py's TINY, the U-Net's sections
    "dataset": {"n_images": 40, "image_size": 32},
    "preprocess": {"image_size": 32, "val_fraction": 0.15, "test_fraction": 0.2},
    "unet": {"depth": 2, "base_width": 4, "epochs": 2, "batch_size": 8, "augment": False},
    "evaluate": {"batch_size": 16, "grid_images": 4},
}
STAGES = ["--stages", "register_unet"]
SUBMITTED = re.compile(r"flow run \S+ \(([0-9a-f-]{36})\) submitted to work pool")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="cached runs of each kind (3)")
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def run(project: Path, env: dict[str, str], *extra: str) -> tuple[float, dict, UUID | None]:
    """(wall seconds, summary, the worker's flow run id or None) of one `segen run`."""
    seconds, proc = timed_run([*segen_exe(), "run", *STAGES, "--json", *extra], cwd=project,
                              env=env)
    found = SUBMITTED.search(proc.stderr)
    return seconds, last_json(proc.stdout), UUID(found.group(1)) if found else None


def freeze_code(work: Path) -> Path:
    """A copy of the checkout (with .git: the code revision), first on every import path."""
    code = work / "code"
    shutil.copytree(REPO, code, ignore=shutil.ignore_patterns(
        ".venv", ".segen", "out", "__pycache__", ".pytest_cache", ".ruff_cache"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    return code


def statuses(summary: dict[str, Any]) -> set[str]:
    return {s["status"] for s in summary["stages"]}


def phases(run_id: UUID, total: float) -> dict[str, float]:
    """Seconds in Scheduled, Pending and Running, from the server's state history."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)
    first = {}
    for state in states:
        first.setdefault(state.type.value, state.timestamp)
    spans = {"scheduled": ("SCHEDULED", "PENDING"), "pending": ("PENDING", "RUNNING"),
             "running": ("RUNNING", "COMPLETED")}
    out = {name: round((first[b] - first[a]).total_seconds(), 2)
           for name, (a, b) in spans.items()}
    out["cli_and_rest"] = round(total - sum(out.values()), 2)
    return out


def measure(work: Path, team: dict[str, str], repeats: int) -> dict[str, Any]:
    # Each project its own prefix of the shared store: one bucket-wide cache would make the
    # second project's cold run a hit on the first's data and U-Net stages.
    store = team["SEGEN_STORE_URL"]
    env = {**os.environ, **team, "SEGEN_STORE_URL": f"{store}/in-process"}
    env_w = {**env, "SEGEN_STORE_URL": f"{store}/worker"}
    local = init_project(work / "in-process", {**TINY, "register": {"model_name": "bench-a"}})
    pooled = init_project(work / "worker", {**TINY, "register": {"model_name": "bench-b"}})
    cold_local, summary, _ = run(local.parent, env, "--in-process")
    cold_worker, summary_w, run_id = run(pooled.parent, env_w)
    assert statuses(summary) == statuses(summary_w) == {"ran"}, (summary, summary_w)
    cold_phases = phases(run_id, cold_worker)
    cached: dict[str, list[float]] = {"in_process": [], "worker": []}
    cached_phases = []
    for _ in range(repeats):  # alternated: a drift in the machine's load hits both
        seconds, summary, _ = run(local.parent, env, "--in-process")
        assert statuses(summary) == {"cached"}, summary
        cached["in_process"].append(seconds)
        seconds, summary, run_id = run(pooled.parent, env_w)
        assert statuses(summary) == {"cached"}, summary
        cached["worker"].append(seconds)
        cached_phases.append(phases(run_id, seconds))
    clone_s = clone_run(pooled.parent, work / "elsewhere" / "clone", env_w)
    return {"cold_s": {"in_process": round(cold_local, 2), "worker": round(cold_worker, 2)},
            "clone_cached_worker_s": round(clone_s, 2),
            "cached_s": {k: [round(v, 2) for v in vs] for k, vs in cached.items()},
            "worker_phases_cold_s": cold_phases, "worker_phases_cached_s": cached_phases}


def clone_run(project: Path, clone: Path, env: dict[str, str]) -> float:
    """Seconds of the first run, through the worker, of a fresh clone in another folder: its
    data pulled from the DVC remote, every stage a hit fetched from the shared store."""
    subprocess.run(["git", "-C", str(project), "add", "data.dvc", ".gitignore"], check=True)
    subprocess.run(["git", "-C", str(project), "commit", "-qm", "data"], check=True)
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    seconds, summary, _ = run(clone, env)
    assert statuses(summary) == {"cached"} and summary["data_source"] == "pulled", summary
    return seconds


def summarise(m: dict[str, Any]) -> dict[str, Any]:
    cached = {k: median(v) for k, v in m["cached_s"].items()}
    return {"cold_ratio_worker_over_in_process": round(
                m["cold_s"]["worker"] / m["cold_s"]["in_process"], 2),
            "cached_median_s": {k: round(v, 2) for k, v in cached.items()},
            "cached_ratio_worker_over_in_process": round(
                cached["worker"] / cached["in_process"], 2),
            "cold_overhead_s": round(m["cold_s"]["worker"] - m["cold_s"]["in_process"], 2),
            "cached_overhead_s": round(cached["worker"] - cached["in_process"], 2)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = fresh_dir("segen-bench-worker-", keep=args.keep)
    bench_environment(work / "state")
    freeze_code(work)
    warning = busy_warning()
    stack = work / "stack"
    up_s, _ = timed_run([*segen_exe(), "team", "up", "--dir", str(stack)], cwd=work)
    try:
        from segen.team.stack import read_env

        team = read_env(stack / "team.env")
        os.environ["PREFECT_API_URL"] = team["PREFECT_API_URL"]  # for phases()
        m = measure(work, team, args.repeats)
    finally:
        timed_run([*segen_exe(), "team", "down", "--dir", str(stack)], cwd=work)
    result = {"benchmark": "worker_overhead", "stages": STAGES[1:], "repeats": args.repeats,
              "team_up_s": round(up_s, 1), **m, **summarise(m), "machine": machine(),
              "warning": warning}
    path = write_json("worker_overhead", result)
    s = summarise(m)
    print(table([
        ("cold in-process", f"{m['cold_s']['in_process']:.1f} s"),
        ("cold worker", f"{m['cold_s']['worker']:.1f} s  (x{s['cold_ratio_worker_over_in_process']})"),
        ("cached in-process", f"{s['cached_median_s']['in_process']:.1f} s (median)"),
        ("cached worker", f"{s['cached_median_s']['worker']:.1f} s  "
                          f"(x{s['cached_ratio_worker_over_in_process']})"),
        ("cached worker, fresh clone", f"{m['clone_cached_worker_s']:.1f} s  (data pulled, "
                                       "every hit fetched from the bucket)"),
        ("worker phases, cold", str(m["worker_phases_cold_s"])),
    ], "segen run through the team worker vs in-process"))
    print(f"wrote {path}" + (f"\n{warning}" if warning else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
