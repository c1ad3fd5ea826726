"""Real-data shape end to end: non-square images of two orientations (96x64 and 64x96) with a
void label, imported from a split layout through the CLI, then every segmentation stage
(both networks, both clusterers, evaluation, registration, comparison), and `segen predict`
at each image's own size, never predicting void."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import init_project, segen_cli, statuses
from PIL import Image

from segen.data import arrays

pytestmark = pytest.mark.slow
CLASSES = ["background", "thing", "void"]
SPLITS = {"train": 16, "val": 4, "test": 6}


def _pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with one bright rectangle (thing) and a noise strip labelled void."""
    image = np.full((height, width, 3), 60, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left = rng.integers(4, height // 2), rng.integers(4, width // 2)
    image[top:top + height // 3, left:left + width // 3] = (220, 200, 40)
    mask[top:top + height // 3, left:left + width // 3] = 1
    image[-6:] = rng.integers(0, 255, (6, width, 3), dtype=np.uint8)
    mask[-6:] = 2
    return image, mask


def _split_layout(root: Path) -> dict[str, list[str]]:
    rng, ids = np.random.default_rng(0), {}
    for split, n in SPLITS.items():
        ids[split] = []
        for i in range(n):
            height, width = (64, 96) if i % 2 else (96, 64)
            image, mask = _pair(rng, height, width)
            stem = f"{split}{i:02d}"
            for folder, array in (("images", image), ("masks", mask)):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / split / f"{stem}.png")
            ids[split].append(stem)
    return ids


def test_non_square_void_split_layout_through_every_stage(tmp_path: Path, run_pipeline) -> None:
    project = init_project(tmp_path / "proj", {
        "preprocess": {"image_size": None, "long_side": 48, "pad_multiple": 16},
        "unet": {"epochs": 3}, "validate": {"min_class_fraction": 0.0}})
    ids = _split_layout(tmp_path / "src")
    result = segen_cli("data", "import-pairs", str(tmp_path / "src/images"),
                       str(tmp_path / "src/masks"), "--split-dirs", "--classes", *CLASSES,
                       "--ignore", "void", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ignored in training and scores: void" in result.stdout

    summary = run_pipeline(project, ["compare_segmenters"])
    assert set(statuses(summary).values()) == {"ran"}, statuses(summary)
    key = {s["name"]: s["key"] for s in summary["stages"]}["preprocess"]
    folder = project / ".segen" / "store" / "preprocess" / key
    meta = json.loads((folder / arrays.META).read_text())
    assert (meta["height"], meta["width"]) == (48, 48)  # 32x48 and 48x32 on one canvas
    assert meta["ignore_ids"] == [2]
    rows = json.loads((folder / arrays.SPLIT).read_text())
    assert {split: sorted(meta["ids"][i] for i in rows[split]) for split in SPLITS} == ids
    masks = np.load(folder / arrays.MASKS, mmap_mode="r")
    assert 2 not in np.unique(masks)  # void and padding are IGNORE_INDEX, never a class

    rows = {r["model"]: r for r in summary["comparison"]}
    assert list(rows) == ["unet", "torchvision", "kmeans", "dbscan"]
    models = {m["name"]: m for m in summary["models"]}
    assert {"test-unet", "test-torchvision", "test-kmeans", "test-dbscan"} <= set(models)

    source = tmp_path / "src" / "images" / "test"
    images = [source / f"test{i:02d}.png" for i in (0, 1)]  # 96x64 and 64x96
    for model in ("test-unet@champion", "test-torchvision@champion", "test-kmeans"):
        out = tmp_path / model.replace("@", "-")
        result = segen_cli("predict", "--model", model, "--out", str(out),
                           *map(str, images), cwd=project)
        assert result.returncode == 0, result.stderr[-3000:]
        for path in images:
            labels = np.asarray(Image.open(out / f"{path.stem}.labels.png"))
            assert labels.shape == np.asarray(Image.open(path)).shape[:2]
            if not model.startswith("test-kmeans"):
                assert 2 not in np.unique(labels)  # void is never predicted
    manifest = pd.read_csv(project / "data" / "manifest.csv", dtype=str)
    assert set(manifest["split"]) == set(SPLITS)
