"""The default dataset is byte-deterministic: generating it anywhere gives the DVC version
that the repository's data.dvc records; and `segen data import-pairs` records a version."""
from __future__ import annotations

from pathlib import Path

import yaml
from conftest import REPO, init_project, segen_cli

from segen.config import load_params
from segen.data.shapes import generate_shapes_dataset


def _recorded(root: Path) -> str:
    return yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"]


def test_generated_default_matches_committed_data_dvc(tmp_path: Path) -> None:
    from dvc.repo import Repo

    root = init_project(tmp_path / "proj")
    params = load_params(REPO / "params.yaml").dataset
    generate_shapes_dataset(root / "data", seed=params.seed, n_images=params.n_images,
                            image_size=params.image_size, min_shapes=params.min_shapes,
                            max_shapes=params.max_shapes)
    with Repo(str(root)) as repo:
        repo.add(str(root / "data"))
    assert _recorded(root) == _recorded(REPO), (
        "the default dataset no longer matches data.dvc: if the generator or params.yaml "
        "`dataset` changed on purpose, regenerate (`segen data generate --force`), "
        "`dvc add data` and commit data.dvc")


def test_cli_import_pairs_records_a_new_version(tmp_path: Path, isbi: Path) -> None:
    root = init_project(tmp_path / "proj")
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for n in ("0", "1", "2"):
        (images / f"{n}.png").write_bytes((isbi / "image" / f"{n}.png").read_bytes())
        (masks / f"{n}.png").write_bytes((isbi / "label" / f"{n}.png").read_bytes())
    result = segen_cli("data", "import-pairs", str(images), str(masks), "--classes",
                       "membrane", "cell", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    version = _recorded(root)
    assert version.endswith(".dir") and version in result.stdout
    assert sorted(p.name for p in (root / "data" / "masks").iterdir()) == ["0.png", "1.png",
                                                                         "2.png"]
