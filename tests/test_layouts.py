"""The importers users have data in, on small files written here: one folder of binary masks
per class, nnU-Net v2 raw layout, multi-page TIFF stacks, 16-bit images, split dirs and
--ignore; then the given split through preprocess."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import MAX_PIXELS
from PIL import Image

from segen.data import layouts
from segen.data.importers import ImportPairsError, import_layout, import_pairs
from segen.data.validation import validate_dataset


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def _import(layout: layouts.Layout, out: Path, **options) -> object:
    return import_layout(layout, out, classes=options.pop("classes", None), class_map=None,
                         ignore=options.pop("ignore", None), max_pixels=MAX_PIXELS,
                         sources=(), **options)


def _data(out: Path) -> tuple[pd.DataFrame, dict, dict[str, np.ndarray]]:
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    masks = {row.id: np.asarray(Image.open(out / row.mask)) for row in manifest.itertuples()}
    return manifest, json.loads((out / "classes.json").read_text()), masks


def test_class_folders_background_and_overlap_rule(tmp_path: Path) -> None:
    """Pixels in no mask are background (0); where two masks overlap the later class wins."""
    membrane, mito = np.zeros((12, 16), np.uint8), np.zeros((12, 16), np.uint8)
    membrane[:, :6] = 255  # columns 0-5
    mito[:, 4:10] = 1  # columns 4-9: any non-zero value is the class; 4-5 overlap
    for stem in ("s1", "s2"):
        _save(tmp_path / "img" / f"{stem}.png", np.full((12, 16), 100, np.uint8))
        _save(tmp_path / "membrane" / f"{stem}.png", membrane)
        _save(tmp_path / "mito" / f"{stem}.tif", mito)
    layout = layouts.class_folders_layout(
        tmp_path / "img", {"membrane": tmp_path / "membrane", "mitochondria": tmp_path / "mito"},
        max_pixels=MAX_PIXELS)
    summary = _import(layout, tmp_path / "data")
    _, classes, masks = _data(tmp_path / "data")
    assert classes["classes"] == ["background", "membrane", "mitochondria"]
    assert summary.mask_kind == "class folders"
    expected = np.zeros((12, 16), np.uint8)
    expected[:, :4], expected[:, 4:10] = 1, 2
    np.testing.assert_array_equal(masks["s1"], expected)
    assert validate_dataset(tmp_path / "data", min_class_fraction=0.0, max_pixels=MAX_PIXELS).ok


def test_class_folders_need_every_mask(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        _save(tmp_path / "img" / f"{stem}.png", np.zeros((8, 8), np.uint8))
    _save(tmp_path / "cell" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ImportPairsError, match="images without a mask .*b.png"):
        layouts.class_folders_layout(tmp_path / "img", {"cell": tmp_path / "cell"},
                                     max_pixels=MAX_PIXELS)


def _nnunet(root: Path, labels: dict[str, int], with_test_labels: bool) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        _save(root / "imagesTr" / f"case_{i:03d}_0000.png",
              rng.integers(0, 255, (10, 14, 3), dtype=np.uint8))
        _save(root / "labelsTr" / f"case_{i:03d}.png",
              (np.arange(14)[None].repeat(10, 0) % len(labels)).astype(np.uint8))
    for i in range(2):
        _save(root / "imagesTs" / f"test_{i}_0000.png", np.zeros((10, 14, 3), np.uint8))
        if with_test_labels:
            _save(root / "labelsTs" / f"test_{i}.png", np.ones((10, 14), np.uint8))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": labels,
        "numTraining": 4, "file_ending": ".png"}))
    return root


def test_nnunet_layout_labels_ignore_and_test_split(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "Dataset001_Toy", {"background": 0, "cell": 1, "ignore": 2}, True)
    summary = _import(layouts.nnunet_layout(root, max_pixels=MAX_PIXELS), tmp_path / "data")
    manifest, classes, masks = _data(tmp_path / "data")
    assert classes == {"classes": ["background", "cell", "ignore"], "ignore": ["ignore"]}
    assert summary.ignore == ["ignore"] and summary.image_mode == "RGB"
    assert dict(zip(manifest["id"], manifest["split"])) == {
        "case_000": "", "case_001": "", "case_002": "", "case_003": "",
        "test_0": "test", "test_1": "test"}
    assert summary.splits == {"seeded": 4, "test": 2}
    np.testing.assert_array_equal(masks["case_001"][0, :4], [0, 1, 2, 0])


def test_nnunet_without_test_labels_imports_training_cases_only(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds", {"background": 0, "cell": 1}, False)
    layout = layouts.nnunet_layout(root, max_pixels=MAX_PIXELS)
    assert [s.id for s in layout.samples] == [f"case_{i:03d}" for i in range(4)]


@pytest.mark.parametrize("labels, reason", [
    ({"background": 0, "cell": 2}, "not the ids 0..K-1"),
    ({"background": 0, "cell": [1, 2]}, "labels"),
])
def test_nnunet_refuses_label_maps_it_cannot_keep(tmp_path: Path, labels, reason) -> None:
    root = _nnunet(tmp_path / "ds", {"background": 0, "cell": 1}, False)
    doc = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**doc, "labels": labels}))
    with pytest.raises(ImportPairsError, match=reason):
        layouts.nnunet_layout(root, max_pixels=MAX_PIXELS)


def _stack(path: Path, slices: list[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(s) for s in slices]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


def test_tiff_stacks_give_one_sample_per_slice(tmp_path: Path) -> None:
    images = _stack(tmp_path / "volume.tif", [np.full((8, 10), 40 * i, np.uint8) for i in range(3)])
    masks = _stack(tmp_path / "labels.tif",
                   [np.where(np.arange(10) < i + 2, 255, 0).astype(np.uint8)[None].repeat(8, 0)
                    for i in range(3)])
    summary = import_pairs(images, masks, tmp_path / "data", classes=None, class_map=None,
                           max_pixels=MAX_PIXELS)
    manifest, classes, stored = _data(tmp_path / "data")
    assert summary.n_pairs == 3 and summary.mask_kind == "binary"
    assert list(manifest["id"]) == ["volume_000", "volume_001", "volume_002"]
    assert [int(m[0].sum()) for m in stored.values()] == [2, 3, 4]  # slice i: i + 2 columns
    image = np.asarray(Image.open(tmp_path / "data" / "images" / "volume_002.png"))
    assert image.max() == 80


def test_tiff_stacks_must_have_as_many_mask_slices(tmp_path: Path) -> None:
    images = _stack(tmp_path / "v.tif", [np.zeros((8, 8), np.uint8)] * 3)
    masks = _stack(tmp_path / "l.tif", [np.zeros((8, 8), np.uint8)] * 2)
    with pytest.raises(ImportPairsError, match="3 slice.*has 2"):
        layouts.pair_layout(images, masks, max_pixels=MAX_PIXELS)


def test_16_bit_images_map_the_dataset_range_to_8_bits(tmp_path: Path) -> None:
    for stem, (low, high) in (("a", (1000, 3000)), ("b", (2000, 5000))):
        pixels = np.full((6, 6), low, np.uint16)
        pixels[0, 0] = high
        _save(tmp_path / "img" / f"{stem}.png", pixels)
        _save(tmp_path / "msk" / f"{stem}.png", np.zeros((6, 6), np.uint8))
    summary = import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "data",
                           classes=["background", "cell"], class_map=None, max_pixels=MAX_PIXELS)
    assert "[1000, 5000] to [0, 255]" in summary.conversion and summary.conversion in str(summary)
    a = np.asarray(Image.open(tmp_path / "data/images/a.png"))
    b = np.asarray(Image.open(tmp_path / "data/images/b.png"))
    assert a.dtype == np.uint8 and (a[1, 1], a[0, 0]) == (0, round(2000 * 255 / 4000))
    assert (b[1, 1], b[0, 0]) == (round(1000 * 255 / 4000), 255)  # one map for every image


def test_split_dirs_keep_the_split_and_preprocess_respects_it(tmp_path: Path) -> None:
    from segen.config import PreprocessParams
    from segen.data.preprocessing import check_given_splits, split_indices

    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for i in range(n):  # test/0 and train/0 share a name: ids get the split as prefix
            _save(tmp_path / "img" / split / f"{i}.png", np.zeros((8, 8), np.uint8))
            _save(tmp_path / "msk" / split / f"{i}.png", np.eye(8, dtype=np.uint8))
    layout = layouts.split_dirs_layout(tmp_path / "img", tmp_path / "msk", max_pixels=MAX_PIXELS)
    summary = _import(layout, tmp_path / "data", classes=["background", "line"])
    manifest, _, _ = _data(tmp_path / "data")
    assert summary.splits == {"train": 6, "test": 3, "val": 2}
    assert manifest.loc[manifest["id"] == "test_0", "split"].item() == "test"
    params = PreprocessParams(image_size=16, long_side=None, pad_multiple=16,
                              class_weights="none", val_fraction=0.3, test_fraction=0.3,
                              labelled_fraction=1.0, seed=1)
    splits = split_indices(len(manifest), params, check_given_splits(list(manifest["split"])))
    assert {name: sorted(manifest["id"][i] for i in rows) for name, rows in splits.items()} == {
        name: sorted(manifest["id"][manifest["split"] == name]) for name in splits}


def test_split_dirs_need_train_and_test(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "train" / "0.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ImportPairsError, match="expected train/ and test/"):
        layouts.split_dirs_layout(tmp_path / "img", tmp_path / "msk", max_pixels=MAX_PIXELS)


def test_ignore_names_classes_and_refuses_unknown_ones(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        _save(tmp_path / "img" / f"{stem}.png", np.zeros((8, 8), np.uint8))
        _save(tmp_path / "msk" / f"{stem}.png", (np.arange(8)[None].repeat(8, 0) % 3)
              .astype(np.uint8))
    classes = ["road", "car", "void"]
    import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "data", classes=classes,
                 class_map=None, ignore=["void"], max_pixels=MAX_PIXELS)
    assert _data(tmp_path / "data")[1] == {"classes": classes, "ignore": ["void"]}
    for ignore, reason in ((["sky"], "not among the classes"), (["car", "void"], "fewer than two")):
        with pytest.raises(ImportPairsError, match=reason):
            import_pairs(tmp_path / "img", tmp_path / "msk", tmp_path / "d2", classes=classes,
                         class_map=None, ignore=ignore, max_pixels=MAX_PIXELS)
    assert not (tmp_path / "d2").exists()
