"""The team stack's startup time and memory with everything up (issue 11's memory figure:
the stack must fit beside training on a 24 GiB machine).

Runs `segen team up` in a fresh folder (timed from the command's start to its return, i.e.
until every health check answered), then sums the resident memory of every process of the
stack: the recorded servers and all their descendants (PostgreSQL's backends leave its
process group, so they are found by parent). RSS counts pages shared between processes
once per process (PostgreSQL's shared buffers, forked Python workers); PSS shares them out,
so the PSS sum is what the stack really takes. Then `segen team down`.

    .venv/bin/python bench/team_stack.py [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import OUT_DIR, REPO, bench_environment, fresh_dir

SEGEN = [sys.executable, "-m", "segen.cli.main"]


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
    return children


def tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB: psutil if installed, else /proc/PID/smaps_rollup."""
    try:
        import psutil

        info = psutil.Process(pid).memory_full_info()
        return info.rss // 1024, info.pss // 1024
    except ImportError:
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def measure(state: dict) -> dict:
    children, per = children_map(), {}
    for name, record in state["services"].items():
        pids = tree(record["pid"], children)
        rss, pss = map(sum, zip(*(memory_kib(p) for p in pids)))
        per[name] = {"processes": len(pids), "rss_mib": round(rss / 1024, 1),
                     "pss_mib": round(pss / 1024, 1)}
    total = {k: round(sum(s[k] for s in per.values()), 1) for k in ("rss_mib", "pss_mib")}
    return {"services": per, **total,
            "processes": sum(s["processes"] for s in per.values())}


def one_stack(work: Path, settle_s: float) -> dict:
    work.mkdir(parents=True)
    folder = work / "stack"
    start = time.perf_counter()
    up = subprocess.run([*SEGEN, "team", "up", "--dir", str(folder), "--json"], cwd=work,
                        capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    if up.returncode != 0:
        raise SystemExit(f"segen team up failed:\n{up.stderr[-3000:]}")
    try:
        state = json.loads(up.stdout)
        time.sleep(settle_s)  # past the servers' first background work
        return {"startup_s": round(wall, 1), "startup_in_up_s": state["startup_s"],
                **measure(state)}
    finally:
        subprocess.run([*SEGEN, "team", "down", "--dir", str(folder)], cwd=work,
                       capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="stacks started one after "
                        "another (default: 1)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after up "
                        "before measuring memory (default: 10)")
    args = parser.parse_args()
    work = fresh_dir("segen-bench-team-")
    bench_environment(work / "state")
    runs = [one_stack(work / f"run{i}", args.settle) for i in range(args.repeat)]
    for run in runs:
        print(f"startup {run['startup_s']:5.1f} s   memory RSS {run['rss_mib']:7.1f} MiB   "
              f"PSS {run['pss_mib']:7.1f} MiB   ({run['processes']} processes)")
        for name, svc in run["services"].items():
            print(f"    {name:9} RSS {svc['rss_mib']:7.1f} MiB  PSS {svc['pss_mib']:7.1f} MiB  "
                  f"({svc['processes']} processes)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "team_stack.json"
    out.write_text(json.dumps({"cores": os.cpu_count(), "runs": runs, "repo": str(REPO)},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
