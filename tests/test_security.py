"""Local attack surface: .segen/ is its owner's alone, and a checkpoint cannot run code."""
from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import torch
from conftest import segen_cli

from segen.config import MlflowParams
from segen.engines import loop
from segen.env import configure_environment
from segen.project import Project
from segen.tracking import configure_tracking


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_folder_is_created_user_only(tmp_path: Path) -> None:
    project = Project.at(tmp_path / "proj")
    configure_environment(project)
    assert _mode(project.state) == 0o700


def test_cli_creates_a_user_only_state_folder(tiny_project: Path) -> None:
    assert not (tiny_project / ".segen").exists()
    result = segen_cli("runs", cwd=tiny_project, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _mode(tiny_project / ".segen") == 0o700


class _Planted:
    """What an attacker pickles: unpickling it opens (creates) the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


class _Counter:
    """The smallest Resumable (as in test_loop.py)."""

    def __init__(self) -> None:
        self.epoch, self.device, self.weight = 0, torch.device("cpu"), torch.zeros(1)

    def state(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "epoch": self.epoch, "weight": self.weight}

    def restore(self, state: dict[str, Any]) -> None:
        self.epoch, self.weight = state["epoch"], state["weight"].clone()

    def train_epoch(self, bar: Any) -> dict[str, float]:
        self.epoch += 1
        self.weight += 1
        return {"loss": float(self.epoch)}


def test_a_crafted_checkpoint_is_refused_not_run(tmp_path: Path, caplog) -> None:
    project = Project.at(tmp_path / "proj")
    configure_tracking(project, MlflowParams(tracking_uri=None, experiment="security-test"))
    marker = tmp_path / "pwned"
    checkpoint = loop.checkpoint_path(project, "train_counter", "k")
    checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 3, "run_id": "x", "weight": _Planted(marker)}, checkpoint)
    # the file is what it claims: a full unpickling runs the attacker's call
    probe = tmp_path / "probe.pt"
    probe.write_bytes(checkpoint.read_bytes())
    torch.load(probe, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with caplog.at_level(logging.WARNING, logger="segen.training"):
        result = loop.run_epochs(project, "train_counter", "k", _Counter(), 2,
                                 images_per_epoch=1, params={"epochs": 2}, tags={},
                                 end_of_epoch=lambda trainer, losses, run: {})
    assert not marker.exists()
    assert result.resumed_from == 0  # from scratch
    assert f"checkpoint {checkpoint} cannot be used" in caplog.text
    assert "weights_only" in caplog.text.lower() or "unpickl" in caplog.text.lower()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2  # a clean one now
