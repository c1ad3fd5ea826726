"""Fault injection (issue 12 item 1): SIGKILL real segen commands at random moments, rerun
them, and check that nothing was lost.

    .venv/bin/python bench/faults.py [--trials 30] [--ops run promote ...] [--seed 0]
                                     [--kill fp:data.swap:1 | --kill delay:3.5]

One tiny project per operation (git + DVC, 40 images of 32 px, a 2-epoch U-Net, only the
U-Net's stages), made once; every trial continues from the state the previous one left, as
a user's project would. A trial: prepare a change (new params seed, new input folder, other
version to promote), start the command, kill it either at a named failpoint of
segen/faults.py (SEGEN_FAILPOINT=NAME:N, the process SIGKILLs itself there) or after a
random delay in [0, the command's measured duration] (SIGKILL to its process group), check
data/ right after the kill, rerun the command without a fault, then check everything
(bench/faults_checks.py). A failpoint never reached is reported: the command completed
unkilled (or the failpoint is not in the code yet).

Each trial's RNG is seeded by (--seed, operation, trial), and each failing trial prints its
kill, so `--ops OP --kill SPEC` replays that kill (on a fresh project).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    bench_environment,
    fresh_dir,
    init_project,
    merge,
    segen_exe,
    write_json,
)

MODEL, ALIAS = "bench-unet", "champion"
TINY = {"dataset": {"n_images": 40, "image_size": 32},
        "preprocess": {"image_size": 32, "val_fraction": 0.15, "test_fraction": 0.2},
        "unet": {"depth": 2, "base_width": 4, "epochs": 2, "batch_size": 8, "augment": False},
        "evaluate": {"batch_size": 16, "grid_images": 4},
        "register": {"model_name": MODEL}}
STAGES = ["--stages", "register_unet"]  # the U-Net's chain only: no generators, clusterers
TRAIN = ("store.publish", "pointer.write", "checkpoint.write", "register.run",
         "register.version")
DATA = ("data.swap", "data.record", "data.push")
FAILPOINTS_OF = {"run": TRAIN, "import-pairs": DATA, "data-add": DATA,
                 "promote": ("promote.alias",), "retrain": TRAIN + ("promote.alias",)}
OPS = tuple(FAILPOINTS_OF)
N_ADDED = 4  # samples per `data add`
TIMEOUT = 600

# Counts failpoint passes of a clean run: patched in before segen imports `failpoint`.
PROBE = """import sys, segen.faults as f
log, real = open(sys.argv[1], "a"), f.failpoint
def counting(name):
    log.write(name + "\\n"); log.flush(); real(name)
f.failpoint = counting
from segen.cli.main import main
sys.exit(main(sys.argv[2:]))"""


@dataclass
class Project:
    """One operation's throwaway project and what its calibration run measured."""
    op: str
    root: Path
    inputs: Path
    env: dict[str, str]
    seconds: float = 0.0
    passes: Counter = field(default_factory=Counter)


# ---- the operations ----------------------------------------------------------------------

def prepare(p: Project, i: int) -> tuple[list[str], str | None, int]:
    """Make trial i's change; returns (segen argv, expected new data/ hash or None, samples
    added)."""
    if p.op in ("run", "retrain"):  # a new U-Net seed: train, evaluate, register run again
        write_params(p.root, {"unet": {"seed": 100 + i}})
        cmd = ["run", *STAGES] if p.op == "run" else ["retrain", "--always", *STAGES]
        return [*cmd, "--json"], None, 0
    if p.op == "import-pairs":  # two sources in turn, so every import changes data/
        source = shapes(p.inputs / f"source-{i % 2}", seed=11 + i % 2, n=40)
        return (["data", "import-pairs", str(source / "images"), str(source / "masks"),
                 "--classes", *classes(), "--json"], imported_hash(p, source), 0)
    if p.op == "data-add":
        new = shapes(p.inputs / f"add-{i}", seed=500 + i, n=N_ADDED)
        return ["data", "add", str(new / "images"), str(new / "masks"), "--json"], None, N_ADDED
    if p.op == "promote":  # forced, so that the alias moves every time (the gate may refuse)
        from faults_checks import registry_client, registry_state

        holder = registry_state(p.root, MODEL, ALIAS)["holder"]
        versions = [int(v.version) for v in
                    registry_client(p.root).search_model_versions(f"name='{MODEL}'")]
        target = max(v for v in versions if v != holder)
        return (["promote", MODEL, "--version", str(target), "--force", "--reason",
                 "fault bench", "--json"], None, 0)
    raise ValueError(p.op)


