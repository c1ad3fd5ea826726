"""Training throughput of the pipeline's train_unet stage against a bare PyTorch loop.

What it measures
  (i)  stage: the real train_unet stage body (a torch DataLoader over the preprocess
       arrays, torchvision v2 joint transforms),
       `tasks.segmenters.TRAIN_TASKS["train_unet"].fn(project=..., preprocess=<StageResult>,
       unet=<UNetParams>)`, i.e. the task's function without the
       Prefect engine, so no Prefect server and no cache lookup by Prefect. It still does
       everything the stage does: load the splits, train with tqdm, validate every epoch,
       log params/metrics to MLflow (SQLite store in the project), checkpoint every epoch,
       save model.pt, publish the artifact. Figure: epochs * n_train / wall seconds of the
       whole call; also the `train_images_per_second` the stage itself records in its
       StageResult.info (training loops only, without validation/checkpoints/logging).
  (ii) bare: a plain loop on the same data held in RAM (the loop before the DataLoader) (the preprocess artifact's train split), same
       models.unet.UNet (depth, width), seed, AdamW (lr, weight decay), cosine schedule,
       models.losses.ce_dice_loss, batch size, uint8 -> float normalisation (/255, then the
       preprocess mean/std), the same flips/turns (augment, below) and random crop
       when the params ask for them, same number of epochs. No MLflow, no tqdm, no
       validation, no checkpoints. Its wall time includes loading the arrays.
  The two alternate (bare, stage, bare, stage, ... --repeats times each) in one process;
  the table shows the median of each and the ratio stage / bare (1.0 = no overhead).

How the stage runs more than once without a cache hit
  `.fn` is the caching wrapper (Stage.fn in segen/pipeline/stage.py): it computes the stage key and
  returns the stored result when .segen/store/train_unet/<key> exists, and the trainer
  resumes from .segen/work/train_unet/<key>/checkpoint.pt when that exists. Before every
  stage repetition this script deletes both folders, so each call trains from scratch with
  the very same key, params and seed (simplest, and it changes nothing that is timed).

Set-up (not timed): a fresh git + DVC project under /tmp with params.yaml derived from the
repository's (dataset/preprocess size and unet overrides from the flags); version_data,
validate and preprocess run through their task functions (`.fn`, the same bodies the flow
runs). One-off costs are paid before timing and reported apart: importing torch/mlflow,
creating MLflow's SQLite store and experiment (the first start_run), and a few warm-up
training steps (allocator, thread pool).

Usage:  .venv/bin/python bench/train_throughput.py [--n-images 400 --image-size 64 --epochs 3]
Writes bench/out/train_throughput.json.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: torch is imported inside the functions that run
    import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bench_environment,
    busy_warning,
    fresh_dir,
    init_project,
    machine,
    median,
    table,
    write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-images", type=int, default=400, help="generated images (default 400)")
    p.add_argument("--image-size", type=int, default=64, help="image side in px (default 64)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    p.add_argument("--batch-size", type=int, help="default: params.yaml unet.batch_size")
    p.add_argument("--depth", type=int, help="default: params.yaml unet.depth")
    p.add_argument("--base-width", type=int, help="default: params.yaml unet.base_width")
    p.add_argument("--crop-size", type=int, help="default: params.yaml unet.crop_size")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help="default: params.yaml unet.augment")
    p.add_argument("--repeats", type=int, default=2,
                   help="runs of each (alternating bare, stage); default 2")
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def unet_overrides(args: argparse.Namespace) -> dict[str, Any]:
    chosen = {"epochs": args.epochs, "batch_size": args.batch_size, "depth": args.depth,
              "base_width": args.base_width, "crop_size": args.crop_size,
              "augment": args.augment}
    return {k: v for k, v in chosen.items() if v is not None}


def prepare(work: Path, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Project, params and the preprocess StageResult (stages run through their bodies)."""
    from segen.config import load_params
    from segen.data.versioning import ensure_data
    from segen.project import Project
    from segen.tracking import configure_tracking
    from tasks.data import preprocess, validate, version_data

    params_path = init_project(work / "proj", {
        "dataset": {"n_images": args.n_images, "image_size": args.image_size},
        "preprocess": {"image_size": args.image_size},
        "unet": unet_overrides(args),
    })
    project, params = Project.at(work / "proj"), load_params(params_path)
    configure_tracking(project, params.mlflow)
    ensure_data(project, params.data, params.dataset)
    data = version_data.fn(project=project, data=params.data)
    checked = validate.fn(project=project, version_data=data, validate=params.validate)
    prepared = preprocess.fn(project=project, version_data=data, validate=checked,
                             preprocess=params.preprocess)
    return project, params, prepared


