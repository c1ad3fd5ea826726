"""Run the benchmarks one after the other and print their figures (`make bench`).

  bench/train_throughput.py  train_unet stage vs a bare PyTorch loop (images/s, ratio)
  bench/cached_rerun.py      a fully cached `segen run` vs `dvc status`; a params error
  bench/generative.py        generative models: it/s and peak memory, FID/KID/precision/
                             recall beside floor/ceiling, U-Net IoU with vs without
                             synthetic pairs (a full `segen run`: tens of minutes on 2 cores)
  bench/isbi_unet.py         U-Net on ISBI 2012 membranes, held-out slices 25-29
                             (only with --with-isbi: about 15 minutes on 2 CPU cores)

Each runs in its own subprocess (its own fresh /tmp project and environment), never two at
once, so they do not compete for the CPUs. Each prints its own table and writes
bench/out/<name>.json; this script prints a combined summary from those files at the end.
--quick runs each with small settings (a smoke test of the scripts, not figures to quote).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

QUICK = {
    "train_throughput": ["--n-images", "80", "--epochs", "1", "--repeats", "1"],
    "cached_rerun": ["--repeats", "1"],
    "isbi_unet": ["--epochs", "1"],
    "generative": ["--quick"],
}


def run(name: str, extra: list[str]) -> tuple[int, float]:
    cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    rc = subprocess.call(cmd)
    return rc, time.perf_counter() - start


def summary_rows(name: str) -> list[tuple[str, str]]:
    path = OUT / f"{name}.json"
    if not path.is_file():
        return [(name, "no results")]
    r = json.loads(path.read_text())
    if name == "train_throughput":
        return [("train: bare loop", f"{r['bare_images_per_second']:.1f} img/s"),
                ("train: train_unet stage", f"{r['stage_images_per_second']:.1f} img/s (recorded "
                 f"{r['stage_recorded_images_per_second_median']:.1f})"),
                ("train: ratio stage / bare", f"{r['ratio_stage_over_bare']:.3f}")]
    if name == "cached_rerun":
        return [("run: cold (tiny params)", f"{r['cold_seconds']:.2f} s"),
                ("run: fully cached / dvc status",
                 f"{r['ratio_cached_over_dvc_status']:.2f} x"),
                ("run: cached --stages X / dvc status X",
                 f"{r['ratio_cached_one_target_over_dvc_status']:.2f} x"),
                ("run: params error", f"{r['params_error_seconds']:.2f} s, exit "
                 f"{r['params_error_exit_code']}")]
    if name == "generative":
        return generative_rows(r)
    h, b = r["held_out"], r["budget"]
    return [("isbi: membrane Dice", f"{h['membrane_dice']:.4f}"),
            ("isbi: mean Dice / mean IoU", f"{h['mean_dice']:.4f} / {h['mean_iou']:.4f}"),
            ("isbi: budget", f"{b['epochs']} epochs, image {b['image_size']}, crop "
             f"{b['crop_size']}, {b['train_wall_seconds'] or 0:.0f} s train, "
             f"{b['cpu_threads']} threads")]


def generative_rows(r: dict) -> list[tuple[str, str]]:
    rows = [(f"gen: {kind} ({device})", f"{v['iterations_per_second']:.2f} it/s")
            for device in ("cpu", "cuda") for kind, v in r["speed"].get(device, {}).items()]
    for kind, q in r.get("quality", {}).get("models", {}).items():
        if "fid" in q:
            rows.append((f"gen: {kind} FID / KID", f"{q['fid']:.2f} / {q['kid']:.4f}"))
    refs = r.get("quality", {}).get("references", {})
    if "ref_floor_fid" in refs and "ref_ceiling_fid" in refs:
        rows.append(("gen: FID floor / ceiling", f"{refs['ref_floor_fid']:.2f} / "
                     f"{refs['ref_ceiling_fid']:.2f}"))
    s = r.get("synthetic", {})
    if "mean_iou_with" in s:
        rows.append(("gen: U-Net IoU without / with synthetic",
                     f"{s['mean_iou_without']:.4f} / {s['mean_iou_with']:.4f}"))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--with-isbi", action="store_true", help="also run bench/isbi_unet.py")
    p.add_argument("--quick", action="store_true", help="small settings (smoke test)")
    args = p.parse_args()
    names = ["train_throughput", "cached_rerun", "generative"] + (
        ["isbi_unet"] if args.with_isbi else [])
    failed = []
    for name in names:
        (OUT / f"{name}.json").unlink(missing_ok=True)  # never report a stale result
        rc, seconds = run(name, QUICK[name] if args.quick else [])
        print(f"=== {name}: exit {rc} after {seconds:.0f} s", flush=True)
        if rc:
            failed.append(name)
    rows = [row for name in names for row in summary_rows(name)]
    width = max(len(k) for k, _ in rows)
    print("\nsummary" + (" (--quick: smoke-test settings)" if args.quick else ""))
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in rows))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
