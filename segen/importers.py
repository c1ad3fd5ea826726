"""Import paired image/mask folders into the data/ contract, replacing data/ only once the new
copy is complete. One mask kind for the whole dataset (never per file): index (single-channel
small ints, kept), binary ({0, 255} -> 0/1) or palette (RGB colours through a class map).

Class-map text (parse_class_map, the CLI's --class-map): "R,G,B=name" entries (0-255 each)
split by ";" or newlines, e.g. "0,0,0=background; 255,0,0=cell; 0,255,0=cell". A name's class
index is its position in `classes` when those are given, else its order of first appearance
(the first name is class 0). Several colours may share a class.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIXES = (".png", ".tif", ".tiff")  # lossless only: JPEG smears class ids
MAX_INFERRED_CLASSES = 64  # more distinct mask values than this is a photo, not class ids
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L"}  # more than 8 bits per pixel
GREY_MODES = {"1", "L", "LA", "F"} | WIDE_MODES
MASK_MODES = {"1", "L", "P"} | WIDE_MODES  # read as ids directly ("1" reads as 0/1)
LIST_AT_MOST = 20  # file names shown in one error message
Pairs = dict[str, tuple[Path, Path]]  # id (the file stem) -> (image file, mask file)
Colour = tuple[int, int, int]


class ImportPairsError(ValueError):
    """The folders can't be imported as they are; the message says what and how to fix."""


class ClassMap(dict[Colour, int]):  # colour -> class index
    names: list[str] | None = None  # the names the class-map text gave, in index order


@dataclass(frozen=True)
class ImportSummary:
    n_pairs: int
    classes: list[str]
    mask_kind: str  # "index" | "binary" | "palette"
    image_mode: str  # "RGB" | "L"
    out_dir: Path

    def __str__(self) -> str:
        return (f"imported {self.n_pairs} pairs into {self.out_dir}: masks read as "
                f"{self.mask_kind}, images {self.image_mode}, classes {self.classes}")


def parse_class_map(text: str) -> ClassMap:
    """Parse "R,G,B=name;R,G,B=name" into a ClassMap; see the module doc."""
    entries: list[tuple[Colour, str]] = []
    for entry in filter(None, (e.strip() for e in re.split(r"[;\n]", text))):
        colour, _, name = (part.strip() for part in entry.partition("="))
        match = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", colour)
        rgb = tuple(int(g) for g in match.groups()) if match else ()
        if not rgb or max(rgb) > 255 or not name:
            raise ImportPairsError(f"class-map entry {entry!r}: expected R,G,B=name with each "
                                   'of R, G, B in 0-255, e.g. "255,0,0=cell"')
        entries.append(((rgb[0], rgb[1], rgb[2]), name))
    if not entries or len({colour for colour, _ in entries}) != len(entries):
        raise ImportPairsError(f"class map {text!r}: expected one entry per colour, e.g. "
                               '"0,0,0=background;255,0,0=cell"')
    result = ClassMap()
    result.names = list(dict.fromkeys(name for _, name in entries))  # first-seen order
    result.update({colour: result.names.index(name) for colour, name in entries})
    return result


