"""Import segmentation data into the data/ contract (see segen/data/validation.py), from the
layouts of segen.data.layouts (pairs, TIFF stacks, split dirs, class folders, nnU-Net).

Mask kinds, decided once per dataset (never per file), in this order: "class folders" (one
binary mask per class); "palette" with a class map (RGB colour -> name -> id); "index":
single-channel, top value < len(classes) (< 64 without classes); "binary": single-channel,
only 0 and 255 (-> 0/1). Grey saved as RGB is single-channel; "P" masks without a class map
give their palette indices. Classes named by --ignore (or a layout's own ignore label) are
written to classes.json's "ignore": out of the loss, every score and every prediction.
A given split (split dirs, nnU-Net's labelled test cases) becomes manifest.csv's split column.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segen.data.image_files import WIDE_MODES, ImageFileError
from segen.data.import_reader import GREY_MODES, Colour, Reader, Scan
from segen.data.layouts import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    Frame,
    Layout,
    Sample,
    listing,
    pair_files,
    pair_layout,
)
from segen.data.transaction import publish_folder

MAX_INFERRED_IDS = 64  # without classes, larger mask values mean the masks are not class ids
ImportPairsError = ImageFileError  # the sources can't be imported as they are
__all__ = ["GREY_MODES", "IMAGE_SUFFIXES", "MASK_SUFFIXES", "ImportPairsError", "listing",
           "pair_files"]  # re-exported for data add and the class importers


@dataclass(frozen=True)
class ImportSummary:
    n_pairs: int
    mask_kind: str  # "index" | "binary" | "palette" | "class folders"
    classes: list[str]
    image_mode: str  # "L" | "RGB"
    ignore: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)  # samples per given split
    conversion: str = ""  # how images wider than 8 bits were brought to 8 bits

    def __str__(self) -> str:
        lines = [f"imported {self.n_pairs} image/mask pairs ({self.mask_kind} masks, "
                 f"{self.image_mode} images); classes by id: {', '.join(self.classes)}"]
        if self.ignore:
            lines.append(f"ignored in training and scores: {', '.join(self.ignore)}")
        if self.splits:
            lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()))
        return "\n".join(lines + [self.conversion] * bool(self.conversion))


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
                 classes: list[str] | None, class_map: dict[Colour, str] | None,
                 max_pixels: int, ignore: list[str] | None = None) -> ImportSummary:
    """Pair images and masks by file stem (or slice by slice), convert them, publish out_dir."""
    return import_layout(pair_layout(images_dir, masks_dir, max_pixels=max_pixels), out_dir,
                         classes=classes, class_map=class_map, ignore=ignore,
                         max_pixels=max_pixels, sources=(images_dir, masks_dir))


def import_layout(layout: Layout, out_dir: Path, *, classes: list[str] | None,
                  class_map: dict[Colour, str] | None, ignore: list[str] | None,
                  max_pixels: int, sources: tuple[Path, ...]) -> ImportSummary:
    """Check every sample of the layout, convert them, and publish them as out_dir (whole,
    or not at all: data/ is untouched by a refused import)."""
    classes = classes or layout.classes
    lookup, classes = (None, classes) if class_map is None else _palette_lookup(class_map, classes)
    _check_args(out_dir, sources, classes)
    reader = Reader(lookup, max_pixels)
    scan = reader.scan(layout.samples)
    if layout.samples[0].class_masks:
        kind = "class folders"
    elif lookup is not None:
        kind = "palette"
    else:
        kind, classes = decide_mask_kind(scan.values, classes)
    ignore = _ignored(classes, [*layout.ignore, *(ignore or [])])
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-import-", dir=out_dir.parent))
    try:
        splits = _write_pairs(tmp, layout.samples, kind, reader, scan)
        doc = {"classes": classes, **({"ignore": ignore} if ignore else {})}
        (tmp / "classes.json").write_text(json.dumps(doc, indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; data/ should read like any folder
        publish_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportSummary(len(layout.samples), kind, list(classes), scan.image_mode, ignore,
                         splits, scan.conversion)


def _ignored(classes: list[str], names: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    if unknown := [n for n in names if n not in classes]:
        raise ImportPairsError(f"--ignore {' '.join(unknown)}: not among the classes {classes}; "
                               "name classes as they are listed (e.g. --ignore void)")
    if len(classes) - len(names) < 2:
        raise ImportPairsError(f"--ignore {' '.join(names)} leaves fewer than two of the "
                               f"classes {classes} to learn")
    return names


def _check_args(out_dir: Path, sources: tuple[Path, ...], classes: list[str] | None) -> None:
    if any(s.resolve().is_relative_to(out_dir.resolve()) for s in sources):  # they'd vanish
        raise ImportPairsError(f"{' or '.join(map(str, sources))} is inside {out_dir}, which "
                               "the import replaces as a whole; move the sources outside it")
    if classes is not None and not 2 <= len(set(classes)) == len(classes) <= 256:
        raise ImportPairsError(f"classes {classes}: expected 2 to 256 distinct names, index 0 "
                               "first (e.g. --classes background cell)")


def _palette_lookup(class_map: dict[Colour, str], classes: list[str] | None
                    ) -> tuple[dict[Colour, int], list[str]]:
    """Colour -> class id; ids follow `classes`, else the class map's order."""
    names = list(dict.fromkeys(class_map.values()))
    classes = names if classes is None else classes
    if unknown := [name for name in names if name not in classes]:
        raise ImportPairsError(f"class map names {unknown} are not in classes {classes}; add "
                               "them to --classes or fix the class map")
    return {colour: classes.index(name) for colour, name in class_map.items()}, classes


