"""import_pairs: the real ISBI 2012 set, binary / index / palette masks, the errors users meet,
the atomic replacement of data/, and `segen data import-pairs` end to end."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MAX_PIXELS, init_project, segen_cli
from PIL import Image

from segen.data import importers, transaction
from segen.data.importers import ImportPairsError, import_pairs, parse_class_map
from segen.data.validation import validate_dataset

RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)
MIN_FRACTION = 0.005  # params.yaml validate.min_class_fraction


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _read(data: Path) -> tuple[pd.DataFrame, list[str]]:
    manifest = pd.read_csv(data / "manifest.csv", dtype={"id": str})
    return manifest, json.loads((data / "classes.json").read_text())["classes"]


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _palette_set(root: Path) -> None:
    """Two 8x8 RGB images with palette masks: black background, a red or a green square."""
    for name, colour in (("a", RED), ("b", GREEN)):
        _write(root / "images" / f"{name}.png", np.full((8, 8, 3), 90))
        mask = np.zeros((8, 8, 3))
        mask[2:6, 2:6] = colour
        _write(root / "masks" / f"{name}.png", mask)


def _import_palette(root: Path, text: str, classes: list[str] | None = None
                    ) -> importers.ImportSummary:
    return import_pairs(root / "images", root / "masks", root / "data", classes=classes,
                        class_map=parse_class_map(text), max_pixels=MAX_PIXELS)


def test_isbi_import(tmp_path: Path, isbi: Path) -> None:
    data = tmp_path / "data"
    summary = import_pairs(isbi / "image", isbi / "label", data, classes=["membrane", "cell"],
                           class_map=None, max_pixels=MAX_PIXELS)
    assert (summary.n_pairs, summary.mask_kind, summary.image_mode) == (30, "binary", "L")
    assert summary.classes == ["membrane", "cell"] and "30 image/mask pairs" in str(summary)
    manifest, classes = _read(data)
    assert classes == ["membrane", "cell"] and len(manifest) == 30
    assert list(manifest["id"][:3]) == ["0", "1", "2"]  # natural order: 2 before 10
    values: set[int] = set()
    for row in manifest.itertuples():
        assert Image.open(data / row.image).mode == "L"
        mask = Image.open(data / row.mask)
        assert mask.mode == "L" and mask.size == (512, 512)
        values |= set(np.unique(np.asarray(mask)).tolist())
    assert values == {0, 1}
    assert set(manifest["label"]) == {1}  # cell interior covers more than membrane everywhere
    report = validate_dataset(data, min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS)
    assert report.ok and report.n_images == 30, report.format()


def test_binary_set_replaces_old_data(tmp_path: Path) -> None:
    for name in ("x1", "x2"):
        _write(tmp_path / "in/img" / f"{name}.jpg", np.full((6, 6, 3), 50))
        _write(tmp_path / "in/msk" / f"{name}.bmp", np.pad(np.full((2, 2), 255), 2))
    data = tmp_path / "data"
    (data / "old").mkdir(parents=True)
    summary = import_pairs(tmp_path / "in/img", tmp_path / "in/msk", data, classes=None,
                           class_map=None, max_pixels=MAX_PIXELS)
    assert (summary.mask_kind, summary.image_mode) == ("binary", "RGB")
    manifest, classes = _read(data)
    assert classes == ["background", "class_1"] and list(manifest["label"]) == [1, 1]
    assert list(manifest["image"]) == ["images/x1.png", "images/x2.png"]  # always PNG
    assert set(np.unique(np.asarray(Image.open(data / "masks/x1.png")))) == {0, 1}
    assert not (data / "old").exists()  # the previous data/ was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in"]  # no temp leftovers
    assert validate_dataset(data, min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS).ok


def _grey_set(root: Path, masks: dict[str, np.ndarray]) -> None:
    """Greyscale 4x4 images in root/i, the given masks in root/m."""
    for name, mask in masks.items():
        _write(root / "i" / f"{name}.png", np.zeros((4, 4)))
        _write(root / "m" / f"{name}.png", mask)


def _import_grey(root: Path, classes: list[str] | None) -> importers.ImportSummary:
    return import_pairs(root / "i", root / "m", root / "d", classes=classes, class_map=None, max_pixels=MAX_PIXELS)


def test_index_masks_keep_their_ids_and_infer_classes(tmp_path: Path) -> None:
    _grey_set(tmp_path, {"a": np.pad([[0, 1], [3, 3]], 1), "b": np.zeros((4, 4))})
    summary = _import_grey(tmp_path, classes=None)
    assert (summary.mask_kind, summary.image_mode) == ("index", "L")
    manifest, classes = _read(tmp_path / "d")
    assert classes == ["background", "class_1", "class_2", "class_3"]
    assert list(manifest["label"]) == [3, 0]  # most frequent non-zero class; 0 when none


def test_bad_index_masks_name_the_file(tmp_path: Path) -> None:
    _grey_set(tmp_path, {"a": np.pad([[0, 1], [2, 3]], 1)})
    with pytest.raises(ImportPairsError, match=r"m/a\.png \(ids \[2, 3\]\).*--classes"):
        _import_grey(tmp_path, classes=["bg", "x"])
    _write(tmp_path / "m/a.png", np.full((4, 4), 200))  # neither small ids nor 0/255
    with pytest.raises(ImportPairsError, match="without --classes"):
        _import_grey(tmp_path, classes=None)
    _write(tmp_path / "m/a.png", np.zeros((4, 6)))
    with pytest.raises(ImportPairsError, match=r"m/a\.png is 6x4 but its image is 4x4"):
        _import_grey(tmp_path, classes=None)
    (tmp_path / "m/a.png").write_bytes((tmp_path / "i/a.png").read_bytes()[:40])  # truncated
    with pytest.raises(ImportPairsError, match=r"m/a\.png is unreadable, corrupt or truncated"):
        _import_grey(tmp_path, classes=None)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ImportPairsError, match="move the sources outside it"):  # they'd vanish
        import_pairs(tmp_path / "i", tmp_path / "m", tmp_path, classes=None, class_map=None, max_pixels=MAX_PIXELS)


def test_palette_ids_follow_classes(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    summary = _import_palette(tmp_path, "0,0,0=background; 0,255,0=nucleus;255,0,0=cell",
                              classes=["background", "cell", "nucleus"])
    assert (summary.mask_kind, summary.image_mode) == ("palette", "RGB")
    manifest, classes = _read(tmp_path / "data")
    assert classes == ["background", "cell", "nucleus"] and list(manifest["label"]) == [1, 2]
    assert set(np.unique(np.asarray(Image.open(tmp_path / "data/masks/b.png")))) == {0, 2}
    assert validate_dataset(tmp_path / "data", min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS).ok
    with pytest.raises(ImportPairsError, match=r"names \['nucleus'\] are not in classes"):
        _import_palette(tmp_path, "0,0,0=bg;255,0,0=cell;0,255,0=nucleus", ["bg", "cell"])


def test_palette_ids_follow_the_class_map_without_classes(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    _import_palette(tmp_path, "0,0,0=bg;0,255,0=green;255,0,0=red")
    manifest, classes = _read(tmp_path / "data")
    assert classes == ["bg", "green", "red"] and list(manifest["label"]) == [2, 1]


def test_unknown_or_unmapped_colours_name_the_file(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    with pytest.raises(ImportPairsError, match=r"masks/b\.png has colour\(s\) \[\(0, 255, 0\)\]"):
        _import_palette(tmp_path, "0,0,0=background;255,0,0=cell")
    assert not (tmp_path / "data").exists()
    with pytest.raises(ImportPairsError, match=r"a\.png is a colour mask.*pass --class-map"):
        import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data", classes=None,
                     class_map=None, max_pixels=MAX_PIXELS)


def test_unpaired_files_are_listed_in_one_error(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    for i in range(23):
        _write(tmp_path / "images" / f"lonely{i:02d}.png", np.zeros((8, 8, 3)))
    _write(tmp_path / "masks" / "orphan.tif", np.zeros((8, 8)))
    (tmp_path / "masks" / "notes.txt").write_text("ignored")
    with pytest.raises(ImportPairsError) as caught:
        _import_palette(tmp_path, "0,0,0=a;255,0,0=b;0,255,0=c")
    message = str(caught.value)
    assert message.startswith("24 file(s) have no partner")
    assert "lonely00.png" in message and "lonely19.png" in message
    assert "lonely20.png" not in message and "... and 3 more" in message
    assert "masks without an image" in message and "orphan.tif" in message
    assert "notes.txt" not in message


def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    _write(tmp_path / "m/a.png", np.array([[0, 1], [1, 1]]))
    (tmp_path / "i").mkdir()
    Image.fromarray(np.array([[0, 32768], [65535, 65535]], np.uint16)).save(tmp_path / "i/a.tif")
    assert _import_grey(tmp_path, classes=None).image_mode == "L"
    assert np.asarray(Image.open(tmp_path / "d/images/a.png")).tolist() == [[0, 128], [255, 255]]


@pytest.mark.parametrize("stage", ["scan", "write", "exchange", "swap"])
def test_a_failure_leaves_the_existing_data_untouched(tmp_path: Path, stage: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _palette_set(tmp_path)
    data = tmp_path / "data"
    shutil.copytree(tmp_path / "images", data / "images")
    (data / "classes.json").write_text('{"classes": ["old", "data"]}\n')
    before = _hashes(data)
    text = "0,0,0=bg;255,0,0=red;0,255,0=green"
    if stage == "scan":
        text = "0,0,0=bg;255,0,0=red"  # green is unknown: fails before anything is written
    elif stage == "write":
        monkeypatch.setattr(importers.Reader, "image", _fail)
    elif stage == "exchange":  # the staged folder's rename before the exchange fails
        monkeypatch.setattr(os, "rename", _fail)
    else:  # a filesystem that cannot exchange: two renames, the second fails
        monkeypatch.setattr(transaction, "_exchange", lambda new, current, old: False)
        renames = iter([os.rename, _fail, os.rename])  # data aside, new in (fails), data back
        monkeypatch.setattr(os, "rename", lambda src, dst: next(renames)(src, dst))
    with pytest.raises((ImportPairsError, OSError)):
        _import_palette(tmp_path, text)
    assert _hashes(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "images", "masks"]


def _fail(*_: object) -> None:
    raise OSError("disk full (simulated)")


def test_parse_class_map_accepts_spaces_newlines_and_shared_names() -> None:
    parsed = parse_class_map("0,0,0=background\n255, 0, 0 = cell; 0,0,255=cell;")
    assert parsed == {BLACK: "background", RED: "cell", (0, 0, 255): "cell"}
    assert list(parsed) == [BLACK, RED, (0, 0, 255)]  # the text's order gives the class ids


@pytest.mark.parametrize("text, reason", [
    ("", "no entries"), (" ; ", "no entries"), ("1,2=a", "expected R,G,B=name"),
    ("300,0,0=a", "0-255"), ("0,0,0=", "expected R,G,B=name"), ("red=cell", "R,G,B=name"),
    ("0,0,0=a;0,0,0=b", "twice"),
])
def test_parse_class_map_rejects(text: str, reason: str) -> None:
    with pytest.raises(ImportPairsError, match=reason):
        parse_class_map(text)


def test_cli_import_records_a_new_data_version(tmp_path: Path, isbi: Path) -> None:
    project = init_project(tmp_path / "proj")
    for folder in ("image", "label"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        for name in ("0.png", "1.png", "2.png"):
            shutil.copy(isbi / folder / name, tmp_path / "in" / folder / name)
    result = segen_cli("data", "import-pairs", str(tmp_path / "in/image"),
                       str(tmp_path / "in/label"), "--classes", "membrane", "cell", cwd=project)
    assert result.returncode == 0, result.stderr
    out = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]
    assert out["md5"].endswith(".dir") and out["nfiles"] == 3 + 3 + 2
    assert f"new data version {out['md5']}" in result.stdout
    assert "3 image/mask pairs (binary masks, L images)" in result.stdout
    assert validate_dataset(project / "data", min_class_fraction=MIN_FRACTION, max_pixels=MAX_PIXELS).ok
