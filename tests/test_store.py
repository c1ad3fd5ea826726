"""Artifact store and hashing: content addressing and atomic publication."""
from __future__ import annotations

from pathlib import Path

import pytest

from segen.hashing import hash_json, hash_tree
from segen.pipeline.store import ArtifactStore


def test_hash_tree_depends_on_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("1")
    first = hash_tree(tmp_path)
    (tmp_path / "a" / "x.txt").write_text("2")
    assert hash_tree(tmp_path) != first
    (tmp_path / "a" / "x.txt").write_text("1")
    assert hash_tree(tmp_path) == first
    (tmp_path / "a" / "x.txt").rename(tmp_path / "a" / "y.txt")
    assert hash_tree(tmp_path) != first


def test_hash_json_is_order_independent() -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})


def test_publish_is_atomic_and_first_wins(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.staging("s") as staged:
        (staged / "out.txt").write_text("one")
        first = store.publish("s", "k", staged, {"n": 1})
    assert store.load("s", "k") == first
    with store.staging("s") as staged:
        (staged / "out.txt").write_text("two")
        second = store.publish("s", "k", staged, {"n": 2})
    assert second == first  # the key was already published: the first result stands
    assert (tmp_path / "s" / "k" / "out.txt").read_text() == "one"
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["k"]  # no staging debris


def test_failed_stage_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.staging("s") as staged:
            (staged / "half.txt").write_text("partial")
            raise RuntimeError("killed")
    assert store.load("s", "k") is None
    assert list((tmp_path / "s").iterdir()) == []


def test_discard_then_publish_replaces_a_result_that_no_longer_holds(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with store.staging("s") as staged:
        (staged / "registration.json").write_text('{"version": 1}')
        store.publish("s", "k", staged, {"version": 1})
    store.discard("s", "k")  # e.g. its model version was deleted from the registry
    assert store.load("s", "k") is None
    with store.staging("s") as staged:
        (staged / "registration.json").write_text('{"version": 2}')
        new = store.publish("s", "k", staged, {"version": 2})
    assert new.info == {"version": 2} and store.load("s", "k") == new
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["k"]
