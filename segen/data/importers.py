"""Import paired image/mask folders into the data/ contract (see segen/validation.py).

Mask kinds, decided once per dataset (never per file), in this order: "palette" with a class map
(RGB colour -> name -> id); "index": single-channel, top value < len(classes) (< 64 without
classes); "binary": single-channel, only 0 and 255 (-> 0/1). Grey saved as RGB is single-channel;
"P" masks without a class map give their palette indices."""
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
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless only: JPEG smears class ids
MAX_INFERRED_IDS = 64  # without classes, larger mask values mean the masks are not class ids
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # more than 8 bits per pixel
GREY_MODES = {"1", "L", "LA", "F"} | WIDE_MODES
ID_MODES = {"1", "L", "P"} | WIDE_MODES  # single-channel: the pixel values are the ids
LIST_AT_MOST = 20  # names shown in one error message
Colour = tuple[int, int, int]
Pairs = dict[str, tuple[Path, Path]]  # id (the shared file stem) -> (image file, mask file)


class ImportPairsError(ValueError):
    """The folders can't be imported as they are; the message says what and how to fix."""


@dataclass(frozen=True)
class ImportSummary:
    n_pairs: int
    mask_kind: str  # "index" | "binary" | "palette"
    classes: list[str]
    image_mode: str  # "L" | "RGB"

    def __str__(self) -> str:
        return (f"imported {self.n_pairs} image/mask pairs ({self.mask_kind} masks, "
                f"{self.image_mode} images); classes by id: {', '.join(self.classes)}")


def parse_class_map(text: str) -> dict[Colour, str]:
    """"0,0,0=background;255,0,0=cell" -> {(0, 0, 0): "background", (255, 0, 0): "cell"}."""
    result: dict[Colour, str] = {}
    for entry in filter(None, (e.strip() for e in re.split(r"[;\n]", text))):
        colour, _, name = (part.strip() for part in entry.partition("="))
        match = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", colour)
        if not match or not name or max(int(g) for g in match.groups()) > 255:
            raise ImportPairsError(f"--class-map entry {entry!r}: expected R,G,B=name with each "
                                   'of R, G, B in 0-255, e.g. "255,0,0=cell"; fix that entry')
        rgb = (int(match[1]), int(match[2]), int(match[3]))
        if rgb in result:
            raise ImportPairsError(f"--class-map gives colour {rgb} twice ({result[rgb]!r} and "
                                   f"{name!r}); expected one entry per colour")
        result[rgb] = name
    if not result:
        raise ImportPairsError(f"--class-map {text!r} has no entries; expected e.g. "
                               '"0,0,0=background;255,0,0=cell"')
    return result


