"""Generative models: training speed and peak memory per model, FID/KID/precision/recall per
model beside the floor and ceiling references, and whether synthetic pairs from the
mask-to-image generator change the U-Net's test IoU.

1. Speed and memory: for each kind of models/generative, in a subprocess of its own,
   `train_step` on a random batch shaped as params.yaml's generative section (batch_size,
   image_size, latent_dim; the kind's width and loss weights): iterations per second after
   two warm-up steps, and the child's peak resident memory (from wait4; includes the ~0.3
   GiB of importing torch, reported apart as the baseline). On a GPU too when there is one
   (peak from torch.cuda.max_memory_allocated).
2. Quality and the synthetic loop: one `segen run` on the default dataset (params.yaml with
   synthetic.enabled: true), in a fresh /tmp project through the real CLI; then per model
   the evaluate_<kind> scores (pinned extractor, test split) beside the references (train
   split vs test split: the ceiling; per-pixel mean + noise: the floor), and the U-Net's
   test mean IoU trained without (evaluate_unet) and with (evaluate_unet_synthetic) the
   synthetic pairs, with the paired per-image difference.

Scarce labels (params-scarce.yaml's setting: 10% of the train split labelled):
        .venv/bin/python bench/generative.py --synthetic-only --skip-speed \
            --set preprocess.labelled_fraction=0.1

Usage:  .venv/bin/python bench/generative.py [--quick] [--skip-run | --skip-speed]
--quick: tiny settings (a smoke test of the script, not figures to quote).
       [--dataset digits]  (scikit-learn's digits: the models that need no masks)
Writes bench/out/generative.json (generative-digits.json with --dataset digits).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    bench_environment,
    busy_warning,
    fresh_dir,
    init_project,
    last_json,
    machine,
    merge,
    overrides_from,
    segen_exe,
    table,
    write_json,
)

KINDS = ("gan", "dcgan", "wgan_gp", "vae", "cgan", "cvae", "pix2pix", "cyclegan")
STEPS = {"cpu": 10, "cuda": 50}
QUICK = {  # a smoke test: every stage runs, in a few minutes on 2 cores
    "dataset": {"n_images": 48, "image_size": 32}, "preprocess": {"image_size": 32},
    "unet": {"depth": 2, "base_width": 4, "epochs": 2, "batch_size": 8},
    "generative": {"image_size": 16, "batch_size": 8, "eval_samples": 16, "sample_grid": 4,
                   # a few steps cannot spread samples: no collapse check (as tests/conftest)
                   "divergence": {"max_loss": 10000.0, "collapse_std": 0.0}},
    "feature_extractor": {"epochs": 1, "width": 4, "feature_dim": 8},
    "generative_evaluate": {"kid_subset_size": 4, "k": 1},
    "synthetic": {"n_pairs": 16},
    **{kind: {"epochs": 1, "width": 4} for kind in KINDS},
}


def step_child(kind: str, device: str, steps: int) -> dict[str, Any]:
    """(in the child) iterations/s of train_step for kind with params.yaml's settings."""
    import torch

    from models.generative import (
        GenSpec,
        create,
        default_betas,
        param_groups,
        train_step,
    )
    from segen.config import load_params

    params = load_params(REPO / "params.yaml")
    gen, section = params.generative, getattr(params, kind)
    spec = GenSpec(channels=3, image_size=gen.image_size, n_classes=4,
                   latent_dim=gen.latent_dim, width=section.width)
    torch.manual_seed(0)
    dev = torch.device(device)
    nets = create(kind, spec).to(dev)
    optimisers = {name: torch.optim.Adam(ps, section.lr, betas=default_betas(kind))
                  for name, ps in param_groups(kind, nets).items()}
    b, s = gen.batch_size, gen.image_size
    batch = {"image": torch.rand(b, 3, s, s, device=dev) * 2 - 1,
             "label": torch.randint(0, 4, (b,), device=dev),
             "mask": torch.randint(0, 4, (b, s, s), device=dev),
             "domain": torch.arange(b, device=dev) % 2}
    generator = torch.Generator(dev).manual_seed(0)
    for _ in range(2):  # warm-up: allocator, cuDNN autotuning
        train_step(kind, nets, optimisers, batch, section.weights(), generator)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        losses = train_step(kind, nets, optimisers, batch, section.weights(), generator)
    float(sum(losses.values()))  # waits for the device
    seconds = time.perf_counter() - start
    out = {"iterations_per_second": steps / seconds, "images_per_second": steps * b / seconds,
           "steps": steps, "batch_size": b, "image_size": s, "width": section.width,
           "parameters": sum(p.numel() for p in nets.parameters())}
    if dev.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(args: list[str]) -> tuple[dict[str, Any], float]:
    """The child's JSON line and its peak resident memory in MiB (wait4: this child only)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                            text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {args} exited {proc.returncode}:\n{stdout[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def speed_and_memory(devices: list[str]) -> dict[str, Any]:
    baseline = run_child(["--child-baseline"])[1]
    result: dict[str, Any] = {"baseline_rss_mib": baseline}
    for device in devices:
        for kind in KINDS:
            figures, rss = run_child(["--child", kind, device, str(STEPS[device])])
            result.setdefault(device, {})[kind] = {**figures, "peak_rss_mib": rss}
            print(f"  {device} {kind:9s} {figures['iterations_per_second']:7.2f} it/s "
                  f"peak RSS {rss:.0f} MiB", flush=True)
    return result


def pipeline_run(quick: bool, dataset: str, profile: Path, settings: list[str]
                 ) -> dict[str, Any]:
    """A cold `segen run` of the profile (synthetic pairs on for the shapes data; the digits
    have no masks, so their mask stages skip); every stage's result, from its pointer."""
    root = fresh_dir("segen-bench-gen-") / "proj"
    overrides = merge(QUICK if quick else {}, {"synthetic": {"enabled": dataset == "shapes"}})
    init_project(root, merge(overrides, overrides_from(settings)), profile)
    if dataset == "digits":
        subprocess.run([*segen_exe(), "data", "builtin", "digits"], cwd=root, check=True,
                       capture_output=True)
    start = time.perf_counter()
    proc = subprocess.run([*segen_exe(), "run", "--json"], cwd=root, text=True,
                          capture_output=True, timeout=7200)
    seconds = time.perf_counter() - start
    try:  # exit 1: some model stage failed (e.g. a diverged generator); the rest still count
        summary = last_json(proc.stdout)
    except ValueError:
        raise RuntimeError(f"segen run exited {proc.returncode}:\n{proc.stderr[-4000:]}") from None
    for s in summary["stages"]:
        if s["status"] in ("failed", "skipped"):
            print(f"  {s['name']}: {s['status']} ({s.get('reason', '')[:300]})", flush=True)
    stages = _stage_records(root)
    return {"seconds": seconds, "summary": summary, "stages": stages, "root": root}


