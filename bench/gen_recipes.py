"""Which training recipe wins, per generative model: each variant of a kind's params section
trained and scored by the real stages (train_<kind>, evaluate_<kind>) on one project's data,
preprocess and pinned feature extractor, over several seeds, beside the train-vs-test
reference. This is the measurement behind params.yaml's recipe defaults.

Usage:  .venv/bin/python bench/gen_recipes.py --kind dcgan [--variants a,b] [--seeds 0 1 2]
        [--set SECTION.KEY=VALUE ...] [--dataset digits]
Writes bench/out/gen-recipes-<kind>[-digits].json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bench_environment,
    busy_warning,
    fresh_dir,
    init_project,
    machine,
    merge,
    overrides_from,
    segen_exe,
    table,
    write_json,
)

AUG = ["color", "translation", "cutout"]
SN_HINGE = {"loss": "hinge", "spectral_norm": True}
TTUR = {"lr": 0.0001, "d_lr": 0.0004}  # Heusel et al. 2017's 1:4 (SAGAN's rates)
# The options one at a time against the paper's baseline, then combined.
GAN_VARIANTS = {
    "baseline": {}, "hinge_sn": SN_HINGE, "ema": {"ema": 0.99}, "diffaugment": {"augment": AUG},
    "ttur": TTUR, "r1": {"r1_weight": 1.0},
    "ema_aug": {"ema": 0.99, "augment": AUG}, "ema_r1": {"ema": 0.99, "r1_weight": 1.0},
    "ema_0999": {"ema": 0.999},
    "sn_ema_aug": {**SN_HINGE, "ema": 0.99, "augment": AUG},
    "sn_ema_aug_ttur": {**SN_HINGE, "ema": 0.99, "augment": AUG, **TTUR},
}
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "gan": GAN_VARIANTS, "dcgan": GAN_VARIANTS,
    "cgan": {**GAN_VARIANTS, "projection": {**SN_HINGE, "projection": True},
             "projection_bce": {"projection": True},
             "projection_ema_aug": {**SN_HINGE, "projection": True, "ema": 0.99,
                                    "augment": AUG}},
    "wgan_gp": {"baseline": {}, "ema": {"ema": 0.99}, "diffaugment": {"augment": AUG},
                "ttur": TTUR, "ema_aug": {"ema": 0.99, "augment": AUG}},
    "pix2pix": {"baseline": {}, "epochs_50": {"epochs": 50},
                "epochs_50_l1_100": {"epochs": 50, "l1_weight": 100.0}},
    "vae": {"baseline": {}, "calibrated": {"likelihood": "calibrated"}},
    "cvae": {"baseline": {}, "calibrated": {"likelihood": "calibrated"}},
}
METRICS = ("fid", "kid_mean", "precision", "recall", "accuracy", "ref_real_accuracy",
           "unet_mean_iou", "ref_real_unet_mean_iou")
NEEDS_UNET = ("pix2pix",)  # evaluate_pix2pix scores its images with the trained U-Net


def chain_child(root: str, jobs: str) -> list[dict[str, Any]]:
    """(in the child) for each (params file, stages) job, the stages one after the other in
    this one process (one Prefect start), with each stage's seconds and result."""
    from flows.pipeline import single_stage
    from segen.pipeline.store import read_pointer
    from segen.project import Project

    out = []
    for job in json.loads(jobs):
        record: dict[str, Any] = {"label": job["label"]}
        for name in job["stages"]:
            start = time.perf_counter()
            summary = single_stage(root, job["params"], name)
            status = next(s for s in summary["stages"] if s["name"] == name)
            record[name] = {"status": status["status"], "seconds": time.perf_counter() - start,
                            "reason": status.get("reason", "")}
            if status["status"] not in ("ran", "cached"):
                break  # e.g. a diverged or collapsed generator: a result of its own
        evaluated = record.get(job["stages"][-1], {}).get("status") in ("ran", "cached")
        result = read_pointer(Project.at(root), job["stages"][-1]) if evaluated else None
        record["metrics"] = result.info.get("metrics", {}) if result else {}
        failed = [f"{n} {r['status']}: {r['reason'][:200]}" for n, r in record.items()
                  if isinstance(r, dict) and r.get("status") not in ("ran", "cached", None)]
        print(f"  {job['label']}: " + "; ".join(failed) + " ".join(f"{k} {v:.4g}" for k, v in
                                               record["metrics"].items()
                                               if k in METRICS), file=sys.stderr, flush=True)
        out.append(record)
    return out


