"""segen schedule / retrain / data add: scheduled and data-triggered retraining.

`segen schedule` serves the segen-retrain flow as a Prefect deployment on a real Prefect
server (the temporary one of a plain run cannot run schedules): PREFECT_API_URL's, or a
local one that segen starts in the background (segen/prefect_server.py). Imports stay
light: heavy ones go inside handlers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_RUN_FAILED = 1  # the retraining run failed (diverged model, server gone, ...)
DEPLOYMENT = "segen-retrain-schedule"


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli.main import command, params_and_json, pool_options, stages_option

    schedule = command(sub, "schedule", "run the retraining flow on a schedule: deployed to "
                       "a work pool, or served from this process until Ctrl-C", _schedule)
    schedule.epilog = (
        "With a work pool (--pool, or SEGEN_WORK_POOL with PREFECT_API_URL: team mode) the "
        "retraining flow is deployed to it with the schedule and this command ends: the "
        "server creates the runs and the pool's workers run them, one at a time. Otherwise "
        "it serves the flow from this process until Ctrl-C, on the Prefect server at "
        "PREFECT_API_URL, else on a local one it starts on 127.0.0.1 (state in "
        ".segen/prefect-server/, recorded in .segen/prefect-server.json) that keeps running "
        "after this command ends: stop it with `segen schedule --stop-server`. Each run "
        "versions the data; with data, code and params unchanged it ends at once, otherwise "
        "it retrains, evaluates and gates every new model version.")
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='cron expression, e.g. "0 3 * * *"')
    when.add_argument("--interval", type=float, metavar="SECONDS", help="seconds between runs")
    when.add_argument("--stop-server", action="store_true",
                      help="stop the local Prefect server that segen started, and exit")
    schedule.add_argument("--name", default=DEPLOYMENT, help="deployment name")
    stages_option(schedule)
    pool_options(schedule)
    params_and_json(schedule)

    retrain = command(sub, "retrain", "run the retraining flow once: pipeline, then the "
                      "promotion gate on every new model version", _retrain,
                      writes=True)
    retrain.add_argument("--always", action="store_true", help="run the pipeline even when "
                         "data, code and params are unchanged since the last retraining")
    stages_option(retrain)
    pool_options(retrain)
    params_and_json(retrain)

    add = command(data, "add", "add new samples to data/ as a new data version", _data_add,
                  writes=True)
    add.epilog = ("Image/mask datasets: IMAGES_DIR and MASKS_DIR, paired by file stem. Class "
                  "folder datasets: IMAGES_DIR with one sub-folder per class. Every new file "
                  "is checked first; on any problem nothing is changed.")
    add.add_argument("images_dir", type=Path)
    add.add_argument("masks_dir", type=Path, nargs="?")
    add.add_argument("--split", choices=("train", "val", "test"),
                     help="put the new samples in this split (default: preprocess's seeded "
                          "split)")
    params_and_json(add)


def _quiet(as_json: bool) -> contextlib.AbstractContextManager:
    """With --json, what the tools print (DVC's hints) goes to stderr: stdout is the JSON."""
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _data_add(args: argparse.Namespace) -> int:
    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.data.add import add_samples
    from segen.data.transaction import data_change
    from segen.data.versioning import recorded_version, track_data

    params = load_params(Path(params_path(args)))
    args.project.require_dvc()
    with _quiet(args.json), data_change(args.project):  # all of it, or none (after a kill)
        before = recorded_version(args.project)
        summary = add_samples(args.project.data, args.images_dir, args.masks_dir,
                              max_pixels=params.validate.max_image_pixels,
                              split=args.split or "")
        version = track_data(args.project, params.data)
    if args.json:
        print(json.dumps({"added": summary.n_added, "already_present": summary.n_present,
                          "total": summary.n_total,
                          "ids": summary.ids, "data_version_before": before,
                          "data_version": version}))
    else:
        print(f"{summary}\nnew data version {version} (was {before}; data.dvc updated, commit "
              "it with git); the next scheduled run retrains on it")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from segen.cli.main import on_worker, params_path
    from segen.data.validation import DataValidationError
    from segen.pipeline.graph import stages_for
    from tasks.retraining import RetrainFailed, format_report

    args.project.require_dvc()
    if args.stages:
        stages_for(args.stages)  # unknown names fail before Prefect starts
    try:
        parameters = {"project_dir": str(args.project.root), "params_path": params_path(args),
                      "targets": args.stages, "skip_unchanged": not args.always}
        with _quiet(args.json):
            if args.worker_pool:  # the flow takes the project lock itself (see segen run)
                report = on_worker(args, "flows/retrain.py:retrain", "segen-retrain",
                                   parameters)
            else:
                from flows.retrain import retrain

                report = retrain(**parameters)
    except DataValidationError as err:
        print(f"segen: the dataset is not valid; nothing retrained or promoted:\n{err}",
              file=sys.stderr)
        return 2
    except RetrainFailed as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(json.dumps(report, default=str) if args.json else format_report(report))
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from segen.pipeline import prefect_server

    if args.stop_server:
        return _stop_server(args)
    from segen.cli.main import params_path
    from segen.config import load_params

    args.project.require_dvc()
    load_params(Path(params_path(args)))  # a bad params file fails now, not at the first run
    if args.stages:
        from segen.pipeline.graph import stages_for

        stages_for(args.stages)
    if args.interval is not None and args.interval <= 0:
        raise ValueError(f"--interval {args.interval}: expected a number of seconds > 0")
    _check_cron(args.cron)
    info: dict[str, Any] = {"deployment": f"segen-retrain/{args.name}", "cron": args.cron,
                            "interval": args.interval, "stages": args.stages,
                            "started_server": False}
    from segen.pipeline.deployment import worker_pool

    info["pool"] = worker_pool(args.pool, args.in_process)  # a pool needs PREFECT_API_URL
    api = os.environ.get("PREFECT_API_URL")
    if api:
        if not prefect_server.is_healthy(api):
            raise ValueError(f"PREFECT_API_URL={api} does not answer at {api}/health; start "
                             "that server, or unset PREFECT_API_URL to let segen start one")
    else:
        record, started = prefect_server.ensure_server(args.project)
        api = os.environ["PREFECT_API_URL"] = record.api_url  # before prefect is imported
        info.update(started_server=started, server_pid=record.pid,
                    stop="segen schedule --stop-server")
    info["api_url"] = api
    if info["pool"] is not None:
        _deploy_on_pool(args, info)
        _announce(info, args.json)
        return 0
    _announce(info, args.json)
    _serve(args, info)
    return 0


def _deploy_on_pool(args: argparse.Namespace, info: dict[str, Any]) -> None:
    from segen.cli.main import flow_on_pool, params_path
    from segen.pipeline.deployment import schedule_on_pool

    target = flow_on_pool("flows/retrain.py:retrain", "segen-retrain", args.name, info["pool"])
    info["deployment_id"] = str(schedule_on_pool(
        target, {"project_dir": str(args.project.root), "params_path": params_path(args),
                 "targets": args.stages}, interval=args.interval, cron=args.cron))
    info["unschedule"] = f"prefect deployment schedule clear {info['deployment']} -y"


def _announce(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info), flush=True)
        return
    every = f"cron {info['cron']}" if info["cron"] else f"every {info['interval']:g} s"
    if info["pool"] is not None:
        print(f"deployed {info['deployment']} ({every}) to work pool {info['pool']} on the "
              f"Prefect server {info['api_url']}: its workers run each scheduled run; stop "
              f"the schedule with `{info['unschedule']}`")
        return
    print(f"serving {info['deployment']} ({every}) on the Prefect server {info['api_url']}")
    if "stop" in info:
        state = "started" if info["started_server"] else "already running"
        print(f"the local Prefect server ({state}, pid {info['server_pid']}) keeps running "
              f"after Ctrl-C; stop it with `{info['stop']}`", flush=True)


