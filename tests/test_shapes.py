"""The default shapes dataset: deterministic bytes, valid ids and labels, every class present."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segen.shapes import CLASSES, generate_shapes_dataset

PARAMS = {"n_images": 24, "image_size": 48, "min_shapes": 1, "max_shapes": 4}


def _generate(out: Path, seed: int) -> Path:
    generate_shapes_dataset(out, seed=seed, **PARAMS)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("shapes") / "data", seed=7)


def test_same_seed_gives_identical_bytes(dataset: Path, tmp_path: Path) -> None:
    again = _hashes(_generate(tmp_path / "again", seed=7))
    assert again == _hashes(dataset)
    assert len(again) == 2 * PARAMS["n_images"] + 2  # images, masks, manifest, classes


def test_different_seed_differs(dataset: Path, tmp_path: Path) -> None:
    other = _hashes(_generate(tmp_path / "other", seed=8))
    first = _hashes(dataset)
    assert other.keys() == first.keys()
    assert sum(other[k] != first[k] for k in first) > PARAMS["n_images"]


def test_image_i_does_not_depend_on_how_many_images(dataset: Path, tmp_path: Path) -> None:
    fewer = tmp_path / "fewer"
    generate_shapes_dataset(fewer, seed=7, **{**PARAMS, "n_images": 5})
    for name in ("images/img_00004.png", "masks/img_00004.png"):
        assert (fewer / name).read_bytes() == (dataset / name).read_bytes()


def test_layout_classes_and_manifest(dataset: Path) -> None:
    assert json.loads((dataset / "classes.json").read_text()) == {"classes": CLASSES}
    manifest = pd.read_csv(dataset / "manifest.csv", dtype={"id": str})
    assert {"id", "image", "mask", "label", "background", "palette"} <= set(manifest.columns)
    assert manifest["id"].iloc[3] == "img_00003"
    assert manifest["label"].dtype.kind == "i"
    assert manifest["label"].between(1, len(CLASSES) - 1).all()
    assert set(manifest["palette"]) <= {"warm", "cool"}
    assert not any(manifest[c].dtype.kind == "f" for c in manifest.columns)  # no floats


def test_masks_sizes_and_labels(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv", dtype={"id": str})
    seen: set[int] = set()
    size = PARAMS["image_size"]
    for row in manifest.itertuples():
        image, mask = Image.open(dataset / row.image), Image.open(dataset / row.mask)
        assert (image.mode, image.size, mask.mode, mask.size) == ("RGB", (size, size), "L",
                                                                  (size, size))
        ids = np.asarray(mask)
        assert ids.max() < len(CLASSES) and ids.max() > 0
        assert row.label in np.unique(ids)  # the largest visible shape is in the mask
        seen |= set(np.unique(ids).tolist())
    assert seen == set(range(len(CLASSES)))  # every class appears somewhere


def test_refuses_a_non_empty_folder(dataset: Path) -> None:
    with pytest.raises(FileExistsError, match="already holds data"):
        generate_shapes_dataset(dataset, seed=7, **PARAMS)


def test_rejects_bad_params(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_shapes"):
        generate_shapes_dataset(tmp_path / "d", seed=0, **{**PARAMS, "min_shapes": 5})
    assert not (tmp_path / "d").exists()
