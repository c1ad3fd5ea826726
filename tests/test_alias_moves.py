"""The champion alias moves only with its history event (history.record_alias_move(move=True)):
a process SIGKILLed between the alias move and the event (failpoint promote.alias) leaves an
intent that the next writer settles by undoing the move; a move whose event was recorded is
kept. Against a real MLflow registry (SQLite, as the embedded default)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segen.faults import ENV
from segen.registry.promotion.history import (
    INTENT,
    champion_stack,
    finish_interrupted_move,
    read_history,
    record_alias_move,
)

REPO = Path(__file__).resolve().parent.parent
NAME = "m"
_MOVE = """
import sys
from mlflow import MlflowClient
from segen.registry.promotion.history import record_alias_move
registry = MlflowClient(sys.argv[1])
record_alias_move("m", alias="champion", previous=1, new=2, action="promote",
                  decision="promoted", reason="better", candidate=2, registry=registry,
                  move=True)
"""


@pytest.fixture
def registry(tmp_path):
    """A registry with versions 1 and 2 of NAME, champion at 1 with its first event."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, source=str(tmp_path / "model"))
    record_alias_move(NAME, alias="champion", previous=None, new=1, action="register",
                      decision="first", reason="first", candidate=1, registry=client,
                      move=True)
    return client, uri


def _holder(client) -> int:
    return int(client.get_registered_model(NAME).aliases["champion"])


def _move_in_a_process(uri: str, failpoint: str | None) -> int:
    env = {ENV: failpoint} if failpoint else {}
    import os

    return subprocess.run([sys.executable, "-c", _MOVE, uri], cwd=REPO, capture_output=True,
                          env={**os.environ, **env}).returncode


def test_a_move_killed_before_its_event_is_undone_by_the_next_writer(registry):
    client, uri = registry
    assert _move_in_a_process(uri, "promote.alias") == -9
    model = client.get_registered_model(NAME)
    assert int(model.aliases["champion"]) == 2 and INTENT in model.tags  # the window
    assert finish_interrupted_move(client, NAME) == "undone"
    model = client.get_registered_model(NAME)
    assert int(model.aliases["champion"]) == 1 and INTENT not in model.tags
    events = read_history(client, NAME)
    assert [(e["action"], e["previous"], e["new"]) for e in events] == [("register", None, 1)]
    assert champion_stack(events, "champion") == [1] and _holder(client) == 1


def test_a_completed_move_is_kept_and_settling_twice_does_nothing(registry):
    client, uri = registry
    assert _move_in_a_process(uri, None) == 0
    assert finish_interrupted_move(client, NAME) is None
    events = read_history(client, NAME)
    assert [e["new"] for e in events] == [1, 2] and _holder(client) == 2
    assert champion_stack(events, "champion") == [1, 2]


def test_an_intent_left_after_the_event_was_recorded_completes(registry):
    client, _ = registry
    event = record_alias_move(NAME, alias="champion", previous=1, new=2, action="promote",
                              decision="promoted", reason="r", candidate=2, registry=client,
                              move=True)
    # as if killed between the event and deleting the intent
    client.set_registered_model_tag(NAME, INTENT, '{"key": "%s", "alias": "champion", '
                                    '"previous": 1, "new": 2}' % event["key"])
    assert finish_interrupted_move(client, NAME) == "completed"
    assert _holder(client) == 2 and [e["new"] for e in read_history(client, NAME)] == [1, 2]