CHAIN = ("version_data", "validate", "preprocess", "train_unet", "evaluate_unet",
         "train_feature_extractor", "train_pix2pix", "evaluate_pix2pix", "register_pix2pix",
         "synthesize_pairs", "train_unet_synthetic", "evaluate_unet_synthetic")


def chain_child(root: str) -> dict[str, Any]:
    """(in the child) only the stages the synthetic comparison needs, one after the other
    (`segen stage NAME` each, in one process: one Prefect start)."""
    from flows.pipeline import single_stage

    os.chdir(root)  # as `segen stage` runs, from the project root
    statuses = []
    for name in CHAIN:
        summary = single_stage(root, str(Path(root) / "params.yaml"), name)
        statuses += [s for s in summary["stages"] if s["name"] == name]
        print(f"  {name}: {statuses[-1]['status']}", file=sys.stderr, flush=True)
    return {"stages": statuses}


def synthetic_chain(quick: bool, unet_epochs: int | None, settings: list[str]
                    ) -> dict[str, Any]:
    """The U-Net with vs without synthetic pairs, without the other models' stages."""
    root = fresh_dir("segen-bench-gen-") / "proj"
    overrides = merge(QUICK if quick else {}, {"synthetic": {"enabled": True}})
    overrides = merge(overrides, overrides_from(settings))
    if unet_epochs:
        overrides = merge(overrides, {"unet": {"epochs": unet_epochs}})
    init_project(root, overrides)
    start = time.perf_counter()
    summary, _ = run_child(["--child-chain", str(root)])
    stages = _stage_records(root)
    return {"seconds": time.perf_counter() - start, "summary": summary, "stages": stages,
            "root": root, "overrides": overrides}


