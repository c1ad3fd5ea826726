"""Artifact store and hashing: content addressing and atomic publication."""
from __future__ import annotations

from pathlib import Path

import pytest

from segen.hashing import hash_json, hash_tree
from segen.store import ArtifactStore


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
