"""The scarce-label study's plumbing: preprocess.labelled_fraction keeps a seeded share of the
train split, leaves the val and test splits as they were, and every train-split reader (the
U-Net's, pix2pix's, the synthetic pairs') sees only the labelled rows."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from segen.config import PreprocessParams

BASE = PreprocessParams(image_size=16, long_side=None, pad_multiple=16, class_weights="none",
                        val_fraction=0.1, test_fraction=0.15, labelled_fraction=1.0, seed=0)


def _splits(fraction: float, seed: int = 0, n: int = 800) -> dict[str, list[int]]:
    from segen.data.preprocessing import split_indices

    return split_indices(n, dataclasses.replace(BASE, labelled_fraction=fraction, seed=seed))


def test_the_labelled_share_is_seeded_and_leaves_val_and_test_alone() -> None:
    full, scarce = _splits(1.0), _splits(0.1)
    assert full["unlabelled"] == []
    assert scarce["val"] == full["val"] and scarce["test"] == full["test"]
    assert set(scarce["train"]) < set(full["train"])
    assert len(scarce["train"]) == round(0.1 * len(full["train"]))
    assert sorted(scarce["train"] + scarce["unlabelled"]) == full["train"]
    assert _splits(0.1) == scarce  # the same seed, the same rows
    assert _splits(0.1, seed=1)["train"] != scarce["train"]
    assert set(_splits(0.1)["train"]) <= set(full["train"])


def test_a_tiny_fraction_keeps_one_image_and_the_config_refuses_zero() -> None:
    assert len(_splits(1e-6, n=20)["train"]) == 1
    from pydantic import ValidationError

    for bad in (0.0, 1.5):
        with pytest.raises(ValidationError, match="labelled_fraction"):
            dataclasses.replace(BASE, labelled_fraction=bad)


def test_preprocess_writes_only_the_labelled_rows_as_train(tmp_path: Path) -> None:
    from segen.data.arrays import load_arrays
    from segen.data.shapes import generate_shapes_dataset
    from segen.pipeline.store import StageResult
    from segen.project import Project
    from tasks.data import preprocess

    generate_shapes_dataset(tmp_path / "proj" / "data", seed=1, n_images=40, image_size=16,
                            min_shapes=1, max_shapes=2)
    upstream = {name: StageResult(name, "k", "d", str(tmp_path), {"data_version": "v.dir"})
                for name in ("version_data", "validate")}
    params = dataclasses.replace(BASE, labelled_fraction=0.25)
    result = preprocess.fn(project=Project.at(tmp_path / "proj"), preprocess=params, **upstream)
    info = result.info
    assert info["train"] == round(0.25 * (info["train"] + info["unlabelled"]))
    assert info["test"] == round(0.15 * 40) and info["val"] == round(0.1 * 40)
    images, masks = load_arrays(result, "train")
    assert len(images) == len(masks) == info["train"]