QUALITY_KEYS = ("fid", "kid_mean", "precision", "recall", "accuracy", "ref_real_accuracy",
                "unet_mean_iou", "ref_real_unet_mean_iou", "elbo")


def quality(run: dict[str, Any]) -> dict[str, Any]:
    """FID/KID/precision/recall per model beside the references (from evaluate_<kind>)."""
    rows: dict[str, Any] = {}
    references: dict[str, float] = {}
    for kind in KINDS:
        result = run["stages"].get(f"evaluate_{kind}")
        if result is None:
            rows[kind] = {"status": _status(run, f"evaluate_{kind}")}
            continue
        metrics = result["info"]["metrics"]
        rows[kind] = {**{k: metrics[k] for k in QUALITY_KEYS if k in metrics},
                      "protocol": result["info"].get("protocol")}
        references = {k: v for k, v in metrics.items() if k.startswith("ref_")}
    return {"models": rows, "references": references}


def _stage_records(root: Path) -> dict[str, dict[str, Any]]:
    """Each stage's latest result record, with the folder it is stored in (pointers name
    no path: a result lives at <store>/<stage>/<key>)."""
    from segen.pipeline.store import read_pointer
    from segen.project import Project

    project = Project.at(root)
    records = {}
    for pointer in project.pointers.glob("*.json"):
        result = read_pointer(project, pointer.stem)
        records[pointer.stem] = {"info": result.info, "key": result.key, "path": result.path}
    return records


def synthetic_effect(run: dict[str, Any]) -> dict[str, Any]:
    """Test mean IoU without and with synthetic pairs, and the paired per-image difference."""
    import numpy as np

    base, synth = (run["stages"].get(s) for s in ("evaluate_unet", "evaluate_unet_synthetic"))
    if base is None or synth is None:
        return {"status": _status(run, "evaluate_unet_synthetic")}
    without, with_ = (np.load(Path(r["path"]) / "per_image.npz")["mean_iou"]
                      for r in (base, synth))
    diff = with_ - without  # (N,) paired by test image
    from segen.registry.promotion.bootstrap import paired_bootstrap

    interval = paired_bootstrap(with_, without, samples=2000, confidence=0.95, seed=0)
    made_by = run["stages"]["synthesize_pairs"]["info"]
    prepared = run["stages"]["preprocess"]["info"]
    return {"mean_iou_without": base["info"]["metrics"]["mean_iou"],
            "mean_iou_with": synth["info"]["metrics"]["mean_iou"],
            "mean_dice_without": base["info"]["metrics"]["mean_dice"],
            "mean_dice_with": synth["info"]["metrics"]["mean_dice"],
            "per_image_mean_diff": float(np.nanmean(diff)),
            "per_image_diff_ci95": [interval["ci_low"], interval["ci_high"]],
            "train_images": prepared["train"], "unlabelled_images": prepared.get("unlabelled", 0),
            "test_images": prepared["test"],
            "images_better": int((diff > 0).sum()), "images_worse": int((diff < 0).sum()),
            "n_pairs": made_by["n_pairs"],
            "generator": f"{made_by['generator_model']}/{made_by['generator_version']}"}


def _status(run: dict[str, Any], stage: str) -> str:
    for s in run["summary"].get("stages", []):
        if s["name"] == stage:
            return f"{s['status']}: {s.get('reason', '')}".strip(": ")
    return "not in the run"