def import_pairs(images_dir: Path, masks_dir: Path, out_dir: Path, *,
                 classes: list[str] | None, class_map: dict[Colour, int] | None) -> ImportSummary:
    """Pair images and masks by file stem, convert them, and publish them as out_dir."""
    pairs = pair_files(Path(images_dir), Path(masks_dir))
    if class_map is not None:
        class_map, classes = _resolve_class_map(class_map, classes)
    kind, top_id, image_mode = _scan_pairs(pairs, class_map)
    classes = _resolve_classes(classes, kind, top_id)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-import-", dir=out_dir.parent))
    try:
        _write_pairs(tmp, pairs, kind, class_map, image_mode, len(classes))
        (tmp / "classes.json").write_text(json.dumps({"classes": classes}, indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportSummary(len(pairs), classes, kind, image_mode, out_dir)


def pair_files(images_dir: Path, masks_dir: Path) -> Pairs:
    """Pairs by stem, naturally sorted ("2" before "10"); the error lists every lone file."""
    images = _files_by_stem(images_dir, IMAGE_SUFFIXES)
    masks = _files_by_stem(masks_dir, MASK_SUFFIXES)
    lonely = sorted(str(p) for s, p in (images | masks).items() if (s in images) != (s in masks))
    if lonely:
        raise ImportPairsError(
            f"{len(lonely)} file(s) have no partner with the same stem (images {IMAGE_SUFFIXES} "
            f"in {images_dir}, masks {MASK_SUFFIXES} in {masks_dir}): {_listing(lonely)}. "
            "Add the missing partners, rename them to match, or move the extras out.")
    order = sorted(images, key=lambda s: [int(t) if t.isdigit() else t
                                          for t in re.split(r"(\d+)", s)])
    return {stem: (images[stem], masks[stem]) for stem in order}


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise ImportPairsError(f"{folder} is not a folder; expected a folder of {suffixes} files")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                raise ImportPairsError(f"{found[path.stem]} and {path} share a stem, so neither "
                                       "can be paired; keep one file per stem")
            found[path.stem] = path
    if not found:
        raise ImportPairsError(f"{folder} holds no {suffixes} files; check the path")
    return found


def _resolve_class_map(class_map: dict[Colour, int], classes: list[str] | None
                       ) -> tuple[dict[Colour, int], list[str] | None]:
    """A parsed map's names take their indices from `classes` if given, else become them."""
    names = getattr(class_map, "names", None)
    if names is None or classes is None:
        return class_map, classes if names is None else list(names)
    if unknown := [n for n in names if n not in classes]:
        raise ImportPairsError(f"class map names {unknown} are not in classes {classes}; "
                               "add them to --classes or fix the class map")
    return {c: classes.index(names[i]) for c, i in class_map.items()}, classes


def _scan_pairs(pairs: Pairs, class_map: dict[Colour, int] | None) -> tuple[str, int, str]:
    """First pass: mask kind, top class id, image mode ("L" only if every image is grey)."""
    values: set[int] = set()
    problems: list[str] = []
    modes: set[str] = set()
    for image_path, mask_path in pairs.values():
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            modes.add("L" if image.mode in GREY_MODES else "RGB")  # header only: no decoding
            if image.size != mask.size:
                problems.append(f"{mask_path} size {mask.size[0]}x{mask.size[1]} differs from "
                                f"{image_path} ({image.size[0]}x{image.size[1]})")
            elif class_map is not None:
                problems += [f"{mask_path} has colour {c} not in the class map"
                             for c in _colours(mask)[0] if c not in class_map][:3]
            else:
                values.update(np.unique(_read_ids(mask, mask_path)).tolist())
    if problems:
        raise ImportPairsError(f"{len(problems)} mask problem(s): {_listing(problems)}. Re-export "
                               "masks at their image's size; add unknown colours to the class map")
    image_mode = "RGB" if "RGB" in modes else "L"
    if class_map is not None:
        return "palette", max(class_map.values()), image_mode
    binary = values <= {0, 255} and 255 in values
    return ("binary", 1, image_mode) if binary else ("index", int(max(values)), image_mode)


def _read_ids(mask: Image.Image, path: Path) -> np.ndarray:
    """(H, W) ints of a mask without a class map; colour masks must have R == G == B."""
    if mask.mode in MASK_MODES:
        return np.asarray(mask).astype(np.int64)
    rgb = np.asarray(mask.convert("RGB"))
    if (rgb == rgb[..., :1]).all():
        return rgb[..., 0]
    raise ImportPairsError(f"{path} is a colour mask (colours like {_colours(mask)[0][:4]}); "
                           'pass a class map, e.g. --class-map "0,0,0=background;255,0,0=cell"')


def _resolve_classes(classes: list[str] | None, kind: str, top_id: int) -> list[str]:
    if classes is None and top_id < MAX_INFERRED_CLASSES:
        return ["background"] + [f"class_{i}" for i in range(1, max(top_id, 1) + 1)]
    if classes is None:
        raise ImportPairsError(f"masks hold ids up to {top_id}, expected 0..K (K < "
                               f"{MAX_INFERRED_CLASSES}) or 0/255: pass --classes if so many")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ImportPairsError(f"classes {classes}: expected at least two distinct names")
    if top_id >= len(classes) or top_id > 255:
        raise ImportPairsError(f"{kind} masks hold class id {top_id} but only {len(classes)} "
                               f"classes were given ({classes}); add names or fix the masks")
    return list(classes)


def _write_pairs(root: Path, pairs: Pairs, kind: str, class_map: dict[Colour, int] | None,
                 image_mode: str, n_classes: int) -> None:
    """Second pass: write every pair and manifest.csv."""
    for folder in ("images", "masks"):
        (root / folder).mkdir()
    rows = []
    for name, (image_path, mask_path) in pairs.items():
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            ids = _convert_mask(mask, mask_path, kind, class_map)
            _to_8bit(image).convert(image_mode).save(root / "images" / f"{name}.png")
        Image.fromarray(ids, "L").save(root / "masks" / f"{name}.png")
        counts = np.bincount(ids.ravel(), minlength=n_classes)
        label = int(counts[1:].argmax()) + 1 if counts[1:].any() else 0
        rows.append({"id": name, "image": f"images/{name}.png", "mask": f"masks/{name}.png",
                     "label": label, "source": image_path.name})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False, lineterminator="\n")


def _convert_mask(mask: Image.Image, path: Path, kind: str,
                  class_map: dict[Colour, int] | None) -> np.ndarray:
    """(H, W) uint8 class ids."""
    if kind == "palette":
        colours, inverse = _colours(mask)
        lookup = np.array([class_map[c] for c in colours], np.uint8)
        return lookup[inverse].reshape(mask.size[1], mask.size[0])
    ids = _read_ids(mask, path)
    return (ids == 255).astype(np.uint8) if kind == "binary" else ids.astype(np.uint8)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Pillow clips 16-bit values at 255 when converting; scale them from 0..65535 instead."""
    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image, np.float64)
    top = 255.0 if values.max() <= 255 else 65535.0
    return Image.fromarray(np.clip(values * (255 / top), 0, 255).round().astype(np.uint8))


def _colours(mask: Image.Image) -> tuple[list[Colour], np.ndarray]:
    """The mask's distinct RGB colours, and per pixel (flat) the index of its colour."""
    colours, inverse = np.unique(np.asarray(mask.convert("RGB")).reshape(-1, 3), axis=0,
                                 return_inverse=True)
    return [(int(r), int(g), int(b)) for r, g, b in colours], inverse.reshape(-1)


def _publish(tmp: Path, out_dir: Path) -> None:
    """Swap tmp in as out_dir; the old out_dir is deleted only after the swap succeeded."""
    old = out_dir.with_name(f".{out_dir.name}-old-{os.getpid()}")
    if out_dir.exists():
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    finally:
        if old.exists() and not out_dir.exists():
            os.rename(old, out_dir)  # the swap failed: put the previous data back
    shutil.rmtree(old, ignore_errors=True)


def _listing(items: list[str]) -> str:
    more = f" ... and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
    return ", ".join(items[:LIST_AT_MOST]) + more
