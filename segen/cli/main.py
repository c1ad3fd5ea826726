"""The segen command line. Heavy imports (torch, prefect, mlflow, dvc) happen inside the
commands that need them, so `segen --help` is instant."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

EXIT_BAD_INPUT = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: another command writes to the project; try again later
EXIT_NO_WORKER = 69  # EX_UNAVAILABLE: no worker serves the work pool, or the run crashed
# Command groups kept in modules of their own; each defines add_commands(sub, data_sub).
_COMMAND_MODULES = ("segen.cli.init", "segen.cli.datasets", "segen.cli.generate",
                    "segen.cli.registry", "segen.cli.lineage", "segen.cli.schedule",
                    "segen.cli.team")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not hasattr(args, "handler"):
        _parser().print_help()
        return EXIT_BAD_INPUT
    from segen.config import ParamsError, load_params
    from segen.disk import DiskFull, explain_disk_full, is_disk_full
    from segen.env import configure_environment
    from segen.locking import ProjectBusy
    from segen.pipeline.deployment import FlowRunEnded, WorkerUnavailable
    from segen.project import Project, ProjectError
    from segen.retry import ServerUnavailable

    args.project = Project.at(args.project)
    try:
        if getattr(args, "params", None) is not None:
            load_params(Path(params_path(args)))  # every params error before anything heavy
        configure_environment(args.project)
        return _handle(args)
    except ProjectBusy as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_BUSY
    except (WorkerUnavailable, FlowRunEnded) as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_NO_WORKER
    except (ParamsError, ProjectError, FileNotFoundError, ValueError, ServerUnavailable) as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DiskFull, OSError) as err:  # a full disk said plainly; other OSErrors as before
        if not is_disk_full(err):
            raise
        print(f"segen: error: {explain_disk_full(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _handle(args: argparse.Namespace) -> int:
    """Run the command; one that writes holds the project's writer lock while it runs."""
    if not args.writes:
        return args.handler(args)
    from segen.data.transaction import recover
    from segen.locking import project_lock
    from segen.pipeline.deployment import worker_pool
    from segen.pipeline.store import sweep_staging

    # Only commands with pool_options run a flow through a worker; the rest always hold it.
    pool = args.worker_pool = (worker_pool(args.pool, args.in_process)
                               if hasattr(args, "pool") else None)
    with project_lock(args.project, args.command_name, wait=args.wait):
        recover(args.project)  # first undo what a killed writer left half done
        sweep_staging(args.project.store)
        if pool is None:
            return args.handler(args)
    # Through a worker the flow run is another process that takes the lock itself (the
    # flow does): held here, it would wait behind this command, which waits for it.
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segen", description=(
        "Orchestrated image segmentation pipeline: DVC-versioned data -> validate -> "
        "preprocess -> U-Net -> evaluate -> MLflow registry, every stage cached by content."))
    parser.add_argument("--project", default=".", help="project root (default: current dir)")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = command(sub, "run", "run the whole pipeline (cached stages are skipped)", _run,
                  writes=True)
    stages_option(run)
    pool_options(run)
    params_and_json(run)
    runs = command(sub, "runs", "the last runs of this project (.segen/runs.jsonl)", _runs)
    runs.add_argument("--last", type=int, default=20, help="how many (default: 20)")
    runs.add_argument("--json", action="store_true", help="print them as one JSON list")
    stage = command(sub, "stage", "run one stage on its upstream stages' latest results",
                     _stage, writes=True)
    stage.add_argument("name", help="stage name (see dvc.yaml)")
    params_and_json(stage)

    data = sub.add_parser("data", help="manage the dataset in data/").add_subparsers(
        metavar="ACTION")
    generate = command(data, "generate", "write the default shapes dataset into data/",
                        _data_generate, writes=True)
    generate.add_argument("--force", action="store_true", help="replace an existing data/")
    generate.add_argument("--params", default="params.yaml", help="params file (its dataset "
                          "section: size and count)")

    predict = command(sub, "predict", "label maps and overlays from a registered model",
                       _predict)
    predict.add_argument("--model", required=True, metavar="NAME[@ALIAS|/VERSION]",
                         help="registered model, e.g. segen-unet@champion or segen-kmeans/1 "
                         "(a bare NAME: its latest version)")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    params_and_json(predict, "its mlflow section: where the registry is")

    for module in _COMMAND_MODULES:  # each adds its own commands (light imports only)
        importlib.import_module(module).add_commands(sub, data)

    dvc = command(sub, "dvc-yaml", "write dvc.yaml from the stage graph", _dvc_yaml)
    dvc.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is out of date")
    return parser