def import_pairs(images_dir: Path, masks_dir: Path, out_dir: Path, *,
                 classes: list[str] | None, class_map: dict[Colour, str] | None) -> ImportSummary:
    """Pair images and masks by file stem, convert them, and publish them as out_dir."""
    pairs = pair_files(images_dir, masks_dir)
    lookup, classes = (None, classes) if class_map is None else _palette_lookup(class_map, classes)
    _check_args(out_dir, (images_dir, masks_dir), classes)
    values, image_mode = scan_mask_values(pairs, lookup)
    kind, classes = ("palette", classes) if lookup is not None else decide_mask_kind(values, classes)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-import-", dir=out_dir.parent))
    try:
        _write_pairs(tmp, pairs, kind, lookup, image_mode)
        (tmp / "classes.json").write_text(json.dumps({"classes": classes}, indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; data/ should read like any folder
        publish_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportSummary(len(pairs), kind, list(classes), image_mode)


def _check_args(out_dir: Path, sources: tuple[Path, Path], classes: list[str] | None) -> None:
    if any(s.resolve().is_relative_to(out_dir.resolve()) for s in sources):  # they'd vanish
        raise ImportPairsError(f"{sources[0]} or {sources[1]} is inside {out_dir}, which the "
                               "import replaces as a whole; move the sources outside it first")
    if classes is not None and not 2 <= len(set(classes)) == len(classes) <= 256:
        raise ImportPairsError(f"classes {classes}: expected 2 to 256 distinct names, index 0 "
                               "first (e.g. --classes background cell)")


def pair_files(images_dir: Path, masks_dir: Path) -> Pairs:
    """Pairs by stem, naturally sorted ("2" before "10"); one error lists every lone file."""
    images = _files_by_stem(images_dir, IMAGE_SUFFIXES)
    masks = _files_by_stem(masks_dir, MASK_SUFFIXES)
    lone_images = sorted(images[s].name for s in images.keys() - masks.keys())
    lone_masks = sorted(masks[s].name for s in masks.keys() - images.keys())
    if lone_images or lone_masks:
        raise ImportPairsError(
            f"{len(lone_images) + len(lone_masks)} file(s) have no partner with the same stem: "
            f"images without a mask in {images_dir}: {listing(lone_images)}; masks without an "
            f"image in {masks_dir}: {listing(lone_masks)}. Add the missing partners, rename "
            f"them to match, or move the extras out (masks must be {MASK_SUFFIXES}).")
    order = sorted(images, key=lambda s: [int(t) if t.isdigit() else t
                                          for t in re.split(r"(\d+)", s)])
    return {stem: (images[stem], masks[stem]) for stem in order}


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise ImportPairsError(f"{folder} is not a folder; expected a folder of {suffixes} files")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and path.name[0] != ".":
            if path.stem in found:
                raise ImportPairsError(f"{found[path.stem]} and {path} share a stem, so neither "
                                       "can be paired; keep one file per stem")
            found[path.stem] = path
    if not found:
        raise ImportPairsError(f"{folder} holds no {suffixes} files; check the path")
    return found


def _palette_lookup(class_map: dict[Colour, str], classes: list[str] | None
                    ) -> tuple[dict[Colour, int], list[str]]:
    """Colour -> class id; ids follow `classes`, else the class map's order."""
    names = list(dict.fromkeys(class_map.values()))
    classes = names if classes is None else classes
    if unknown := [name for name in names if name not in classes]:
        raise ImportPairsError(f"class map names {unknown} are not in classes {classes}; add "
                               "them to --classes or fix the class map")
    return {colour: classes.index(name) for colour, name in class_map.items()}, classes


def scan_mask_values(pairs: Pairs, lookup: dict[Colour, int] | None) -> tuple[dict[Path, set[int]], str]:
    """Before writing anything: mask values per file, image mode ("L" only if all are grey)."""
    values: dict[Path, set[int]] = {}
    modes: set[str] = set()
    for image_path, mask_path in pairs.values():
        image, ids = open_image(image_path, decode=False), _mask_values(mask_path, lookup)
        modes.add("L" if image.mode in GREY_MODES else "RGB")  # header only: fast
        if image.size != ids.shape[::-1]:
            raise ImportPairsError(f"{mask_path} is {ids.shape[1]}x{ids.shape[0]} but its image "
                                   f"is {image.size[0]}x{image.size[1]}; re-export it to match")
        values[mask_path] = set(np.unique(ids).tolist())
    return values, "RGB" if "RGB" in modes else "L"


def decide_mask_kind(values: dict[Path, set[int]], classes: list[str] | None) -> tuple[str, list[str]]:
    """index or binary for the whole dataset; classes inferred from the top id if not given."""
    seen = set().union(*values.values())
    top = max(seen)
    limit = min(len(classes), 256) if classes is not None else MAX_INFERRED_IDS
    if top < limit:
        kind = "index"
    elif seen <= {0, 255}:
        kind, top = "binary", 1
    else:
        bad = [f"{p} (ids {sorted(i for i in ids if i >= limit)[:5]})"
               for p, ids in values.items() if max(ids) >= limit]
        raise ImportPairsError(f"{len(bad)} mask(s) hold class ids beyond the {limit} classes "
                               f"{classes or 'allowed without --classes'}: {listing(bad)}. "
                               "Expected ids 0..K-1 for K classes, or only 0 and 255: pass every "
                               "class name with --classes, or fix the masks.")
    names = ["background"] + [f"class_{i}" for i in range(1, max(top, 1) + 1)]
    return kind, names if classes is None else list(classes)


def _write_pairs(root: Path, pairs: Pairs, kind: str, lookup: dict[Colour, int] | None,
                 image_mode: str) -> None:
    (root / "images").mkdir(), (root / "masks").mkdir()
    rows = []
    for stem, (image_path, mask_path) in pairs.items():
        ids = _mask_values(mask_path, lookup)
        ids = (ids == 255 if kind == "binary" else ids).astype(np.uint8)
        save_image(open_image(image_path, decode=True), image_mode, root / "images" / f"{stem}.png")
        Image.fromarray(ids, "L").save(root / "masks" / f"{stem}.png")
        label = int(np.bincount(ids.ravel())[1:].argmax()) + 1 if ids.any() else 0  # top non-0
        rows.append({"id": stem, "image": f"images/{stem}.png", "mask": f"masks/{stem}.png",
                     "label": label, "source": image_path.name})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False, lineterminator="\n")


def open_image(path: Path, *, decode: bool) -> Image.Image:
    """The image, decoded if asked; a file Pillow can't read becomes an error naming it."""
    try:
        with Image.open(path) as image:
            if decode:
                image.load()  # truncated or corrupt pixel data fails here
            return image
    except (OSError, SyntaxError, ValueError) as err:  # what Pillow raises for broken files
        raise ImportPairsError(f"{path} is unreadable, corrupt or truncated ({err}); re-export "
                               "it, or move the pair out of both folders") from err


def _mask_values(path: Path, lookup: dict[Colour, int] | None) -> np.ndarray:
    """(H, W) int64: class ids through the class map, else the single-channel values."""
    mask = open_image(path, decode=True)
    if lookup is None and mask.mode in ID_MODES:
        return np.asarray(mask).astype(np.int64)
    colours, inverse = _colours(mask)
    if lookup is None and any(r != g or g != b for r, g, b in colours):
        raise ImportPairsError(f"{path} is a colour mask (colours like {colours[:4]}); colour "
                               'masks need a class map: pass --class-map "0,0,0=background;'
                               '255,0,0=cell" (class_map= in Python) naming every colour')
    if lookup is None:
        lookup = {c: c[0] for c in colours}  # grey saved as RGB: any channel is the value
    if unknown := [c for c in colours if c not in lookup]:
        raise ImportPairsError(f"{path} has colour(s) {unknown[:5]} not in the class map; add "
                               'them to --class-map (e.g. "R,G,B=name") or fix the mask')
    return np.array([lookup[c] for c in colours], np.int64)[inverse]


def _colours(mask: Image.Image) -> tuple[list[Colour], np.ndarray]:
    """Distinct RGB colours and (H, W) indices into them; packed, as 1-D np.unique is fast."""
    rgb = np.asarray(mask.convert("RGB")).astype(np.uint32)
    packed, inverse = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2],
                                return_inverse=True)
    return ([((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in packed.tolist()],
            inverse.reshape(rgb.shape[:2]))


def save_image(image: Image.Image, mode: str, path: Path) -> None:
    if image.mode in WIDE_MODES:  # Pillow clips these at 255 when converting: scale instead
        scale = 1.0 if image.getextrema()[1] <= 255 else 255 / 65535
        image = Image.fromarray((np.asarray(image) * scale).round().clip(0, 255).astype(np.uint8))
    image.convert(mode).save(path)


def publish_folder(tmp: Path, out_dir: Path) -> None:
    old = tmp.with_name(f"{tmp.name}-old")  # unique like tmp; deleted only once tmp is in place
    if out_dir.exists():
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            os.rename(old, out_dir)  # the swap failed: put the previous data back
        raise
    shutil.rmtree(old, ignore_errors=True)


def listing(items: list[str]) -> str:
    more = f" ... and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
    return (", ".join(items[:LIST_AT_MOST]) or "none") + more
