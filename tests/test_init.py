"""`segen init`: a segen project in a repository of one's own (segen as an installed package),
then `segen data import-pairs` and `segen run` in it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, TINY, git, merge, segen_cli, write_params
from PIL import Image

from segen.cli.init import default_params
from segen.pipeline.graph import STAGES


def _init(cwd: Path, home: Path, *args: str):
    """`segen init` with HOME in tmp: the default remote (~/.cache/...) lands there."""
    return segen_cli("init", *args, cwd=cwd, env={"HOME": str(home)})


def _ignored(root: Path) -> list[str]:
    return (root / ".gitignore").read_text().splitlines()


def test_init_makes_a_project_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    root = tmp_path / "proj"  # absent: init makes it
    made = _init(tmp_path, tmp_path / "home", str(root))
    assert made.returncode == 0, made.stderr[-2000:]
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    assert (root / "params.yaml").read_bytes() == default_params() == \
        (REPO / "params.yaml").read_bytes()
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(STAGES)
    assert stages["version_data"]["deps"] == ["data"]  # no code deps: the code is the package
    assert _ignored(root) == [".segen/"]
    remote = tmp_path / "home/.cache/segen/dvc-remote"
    assert remote.is_dir() and str(remote) in made.stdout
    assert "segen data import-pairs" in made.stdout and "segen run" in made.stdout
    check = segen_cli("dvc-yaml", "--check", cwd=root)
    assert check.returncode == 0, check.stderr

    again = _init(root, tmp_path / "home")  # DIR defaults to the current folder
    assert again.returncode == 2 and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    (root / "params.yaml").write_text("edited: true\n")
    assert _init(root, tmp_path / "home").returncode == 2
    assert (root / "params.yaml").read_text() == "edited: true\n"  # refused: nothing touched

    forced = _init(root, tmp_path / "home", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert "replaced" in forced.stdout and "kept" in forced.stdout
    assert (root / "params.yaml").read_bytes() == default_params()
    assert _ignored(root) == [".segen/"]  # appended once


def test_init_keeps_an_existing_git_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@segen"), git(root, "config", "user.name", "test")
    (root / ".gitignore").write_text("*.log\n/build")  # no final newline
    git(root, "add", ".gitignore"), git(root, "commit", "-qm", "theirs")
    made = _init(root, tmp_path / "home")
    assert made.returncode == 0, made.stderr[-2000:]
    assert "git repository: kept" in made.stdout
    assert git(root, "log", "--format=%s").split() == ["theirs"]
    assert _ignored(root) == ["*.log", "/build", ".segen/"]


def _write_pairs(folder: Path, n: int = 12, size: int = 32) -> tuple[Path, Path]:
    """n RGB images of noise with one bright rectangle, and 0/1 masks of the rectangle."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        y, x = rng.integers(2, size // 2, size=2)
        mask = np.zeros((size, size), np.uint8)
        mask[y:y + size // 3, x:x + size // 3] = 1
        image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
        image[mask == 1] = (230, 200, 40)
        Image.fromarray(image).save(images / f"{i:02d}.png")
        Image.fromarray(mask).save(masks / f"{i:02d}.png")
    return images, masks


@pytest.mark.slow
def test_init_then_import_pairs_then_run_registers_a_model(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    assert _init(root, tmp_path / "home").returncode == 0
    write_params(root, merge(TINY, {"data": {"remote": str(tmp_path / "remote")}}))
    images, masks = _write_pairs(tmp_path)
    imported = segen_cli("data", "import-pairs", str(images), str(masks), "--classes",
                         "background", "box", cwd=root)
    assert imported.returncode == 0, imported.stderr[-3000:]
    (out,) = yaml.safe_load((root / "data.dvc").read_text())["outs"]
    assert out["path"] == "data" and out["md5"].endswith(".dir") and out["md5"] in imported.stdout
    run = segen_cli("run", "--stages", "register_unet", "--json", cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert [(m["name"], m["version"]) for m in summary["models"]] == [("test-unet", 1)]
    assert "iou_box" in summary["models"][0]["metrics"]  # the imported classes, not the shapes
    pointer = json.loads((root / ".segen/stages/register_unet.json").read_text())
    assert pointer["stage"] == "register_unet"
    assert {s["name"]: s["key"] for s in summary["stages"]}["register_unet"] == pointer["key"]
    info = pointer["info"]
    assert (info["model_name"], info["version"], info["champion"]) == ("test-unet", 1, True)
    assert info["metrics"] == summary["models"][0]["metrics"]


def test_the_wheel_ships_the_default_params(tmp_path: Path) -> None:
    """segen/params.yaml is a link to ./params.yaml: the wheel must hold the file itself."""
    src = tmp_path / "src"
    for item in ("segen", "tasks", "flows", "models"):
        shutil.copytree(REPO / item, src / item, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("pyproject.toml", "README.md", "params.yaml"):
        shutil.copy(REPO / item, src / item)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("segen-*.whl"))) as wheel:
        assert wheel.read("segen/params.yaml") == (REPO / "params.yaml").read_bytes()
