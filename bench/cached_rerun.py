"""Cold `segen run` against a fully cached rerun, and Prefect's fixed start-up cost.

What it measures (wall seconds of subprocesses, all in one fresh project under /tmp):
  cold        `segen run --json --params P` on a new git + DVC project with tiny params
              (generates the dataset, runs every stage: version_data ... register_unet).
  cached      the same command again with nothing changed: every stage must be a cache
              hit; the script checks that every stage in the --json summary is "cached"
              and fails otherwise. Repeated --repeats times; the median is reported.
  empty flow  a subprocess running an empty Prefect flow (`@flow def noop(): pass`) with
              the same interpreter and environment, so it pays the same fixed costs as
              segen: Python start-up, importing prefect, starting Prefect's temporary
              local server on the same PREFECT_HOME (database already created by the cold
              run) and recording one flow run. Alternated with the cached reruns.
  cached - empty flow   what segen adds on a full hit beyond Prefect's own fixed start-up:
              its imports (mlflow, dvc), hashing data/ and the sources, six cache lookups
              as Prefect tasks, the registry check of register_unet, the summary.

The environment is that of tests/conftest.py (telemetry off; PREFECT_HOME, XDG_CONFIG_HOME
and DVC's site cache in a temporary folder; Prefect UI off; logging at WARNING), passed to
both the CLI and the empty flow. The CLI is the venv's `segen` entry point.

Usage:  .venv/bin/python bench/cached_rerun.py [--repeats 3]
Writes bench/out/cached_rerun.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
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

NOOP_FLOW = '''\
from prefect import flow


@flow
def noop():
    pass


if __name__ == "__main__":
    noop()
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-images", type=int, default=40, help="generated images (default 40)")
    p.add_argument("--image-size", type=int, default=32, help="image side in px (default 32)")
    p.add_argument("--epochs", type=int, default=2, help="U-Net epochs of the cold run (2)")
    p.add_argument("--repeats", type=int, default=3,
                   help="cached reruns and empty flows, alternated (default 3 each)")
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def tiny_params(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """As tests/conftest.py's TINY: the whole pipeline trains in seconds on 2 CPU cores."""
    return {
        "dataset": {"n_images": args.n_images, "image_size": args.image_size},
        "preprocess": {"image_size": args.image_size, "val_fraction": 0.15,
                       "test_fraction": 0.2},
        "unet": {"depth": 2, "base_width": 4, "epochs": args.epochs, "batch_size": 8,
                 "augment": False},
        "evaluate": {"batch_size": 16, "grid_images": 4},
        "register": {"model_name": "bench-unet"},
    }


def listing(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["stages"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    load_before = list(os.getloadavg())
    work = fresh_dir("segen-bench-cached-", keep=args.keep)
    env = {**os.environ, **bench_environment(work / "state")}
    root = work / "proj"
    params = init_project(root, tiny_params(args))
    noop = work / "noop_flow.py"
    noop.write_text(NOOP_FLOW)
    segen = [*segen_exe(), "--project", str(root), "run", "--json", "--params", str(params)]
    print(f"project {root}\ncommand {' '.join(segen)}", flush=True)

    cold_s, proc = timed_run(segen, cwd=root, env=env)
    cold = statuses(last_json(proc.stdout))
    print(f"  cold run     {cold_s:7.2f} s  stages {cold}", flush=True)
    if set(cold.values()) != {"ran"}:
        print(f"  note: the cold run did not run every stage: {cold}")

    cached_s: list[float] = []
    empty_s: list[float] = []
    all_cached = True
    for rep in range(args.repeats):
        seconds, proc = timed_run(segen, cwd=root, env=env)
        rerun = statuses(last_json(proc.stdout))
        cached_s.append(seconds)
        ok = bool(rerun) and set(rerun.values()) == {"cached"}
        all_cached &= ok
        print(f"  rep {rep + 1}: cached rerun {seconds:7.2f} s  every stage cached: {ok}"
              + ("" if ok else f"  {rerun}"), flush=True)
        seconds, _ = timed_run([sys.executable, str(noop)], cwd=root, env=env)
        empty_s.append(seconds)
        print(f"  rep {rep + 1}: empty flow   {seconds:7.2f} s", flush=True)

    cached, empty = median(cached_s), median(empty_s)
    results = {
        "config": {**tiny_params(args), "repeats": args.repeats},
        "machine": machine(), "loadavg_before": load_before,
        "cold_seconds": cold_s, "cached_seconds": cached_s, "empty_flow_seconds": empty_s,
        "cached_seconds_median": cached, "empty_flow_seconds_median": empty,
        "segen_overhead_on_full_hit_seconds": cached - empty,
        "cold_statuses": cold, "every_rerun_stage_cached": all_cached,
        "rerun_statuses": rerun,
    }
    path = write_json("cached_rerun", results)
    n_hits = sum(v == "cached" for v in rerun.values())
    rows = [
        ("cold segen run", f"{cold_s:7.2f} s"),
        ("cached rerun (median)", f"{cached:7.2f} s  ({listing(cached_s)})"),
        ("empty Prefect flow (median)", f"{empty:7.2f} s  ({listing(empty_s)})"),
        ("cached - empty flow", f"{cached - empty:7.2f} s  (what segen adds on a full hit)"),
        ("cold / cached", f"{cold_s / cached:7.1f} x"),
        ("every rerun stage cached", f"{'yes' if all_cached else 'NO'}  ({n_hits}/{len(rerun)} "
                                     "stages cached in the last rerun)"),
        ("CPUs", f"{os.cpu_count()}  (load avg before {load_before[0]:.2f})"),
    ]
    print(table(rows, "segen run: cold vs fully cached rerun vs an empty Prefect flow"))
    if warning:
        print(warning)
    print(f"wrote {path}")
    if not all_cached:
        raise SystemExit("a rerun with nothing changed ran a stage (see the table)")
    return results


if __name__ == "__main__":
    main()
