"""segen promote / rollback / history: the champion alias under a confidence gate, with an
append-only history in the registry. Imports stay light: heavy ones go inside handlers."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_REJECTED = 3  # the gate kept the champion (scripts and CI can tell it from an error)
EXIT_FAILED = 1  # another promotion of the model held its lock past promote.lock_timeout_s

_EXIT_CODES = "Exit status: 0 promoted, forced, first or already champion; 3 rejected by " \
              "the gate; 2 bad input; 1 another promotion of the model held it too long"


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli.main import command, params_and_json

    promote = command(sub, "promote", "run the promotion gate on a registered model version "
                      "and move its champion alias when it passes", _promote,
                      writes=True)
    promote.epilog = (
        "The challenger and the champion predict the challenger's test split; a paired "
        "bootstrap over its images must put the whole confidence interval of the metric's "
        "difference past the margin (params.yaml: promote). " + _EXIT_CODES + ".")
    promote.add_argument("model", help="registered model name, e.g. segen-unet")
    promote.add_argument("--version", type=int, help="version to judge (default: the latest)")
    promote.add_argument("--force", action="store_true", help="move the alias whatever the "
                         "gate says (needs --reason; recorded as an override)")
    promote.add_argument("--reason", help="why (kept in the alias history)")
    params_and_json(promote, "its promote and mlflow sections")

    rollback = command(sub, "rollback", "move the champion alias back to the version it "
                       "replaced (by the alias history)", _rollback,
                       writes=True)
    rollback.epilog = "exit status: 0 rolled back; 2 bad input or nothing to roll back to."
    rollback.add_argument("model", help="registered model name")
    rollback.add_argument("--reason", required=True, help="why (kept in the alias history)")
    params_and_json(rollback, "its promote and mlflow sections")

    history = command(sub, "history", "print the alias history of a model (every move of "
                      "champion, every gate verdict), oldest first", _history)
    history.add_argument("model", help="registered model name")
    params_and_json(history, "its promote and mlflow sections")


def _setup(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.tracking import configure_tracking

    params = load_params(Path(params_path(args)))
    configure_tracking(args.project, params.mlflow)  # MLFLOW_TRACKING_URI wins
    return params


def _promote(args: argparse.Namespace) -> int:
    if args.force and not (args.reason or "").strip():
        raise ValueError("--force needs --reason TEXT: say why the gate is overridden")
    params = _setup(args)
    from segen.registry.promotion.lock import PromotionBusy
    from segen.registry.promotion.moves import promote
    from segen.registry.promotion.report import format_result

    try:
        result = promote(args.project, params, args.model, args.version, force=args.force,
                         reason=args.reason)
    except PromotionBusy as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result) if args.json else format_result(result))
    return EXIT_REJECTED if result["decision"] == "rejected" else 0


def _rollback(args: argparse.Namespace) -> int:
    params = _setup(args)
    from segen.registry.promotion.lock import PromotionBusy
    from segen.registry.promotion.moves import rollback

    try:
        result = rollback(args.project, params, args.model, reason=args.reason)
    except PromotionBusy as err:
        print(f"segen: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result) if args.json else
          f"{result['model']}: {result['alias']} rolled back from v{result['previous']} to "
          f"v{result['champion']} ({result['reason']})")
    return 0


def _history(args: argparse.Namespace) -> int:
    params = _setup(args)
    from segen.registry.promotion.moves import alias_history

    events = alias_history(args.project, params, args.model)
    if args.json:
        print(json.dumps({"model": args.model, "events": events}))
    else:
        print(format_history(args.model, events))
    return 0


def format_history(model: str, events: list[dict[str, Any]]) -> str:
    """One line per event: when, who, what moved, why."""
    if not events:
        return f"{model}: no alias history recorded yet"
    lines = [f"{'#':>3}  {'time (UTC)':20} {'user':10} {'alias':9} {'decision':17} "
             f"{'move':9} reason"]
    for e in events:
        before = "none" if e["previous"] is None else f"v{e['previous']}"
        move = f"{before}->v{e['new']}" if e["previous"] != e["new"] else f"(v{e['candidate']})"
        lines.append(f"{e['seq']:>3}  {e['time'][:19]:20} {e['user'][:10]:10} "
                     f"{e['alias'][:9]:9} {e['decision']:17} {move:9} {e['reason']}")
    return "\n".join(lines)