def _serve(args: argparse.Namespace, info: dict[str, Any]) -> None:
    from prefect.deployments.runner import EntrypointType

    from flows.retrain import retrain
    from segen.cli.main import params_path

    schedule = {"cron": args.cron} if args.cron else {"interval": args.interval}
    retrain.serve(
        name=args.name, **schedule, limit=1,  # one run at a time: runs share data/ and the store
        parameters={"project_dir": str(args.project.root), "params_path": params_path(args),
                    "targets": args.stages},
        description="segen retraining: version the data, rerun what changed, gate and promote",
        print_starting_message=not args.json,
        entrypoint_type=EntrypointType.MODULE_PATH)  # importable wherever the runner starts


def _check_cron(expr: str | None) -> None:
    if expr is None:
        return
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expr)
    except ValueError as err:
        raise ValueError(f'--cron {expr!r} is not a valid cron expression ({err}); expected '
                         'five fields, e.g. "0 3 * * *" for 03:00 every day') from None


def _stop_server(args: argparse.Namespace) -> int:
    from segen.pipeline import prefect_server

    record = prefect_server.stop_server(args.project)
    if args.json:
        print(json.dumps({"stopped": record is not None,
                          "pid": record.pid if record else None}))
    elif record is None:
        print("no local Prefect server recorded for this project (nothing to stop)")
    else:
        print(f"stopped the local Prefect server (pid {record.pid}, {record.api_url})")
    return 0
