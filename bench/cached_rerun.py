"""A fully cached `segen run` against `dvc status` on the same pipeline, side by side.

What it measures (wall seconds of subprocesses, in one fresh clone of this repository under
/tmp, so dvc.yaml, the code and params.yaml are the clone's own):
  cold          `segen run --json` with tiny params (every stage of the pipeline that is
                on by default: data, U-Net, clustering, feature extractor, 8 generators).
  cached        the same command again, nothing changed: every stage must be a cache hit
                (checked in the --json summary). Answered from the store: no Prefect.
  dvc status    `dvc status` on the same dvc.yaml (it hashes every stage's deps: the code
                files, data/ and the result pointers), alternated with the cached runs.
  cached X      `segen run --stages register_unet` against `dvc status register_unet`.
  params error  `segen run` with a typo'd key in params.yaml: seconds to the exit-2 message.
Ratios are against `dvc status` measured in the same run. Medians of --repeats.

Usage:  .venv/bin/python bench/cached_rerun.py [--repeats 5]
Writes bench/out/cached_rerun.json.
"""
from __future__ import annotations

import argparse
import os
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
    median,
    merge,
    table,
    timed_run,
    write_json,
)

TINY_MODELS = {kind: {"epochs": 1, "width": 4} for kind in (
    "gan", "dcgan", "wgan_gp", "vae", "cgan", "cvae", "pix2pix", "cyclegan")}
TINY = {  # as tests/conftest.py's TINY: the whole pipeline trains in about a minute
    "dataset": {"n_images": 40, "image_size": 32},
    "preprocess": {"image_size": 32, "val_fraction": 0.15, "test_fraction": 0.2},
    "unet": {"depth": 2, "base_width": 4, "epochs": 2, "batch_size": 8, "augment": False},
    "evaluate": {"batch_size": 16, "grid_images": 4},
    "kmeans": {"fit_pixels": 2000, "n_init": 2},
    "dbscan": {"fit_pixels": 1000, "min_samples": 4},
    "cluster_evaluate": {"silhouette_pixels": 200, "grid_images": 4},
    "generative": {"image_size": 16, "latent_dim": 8, "batch_size": 8, "sample_grid": 8,
                   "eval_samples": 16, "divergence": {"max_loss": 10000.0, "collapse_std": 0.0}},
    "feature_extractor": {"width": 4, "feature_dim": 8, "epochs": 1, "batch_size": 8},
    "generative_evaluate": {"kid_subset_size": 4, "k": 2},
    **TINY_MODELS,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="alternated measurements (5)")
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def clone(work: Path) -> Path:
    """A clone of this repository's HEAD with tiny params and its DVC remote in work/."""
    root = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params = merge(merge(params, TINY), {"data": {"remote": str(work / "remote")}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["stages"]}


def alternate(a: list[str], b: list[str], root: Path, env: dict[str, str], repeats: int,
              check: Any) -> tuple[list[float], list[float]]:
    first, second = [], []
    for _ in range(repeats):
        seconds, proc = timed_run(a, cwd=root, env=env)
        check(proc)
        first.append(seconds)
        second.append(timed_run(b, cwd=root, env=env)[0])
    return first, second


def params_error_seconds(root: Path, env: dict[str, str]) -> tuple[float, int, str]:
    bad = root / "params-typo.yaml"
    text = (root / "params.yaml").read_text().replace("  epochs: 2\n", "  epochz: 2\n", 1)
    bad.write_text(text)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "segen.cli.main", "run", "--params", str(bad)],
                          cwd=root, env=env, text=True, capture_output=True)
    return time.perf_counter() - start, proc.returncode, proc.stderr.strip()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    work = fresh_dir("segen-bench-cached-", keep=args.keep)
    env = {**os.environ, **bench_environment(work / "state")}
    root = clone(work)
    segen = [sys.executable, "-m", "segen.cli.main", "run", "--json"]  # the clone's code
    dvc = [str(Path(sys.executable).with_name("dvc")), "status"]
    print(f"clone {root}", flush=True)

    cold_s, proc = timed_run(segen, cwd=root, env=env)
    cold = statuses(last_json(proc.stdout))
    print(f"  cold run {cold_s:.1f} s, {len(cold)} stages", flush=True)

    def all_cached(proc: subprocess.CompletedProcess) -> None:
        found = statuses(last_json(proc.stdout))
        assert set(found.values()) <= {"cached", "skipped"}, found

    cached_s, dvc_s = alternate(segen, dvc, root, env, args.repeats, all_cached)
    one_s, dvc_one_s = alternate([*segen, "--stages", "register_unet"],
                                 [*dvc, "register_unet"], root, env, args.repeats, all_cached)
    error_s, error_rc, error_text = params_error_seconds(root, env)
    cached, status, one, status_one = map(median, (cached_s, dvc_s, one_s, dvc_one_s))
    results = {
        "machine": machine(), "warning": warning, "tiny_params": TINY, "repeats": args.repeats,
        "cold_seconds": cold_s, "stages": len(cold), "cached_seconds": cached_s,
        "dvc_status_seconds": dvc_s, "cached_one_target_seconds": one_s,
        "dvc_status_one_target_seconds": dvc_one_s,
        "ratio_cached_over_dvc_status": cached / status,
        "ratio_cached_one_target_over_dvc_status": one / status_one,
        "params_error_seconds": error_s, "params_error_exit_code": error_rc,
        "params_error_message": error_text,
    }
    write_json("cached_rerun", results)
    print(table([
        ("cold segen run", f"{cold_s:7.2f} s ({len(cold)} stages)"),
        ("fully cached segen run", f"{cached:7.2f} s (median)"),
        ("dvc status, same pipeline", f"{status:7.2f} s (median)"),
        ("  ratio cached / dvc status", f"{cached / status:7.2f} x  (target <= 1.5)"),
        ("cached --stages register_unet", f"{one:7.2f} s"),
        ("dvc status register_unet", f"{status_one:7.2f} s"),
        ("  ratio", f"{one / status_one:7.2f} x  (target <= 1.5)"),
        ("params error (typo'd key)", f"{error_s:7.2f} s, exit {error_rc}, traceback: "
                                      f"{'yes' if 'Traceback' in error_text else 'no'}"),
    ], "cached segen run vs dvc status" + (f"\n{warning}" if warning else "")))
    return results


if __name__ == "__main__":
    main()
