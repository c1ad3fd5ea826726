"""U-Net (or a generator's) training throughput with 1 process against 2 (unet.processes or
generative.processes: torch elastic, gloo on the CPU), on this machine's cores; with a GPU,
NCCL too.

What it measures
  The real train_unet stage body (`tasks.segmenters.TRAIN_TASKS["train_unet"].fn`, no
  Prefect engine) from scratch, with unet.processes = 1 (today's in-process loop) and 2 (the
  stage launches `python -m torch.distributed.run --standalone` with two ranks, each with
  OMP_NUM_THREADS = the stage's threads // 2, so both settings use the same cores). Same
  data, params, seed and global batch. Two figures per setting:
  - stage images/s: epochs * train images / wall seconds of the whole stage call; for 2
    processes this includes starting the launcher and the ranks (imports, rendezvous);
  - loop images/s: the stage's own train_images_per_second (rank 0's training loops only,
    without validation, checkpoints, logging or start-up).
  The ratio is 2 processes / 1 (above 1: the second process pays).
  --model dcgan (or any generator kind) measures train_<kind> the same way, with
  generative.processes and generative.batch_size as the global batch.
  With CUDA: the same stage on the GPU in one process, and one NCCL rank through the
  launcher (processes = 2 needs two GPUs; with one, the NCCL row shows the launcher's cost).

Set-up (not timed): a fresh project under /tmp, version_data/validate/preprocess through
their task bodies, MLflow's store created once.

Usage:  .venv/bin/python bench/ddp.py [--model unet|dcgan|...] [--n-images 160 --image-size 64
        --epochs 3 --repeats 2]
Writes bench/out/ddp.json (ddp-<model>.json for a generator).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=160)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="unet", help="unet, or a generator kind (dcgan, "
                        "vae, ...: its train stage, generative.processes)")
    parser.add_argument("--width", type=int, help="a generator's width (default: params.yaml)")
    return parser.parse_args(argv)


def prepare(work: Path, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Project, its U-Net params and the preprocess StageResult."""
    from segen.config import load_params
    from segen.data.versioning import ensure_data
    from segen.project import Project
    from segen.tracking import configure_tracking, start_run
    from tasks.data import preprocess, validate, version_data

    params_path = init_project(work / "proj", {
        "dataset": {"n_images": args.n_images, "image_size": args.image_size},
        "preprocess": {"image_size": args.image_size},
        "unet": {"epochs": args.epochs, "batch_size": args.batch_size},
        "generative": {"batch_size": args.batch_size},
        **({} if args.model == "unet" else {args.model: {
            "epochs": args.epochs, **({"width": args.width} if args.width else {})}})})
    project, params = Project.at(work / "proj"), load_params(params_path)
    configure_tracking(project, params.mlflow)
    ensure_data(project, params.data, params.dataset)
    data = version_data.fn(project=project, data=params.data)
    checked = validate.fn(project=project, version_data=data, validate=params.validate)
    prepared = preprocess.fn(project=project, version_data=data, validate=checked,
                             preprocess=params.preprocess)
    with start_run(project, "bench-warmup"):  # MLflow's store and experiment: one-off
        pass
    return project, params, prepared


def stage_fit(project: Any, prepared: Any, params: Any, model: str, processes: int
              ) -> tuple[float, dict[str, Any]]:
    """The stage body from scratch with `processes` ranks: (wall seconds, its info)."""
    from tasks.generative import TRAIN_TASKS as GENERATORS
    from tasks.segmenters import TRAIN_TASKS

    stage = f"train_{model}"
    for folder in (project.store / stage, project.work / stage):
        shutil.rmtree(folder, ignore_errors=True)  # no stored hit, no checkpoint to resume
    if model == "unet":
        body = functools.partial(TRAIN_TASKS[stage].fn, unet=dataclasses.replace(
            params.unet, processes=processes))
    else:
        body = functools.partial(GENERATORS[stage].fn, generative=dataclasses.replace(
            params.generative, processes=processes), **{model: getattr(params, model)})
    start = time.perf_counter()
    result = body(project=project, preprocess=prepared)
    return time.perf_counter() - start, result.info


def nccl_fit(project: Any, prepared: Any, unet: Any, out: Path) -> tuple[float, dict[str, Any]]:
    """One NCCL rank through the launcher (one GPU: the most this machine can give)."""
    from segen.engines.unet_trainer import fit_across_processes

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    info = fit_across_processes(project, prepared, unet, out, f"bench-nccl-{time.time_ns()}")
    return time.perf_counter() - start, info


def measure(project: Any, prepared: Any, params: Any, model: str, n_train: int, repeats: int
            ) -> dict[str, dict[str, float]]:
    """Median stage and loop images/s per setting, the settings alternating."""
    import torch

    def fit(n: int) -> Any:
        return lambda: stage_fit(project, prepared, params, model, n)

    settings: dict[str, Any] = {}
    if torch.cuda.is_available():
        settings["1 process (GPU)"] = fit(1)
        if model == "unet":
            settings["1 NCCL rank (launcher)"] = lambda: nccl_fit(
                project, prepared, params.unet, project.state / "nccl-out")
        if torch.cuda.device_count() >= 2:
            settings["2 NCCL ranks"] = fit(2)
    else:
        for n in (1, 2):
            settings[f"{n} process{'es' * (n > 1)} (CPU)"] = fit(n)
    runs: dict[str, list[tuple[float, dict[str, Any]]]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, run in settings.items():
            runs[name].append(run())
    images = getattr(params, model).epochs * n_train
    return {name: {"stage_images_per_s": images / median(s for s, _ in done),
                   "loop_images_per_s": median(i["train_images_per_second"] for _, i in done),
                   "stage_seconds": median(s for s, _ in done)}
            for name, done in runs.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    work = fresh_dir("segen-bench-ddp-")
    bench_environment(work / "state")
    import torch

    from segen.data.arrays import open_split

    project, params, prepared = prepare(work, args)
    n_train = len(open_split(prepared, "train")[2])
    figures = measure(project, prepared, params, args.model, n_train, args.repeats)
    names = list(figures)
    ratios = {f"{names[i]} / {names[0]}": {
        k: figures[names[i]][k] / figures[names[0]][k]
        for k in ("stage_images_per_s", "loop_images_per_s")} for i in range(1, len(names))}
    rows = [(name, f"stage {f['stage_images_per_s']:7.1f} img/s   loop "
                   f"{f['loop_images_per_s']:7.1f} img/s   ({f['stage_seconds']:.1f} s)")
            for name, f in figures.items()]
    rows += [(name, f"stage x{r['stage_images_per_s']:.2f}   loop x{r['loop_images_per_s']:.2f}")
             for name, r in ratios.items()]
    what = "U-Net" if args.model == "unet" else f"{args.model} (generative.processes)"
    print(table(rows, f"{what} training, {n_train} train images of {args.image_size} px, "
                      f"{args.epochs} epochs, global batch {args.batch_size}, median of "
                      f"{args.repeats}; {torch.get_num_threads()} threads"))
    if warning:
        print(warning)
    result = {"args": vars(args), "n_train": n_train, "figures": figures, "ratios": ratios,
              "machine": machine(), "warning": warning}
    print("wrote", write_json("ddp" if args.model == "unet" else f"ddp-{args.model}", result))
    return result


if __name__ == "__main__":
    main()
