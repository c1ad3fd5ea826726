"""Class-folder datasets (no masks): import_classes and its errors, the builtin digits,
validation without masks, preprocess's has_masks, and `segen data import-classes` end to end."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MAX_PIXELS, init_project, segen_cli
from PIL import Image

from segen.data.class_importers import ImportClassesError, import_classes, import_digits
from segen.data.validation import ValidationReport, validate_dataset

MIN_FRACTION = 0.005  # params.yaml validate.min_class_fraction


def _tree(root: Path, mode: str = "RGB") -> Path:
    """root/{cat,dog,owl}: 16x16 images of a few formats, plus a stray text file."""
    rng = np.random.default_rng(0)
    shape = (16, 16, 3) if mode == "RGB" else (16, 16)
    for name, files in (("dog", ["2.png", "10.png", "1.jpg"]), ("cat", ["a.png", "b.bmp"]),
                        ("owl", ["x.tif", "x.png"])):
        (root / name).mkdir(parents=True)
        for file in files:
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / file)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def _validate(data: Path) -> ValidationReport:
    return validate_dataset(data, min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS)


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_import_classes_layout_and_validation(tmp_path: Path) -> None:
    summary = import_classes(_tree(tmp_path / "in"), tmp_path / "data", max_pixels=MAX_PIXELS)
    assert summary.classes == ["cat", "dog", "owl"] and summary.image_mode == "RGB"
    assert summary.per_class == {"cat": 2, "dog": 3, "owl": 2} and summary.n_images == 7
    assert summary.skipped == ["dog/notes.txt"] and "7 RGB images in 3 classes" in str(summary)
    data = tmp_path / "data"
    assert json.loads((data / "classes.json").read_text()) == {"classes": ["cat", "dog", "owl"],
                                                               "masks": False}
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest.columns) == ["id", "image", "mask", "label", "source"]
    assert set(manifest["mask"]) == {""} and not (data / "masks").exists()
    assert list(manifest["source"][2:5]) == ["dog/1.jpg", "dog/2.png", "dog/10.png"]  # natural
    assert list(manifest["id"][5:]) == ["owl_x", "owl_x_2"]  # x.png and x.tif: both kept
    assert list(manifest["label"]) == ["0", "0", "1", "1", "1", "2", "2"]
    assert sorted(p.name for p in (data / "images").iterdir()) == sorted(
        f"{i}.png" for i in manifest["id"])
    report = _validate(data)
    assert report.ok and not report.warnings, report.format()
    assert report.format().startswith("7 images: OK")
    assert report.class_counts == {"cat": 2, "dog": 3, "owl": 2}


def test_greyscale_tree_stays_greyscale(tmp_path: Path) -> None:
    summary = import_classes(_tree(tmp_path / "in", mode="L"), tmp_path / "data", max_pixels=MAX_PIXELS)
    assert summary.image_mode == "L"
    assert {Image.open(p).mode for p in (tmp_path / "data/images").iterdir()} == {"L"}


def _corrupt(root: Path) -> str:
    path = root / "cat" / "a.png"
    path.write_bytes(path.read_bytes()[:60])
    return str(path)


def _mixed(root: Path) -> str:
    path = root / "owl" / "x.png"
    Image.open(path).convert("L").save(path)
    return str(path)


def _empty(root: Path) -> str:
    (root / "bat").mkdir()
    return str(root / "bat")


@pytest.mark.parametrize("breakage, reason", [(_corrupt, "corrupt or truncated"),
                                              (_mixed, "mix greyscale and colour"),
                                              (_empty, "no images")])
def test_bad_folders_name_the_file_and_leave_data_untouched(tmp_path: Path, breakage,
                                                            reason: str) -> None:
    data = tmp_path / "data"
    import_classes(_tree(tmp_path / "old"), data, max_pixels=MAX_PIXELS)
    before = _hashes(data)
    root = _tree(tmp_path / "in")
    named = breakage(root)
    with pytest.raises(ImportClassesError, match=reason) as err:
        import_classes(root, data, max_pixels=MAX_PIXELS)
    assert named in str(err.value)
    assert _hashes(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in", "old"]  # no temp left


def test_one_class_or_source_inside_data_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "in")
    shutil.rmtree(root / "cat"), shutil.rmtree(root / "owl")
    with pytest.raises(ImportClassesError, match="at least two"):
        import_classes(root, tmp_path / "data", max_pixels=MAX_PIXELS)
    with pytest.raises(ImportClassesError, match="inside"):
        import_classes(root, tmp_path, max_pixels=MAX_PIXELS)


def test_validation_without_masks(tmp_path: Path) -> None:
    import_classes(_tree(tmp_path / "in"), tmp_path / "data", max_pixels=MAX_PIXELS)
    data = tmp_path / "data"
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    drop = manifest["label"] == "0"  # cat: now no images
    for rel in manifest["image"][drop]:
        (data / rel).unlink()
    manifest = manifest[~drop]
    manifest.loc[manifest.index[-1], "label"] = "7"  # out of range: owl keeps 1 image
    manifest.to_csv(data / "manifest.csv", index=False)
    Image.open(data / manifest["image"].iloc[0]).convert("L").save(data / manifest["image"].iloc[0])
    report = _validate(data)
    reasons = [f"{p.path}: {p.reason}" for p in report.problems]
    assert any("class 'cat' has no images" in r for r in reasons), reasons
    assert any("label 7 is not a class id in 0..2" in r for r in reasons), reasons
    assert any(r.startswith("images/dog_1.png: 1 channel(s)") for r in reasons), reasons
    assert [w.reason for w in report.warnings] == ["class 'owl' has only 1 image"]


def test_builtin_digits(tmp_path: Path) -> None:
    summary = import_digits(tmp_path / "data", max_pixels=MAX_PIXELS)
    assert summary.n_images == 1797 and summary.classes == [str(d) for d in range(10)]
    assert summary.image_mode == "L" and sum(summary.per_class.values()) == 1797
    image = Image.open(tmp_path / "data/images/0_0000.png")
    assert image.mode == "L" and image.size == (32, 32)
    from sklearn.datasets import load_digits

    first = np.round(load_digits().images[0] * 255 / 16)  # 0..16 -> 0..255, then 4x4 blocks
    assert (np.asarray(image) == first.repeat(4, 0).repeat(4, 1)).all()
    assert _validate(tmp_path / "data").ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the folder tree is gone


def test_preprocess_without_masks(tmp_path: Path) -> None:
    from segen.config import PreprocessParams
    from segen.pipeline.store import StageResult
    from segen.project import Project
    from tasks.data import preprocess

    import_classes(_tree(tmp_path / "in", mode="L"), tmp_path / "proj" / "data", max_pixels=MAX_PIXELS)
    upstream = {name: StageResult(name, "k", "d", str(tmp_path), {"data_version": "v.dir"})
                for name in ("version_data", "validate")}
    params = PreprocessParams(image_size=16, long_side=None, pad_multiple=16,
                              class_weights="none", val_fraction=0.2, test_fraction=0.2,
                              labelled_fraction=1.0, seed=0)
    result = preprocess.fn(project=Project.at(tmp_path / "proj"), preprocess=params, **upstream)
    assert result.info["has_masks"] is False and result.info["train"] == 5
    out = Path(result.path)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["has_masks"] is False and meta["classes"] == meta["label_names"] == [
        "cat", "dog", "owl"] and meta["channels"] == 1
    masks, labels = np.load(out / "masks.npy"), np.load(out / "labels.npy")
    assert masks.shape == (7, 16, 16) and not masks.any()
    assert labels.tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_cli_import_classes_records_a_new_data_version(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    result = segen_cli("data", "import-classes", str(_tree(tmp_path / "in")), "--json",
                       cwd=project)
    assert result.returncode == 0, result.stderr
    out = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]
    assert out["md5"].endswith(".dir") and out["nfiles"] == 7 + 2
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["data_version"] == out["md5"] and summary["n_images"] == 7
    assert _validate(project / "data").ok
    bad = segen_cli("data", "import-classes", str(tmp_path / "missing"), cwd=project)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr
