"""validate_dataset: a clean generated set passes; each kind of breakage is named by file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import MAX_PIXELS
from PIL import Image

from segen.data.shapes import generate_shapes_dataset
from segen.data.validation import ValidationReport, validate_dataset

MIN_FRACTION = 0.005  # params.yaml validate.min_class_fraction


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("valid") / "data"
    generate_shapes_dataset(out, seed=3, n_images=12, image_size=32, min_shapes=1, max_shapes=3)
    return out


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def _validate(data: Path) -> ValidationReport:
    return validate_dataset(data, min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS)


def _only_problem(report: ValidationReport, path: str, reason: str) -> None:
    assert not report.ok
    assert [p.path for p in report.problems] == [path], report.format()
    assert reason in report.problems[0].reason
    assert report.problems[0].fix
    assert f"{path}: " in report.format()


def test_clean_dataset_is_ok(data: Path) -> None:
    report = _validate(data)
    assert report.ok, report.format()
    assert report.n_images == 12 and "OK" in report.format()
    assert set(report.class_counts) == {"background", "circle", "square", "triangle", "star"}
    assert sum(report.class_counts.values()) == 12 * 32 * 32


def test_truncated_image(data: Path) -> None:
    path = data / "images/img_00002.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _only_problem(_validate(data), "images/img_00002.png", "truncated")


def test_png_without_its_end_chunk(data: Path) -> None:
    path = data / "masks/img_00001.png"
    path.write_bytes(path.read_bytes()[:-12])  # pixels intact, IEND gone
    _only_problem(_validate(data), "masks/img_00001.png", "truncated")


def test_garbage_bytes(data: Path) -> None:
    (data / "masks/img_00004.png").write_bytes(b"not a png at all" * 10)
    _only_problem(_validate(data), "masks/img_00004.png", "unreadable")


def test_missing_mask(data: Path) -> None:
    (data / "masks/img_00005.png").unlink()
    _only_problem(_validate(data), "masks/img_00005.png", "missing")


def test_extra_unlisted_file(data: Path) -> None:
    shutil.copy(data / "images/img_00000.png", data / "images/stray.png")
    _only_problem(_validate(data), "images/stray.png", "not listed in manifest.csv")


def test_size_mismatch(data: Path) -> None:
    Image.new("L", (30, 32)).save(data / "masks/img_00006.png")
    _only_problem(_validate(data), "masks/img_00006.png", "30x32 differs")


def test_class_id_out_of_range(data: Path) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[0, :3] = [1, 7, 9]
    Image.fromarray(mask).save(data / "masks/img_00007.png")
    _only_problem(_validate(data), "masks/img_00007.png", "class ids [7, 9] out of range")


def test_rgb_mask(data: Path) -> None:
    path = data / "masks/img_00008.png"
    Image.open(path).convert("RGB").save(path)
    _only_problem(_validate(data), "masks/img_00008.png", "3 channel(s)")


def test_mixed_channel_counts(data: Path) -> None:
    path = data / "images/img_00009.png"
    Image.open(path).convert("L").save(path)
    _only_problem(_validate(data), "images/img_00009.png", "1 channel(s) while most images have 3")


@pytest.mark.parametrize("label, shown", [(12, "label 12"), (-1, "label -1"),
                                          ("cat", "label 'cat'"), (None, "label nan"),
                                          (2.5, "label 2.5")])
def test_bad_label(data: Path, label: object, shown: str) -> None:
    """Only the bad row is named, though one bad cell changes the whole column's dtype."""
    manifest = pd.read_csv(data / "manifest.csv", dtype={"id": str})
    manifest["label"] = manifest["label"].astype(object)
    manifest.loc[3, "label"] = label
    manifest.to_csv(data / "manifest.csv", index=False)
    _only_problem(_validate(data), "images/img_00003.png", shown)


def test_empty_dataset(data: Path) -> None:
    shutil.rmtree(data / "images"), shutil.rmtree(data / "masks")
    pd.DataFrame(columns=["id", "image", "mask", "label"]).to_csv(data / "manifest.csv",
                                                                  index=False)
    _only_problem(_validate(data), "manifest.csv", "empty")


def test_missing_classes_json(data: Path) -> None:
    (data / "classes.json").unlink()
    _only_problem(_validate(data), "classes.json", "missing or invalid")


def test_every_problem_is_collected(data: Path) -> None:
    (data / "masks/img_00005.png").unlink()
    (data / "images/img_00002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("L", (30, 32)).save(data / "masks/img_00006.png")
    report = _validate(data)
    found = {p.path: p.reason for p in report.problems}
    assert sorted(found) == ["images/img_00002.png", "masks/img_00005.png",
                             "masks/img_00006.png"], report.format()
    assert "unreadable" in found["images/img_00002.png"]
    assert "missing" in found["masks/img_00005.png"]
    assert "30x32 differs" in found["masks/img_00006.png"]
    assert report.format().startswith("12 image/mask pairs: 3 problem(s)")


def test_warnings_do_not_fail(data: Path) -> None:
    (data / "classes.json").write_text(json.dumps(
        {"classes": ["background", "circle", "square", "triangle", "star", "hexagon"]}))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "masks/img_00000.png")
    report = _validate(data)
    assert report.ok, report.format()
    reasons = [f"{w.path} {w.reason}" for w in report.warnings]
    assert "masks/img_00000.png all background" in reasons
    assert "masks/ class 'hexagon' has no pixels" in reasons
