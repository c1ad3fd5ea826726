"""The default shapes dataset: deterministic bytes, valid ids and labels, every class present,
and the committed data.dvc matching what params.yaml generates."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, init_project
from PIL import Image

from segen.config import load_params
from segen.data.shapes import CLASSES, generate_shapes_dataset

# 80 images of up to 4 shapes: each of the 4 shape classes lands in ~40 of them (1 - E[0.75^n]).
PARAMS = {"n_images": 80, "image_size": 48, "min_shapes": 1, "max_shapes": 4}


def _generate(out: Path, seed: int, **overrides: int) -> Path:
    generate_shapes_dataset(out, seed=seed, **{**PARAMS, **overrides})
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _recorded(dvc_file: Path) -> dict[str, object]:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("shapes") / "data", seed=7)


@pytest.fixture(scope="module")
def manifest(dataset: Path) -> pd.DataFrame:
    return pd.read_csv(dataset / "manifest.csv", dtype={"id": str})


def test_same_seed_gives_identical_bytes(dataset: Path, tmp_path: Path) -> None:
    again = _hashes(_generate(tmp_path / "again", seed=7))
    assert again == _hashes(dataset)
    assert len(again) == 2 * PARAMS["n_images"] + 2  # images, masks, manifest, classes


def test_different_seed_differs(dataset: Path, tmp_path: Path) -> None:
    other, first = _hashes(_generate(tmp_path / "other", seed=8)), _hashes(dataset)
    assert other.keys() == first.keys()
    changed = sum(other[k] != first[k] for k in first)
    assert changed == 2 * PARAMS["n_images"] + 1  # every PNG and the manifest; not classes.json


def test_image_i_does_not_depend_on_how_many_images(dataset: Path, tmp_path: Path) -> None:
    fewer = _generate(tmp_path / "fewer", seed=7, n_images=5)
    for name in ("images/img_00004.png", "masks/img_00004.png"):
        assert (fewer / name).read_bytes() == (dataset / name).read_bytes()


def test_layout_classes_and_manifest(dataset: Path, manifest: pd.DataFrame) -> None:
    assert json.loads((dataset / "classes.json").read_text()) == {"classes": CLASSES}
    assert {"id", "image", "mask", "label", "background", "palette"} <= set(manifest.columns)
    assert manifest["id"].iloc[3] == "img_00003" and manifest["id"].is_unique
    assert manifest["label"].dtype.kind == "i"
    assert set(manifest["palette"]) <= {"warm", "cool"}
    assert not any(manifest[c].dtype.kind == "f" for c in manifest.columns)  # no floats


def test_masks_ids_labels_and_size(dataset: Path, manifest: pd.DataFrame) -> None:
    size = PARAMS["image_size"]
    for row in manifest.itertuples():
        image, mask = Image.open(dataset / row.image), Image.open(dataset / row.mask)
        assert (image.mode, image.size, mask.mode, mask.size) == ("RGB", (size, size), "L",
                                                                  (size, size))
        ids = set(np.unique(np.asarray(mask)).tolist())
        assert ids <= set(range(len(CLASSES))) and ids != {0}, row.mask
        assert 1 <= row.label < len(CLASSES) and row.label in ids  # largest visible shape


def test_every_class_appears_in_about_half_the_images(dataset: Path,
                                                      manifest: pd.DataFrame) -> None:
    images_with = np.zeros(len(CLASSES), int)
    for row in manifest.itertuples():
        images_with[np.unique(np.asarray(Image.open(dataset / row.mask)))] += 1
    assert images_with[0] == PARAMS["n_images"]  # background everywhere
    for name, count in zip(CLASSES[1:], images_with[1:]):
        assert 25 <= count <= 55, f"{name} appears in {count} of 80 images, expected ~40"
    assert set(manifest["label"]) == set(range(1, len(CLASSES)))  # every class can be a label


def test_refuses_a_non_empty_folder(dataset: Path) -> None:
    before = _hashes(dataset)
    with pytest.raises(FileExistsError, match="already holds data"):
        generate_shapes_dataset(dataset, seed=7, **PARAMS)
    assert _hashes(dataset) == before


def test_rejects_bad_params(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_shapes"):
        _generate(tmp_path / "d", seed=0, min_shapes=5)
    assert not (tmp_path / "d").exists()


def test_committed_data_version_matches_params(tmp_path: Path) -> None:
    """data.dvc in the repository must be what params.yaml's dataset section generates."""
    committed = REPO / "data.dvc"
    if not committed.is_file():
        pytest.skip(f"{committed} is not committed yet: nothing to compare against")
    from dvc.repo import Repo

    params = load_params(REPO / "params.yaml").dataset
    root = init_project(tmp_path / "proj")
    generate_shapes_dataset(root / "data", seed=params.seed, n_images=params.n_images,
                            image_size=params.image_size, min_shapes=params.min_shapes,
                            max_shapes=params.max_shapes)
    with Repo(str(root)) as repo:
        repo.add(str(root / "data"))
    fresh, recorded = _recorded(root / "data.dvc"), _recorded(committed)
    assert fresh["md5"] == recorded["md5"], (
        f"{committed} records {recorded} but params.yaml's dataset section generates {fresh}. "
        "Regenerate (`segen data generate --force`, then `dvc add data`) and commit data.dvc.")
