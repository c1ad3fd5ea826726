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


def test_stored_records_name_no_absolute_path(tmp_path: Path) -> None:
    from segen.pipeline.store import StageResult

    store = ArtifactStore(tmp_path / "a" / "store")
    with store.staging("s") as staged:
        (staged / "x").write_text("1")
        published = store.publish("s", "k", staged, {"n": 1})
    text = (tmp_path / "a" / "store" / "s" / "k" / "_meta.json").read_text()
    assert str(tmp_path) not in text and "path" not in text
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    found = ArtifactStore(moved / "store").load("s", "k")
    assert found == StageResult("s", "k", published.digest, str(moved / "store" / "s" / "k"),
                                {"n": 1})


@pytest.mark.slow
def test_a_copied_project_uses_its_own_artifacts(tmp_path: Path) -> None:
    """A project copied with its .segen/ finds every stage cached, at its own paths; with
    the original gone it still does (it never read the original's artifacts)."""
    import json
    import shutil

    from conftest import init_project, segen_cli

    from segen.pipeline.store import read_pointer
    from segen.project import Project

    original = init_project(tmp_path / "original")
    first = segen_cli("run", "--stages", "register_unet", "--json", cwd=original)
    assert first.returncode == 0, first.stderr[-3000:]
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    shutil.rmtree(original)
    again = segen_cli("run", "--stages", "register_unet", "--json", cwd=copy)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert {s["status"] for s in summary["stages"]} == {"cached"}
    for stage in ("preprocess", "train_unet", "evaluate_unet"):
        result = read_pointer(Project.at(copy), stage)
        assert Path(result.path).is_relative_to(copy) and Path(result.path).is_dir()