def write_params(root: Path, overrides: dict[str, dict[str, Any]]) -> None:
    import yaml

    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), overrides),
                                   sort_keys=False))


def classes() -> list[str]:
    from segen.data.shapes import CLASSES

    return list(CLASSES)


def shapes(out: Path, seed: int, n: int) -> Path:
    from segen.data.shapes import generate_shapes_dataset

    if not out.is_dir():
        generate_shapes_dataset(out, seed=seed, n_images=n, image_size=32, min_shapes=1,
                                max_shapes=2)
    return out


def imported_hash(p: Project, source: Path) -> str:
    """What data/ holds after importing source: the importer run into a scratch folder."""
    from segen.data.importers import import_pairs
    from segen.hashing import hash_tree

    out = source.with_name(source.name + "-imported")
    if not out.is_dir():
        import_pairs(source / "images", source / "masks", out, classes=classes(),
                     class_map=None, max_pixels=100_000_000)
    return hash_tree(out)


# ---- running and killing -----------------------------------------------------------------

def start(p: Project, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # its own session: a group kill reaches Prefect's server too
        return subprocess.Popen(argv, cwd=p.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def reap(proc: subprocess.Popen) -> int:
    """Wait for proc, then kill what it left in its group (a self-killed command's children,
    e.g. Prefect's temporary server, would otherwise live on)."""
    rc = proc.wait(TIMEOUT)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return rc


def run_killed(p: Project, argv: list[str], kill: str, log: Path) -> str:
    """Run `segen argv` under the kill spec; returns what happened."""
    env = dict(p.env)
    kind, _, what = kill.partition(":")
    if kind == "fp":
        env["SEGEN_FAILPOINT"] = what
    proc = start(p, segen_exe() + argv, env, log)
    if kind == "delay":
        try:
            proc.wait(float(what))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    rc = reap(proc)
    if rc == -signal.SIGKILL:
        return "killed"
    return f"not reached, exited {rc}" if kind == "fp" else f"finished first, exited {rc}"


def calibrate(p: Project) -> None:
    """One clean run of the operation: its duration (the range of random delays) and how
    often it passes each failpoint (the range of N)."""
    argv, _, _ = prepare(p, 0)
    count = p.inputs / "passes.txt"
    t0 = time.perf_counter()
    proc = start(p, [sys.executable, "-c", PROBE, str(count), *argv], p.env,
                 p.inputs / "calibrate.log")
    rc = reap(proc)
    p.seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"{p.op}: clean run exited {rc}:\n"
                           f"{(p.inputs / 'calibrate.log').read_text()[-3000:]}")
    p.passes = Counter(count.read_text().split()) if count.is_file() else Counter()


def relevant(p: Project) -> list[str]:
    """The operation's failpoints, and any other its clean run passed (run: data.* too)."""
    return sorted(set(FAILPOINTS_OF[p.op]) | set(p.passes))


def pick_kill(p: Project, rng: random.Random, i: int) -> str:
    """Trial i: first each failpoint the clean run passed, once (with N among its passes),
    so a narrow window is never left to chance; then a failpoint or a random delay."""
    reached = [name for name in relevant(p) if p.passes.get(name)]
    if i <= len(reached):
        name = reached[i - 1]
    elif rng.random() < 0.5:
        name = rng.choice(relevant(p))
    else:
        return f"delay:{rng.uniform(0, p.seconds):.2f}"
    return f"fp:{name}:{rng.randint(1, max(p.passes.get(name, 0), 1))}"


# ---- a trial -----------------------------------------------------------------------------

def trial(p: Project, i: int, kill: str) -> dict[str, Any]:
    import faults_checks as c

    argv, new_hash, n_added = prepare(p, i)
    old, hidden = c.data_files(p.root), c.hidden(p.root)
    registry = c.registry_state(p.root, MODEL, ALIAS)
    outcome = run_killed(p, argv, kill, p.inputs / f"trial-{i}-killed.log")
    problems = c.check_data_after_kill(p.root, old, new_hash, n_added)
    if outcome != "killed" and not outcome.endswith("exited 0"):  # it failed on its own
        problems.append(c.Problem("command", f"{outcome} without being killed"))
    t0 = time.perf_counter()
    rerun = reap(start(p, segen_exe() + argv, p.env, p.inputs / f"trial-{i}-rerun.log"))
    seconds = time.perf_counter() - t0
    if rerun != 0:
        tail = (p.inputs / f"trial-{i}-rerun.log").read_text().strip().splitlines()[-3:]
        problems.append(c.Problem("rerun", f"exited {rerun}: {' | '.join(tail)[-400:]}"))
    twice = n_added * (1 if outcome == "killed" else 2)  # a completed add, then its rerun
    problems += (c.check_leftovers(p.root, hidden) + c.check_store(p.root)
                 + c.check_pointers(p.root) + c.check_checkpoints(p.root)
                 + c.check_data_after_rerun(p.root, old, new_hash, twice)
                 + c.check_versions(p.root, MODEL)
                 + c.check_champion(registry, c.registry_state(p.root, MODEL, ALIAS), ALIAS))
    return {"op": p.op, "trial": i, "kill": kill, "outcome": outcome, "rerun_rc": rerun,
            "rerun_s": round(seconds, 1), "problems": [str(x) for x in problems],
            "survived": not problems, "lost": sum(x.lost for x in problems)}


def make_project(op: str, base: Path) -> Project:
    """A fresh project with a registered champion (promote: and a second version)."""
    root = base / op
    init_project(root, TINY)
    p = Project(op, root, base / f"{op}-inputs", dict(os.environ))
    p.inputs.mkdir()
    runs = 2 if op == "promote" else 1
    for seed in range(runs):
        write_params(root, {"unet": {"seed": seed}})
        rc = reap(start(p, segen_exe() + ["run", *STAGES, "--json"], p.env,
                        p.inputs / f"setup-{seed}.log"))
        if rc != 0:
            raise RuntimeError(f"{op}: set-up run exited {rc}, see {p.inputs}")
    return p


# ---- the report --------------------------------------------------------------------------

def report(results: list[dict[str, Any]], projects: dict[str, Project], seed: int) -> str:
    lines = [f"fault injection, seed {seed}",
             (f"{'operation':<13} {'trials':>6} {'survived':>8} {'lost':>5} {'not killed':>10}"
              f" {'calib s':>7}  failpoint passes (clean run)")]
    for op, p in projects.items():
        rows = [r for r in results if r["op"] == op]
        lines.append(f"{op:<13} {len(rows):>6} {sum(r['survived'] for r in rows):>8} "
                     f"{sum(r['lost'] > 0 for r in rows):>5} "
                     f"{sum(r['outcome'] != 'killed' for r in rows):>10} {p.seconds:>7.1f}  "
                     + ", ".join(f"{k} {p.passes[k]}" for k in relevant(p)))
    lines.append(f"{'total':<13} {len(results):>6} {sum(r['survived'] for r in results):>8} "
                 f"{sum(r['lost'] > 0 for r in results):>5} "
                 f"{sum(r['outcome'] != 'killed' for r in results):>10}")
    for r in results:
        if not r["survived"] or r["outcome"] != "killed":
            lines.append(f"- {r['op']} trial {r['trial']} (seed {seed}) --kill {r['kill']}: "
                         f"{r['outcome']}; rerun exit {r['rerun_rc']}")
            lines += [f"    {problem}" for problem in r["problems"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=35, help="in all, spread over --ops")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill", help="this kill in every trial: fp:NAME:N or delay:SECONDS")
    parser.add_argument("--keep", action="store_true", help="keep the projects (printed)")
    args = parser.parse_args()
    base = fresh_dir("segen-faults-", keep=args.keep)
    bench_environment(base / "state")
    per_op = [args.trials // len(args.ops) + (k < args.trials % len(args.ops))
              for k in range(len(args.ops))]
    projects, results, t0 = {}, [], time.perf_counter()
    for op, n in zip(args.ops, per_op):
        p = projects[op] = make_project(op, base)
        calibrate(p)
        print(f"{op}: project {p.root}, clean run {p.seconds:.1f} s, passes {dict(p.passes)}",
              flush=True)
        for i in range(1, n + 1):
            kill = args.kill or pick_kill(p, random.Random(f"{args.seed}-{op}-{i}"), i)
            results.append(trial(p, i, kill))
            r = results[-1]
            print(f"  trial {i}: {kill} -> {r['outcome']}; rerun {r['rerun_rc']} "
                  f"({r['rerun_s']} s); {'ok' if r['survived'] else r['problems']}", flush=True)
    text = report(results, projects, args.seed)
    print(text)
    path = write_json("faults", {"seed": args.seed, "ops": args.ops, "trials": results,
                                 "seconds": round(time.perf_counter() - t0, 1),
                                 "calibration": {op: {"seconds": round(p.seconds, 1),
                                                      "passes": dict(p.passes)}
                                                 for op, p in projects.items()}})
    print(f"wrote {path}")
    return 0 if all(r["survived"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
