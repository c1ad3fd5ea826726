"""Damaged state on disk is detected, named in a warning and recovered from: stage pointers,
store entries, Prefect cache records and checkpoints of a real tiny run are truncated or
replaced, and the next run goes on.

The tests share one project (one cold run); each leaves it healthy again, as its recovery
is what it checks."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from conftest import (
    UNET,
    CounterTrainer,
    Stopped,
    init_project,
    segen_cli,
    statuses,
    write_params,
)

from segen.config import MlflowParams
from segen.engines import loop
from segen.pipeline.store import ArtifactStore, read_pointer
from segen.project import Project
from segen.tracking import configure_tracking


def _keys(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["key"] for s in summary["stages"]}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _Run:
    """The shared project, its cold run's keys, and a way to run the real flow again."""

    def __init__(self, root: Path):
        from flows.pipeline import pipeline

        self.root, self.project, self._pipeline = root, Project.at(root), pipeline
        self.keys = _keys(self())

    def __call__(self, targets: list[str] = UNET) -> dict[str, Any]:
        return self._pipeline(str(self.root), str(self.root / "params.yaml"), targets)

    def store(self, stage: str) -> Path:
        return self.project.store / stage / self.keys[stage]


@pytest.fixture(scope="module")
def ran(prefect_harness, tmp_path_factory) -> _Run:
    return _Run(init_project(tmp_path_factory.mktemp("corrupt") / "proj"))


