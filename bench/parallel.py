"""The default `segen run`, one stage at a time against independent stages side by side.

Each mode runs cold in its own fresh clone of this repository (its own .segen/, data/ made
from the default params): `run.max_parallel_stages: 1` (sequential; each stage gets every
core) and the params.yaml value (parallel; the cores shared). For each: wall seconds, peak
RSS of the run's process (ru_maxrss of the child), the U-Net's test mean IoU and every
generator's FID, so a speed-up that costs quality shows. The ratio is sequential / parallel,
measured in the same run of this script.

Usage:  .venv/bin/python bench/parallel.py [--quick]   (--quick: tiny params, a smoke test)
Writes bench/out/parallel.json.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    bench_environment,
    busy_warning,
    fresh_dir,
    last_json,
    machine,
    merge,
    table,
    write_json,
)
from cached_rerun import TINY  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny params (not figures to quote)")
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def cold_run(work: Path, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    root = work / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params = merge(merge(params, overrides), {"data": {"remote": str(work / f"{name}-remote")}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, **bench_environment(work / f"{name}-state")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "segen.cli.main", "run", "--json"], cwd=root,
                          env=env, text=True, capture_output=True, timeout=3600)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}\n{proc.stderr[-4000:]}")
    summary = last_json(proc.stdout)
    unet = next((m for m in summary["models"] if m["name"].endswith("-unet")), None)
    return {"seconds": seconds, "peak_rss_gib": peak_kib / 2**20,
            "peak_rss_is_lower_bound": peak_kib == before,  # ru_maxrss only grows
            "unet_test_mean_iou": unet and unet["metrics"].get("mean_iou"),
            "fid": {row["model"]: row.get("fid") for row in summary["generative"]},
            "stage_seconds": {s["name"]: s.get("seconds") for s in summary["stages"]},
            "statuses": sorted({s["status"] for s in summary["stages"]})}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    work = fresh_dir("segen-bench-parallel-", keep=args.keep)
    base = TINY if args.quick else {}
    default_parallel = yaml.safe_load((REPO / "params.yaml").read_text())["run"]
    sequential = cold_run(work, "sequential", merge(base, {"run": {"max_parallel_stages": 1}}))
    print(f"  sequential {sequential['seconds']:.1f} s", flush=True)
    parallel = cold_run(work, "parallel", base)
    print(f"  parallel   {parallel['seconds']:.1f} s", flush=True)
    results = {"machine": machine(), "warning": warning, "quick": args.quick,
               "run_section": default_parallel, "sequential": sequential, "parallel": parallel,
               "speedup_sequential_over_parallel": sequential["seconds"] / parallel["seconds"]}
    write_json("parallel", results)
    rows = [(f"{mode} wall", f"{r['seconds']:7.1f} s   peak RSS {r['peak_rss_gib']:.2f} GiB   "
             f"U-Net test mIoU {r['unet_test_mean_iou']}")
            for mode, r in (("sequential", sequential), ("parallel", parallel))]
    rows.append(("speed-up", f"{results['speedup_sequential_over_parallel']:7.2f} x "
                 f"(run: {default_parallel})"))
    rows += [(f"FID {model}", f"{sequential['fid'][model]}  ->  {parallel['fid'].get(model)}")
             for model in sequential["fid"]]
    print(table(rows, "default segen run: sequential vs parallel stages"
                + (f"\n{warning}" if warning else "")))
    return results


if __name__ == "__main__":
    main()
