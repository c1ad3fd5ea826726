"""Alias history: an append-only record of every move of an alias (and every gate verdict),
kept in the registry itself so it survives restarts and works against a remote server.

MLflow keeps no history of aliases, so each event is one registered-model tag:

    segen.alias_history.000007.3f9c1a = {"time": ..., "user": ..., "alias": "champion",
        "action": "promote", "decision": "promoted", "previous": 1, "new": 3, ...}

A move of the alias and its event are two requests, so a move first sets an intent tag naming
its event (record_alias_move(move=True)); the next writer completes an interrupted one whose
event is recorded and undoes one whose event is not (finish_interrupted_move). History tags
are never rewritten, only added: the sequence number orders them and the random
suffix keeps two writers that picked the same number (two machines, see lock.py) from
overwriting each other. The registry's tag column holds 5000 characters (registered_model_tags
.value is VARCHAR(5000) in MLflow 3.17's schema, although its validator allows 100,000), so an
event stays small: the gate report lives in the challenger run's artifacts and the event
points at it.
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from segen.faults import failpoint
from segen.locking import current_user

log = logging.getLogger("segen.promotion")
PREFIX = "segen.alias_history."
INTENT = "segen.alias_move_in_progress"  # a mutable tag: the one move not yet recorded
MAX_EVENT_CHARS = 4000  # below the 5000-character column, with room to spare
_REASON_CHARS = 1000


def record_alias_move(model_name: str, *, alias: str, previous: int | None, new: int | None,
                      action: str, decision: str, reason: str | None,
                      candidate: int | None = None, report: str | None = None,
                      registry: Any = None, move: bool = False) -> dict[str, Any]:
    """Append one event to the model's alias history and return it (with its seq and key).

    action: register | promote | rollback; decision: first | promoted | forced | rejected |
    rollback; previous/new: the versions the alias pointed at before and after (equal when
    the gate rejected the candidate); report: where the gate report is (a runs:/ URI).
    move: also point the alias at `new`, as one step that a kill cannot split (see
    finish_interrupted_move).
    """
    from segen.tracking import client

    registry = registry or client()
    finish_interrupted_move(registry, model_name)
    event = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
             "user": current_user(), "alias": alias, "action": action, "decision": decision,
             "previous": previous, "new": new, "candidate": candidate,
             "reason": (reason or "")[:_REASON_CHARS], "report": report}
    value = json.dumps(event, separators=(",", ":"))
    if len(value) > MAX_EVENT_CHARS:
        raise ValueError(f"alias history event of {model_name} is {len(value)} characters, "
                         f"over {MAX_EVENT_CHARS}: shorten the reason")
    seq = max((e["seq"] for e in read_history(registry, model_name)), default=0) + 1
    key = f"{PREFIX}{seq:06d}.{uuid.uuid4().hex[:6]}"
    if not move:
        registry.set_registered_model_tag(model_name, key, value)
        return {"seq": seq, "key": key, **event}
    # The intent names the event before the alias moves, so whoever finds it later knows
    # the move did not complete unless the event is there (finish_interrupted_move).
    registry.set_registered_model_tag(model_name, INTENT, json.dumps(
        {"key": key, "alias": alias, "previous": previous, "new": new}))
    try:
        _point(registry, model_name, alias, new)
        failpoint("promote.alias")
        registry.set_registered_model_tag(model_name, key, value)  # the commit point
    except Exception:
        finish_interrupted_move(registry, model_name)  # the alias back, if the server lets
        raise
    registry.delete_registered_model_tag(model_name, INTENT)
    return {"seq": seq, "key": key, **event}


def finish_interrupted_move(registry: Any, model_name: str) -> str | None:
    """Settle an alias move that a killed or failed promotion left half done.

    The intent tag is set before the alias moves and deleted once the move's event is
    recorded. If it is still there: with the event recorded, the move completed (only the
    intent is deleted); without it, the promotion never completed, so the alias goes back to
    the event's previous version. The champion thus only ever moves with its event.
    Returns "completed", "undone" or None (nothing was interrupted)."""
    tags = registry.get_registered_model(model_name).tags or {}
    if INTENT not in tags:
        return None
    try:
        intent = json.loads(tags[INTENT])
        key, alias, previous, new = (intent[k] for k in ("key", "alias", "previous", "new"))
    except (ValueError, KeyError, TypeError):
        registry.delete_registered_model_tag(model_name, INTENT)
        log.warning("%s: an unreadable alias-move intent tag was dropped", model_name)
        return "undone"
    outcome = "completed" if key in tags else "undone"
    if outcome == "undone":
        _point(registry, model_name, alias, previous)
    registry.delete_registered_model_tag(model_name, INTENT)
    log.warning("%s: an interrupted move of %s to v%s was %s (%s points at %s)", model_name,
                alias, new, outcome, alias, new if key in tags else previous)
    return outcome


def _point(registry: Any, model_name: str, alias: str, version: int | None) -> None:
    if version is None:
        registry.delete_registered_model_alias(model_name, alias)
    else:
        registry.set_registered_model_alias(model_name, alias, str(version))


def read_history(registry: Any, model_name: str) -> list[dict[str, Any]]:
    """Every event of the model, oldest first."""
    tags = registry.get_registered_model(model_name).tags or {}
    events = []
    for key, value in tags.items():
        if key.startswith(PREFIX):
            seq = int(key[len(PREFIX):].split(".")[0])
            events.append({"seq": seq, "key": key, **json.loads(value)})
    return sorted(events, key=lambda e: (e["seq"], e["time"], e["key"]))


def champion_stack(events: list[dict[str, Any]], alias: str) -> list[int]:
    """Replay the alias's moves: promotions push the new version, rollbacks pop. The last
    element is the current holder by the history; the one before it, the rollback target."""
    stack: list[int] = []
    for event in events:
        if event["alias"] != alias or event["previous"] == event["new"]:
            continue  # another alias, or a verdict that moved nothing
        if event["action"] == "rollback":
            stack = stack[:-1] if stack and stack[-1] == event["previous"] else stack
            if not stack or stack[-1] != event["new"]:
                stack.append(event["new"])
        else:
            if not stack and event["previous"] is not None:
                stack.append(event["previous"])  # a holder from before the history began
            stack.append(event["new"])
    return stack