@pytest.mark.slow
def test_unreadable_pointers_are_absent_and_rewritten(ran: _Run, caplog) -> None:
    truncated, garbage = ran.project.pointer("train_unet"), ran.project.pointer("preprocess")
    _truncate(truncated)
    garbage.write_bytes(b"\x00\xff not json")
    with caplog.at_level(logging.WARNING, logger="segen.store"):
        assert read_pointer(ran.project, "train_unet") is None
        assert read_pointer(ran.project, "preprocess") is None
    for pointer in (truncated, garbage):
        assert f"stage pointer {pointer} is unreadable" in caplog.text

    # every stage is a stored hit: the CLI answers from the store and rewrites the pointers
    result = segen_cli("run", "--stages", "register_unet", "--json", cwd=ran.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"stage pointer {truncated} is unreadable" in result.stderr
    assert set(statuses(json.loads(result.stdout.strip().splitlines()[-1])).values()) == {
        "cached"}
    for stage in ("train_unet", "preprocess"):
        assert read_pointer(ran.project, stage).key == ran.keys[stage]


@pytest.mark.slow
def test_broken_store_entries_are_set_aside_and_published_again(ran: _Run, caplog) -> None:
    trained, evaluated = ran.store("train_unet"), ran.store("evaluate_unet")
    _truncate(trained / "_meta.json")
    (evaluated / "_meta.json").unlink()  # the completion marker gone

    with caplog.at_level(logging.WARNING, logger="segen.store"):
        summary = ran()
    assert statuses(summary)["train_unet"] == "ran"
    assert statuses(summary)["evaluate_unet"] == "ran"
    assert _keys(summary) == ran.keys  # the same keys, published again
    for folder in (trained, evaluated):
        assert f"{folder / '_meta.json'} is missing or unreadable" in caplog.text
        aside = [p for p in folder.parent.iterdir() if p.name.startswith(f".broken-{folder.name}")]
        assert len(aside) == 1 and aside[0].name in caplog.text
        assert ArtifactStore(ran.project.store).load(folder.parent.name, folder.name) is not None
    assert set(statuses(ran()).values()) == {"cached"}


@pytest.mark.slow
def test_unreadable_prefect_cache_records_are_dropped(ran: _Run, caplog,
                                                      tmp_path: Path) -> None:
    """A truncated result, a garbage record, and a record naming another folder's result
    storage (as in a copied project): Prefect would fail those stages reading them."""
    cache = ran.project.prefect_cache
    model = ran.store("train_unet") / "model.pt"
    model_written = model.stat().st_mtime_ns
    _truncate(cache / "results" / ran.keys["train_unet"])
    (cache / "records" / ran.keys["evaluate_unet"]).write_bytes(b"{\"storage_key\": ")
    elsewhere = cache / "records" / ran.keys["preprocess"]
    record = json.loads(elsewhere.read_text())
    record["storage_key"] = str(tmp_path / "results" / ran.keys["preprocess"])
    elsewhere.write_text(json.dumps(record))

    with caplog.at_level(logging.WARNING, logger="segen.stages"):
        summary = ran()
    assert summary["failed"] == [] and _keys(summary) == ran.keys
    for stage in ("train_unet", "evaluate_unet", "preprocess"):
        assert f"Prefect cache record {cache / 'records' / ran.keys[stage]} cannot be read" \
            in caplog.text
    assert model.stat().st_mtime_ns == model_written  # answered from the store: no training
    assert set(statuses(ran()).values()) == {"cached"}  # the records were written again


class _Planted:
    """A pickle that runs code: unpickling it opens (creates) the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.slow
def test_a_planted_checkpoint_is_refused_and_training_starts_over(ran: _Run, caplog,
                                                                  tmp_path: Path) -> None:
    key = ran.keys["train_unet"]
    shutil.rmtree(ran.store("train_unet"))  # so that train_unet runs again, on this key
    marker = tmp_path / "pwned"
    checkpoint = loop.checkpoint_path(ran.project, "train_unet", key)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "run_id": "planted", "model": _Planted(marker)}, checkpoint)
    torch.load(checkpoint, weights_only=False)  # what an unchecked resume would run
    assert marker.exists()
    marker.unlink()
    digest = read_pointer(ran.project, "train_unet").digest

    with caplog.at_level(logging.WARNING, logger="segen.training"):
        summary = ran(["train_unet"])
    assert not marker.exists()
    assert statuses(summary)["train_unet"] == "ran"
    assert f"checkpoint {checkpoint} cannot be used" in caplog.text
    trained = read_pointer(ran.project, "train_unet")
    assert trained.info["resumed_from_epoch"] == 0
    assert trained.digest == digest  # the same seeded weights: nothing of the planted file


@pytest.mark.slow
def test_a_damaged_checkpoint_falls_back_to_the_one_before(ran: _Run, caplog) -> None:
    """A real run killed at its third checkpoint's rename leaves epoch 2 (then damaged) and
    epoch 1: the resume takes epoch 1."""
    write_params(ran.root, {"unet": {"epochs": 3}})
    try:
        work = _killed_at_checkpoint(ran.root, "train_unet", 3)
        latest, previous = work / loop.CHECKPOINT, work / loop.PREVIOUS
        assert [torch.load(p, weights_only=True)["epoch"] for p in (latest, previous)] == [2, 1]
        _truncate(latest)
        with caplog.at_level(logging.WARNING, logger="segen.training"):
            summary = ran(["train_unet"])
        assert statuses(summary)["train_unet"] == "ran"
        assert f"checkpoint {latest} cannot be used" in caplog.text
        assert read_pointer(ran.project, "train_unet").info["resumed_from_epoch"] == 1
    finally:
        write_params(ran.root, {"unet": {"epochs": 2}})


def _killed_at_checkpoint(root: Path, stage: str, nth: int) -> Path:
    """Run `segen stage STAGE` until it SIGKILLs itself at the nth checkpoint's rename
    (segen.faults); its work folder. The group is killed after, as the CLI's temporary
    Prefect server outlives a SIGKILLed parent."""
    proc = subprocess.Popen([sys.executable, "-m", "segen.cli.main", "stage", stage], cwd=root,
                            env={**os.environ, "SEGEN_FAILPOINT": f"checkpoint.write:{nth}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert proc.wait(timeout=600) == -signal.SIGKILL
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    found = list((root / ".segen" / "work" / stage).glob(f"*/{loop.CHECKPOINT}"))
    assert len(found) == 1
    return found[0].parent






def _stop_at(epoch: int) -> Callable[..., dict[str, float]]:
    def end_of_epoch(trainer: CounterTrainer, losses: dict[str, float], run: Any
                     ) -> dict[str, float]:
        if trainer.epoch == epoch:
            raise Stopped  # before this epoch's checkpoint
        return {}

    return end_of_epoch


def _epochs(project: Project, epochs: int, end_of_epoch: Callable[..., dict[str, float]]
            ) -> loop.LoopResult:
    return loop.run_epochs(project, "train_counter", "k", CounterTrainer(), epochs,
                           images_per_epoch=1, params={"epochs": epochs}, tags={},
                           end_of_epoch=end_of_epoch)


def test_checkpoints_damaged_one_after_the_other(tmp_path: Path, caplog) -> None:
    """Latest damaged: resume from the previous; both damaged: a fresh start."""
    project = Project.at(tmp_path)
    configure_tracking(project, MlflowParams(tracking_uri=None, experiment="corrupt-test"))
    latest = loop.checkpoint_path(project, "train_counter", "k")
    with pytest.raises(Stopped):
        _epochs(project, 5, _stop_at(3))
    _truncate(latest)  # epoch 2's; epoch 1's is the previous
    with caplog.at_level(logging.WARNING, logger="segen.training"):
        assert _epochs(project, 5, lambda *_: {}).resumed_from == 1
    assert f"checkpoint {latest} cannot be used" in caplog.text
    assert torch.load(latest, weights_only=True)["epoch"] == 5

    previous = latest.with_name(loop.PREVIOUS)
    latest.write_bytes(b"garbage")
    previous.write_bytes(b"")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segen.training"):
        assert _epochs(project, 2, lambda *_: {}).resumed_from == 0
    assert f"checkpoint {previous} cannot be used" in caplog.text