def command(sub: Any, name: str, help_text: str, handler: Callable[[argparse.Namespace], int],
            *, writes: bool = False) -> argparse.ArgumentParser:
    """A subcommand. writes: it changes the project (data/, .segen/, the registry), so it
    holds the project's writer lock (segen.locking) and takes --wait/--no-wait."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler, writes=writes, command_name=parser.prog)
    if writes:
        when_busy = parser.add_mutually_exclusive_group()
        when_busy.add_argument("--wait", dest="wait", action="store_true", default=True,
                               help="if another segen command is writing to this project, "
                               "wait for it to finish (the default)")
        when_busy.add_argument("--no-wait", dest="wait", action="store_false",
                               help="fail at once (exit 75) if another segen command is "
                               "writing to this project")
    return parser


def params_and_json(parser: argparse.ArgumentParser, uses: str = "every section") -> None:
    """The two options every command shares; `uses` says what the command reads from params."""
    parser.add_argument("--params", default="params.yaml", help="params file (default: "
                        f"params.yaml in the project; this command reads {uses})")
    parser.add_argument("--json", action="store_true", help="print one JSON object last on "
                        "stdout")


def stages_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help="only these stages and "
                        "what they depend on, e.g. register_unet (default: the whole pipeline)")


def pool_options(parser: argparse.ArgumentParser) -> None:
    """Where the flow runs: through a worker of a Prefect work pool, or in this process."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pool", metavar="NAME", help="run the flow through a worker of this "
                       "Prefect work pool on the server at PREFECT_API_URL (default: "
                       "$SEGEN_WORK_POOL when both are set; else in this process)")
    where.add_argument("--in-process", action="store_true", help="run in this process even "
                       "when SEGEN_WORK_POOL names a work pool")


def on_worker(args: argparse.Namespace, entrypoint: str, flow_name: str,
              parameters: dict[str, Any]) -> Any:
    """Deploy a flow of this checkout to args.worker_pool, run it there and return its
    result (a failed run raises its own error here)."""
    from segen.pipeline.deployment import run_on_pool

    target = flow_on_pool(entrypoint, flow_name, flow_name, args.worker_pool)
    return run_on_pool(target, args.project, parameters)[1]


def flow_on_pool(entrypoint: str, flow_name: str, deployment: str, pool: str) -> Any:
    """A flow of this checkout (flows/), as deployed to a work pool."""
    import flows
    from segen.pipeline.deployment import FlowOnPool

    return FlowOnPool(code_root=Path(flows.__file__).resolve().parent.parent,
                      entrypoint=entrypoint, flow_name=flow_name, deployment=deployment,
                      pool=pool)


def params_path(args: argparse.Namespace) -> str:
    path = Path(args.params)
    return str(path if path.is_absolute() else (Path.cwd() / path).resolve())


def _report(summary: dict[str, Any], as_json: bool) -> int:
    from segen.pipeline.summary import format_summary

    print(json.dumps(summary) if as_json else format_summary(summary))
    return 1 if summary.get("failed") else 0  # a model stage failed; the others ran


