"""A change of data/ and data.dvc is all or nothing under SIGKILL (segen.data.transaction):
the real CLI is killed at each named failpoint of an import or `data add` (segen.faults), and
the next writer rolls the change back, so data/ and data.dvc record the old version again
and a rerun applies the change exactly once."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import segen_cli, tiny_shapes

from segen.data.transaction import data_change, journal_path, previous_path, recover
from segen.data.versioning import open_repo, recorded_version
from segen.faults import ENV
from segen.hashing import hash_tree
from segen.project import Project

KILLED = -9


def _state(project: Project) -> tuple[str, str]:
    return hash_tree(project.data), project.data_dvc.read_text()


def _agrees(project: Project) -> bool:
    with open_repo(project) as repo:
        return not repo.status(targets=[str(project.data_dvc)])


def _leftovers(project: Project) -> list[str]:
    return sorted(p.name for p in project.root.iterdir() if p.name.startswith(".data"))


def _command(op: str, tmp_path: Path) -> list[str]:
    source = tiny_shapes(tmp_path / f"source-{op}", seed=999, n=3)
    if op == "add":
        return ["data", "add", str(source / "images"), str(source / "masks")]
    return ["data", "import-pairs", str(source / "images"), str(source / "masks"),
            "--classes", "background", "circle", "square", "triangle", "star"]


@pytest.mark.parametrize("op,point", [("import", "data.swap"), ("import", "data.record"),
                                      ("import", "data.push"), ("add", "data.swap"),
                                      ("add", "data.push")])
def test_a_killed_change_is_rolled_back_and_the_rerun_applies_it_once(versioned, tmp_path,
                                                                       op, point):
    before, command = _state(versioned), _command(op, tmp_path)
    n_before = len(pd.read_csv(versioned.data / "manifest.csv"))
    killed = segen_cli(*command, cwd=versioned.root, env={ENV: point})
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    if point == "data.swap":  # exchanged in one step: data/ is whole, the old one kept aside
        assert hash_tree(previous_path(versioned.data)) == before[0]
        assert len(pd.read_csv(versioned.data / "manifest.csv")) == (
            n_before + 3 if op == "add" else 3)
    assert journal_path(versioned).is_file()

    recover(versioned)  # what every writing command does first, under the project lock
    assert _state(versioned) == before and _agrees(versioned)
    assert _leftovers(versioned) == [] and not journal_path(versioned).exists()

    rerun = segen_cli(*command, cwd=versioned.root)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _agrees(versioned) and recorded_version(versioned) != before[1]
    n_after = len(pd.read_csv(versioned.data / "manifest.csv"))
    assert n_after == (n_before + 3 if op == "add" else 3)  # applied once, not twice
    assert _leftovers(versioned) == []


def test_the_next_writer_recovers_before_it_starts(versioned, tmp_path):
    before, command = _state(versioned), _command("add", tmp_path)
    assert segen_cli(*command, cwd=versioned.root, env={ENV: "data.swap"}).returncode == KILLED
    other = segen_cli("stage", "version_data", "--no-wait", cwd=versioned.root)
    assert other.returncode == 0, other.stderr[-2000:]
    assert "an interrupted change of data/ was rolled back" in other.stderr
    assert _state(versioned) == before and _leftovers(versioned) == []  # recorded: the old


def test_a_half_written_data_dvc_gets_its_old_text_back(versioned):
    before = _state(versioned)
    with pytest.raises(KeyboardInterrupt):
        with data_change(versioned):
            versioned.data_dvc.write_text("outs:\n- md5: ")  # DVC killed mid-write
            raise KeyboardInterrupt  # any exception rolls back at once
    assert _state(versioned) == before
    # a kill (no exception handler runs) leaves the journal; recovery restores the text
    journal_path(versioned).write_text('{"data_dvc": %s}' % __import__("json").dumps(before[1]))
    versioned.data_dvc.write_text("outs:\n- md5: ")
    recover(versioned)
    assert _state(versioned) == before and not journal_path(versioned).exists()


def test_a_refused_import_leaves_everything_as_it_was(versioned, tmp_path):
    before, source = _state(versioned), tmp_path / "bad"
    shutil.copytree(tiny_shapes(tmp_path / "s", seed=5, n=2), source)
    (source / "images" / next(iter(sorted((source / "images").iterdir()))).name).write_bytes(
        b"not a png")
    proc = segen_cli("data", "add", str(source / "images"), str(source / "masks"),
                     cwd=versioned.root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert _state(versioned) == before and _leftovers(versioned) == []
    assert not journal_path(versioned).exists()


def test_the_temporary_of_a_killed_atomic_write_is_removed_by_the_next_writer(versioned,
                                                                              tmp_path):
    """Killed between writing the journal's temporary and renaming it (pointer.write is
    every write_atomic): the temporary stays until the next writer starts."""
    before, command = _state(versioned), _command("add", tmp_path)
    assert segen_cli(*command, cwd=versioned.root, env={ENV: "pointer.write"}).returncode == KILLED
    left = [p.name for p in versioned.state.glob(".data-change.json.*.tmp")]
    assert len(left) == 1 and not journal_path(versioned).exists()
    rerun = segen_cli(*command, cwd=versioned.root)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert list(versioned.state.glob(".*.tmp")) == [] and _agrees(versioned)
    assert _state(versioned) != before


def test_a_kill_before_the_exchange_discards_the_staged_folder(versioned, tmp_path):
    """Killed after the new folder took the .data.previous name and before the exchange:
    recovery must tell it from the old data/ (by inode) and discard it, keeping data/."""
    from segen.data.transaction import publish_folder

    before = _state(versioned)
    staged = tiny_shapes(tmp_path / "staged", seed=7, n=2)
    with pytest.raises(KeyboardInterrupt):
        with data_change(versioned):
            os.rename(staged, previous_path(versioned.data))  # as _exchange's first step
            raise KeyboardInterrupt
    assert _state(versioned) == before and _leftovers(versioned) == []
    # and the whole swap outside a transaction replaces data/ and keeps nothing aside
    publish_folder(tiny_shapes(tmp_path / "other", seed=8, n=2), versioned.data)
    assert len(pd.read_csv(versioned.data / "manifest.csv")) == 2 and _leftovers(versioned) == []