def mlflow_setup(project: Any) -> float:
    """Import mlflow and create its store + experiment once (one-off; not in the ratio)."""
    start = time.perf_counter()
    import mlflow

    from segen.tracking import start_run

    with start_run(project, "bench-warmup", tags={"segen.bench": "warmup"}):
        pass
    mlflow.end_run()
    return time.perf_counter() - start


# --- the bare loop ---------------------------------------------------------------------

def bare_fit(prepared: Any, unet: Any, steps_only: int | None = None) -> tuple[float, int]:
    """Train like the stage with nothing around it; returns (wall seconds, images seen)."""
    import json

    import numpy as np
    import torch

    from models.losses import ce_dice_loss
    from models.unet import UNet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    start = time.perf_counter()
    root = Path(prepared.path)
    meta = json.loads((root / "dataset.json").read_text())
    index = json.loads((root / "split.json").read_text())["train"]
    images = torch.from_numpy(np.load(root / "images.npy")[index])
    masks = torch.from_numpy(np.load(root / "masks.npy")[index].astype(np.int64))
    n, classes = len(images), len(meta["classes"])
    mean = torch.tensor(meta["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"], device=device).view(1, -1, 1, 1)

    torch.manual_seed(unet.seed)
    generator = torch.Generator().manual_seed(unet.seed)
    model = UNet(in_channels=meta["channels"], num_classes=classes, depth=unet.depth,
                 base_width=unet.base_width).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=unet.lr, weight_decay=unet.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=unet.epochs * math.ceil(n / unet.batch_size))
    model.train()
    seen, step = 0, 0
    for _ in range(unet.epochs):
        for idx in torch.randperm(n, generator=generator).split(unet.batch_size):
            x = images[idx].to(device).permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - mean) / std
            y = masks[idx].to(device)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            if unet.augment:
                x, y = augment(x, y, generator)
            if unet.crop_size:
                x, y = random_crop(x, y, unet.crop_size, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(x)
            loss = ce_dice_loss(logits.float(), y, num_classes=classes,
                                dice_weight=unet.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen, step = seen + len(idx), step + 1
            if steps_only is not None and step >= steps_only:
                break
        if steps_only is not None and step >= steps_only:
            break
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, seen


# --- the stage -------------------------------------------------------------------------

def stage_fit(project: Any, prepared: Any, unet: Any) -> tuple[float, dict[str, Any]]:
    """The real stage body from scratch; returns (wall seconds, its StageResult.info)."""
    from tasks.segmenters import TRAIN_TASKS

    train_unet = TRAIN_TASKS["train_unet"]

    for folder in (project.store / "train_unet", project.work / "train_unet"):
        shutil.rmtree(folder, ignore_errors=True)  # no stored hit, no checkpoint to resume
    start = time.perf_counter()
    result = train_unet.fn(project=project, preprocess=prepared, unet=unet)
    seconds = time.perf_counter() - start
    if result.info.get("resumed_from_epoch"):
        raise RuntimeError("the stage resumed from a checkpoint: timing would be wrong")
    return seconds, result.info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    load_before = list(__import__("os").getloadavg())
    work = fresh_dir("segen-bench-train-", keep=args.keep)
    bench_environment(work / "state")
    import torch

    import segen.engines.unet_trainer  # noqa: F401  (torch, tqdm, mlflow-free imports, before timing)

    t0 = time.perf_counter()
    project, params, prepared = prepare(work, args)
    setup_s = time.perf_counter() - t0
    unet = params.unet
    n_train = prepared.info["train"]
    images_per_run = unet.epochs * n_train
    print(f"project {project.root}: {prepared.info} split, {unet.epochs} epochs x {n_train} "
          f"train images, batch {unet.batch_size}, depth {unet.depth}, width "
          f"{unet.base_width}, augment {unet.augment}, crop {unet.crop_size}, "
          f"{torch.get_num_threads()} torch threads", flush=True)
    mlflow_s = mlflow_setup(project)
    warm_s, _ = bare_fit(prepared, unet, steps_only=3)

    bare_s: list[float] = []
    stage_s: list[float] = []
    recorded: list[float] = []
    for rep in range(args.repeats):
        seconds, seen = bare_fit(prepared, unet)
        assert seen == images_per_run, (seen, images_per_run)
        bare_s.append(seconds)
        print(f"  rep {rep + 1}: bare  {seconds:7.2f} s  {images_per_run / seconds:8.1f} img/s",
              flush=True)
        seconds, info = stage_fit(project, prepared, unet)
        stage_s.append(seconds)
        recorded.append(info["train_images_per_second"])
        print(f"  rep {rep + 1}: stage {seconds:7.2f} s  {images_per_run / seconds:8.1f} img/s "
              f"(recorded {info['train_images_per_second']:.1f} img/s, device {info['device']})",
              flush=True)

    bare_ips = images_per_run / median(bare_s)
    stage_ips = images_per_run / median(stage_s)
    recorded_ips = median(recorded)
    results = {
        "config": {"n_images": args.n_images, "image_size": args.image_size, "n_train": n_train,
                   "epochs": unet.epochs, "batch_size": unet.batch_size, "depth": unet.depth,
                   "base_width": unet.base_width, "augment": unet.augment,
                   "crop_size": unet.crop_size, "repeats": args.repeats},
        "machine": machine(), "loadavg_before": load_before,
        "setup_seconds": setup_s, "mlflow_first_use_seconds": mlflow_s,
        "warmup_seconds": warm_s,
        "bare_seconds": bare_s, "stage_seconds": stage_s,
        "stage_recorded_images_per_second": recorded,
        "bare_images_per_second": bare_ips, "stage_images_per_second": stage_ips,
        "stage_recorded_images_per_second_median": recorded_ips,
        "ratio_stage_over_bare": stage_ips / bare_ips,
        "ratio_recorded_over_bare": recorded_ips / bare_ips,
        "stage_overhead_seconds_per_run": median(stage_s) - median(bare_s),
    }
    path = write_json("train_throughput", results)
    rows = [
        ("images per run", f"{images_per_run} ({unet.epochs} epochs x {n_train} train images, "
                           f"{args.image_size}x{args.image_size})"),
        ("bare loop", f"{bare_ips:8.1f} img/s  (median of "
                      f"{', '.join(f'{s:.2f}' for s in bare_s)} s)"),
        ("train_unet stage (wall)", f"{stage_ips:8.1f} img/s  (median of "
                                    f"{', '.join(f'{s:.2f}' for s in stage_s)} s)"),
        ("stage, recorded in info", f"{recorded_ips:8.1f} img/s  (training loops only)"),
        ("ratio stage / bare", f"{stage_ips / bare_ips:8.3f}"),
        ("ratio recorded / bare", f"{recorded_ips / bare_ips:8.3f}"),
        ("stage overhead per run", f"{median(stage_s) - median(bare_s):8.2f} s"),
        ("one-off MLflow store", f"{mlflow_s:8.2f} s  (not in the ratio)"),
        ("torch threads / CPUs", f"{torch.get_num_threads()} / {results['machine']['cpu_count']}"
                                 f"  (load avg {results['machine']['loadavg_1m_5m_15m'][0]:.2f})"),
    ]
    print(table(rows, "train throughput: train_unet stage vs bare PyTorch loop"))
    if warning:
        print(warning)
    print(f"wrote {path}")
    return results


# --- the in-RAM loop's batch transforms (the loop before the DataLoader) -------------

def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree turns applied jointly to a batch (B,C,H,W) and (B,H,W).

    Done with tensor ops on the whole batch on the training device: torchvision's v2
    transforms draw one set of random parameters per call as well, but would add a
    per-call dispatch cost we do not need for these lossless transforms.
    """
    import torch

    flip_h, flip_v, turns = torch.randint(0, 4, (3,), generator=generator).tolist()
    if flip_h % 2:
        x, y = x.flip(-1), y.flip(-1)
    if flip_v % 2:
        x, y = x.flip(-2), y.flip(-2)
    if x.shape[-1] == x.shape[-2] and turns:
        x, y = x.rot90(turns, (-2, -1)), y.rot90(turns, (-2, -1))
    return x, y


def random_crop(x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One random size x size window for the whole batch."""
    import torch

    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return x[..., top:top + size, left:left + size], y[..., top:top + size, left:left + size]


if __name__ == "__main__":
    main()
