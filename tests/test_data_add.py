"""`segen data add`: new samples become a new data version (data.dvc md5 changes, manifest
gains the rows under fresh ids); bad input (a corrupt image, a mask with a class id outside
classes.json) exits 2 naming the file, with data/ and data.dvc untouched."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import MAX_PIXELS, segen_cli, tiny_shapes
from PIL import Image

from segen.data.add import DataAddError, add_samples
from segen.data.shapes import CLASSES
from segen.data.validation import validate_dataset
from segen.data.versioning import recorded_version
from segen.hashing import hash_tree
from segen.project import Project


def _new_pairs(tmp_path: Path, n: int = 3) -> Path:
    """n fresh pairs (another seed) with the same stems as existing samples, as a user has."""
    source = tiny_shapes(tmp_path / "shapes-new", seed=999, n=n)
    new = tmp_path / "new"
    shutil.copytree(source / "images", new / "images")
    shutil.copytree(source / "masks", new / "masks")
    return new


def _snapshot(project: Project) -> tuple[str, str]:
    return hash_tree(project.data), project.data_dvc.read_text()


def test_add_pairs_records_a_new_version(versioned: Project, tmp_path: Path) -> None:
    new = _new_pairs(tmp_path)
    before_md5 = recorded_version(versioned)
    before_rows = pd.read_csv(versioned.data / "manifest.csv", dtype=str)
    result = segen_cli("data", "add", str(new / "images"), str(new / "masks"), "--json",
                       cwd=versioned.root)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    after_md5 = recorded_version(versioned)
    assert out["data_version"] == after_md5 != before_md5 == out["data_version_before"]
    manifest = pd.read_csv(versioned.data / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(manifest) == len(before_rows) + 3 and manifest["id"].is_unique
    # The stems clash with existing ids (img_00000...): the new rows get fresh ones.
    assert out["ids"] == ["img_00000_2", "img_00001_2", "img_00002_2"]
    assert manifest["id"].tolist()[-3:] == out["ids"]
    assert manifest["source"].tolist()[-3:] == ["img_00000.png", "img_00001.png",
                                                "img_00002.png"]
    # Old rows are kept verbatim, the new files are exactly the given pixels.
    assert manifest.iloc[:len(before_rows)]["image"].tolist() == before_rows["image"].tolist()
    np.testing.assert_array_equal(np.asarray(Image.open(versioned.data / "masks/img_00001_2.png")),
                                  np.asarray(Image.open(new / "masks/img_00001.png")))
    assert validate_dataset(versioned.data, min_class_fraction=0.0, max_pixels=MAX_PIXELS).ok
    assert not list(versioned.root.glob(".data-add-*")), "temporary folders left behind"


def _corrupt_image(new: Path) -> str:
    path = new / "images" / "img_00001.png"
    path.write_bytes(path.read_bytes()[:60])  # truncated mid-stream
    return "img_00001.png"


def _bad_class(new: Path) -> str:
    path = new / "masks" / "img_00002.png"
    ids = np.asarray(Image.open(path)).copy()
    ids[:4, :4] = len(CLASSES) + 3  # a class id classes.json does not have
    Image.fromarray(ids, "L").save(path)
    return "img_00002.png"


@pytest.mark.parametrize("spoil", [_corrupt_image, _bad_class], ids=["corrupt", "bad-class"])
def test_bad_input_changes_nothing(versioned: Project, tmp_path: Path, spoil) -> None:
    new = _new_pairs(tmp_path)
    bad_name = spoil(new)
    before = _snapshot(versioned)
    result = segen_cli("data", "add", str(new / "images"), str(new / "masks"),
                       cwd=versioned.root)
    assert result.returncode == 2, result.stdout + result.stderr
    assert bad_name in result.stderr and "not added" in result.stderr
    assert _snapshot(versioned) == before
    assert not list(versioned.root.glob(".data-add-*"))


def test_grey_images_join_an_rgb_dataset(versioned: Project, tmp_path: Path) -> None:
    new = _new_pairs(tmp_path, n=2)
    for path in (new / "images").iterdir():
        Image.open(path).convert("L").save(path)
    summary = add_samples(versioned.data, new / "images", new / "masks", max_pixels=MAX_PIXELS)
    assert summary.n_added == 2 and summary.image_mode == "RGB"
    assert Image.open(versioned.data / f"images/{summary.ids[0]}.png").mode == "RGB"
    assert validate_dataset(versioned.data, min_class_fraction=0.0, max_pixels=MAX_PIXELS).ok


def test_class_folders(tmp_path: Path) -> None:
    """A mask-less dataset (classes.json "masks": false) takes IMAGES_DIR/<class>/ only."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(data / "images" / "a.png")
    pd.DataFrame([{"id": "a", "image": "images/a.png", "mask": "", "label": 1}]).to_csv(
        data / "manifest.csv", index=False)
    (data / "classes.json").write_text(json.dumps({"classes": ["cat", "dog"], "masks": False}))
    new = tmp_path / "new"
    for cls, colour in (("cat", (1, 2, 3)), ("dog", (4, 5, 6))):
        (new / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(new / cls / "x.png")
    summary = add_samples(data, new, None, max_pixels=MAX_PIXELS)
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    assert summary.ids == ["cat_x", "dog_x"]
    assert manifest["label"].tolist() == ["1", "0", "1"]
    assert manifest["mask"].tolist() == ["", "", ""]
    with pytest.raises(DataAddError, match="not classes of the dataset"):
        (new / "horse").mkdir()
        add_samples(data, new, None, max_pixels=MAX_PIXELS)
    with pytest.raises(DataAddError, match="class folders"):
        add_samples(data, new, new, max_pixels=MAX_PIXELS)


def test_adding_the_same_samples_again_adds_nothing(versioned: Project, tmp_path: Path) -> None:
    """A rerun of an add whose result a kill hid (or a user's repeat) must not duplicate."""
    new = _new_pairs(tmp_path)
    first = segen_cli("data", "add", str(new / "images"), str(new / "masks"), "--json",
                      cwd=versioned.root)
    assert first.returncode == 0, first.stderr[-2000:]
    version, rows = recorded_version(versioned), len(pd.read_csv(versioned.data / "manifest.csv"))
    again = segen_cli("data", "add", str(new / "images"), str(new / "masks"), "--json",
                      cwd=versioned.root)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert (report["added"], report["already_present"]) == (0, 3)
    assert report["data_version"] == version == report["data_version_before"]
    assert len(pd.read_csv(versioned.data / "manifest.csv")) == rows