def report(result: dict[str, Any]) -> str:
    rows = []
    for device in ("cpu", "cuda"):
        for kind, r in result["speed"].get(device, {}).items():
            memory = f"GPU {r['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in r else \
                f"RSS {r['peak_rss_mib']:.0f} MiB"
            rows.append((f"{device} {kind}", f"{r['iterations_per_second']:.2f} it/s "
                         f"({r['images_per_second']:.0f} img/s), peak {memory}"))
    q = result.get("quality", {})
    for kind, r in q.get("models", {}).items():
        rows.append((f"quality {kind}", "  ".join(
            f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float)) or r.get("status", "")))
    for name, value in q.get("references", {}).items():
        rows.append((f"reference {name}", f"{value:.4g}"))
    if result.get("train_seconds"):
        rows.append(("train seconds", ", ".join(f"{k} {v:.0f}" for k, v in
                                                result["train_seconds"].items())
                     + f"; all generators {result['generators_train_seconds']:.0f} s"))
    s = result.get("synthetic")
    if s and "mean_iou_with" in s:
        rows.append(("U-Net test mean IoU", f"without {s['mean_iou_without']:.4f}, with "
                     f"{s['n_pairs']} synthetic pairs {s['mean_iou_with']:.4f} (per-image "
                     f"mean diff {s['per_image_mean_diff']:+.4f}, 95% paired bootstrap "
                     f"[{s['per_image_diff_ci95'][0]:+.4f}, {s['per_image_diff_ci95'][1]:+.4f}]"
                     f"; {s['train_images']} labelled train images; {s['images_better']} better, "
                     f"{s['images_worse']} worse)"))
    elif s:
        rows.append(("U-Net with synthetic pairs", s["status"]))
    return table(rows, "generative models (bench/generative.py)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    p.add_argument("--skip-run", action="store_true", help="speed and memory only")
    p.add_argument("--skip-speed", action="store_true", help="the pipeline run only")
    p.add_argument("--synthetic-only", action="store_true", help="only the stages of the "
                   "U-Net with vs without synthetic pairs (pix2pix and its evaluation too)")
    p.add_argument("--dataset", choices=("shapes", "digits"), default="shapes",
                   help="shapes: the default dataset; digits: `segen data builtin digits`")
    p.add_argument("--unet-epochs", type=int, help="override unet.epochs (both U-Nets)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a params.yaml value")
    p.add_argument("--profile", type=Path, default=REPO / "params.yaml",
                   help="the params file the run starts from (e.g. params-long.yaml)")
    p.add_argument("--child-chain", help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_baseline:
        import torch  # noqa: F401  what every child pays before it trains
        print(json.dumps({}))
        return 0
    if args.child_chain:
        print(json.dumps(chain_child(args.child_chain)))
        return 0
    if args.child:
        kind, device, steps = args.child
        print(json.dumps(step_child(kind, device, 2 if device == "cpu" and
                                    os.environ.get("SEGEN_BENCH_QUICK") else int(steps))))
        return 0
    warning = busy_warning()
    bench_environment(fresh_dir("segen-bench-state-"))
    import torch

    if args.quick:
        os.environ["SEGEN_BENCH_QUICK"] = "1"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict[str, Any] = {"machine": machine(), "quick": args.quick, "dataset": args.dataset,
                              "speed": {} if args.skip_speed else speed_and_memory(devices)}
    if not args.skip_run:
        run = (synthetic_chain(args.quick, args.unet_epochs, args.set) if args.synthetic_only
               else pipeline_run(args.quick, args.dataset, args.profile, args.set))
        result["overrides"] = run.get("overrides")
        seconds = {s["name"]: s.get("seconds") for s in run["summary"]["stages"]}
        trained = {k: seconds.get(f"train_{k}") for k in KINDS if seconds.get(f"train_{k}")}
        result.update(train_seconds=trained, generators_train_seconds=sum(trained.values()),
                      run_seconds=run["seconds"], quality=quality(run),
                      synthetic=synthetic_effect(run),
                      stages={s["name"]: s["status"] for s in run["summary"]["stages"]})
    if warning:
        result["warning"] = warning
        print(warning)
    print(report(result))
    name = "generative" if args.dataset == "shapes" else f"generative-{args.dataset}"
    print(f"wrote {write_json(name, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
