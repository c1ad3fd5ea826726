"""segen team up / status / down: a team stack on loopback (segen/team/), for trying team
mode, and for the tests, on one machine. A real team points the same variables (team.env)
at its own servers instead."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_NOT_UP = 1  # status: a service is down or does not answer


def add_commands(sub: Any, data: Any) -> None:
    """Add `segen team` and its actions to the top-level parser (data: unused)."""
    from segen.cli.main import command

    team = sub.add_parser("team", help="a team stack on 127.0.0.1: PostgreSQL, S3 (moto), "
                          "Prefect and MLflow servers, a work pool with a worker")
    actions = team.add_subparsers(metavar="ACTION")
    start = command(actions, "up", "start the stack and write DIR/team.env to `source`", _up)
    start.epilog = ("Every server binds --host on a free port; credentials are generated for "
                    "each stack and written only to DIR/team.env (mode 0600). The object "
                    "store is in memory: each `up` starts a fresh stack.")
    _dir_option(start)
    start.add_argument("--host", default="127.0.0.1", help="address every server binds, "
                       "and team.env names (default: 127.0.0.1). Another address opens "
                       "the stack to other machines; only PostgreSQL checks a password there "
                       "(moto, and Prefect's and MLflow's servers as started here, have no "
                       "authentication): a trusted network only")
    start.add_argument("--bucket", default="segen", help="S3 bucket (default: segen)")
    start.add_argument("--prefect-db", default="prefect", help="Prefect's PostgreSQL "
                       "database (default: prefect)")
    start.add_argument("--mlflow-db", default="mlflow", help="MLflow's PostgreSQL database, "
                       "also the promotion lock's (default: mlflow)")
    start.add_argument("--pool", default="segen", help="Prefect process work pool (default: "
                       "segen)")
    start.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    state = command(actions, "status", "each service: process alive, health check answered",
                    _status)
    _dir_option(state)
    state.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    stop = command(actions, "down", "stop what `segen team up` started in DIR, nothing else",
                   _down)
    _dir_option(stop)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="the stack's state and logs (default: "
                        ".segen/team/ in the project)")


def _folder(args: argparse.Namespace) -> Path:
    return args.dir.resolve() if args.dir else args.project.state / "team"


def _up(args: argparse.Namespace) -> int:
    from segen.team.stack import TeamError, TeamSpec, up

    spec = TeamSpec(folder=_folder(args), host=args.host, bucket=args.bucket,
                    prefect_db=args.prefect_db, mlflow_db=args.mlflow_db, pool=args.pool)
    try:
        state = up(spec)
    except TeamError as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_NOT_UP
    env_file = spec.folder / "team.env"
    if args.json:
        print(json.dumps({"env_file": str(env_file), **state}))
        return 0
    for name, record in state["services"].items():
        where = f"port {record['port']}" if record["port"] else f"pool {state['pool']}"
        print(f"{name:9} up  pid {record['pid']:<7} {where}")
    print(f"started in {state['startup_s']:g} s. Point segen at it with:\n"
          f"  source {env_file}\nstop it with: segen team down --dir {spec.folder}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from segen.team.stack import status

    report = status(_folder(args))
    if args.json:
        print(json.dumps(report))
    elif not report["services"]:
        print(f"no team stack recorded in {report['folder']}")
    else:
        for name, svc in report["services"].items():
            state = "up" if svc["healthy"] else ("not answering" if svc["alive"] else "down")
            print(f"{name:9} {state:14} pid {svc['pid']:<7} port {svc['port'] or '-'}")
    return 0 if report["up"] else EXIT_NOT_UP


def _down(args: argparse.Namespace) -> int:
    from segen.team.stack import down

    folder = _folder(args)
    stopped = down(folder)
    print(f"stopped {', '.join(stopped)}" if stopped else
          f"nothing running from a team stack in {folder}")
    return 0
