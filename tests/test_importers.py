"""import_pairs: the real ISBI 2012 set, binary and palette masks, and the errors users meet."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segen.importers import ImportPairsError, import_pairs, parse_class_map

ISBI = Path("/work/shared/datasets/isbi2012-membrane/train")
RED, GREEN, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 0)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _read(data: Path) -> tuple[pd.DataFrame, list[str]]:
    manifest = pd.read_csv(data / "manifest.csv", dtype={"id": str})
    return manifest, json.loads((data / "classes.json").read_text())["classes"]


def _palette_set(root: Path) -> None:
    """Two 8x8 RGB images with palette masks: black background, red and green blobs."""
    for name, colour in (("a", RED), ("b", GREEN)):
        _write(root / "images" / f"{name}.png", np.full((8, 8, 3), 90))
        mask = np.zeros((8, 8, 3))
        mask[2:6, 2:6] = colour
        _write(root / "masks" / f"{name}.png", mask)


@pytest.mark.skipif(not ISBI.is_dir(), reason="ISBI 2012 copy not present")
def test_isbi_import(tmp_path: Path) -> None:
    data = tmp_path / "data"
    summary = import_pairs(ISBI / "image", ISBI / "label", data, classes=["membrane", "cell"],
                           class_map=None)
    assert (summary.n_pairs, summary.mask_kind, summary.image_mode) == (30, "binary", "L")
    manifest, classes = _read(data)
    assert classes == ["membrane", "cell"] and len(manifest) == 30
    assert list(manifest["id"][:3]) == ["0", "1", "2"]  # natural order
    for row in manifest.head(3).itertuples():
        assert Image.open(data / row.image).mode == "L"
        mask = Image.open(data / row.mask)
        assert mask.mode == "L" and set(np.unique(np.asarray(mask))) == {0, 1}
    assert set(manifest["label"]) == {1}  # cell interior dominates every slice


def test_binary_set_and_replacing_old_data(tmp_path: Path) -> None:
    for name in ("x1", "x2"):
        _write(tmp_path / "in/img" / f"{name}.png", np.full((6, 6, 3), 50))
        _write(tmp_path / "in/msk" / f"{name}.png", np.pad(np.full((2, 2), 255), 2))
    data = tmp_path / "data"
    (data / "old").mkdir(parents=True)
    summary = import_pairs(tmp_path / "in/img", tmp_path / "in/msk", data, classes=None,
                           class_map=None)
    assert (summary.mask_kind, summary.image_mode) == ("binary", "RGB")
    manifest, classes = _read(data)
    assert classes == ["background", "class_1"] and list(manifest["label"]) == [1, 1]
    assert np.asarray(Image.open(data / "masks/x1.png")).max() == 1
    assert not (data / "old").exists()  # the previous data/ was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "in"]  # no temp leftovers


def test_palette_set_with_class_map(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    class_map = parse_class_map("0,0,0=background; 0,255,0=nucleus;255,0,0=cell")
    summary = import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data",
                           classes=["background", "cell", "nucleus"], class_map=class_map)
    assert summary.mask_kind == "palette"
    manifest, classes = _read(tmp_path / "data")
    assert classes == ["background", "cell", "nucleus"]
    assert list(manifest["label"]) == [1, 2]
    assert set(np.unique(np.asarray(Image.open(tmp_path / "data/masks/b.png")))) == {0, 2}


def test_class_map_names_become_classes(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data", classes=None,
                 class_map=parse_class_map("0,0,0=bg;255,0,0=red;0,255,0=green"))
    assert _read(tmp_path / "data")[1] == ["bg", "red", "green"]


def test_unknown_palette_colour_names_file_and_colour(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    with pytest.raises(ImportPairsError, match=r"b\.png has colour \(0, 255, 0\)"):
        import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data", classes=None,
                     class_map=parse_class_map("0,0,0=background;255,0,0=cell"))
    assert not (tmp_path / "data").exists()


def test_colour_masks_without_a_class_map_are_refused(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    with pytest.raises(ImportPairsError, match="colour mask.*class map"):
        import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data", classes=None,
                     class_map=None)


def test_unpaired_files_are_listed(tmp_path: Path) -> None:
    _palette_set(tmp_path)
    _write(tmp_path / "images" / "lonely.png", np.zeros((8, 8, 3)))
    _write(tmp_path / "masks" / "orphan.tif", np.zeros((8, 8)))
    with pytest.raises(ImportPairsError, match="2 file.*lonely.png.*orphan.tif"):
        import_pairs(tmp_path / "images", tmp_path / "masks", tmp_path / "data", classes=None,
                     class_map=parse_class_map("0,0,0=a;255,0,0=b;0,255,0=c"))


def test_index_masks_above_the_classes_given(tmp_path: Path) -> None:
    _write(tmp_path / "i/a.png", np.zeros((4, 4)))
    _write(tmp_path / "m/a.png", np.array([[0, 1], [2, 3]]))
    with pytest.raises(ImportPairsError, match="size"):
        import_pairs(tmp_path / "i", tmp_path / "m", tmp_path / "d", classes=None, class_map=None)
    _write(tmp_path / "m/a.png", np.pad(np.array([[0, 1], [2, 3]]), 1))
    with pytest.raises(ImportPairsError, match="class id 3 but only 2 classes"):
        import_pairs(tmp_path / "i", tmp_path / "m", tmp_path / "d", classes=["bg", "x"],
                     class_map=None)
    summary = import_pairs(tmp_path / "i", tmp_path / "m", tmp_path / "d", classes=None,
                           class_map=None)
    assert (summary.mask_kind, summary.image_mode, len(summary.classes)) == ("index", "L", 4)


@pytest.mark.parametrize("text", ["", "1,2=a", "300,0,0=a", "0,0,0=", "0,0,0=a;0,0,0=b"])
def test_parse_class_map_rejects(text: str) -> None:
    with pytest.raises(ImportPairsError, match="expected"):
        parse_class_map(text)


def test_parse_class_map_shares_classes() -> None:
    parsed = parse_class_map("0,0,0=background\n255, 0, 0=cell; 0,0,255=cell")
    assert dict(parsed) == {BLACK: 0, RED: 1, (0, 0, 255): 1}
    assert parsed.names == ["background", "cell"]