def scan_mask_values(pairs: dict[str, tuple[Path, Path]], lookup: dict[Colour, int] | None,
                     *, max_pixels: int) -> tuple[dict[str, set[int]], str]:
    """Mask values per file and the image mode of plain pairs (for segen data add)."""
    samples = [Sample(stem, Frame(image), Frame(mask)) for stem, (image, mask) in pairs.items()]
    scan = Reader(lookup, max_pixels).scan(samples)
    return scan.values, scan.image_mode


def decide_mask_kind(values: dict[str, set[int]], classes: list[str] | None
                     ) -> tuple[str, list[str]]:
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


def _write_pairs(root: Path, samples: list[Sample], kind: str, reader: Reader, scan: Scan
                 ) -> dict[str, int]:
    """images/<id>.png, masks/<id>.png and manifest.csv (with a split column where the layout
    gives splits); returns the count per split ("seeded": left to preprocess's split)."""
    (root / "images").mkdir(), (root / "masks").mkdir()
    rows = []
    for sample in samples:
        image = reader.image(sample, scan.image_mode, scan.wide_range)
        ids = reader.mask(sample, image.size)
        ids = (ids == 255 if kind == "binary" else ids).astype(np.uint8)
        image.save(root / "images" / f"{sample.id}.png")
        Image.fromarray(ids, "L").save(root / "masks" / f"{sample.id}.png")
        label = int(np.bincount(ids.ravel())[1:].argmax()) + 1 if ids.any() else 0  # top non-0
        source = sample.image.path.name + (f"#{sample.image.page}" if sample.image.page else "")
        rows.append({"id": sample.id, "image": f"images/{sample.id}.png",
                     "mask": f"masks/{sample.id}.png", "label": label, "source": source,
                     "split": sample.split})
    manifest = pd.DataFrame(rows)
    given = bool(manifest["split"].any())
    if not given:
        manifest = manifest.drop(columns="split")
    manifest.to_csv(root / "manifest.csv", index=False, lineterminator="\n")
    return manifest["split"].replace("", "seeded").value_counts().to_dict() if given else {}


def save_image(image: Image.Image, mode: str, path: Path) -> None:
    """One image file saved as 8-bit mode (class-folder datasets and data add)."""
    if image.mode in WIDE_MODES:  # Pillow clips these at 255 when converting: scale instead
        scale = 1.0 if image.getextrema()[1] <= 255 else 255 / 65535
        image = Image.fromarray((np.asarray(image) * scale).round().clip(0, 255).astype(np.uint8))
    image.convert(mode).save(path)