def run(kind: str, variants: list[str], seeds: list[int], base: dict[str, Any],
        dataset: str) -> list[dict[str, Any]]:
    root = fresh_dir("segen-bench-recipes-") / "proj"
    params = init_project(root, base)
    if dataset == "digits":
        subprocess.run([*segen_exe(), "data", "builtin", "digits"], cwd=root, check=True,
                       capture_output=True)
    default = yaml.safe_load(params.read_text())
    jobs = []
    for variant in variants:
        for seed in seeds:
            label = f"{variant} seed {seed}"
            values = merge(default, {kind: VARIANTS[kind][variant],
                                     "generative": {"seed": seed}})
            path = root / f"params-{variant}-{seed}.yaml"
            path.write_text(yaml.safe_dump(values, sort_keys=False))
            jobs.append({"label": label, "variant": variant, "seed": seed, "params": str(path),
                         "stages": ["version_data", "validate", "preprocess",
                                    *(("train_unet",) if kind in NEEDS_UNET else ()),
                                    "train_feature_extractor", f"train_{kind}",
                                    f"evaluate_{kind}"]})
    proc = subprocess.run([sys.executable, __file__, "--child", str(root), json.dumps(jobs)],
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"the stages' child exited {proc.returncode}")
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    for job, record in zip(jobs, records):
        record.update(variant=job["variant"], seed=job["seed"])
    return records


def summarise(kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: each metric's mean and spread (min..max) over the seeds, train seconds."""
    out: dict[str, Any] = {}
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = [r for r in records if r["variant"] == variant]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rows],
                                 "failed": [r["seed"] for r in rows if not r["metrics"]],
                                 "train_seconds": statistics.mean(
                                     r[f"train_{kind}"]["seconds"] for r in rows)}
        for metric in METRICS:
            values = [r["metrics"][metric] for r in rows if metric in r["metrics"]]
            if values:
                entry[metric] = {"mean": statistics.mean(values), "min": min(values),
                                 "max": max(values)}
        entry["reference_fid"] = rows[0]["metrics"].get("ref_ceiling_fid")
        out[variant] = entry
    return out


def report(kind: str, summary: dict[str, Any]) -> str:
    rows = []
    for variant, e in summary.items():
        cells = [f"{m} {e[m]['mean']:.4g} [{e[m]['min']:.4g}..{e[m]['max']:.4g}]"
                 for m in METRICS if m in e]
        ref = e.get("reference_fid")
        ratio = f" = {e['fid']['mean'] / ref:.2f}x ref" if ref and "fid" in e else ""
        failed = f"  failed seeds {e['failed']}" if e["failed"] else ""
        rows.append((f"{kind} {variant}", "  ".join(cells) + ratio
                     + f"  train {e['train_seconds']:.0f} s" + failed))
    return table(rows, f"{kind} recipes (bench/gen_recipes.py; mean [min..max] over seeds)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=sorted(VARIANTS), help="the model whose recipes to compare")
    p.add_argument("--variants", help="comma-separated (default: all of the kind's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a params.yaml value for every variant")
    p.add_argument("--dataset", choices=("shapes", "digits"), default="shapes")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(chain_child(*args.child)))
        return 0
    if not args.kind:
        p.error("--kind is required")
    variants = args.variants.split(",") if args.variants else list(VARIANTS[args.kind])
    unknown = set(variants) - set(VARIANTS[args.kind])
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; {args.kind} has {list(VARIANTS[args.kind])}")
    warning = busy_warning()
    bench_environment(fresh_dir("segen-bench-state-"))
    start = time.perf_counter()
    records = run(args.kind, variants, args.seeds, overrides_from(args.set), args.dataset)
    summary = summarise(args.kind, records)
    result = {"machine": machine(), "kind": args.kind, "dataset": args.dataset,
              "overrides": args.set, "seconds": time.perf_counter() - start,
              "variants": {v: VARIANTS[args.kind][v] for v in variants},
              "summary": summary, "records": records, "warning": warning}
    print(report(args.kind, summary))
    suffix = "" if args.dataset == "shapes" else f"-{args.dataset}"
    print(f"wrote {write_json(f'gen-recipes-{args.kind}{suffix}', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