def _run_flow(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    from segen.data.validation import DataValidationError

    try:
        return call()
    except DataValidationError as err:
        print(f"segen: the dataset is not valid:\n{err}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    import os
    import time

    from segen.config import load_params
    from segen.pipeline.graph import STAGES, stages_for
    from segen.pipeline.runlog import record_run

    names = stages_for(args.stages) if args.stages else list(STAGES)  # unknown names fail now
    args.project.require_dvc()
    start, summary, mode = time.perf_counter(), None, "prefect"
    if not os.environ.get("PREFECT_API_URL"):  # with a real server, hits show there as Cached
        summary = _answer_from_store(args.project, load_params(Path(params_path(args))), names)
        mode = "store"
    if summary is None:
        mode = "worker" if args.worker_pool else "prefect"
        summary = _run_flow(lambda: _pipeline(args))
        if summary is None:
            return EXIT_BAD_INPUT
        _remember(args, summary)
    record_run(args.project, summary, mode, time.perf_counter() - start, args.stages)
    return _report(summary, args.json)


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline flow, through the work pool's worker or in this process."""
    parameters = {"project_dir": str(args.project.root), "params_path": params_path(args),
                  "targets": args.stages}
    if args.worker_pool:
        return on_worker(args, "flows/pipeline.py:pipeline", "segen-pipeline", parameters)
    from flows.pipeline import pipeline

    return pipeline(**parameters)


def _remember(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    from segen.locking import project_lock
    from segen.registry.registration import remember_versions

    # After a worker's run this command holds no lock (see _handle): take it for the memo.
    with project_lock(args.project, args.command_name):
        remember_versions(args.project, [(m["name"], str(m["version"])) for m in
                                         summary["models"]])


def _answer_from_store(project: Any, params: Any, names: list[str]) -> dict[str, Any] | None:
    """The run's summary when every stage is a valid cache hit, without starting Prefect."""
    from segen.pipeline.plan import cached_results
    from segen.pipeline.summary import summarise
    from segen.tracking import configure_tracking
    from tasks import stage_table

    configure_tracking(project, params.mlflow)
    cached = cached_results(project, params, stage_table(), names)
    return None if cached is None else summarise(project, params, *cached, "present")


def _runs(args: argparse.Namespace) -> int:
    from segen.pipeline.runlog import format_runs, read_runs

    runs = read_runs(args.project, args.last)
    print(json.dumps(runs) if args.json else format_runs(runs))
    return 0


def _stage(args: argparse.Namespace) -> int:
    from flows.pipeline import single_stage
    from segen.pipeline.graph import stage

    stage(args.name)  # unknown names fail before Prefect starts
    args.project.require_dvc()
    summary = _run_flow(lambda: single_stage(str(args.project.root), params_path(args),
                                             args.name))
    return EXIT_BAD_INPUT if summary is None else _report(summary, args.json)


def _data_generate(args: argparse.Namespace) -> int:
    from segen.config import load_params
    from segen.data.shapes import generate_shapes_dataset
    from segen.data.transaction import data_change

    params = load_params(Path(params_path(args))).dataset
    with data_change(args.project):  # --force: the old data/ is kept until the new is in
        generate_shapes_dataset(args.project.data, seed=params.seed, n_images=params.n_images,
                                image_size=params.image_size, min_shapes=params.min_shapes,
                                max_shapes=params.max_shapes, replace=args.force)
    print(f"wrote {params.n_images} images to {args.project.data}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from segen.config import load_params
    from segen.serving.predict import predict_files
    from segen.tracking import configure_tracking

    params = load_params(Path(params_path(args)))
    configure_tracking(args.project, params.mlflow)  # as `segen run` does
    report = predict_files(args.model, args.images, args.out,
                           max_pixels=params.validate.max_image_pixels)
    if args.json:
        print(json.dumps(report))
        return 0
    for item in report["images"]:
        print(f"{item['image']} -> {item['labels']}, {item['overlay']}")
    print(f"{len(report['images'])} image(s) segmented with {report['model']}")
    return 0


def _dvc_yaml(args: argparse.Namespace) -> int:
    from segen.pipeline import dvcyaml
    from tasks import stage_table

    text = dvcyaml.render(args.project.root, stage_table())
    path = args.project.root / "dvc.yaml"
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date: run `segen dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
