"""Local attack surface: .segen/ is its owner's alone, and a checkpoint cannot run code."""
from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, CounterTrainer, segen_cli

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
        result = loop.run_epochs(project, "train_counter", "k", CounterTrainer(), 2,
                                 images_per_epoch=1, params={"epochs": 2}, tags={},
                                 end_of_epoch=lambda trainer, losses, run: {})
    assert not marker.exists()
    assert result.resumed_from == 0  # from scratch
    assert f"checkpoint {checkpoint} cannot be used" in caplog.text
    assert "weights_only" in caplog.text.lower() or "unpickl" in caplog.text.lower()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2  # a clean one now


@pytest.mark.parametrize("kind", ["gan", "wgan_gp", "vae", "cgan", "pix2pix", "cyclegan"])
def test_generator_checkpoints_resume_under_weights_only(kind: str, tmp_path: Path) -> None:
    """A trained epoch's state of each generative trainer holds tensors and plain values
    only, so the weights_only read of a resume restores it (the U-Net's: test_corrupt_state)."""
    from segen.config import load_params
    from segen.engines.gen_trainer import GenTrainer

    params = load_params(REPO / "params.yaml")
    config = {"spec": {"channels": 3, "image_size": 16, "n_classes": 3, "latent_dim": 8,
                       "width": 4}}
    data = {"image": torch.rand(4, 3, 16, 16) * 2 - 1, "label": torch.tensor([0, 1, 2, 0]),
            "mask": torch.randint(0, 3, (4, 16, 16)), "domain": torch.tensor([0, 1, 0, 1])}
    trainer = GenTrainer(kind, config, getattr(params, kind), 0, data, 4)
    trainer.train_epoch(_NoBar())  # optimiser state exists only after a step
    path = tmp_path / "checkpoint.pt"
    loop.save_checkpoint(path, trainer.state("run"))
    trainer.restore(torch.load(path, weights_only=True))
    assert trainer.epoch == 1


class _NoBar:
    def update(self, n: int) -> None:
        pass
