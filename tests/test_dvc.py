"""dvc.yaml matches the stage graph, and `dvc repro` runs the stages, then does nothing."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, git, init_project, segen_cli

from segen.pipeline import dvcyaml
from segen.pipeline.graph import STAGES, stages_for
from tasks import stage_table


def test_committed_dvc_yaml_is_generated_from_the_stage_graph() -> None:
    assert (REPO / "dvc.yaml").read_text() == dvcyaml.render(REPO, stage_table()), (
        "dvc.yaml is out of date: run `segen dvc-yaml`")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    for name, spec in STAGES.items():
        assert stages[name]["cmd"] == f"segen stage {name}"
        assert stages[name]["params"] == list(spec.params)


@pytest.mark.slow
def test_dvc_repro_twice(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    for item in ("segen", "tasks", "flows", "models", "dvc.yaml"):
        src = REPO / item
        (shutil.copytree(src, root / item, ignore=shutil.ignore_patterns("__pycache__"))
         if src.is_dir() else shutil.copy(src, root / item))
    init_project(root)
    dvc = [str(Path(shutil.which("dvc", path=str(REPO / ".venv/bin")) or "dvc"))]
    env_path = f"{REPO / '.venv/bin'}:{__import__('os').environ['PATH']}"
    run = lambda *a: subprocess.run(dvc + list(a), cwd=root, capture_output=True, text=True,  # noqa: E731
                                    env={**__import__("os").environ, "PATH": env_path})
    assert segen_cli("data", "generate", cwd=root).returncode == 0
    assert run("add", "data").returncode == 0  # what a DVC user has: data tracked by data.dvc
    # One target and what it depends on: each DVC stage is a process paying Prefect's
    # start-up, so the whole graph would take many minutes for no extra coverage.
    first = run("repro", "register_unet")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in stages_for(["register_unet"]):
        assert f"Running stage '{name}'" in first.stdout
    assert "train_gan" not in first.stdout
    pointer = json.loads((root / ".segen/stages/register_unet.json").read_text())
    assert pointer["stage"] == "register_unet" and len(pointer["key"]) == 64
    assert (pointer["info"]["model_name"], pointer["info"]["version"]) == ("test-unet", 1)
    assert 0 <= pointer["info"]["metrics"]["mean_iou"] <= 1
    second = run("repro", "register_unet")
    assert second.returncode == 0
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout.lower() or "didn't change" in second.stdout.lower()
    git(root, "status")  # still a healthy git repository
