"""Import class folders (one sub-folder of images per class) into the data/ contract, without
masks: manifest.csv rows have an empty mask cell, classes.json says {"masks": false}; and the
builtin scikit-learn digits written as such folders and imported the same way."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segen.data.image_files import ImageFileError, inside, open_image
from segen.data.importers import GREY_MODES, listing, save_image
from segen.data.transaction import publish_folder

DIGITS_SCALE = 4  # 8x8 digits -> 32x32, each pixel a 4x4 block (nearest neighbour)
DIGITS_MAX = 16  # load_digits values are 0..16


ImportClassesError = ImageFileError  # the class folders cannot be imported as they are


@dataclass(frozen=True)
class ClassImportSummary:
    n_images: int
    classes: list[str]
    per_class: dict[str, int]
    image_mode: str  # "L" | "RGB"
    skipped: list[str]  # files in class folders that PIL does not read, by suffix

    def __str__(self) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in self.per_class.items())
        skipped = f"; skipped {len(self.skipped)} non-image file(s)" if self.skipped else ""
        return (f"imported {self.n_images} {self.image_mode} images in {len(self.classes)} "
                f"classes ({counts}){skipped}")


def import_classes(root: Path, out_dir: Path, *, max_pixels: int) -> ClassImportSummary:
    """root/<class>/<image>: convert every image to PNG and publish them as out_dir."""
    folders, skipped = class_files(root, out_dir)
    modes = {path: _read_mode(path, max_pixels) for files in folders.values() for path in files}
    mode = _one_mode(modes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-import-", dir=out_dir.parent))
    try:
        _write_classes(tmp, folders, mode, max_pixels)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; data/ should read like any folder
        publish_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_class = {name: len(files) for name, files in folders.items()}
    return ClassImportSummary(sum(per_class.values()), list(folders), per_class, mode, skipped)


def class_files(root: Path, out_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """{class name (sorted): its image files, naturally sorted} and the skipped files."""
    if not root.is_dir():
        raise ImportClassesError(f"{root} is not a folder; expected one sub-folder of images "
                                 "per class, e.g. root/cat/*.jpg, root/dog/*.jpg")
    if root.resolve().is_relative_to(out_dir.resolve()):  # it would vanish with the swap
        raise ImportClassesError(f"{root} is inside {out_dir}, which the import replaces as a "
                                 "whole; move the class folders outside it first")
    readable = _readable_suffixes()
    folders: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
        files = [inside(p, root, "class") for p in folder.iterdir()
                 if (p.is_file() or p.is_symlink()) and p.name[0] != "."]
        folders[folder.name] = sorted((p for p in files if p.suffix.lower() in readable),
                                      key=lambda p: _natural(p.name))
        skipped += [f"{folder.name}/{p.name}" for p in files if p.suffix.lower() not in readable]
    _check_folders(root, folders)
    return folders, skipped


def _check_folders(root: Path, folders: dict[str, list[Path]]) -> None:
    if len(folders) < 2:
        raise ImportClassesError(f"{root} has {len(folders)} class sub-folder(s) "
                                 f"({list(folders)}); expected at least two, one per class")
    if empty := [str(root / name) for name, files in folders.items() if not files]:
        raise ImportClassesError(f"class folder(s) with no images: {listing(empty)}; add images "
                                 "(any format Pillow reads) or remove the folder(s)")


def _readable_suffixes() -> set[str]:
    """File suffixes Pillow can open ("any PIL-readable format")."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _natural(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_mode(path: Path, max_pixels: int) -> str:
    """"L" or "RGB" from the header; a file Pillow can't identify is an error naming it."""
    with open_image(path, max_pixels=max_pixels, decode=False) as image:
        return "L" if image.mode in GREY_MODES else "RGB"


def _one_mode(modes: dict[Path, str]) -> str:
    """The dataset's one channel count; a mixture names the files in the minority."""
    counts = Counter(modes.values())
    if len(counts) == 1:
        return next(iter(counts))
    majority = counts.most_common(1)[0][0]
    odd = [str(p) for p, m in modes.items() if m != majority]
    raise ImportClassesError(
        f"images mix greyscale and colour: {counts['RGB']} RGB and {counts['L']} greyscale; "
        f"these {len(odd)} are {'greyscale' if majority == 'RGB' else 'colour'} while most are "
        f"not: {listing(odd)}. Convert them so every image has the same channel count.")


def _write_classes(root: Path, folders: dict[str, list[Path]], mode: str, max_pixels: int
                   ) -> None:
    """images/<class>_<stem>.png, manifest.csv (empty mask column), classes.json."""
    (root / "images").mkdir()
    rows, ids = [], set()
    for label, (name, files) in enumerate(folders.items()):
        for path in files:
            stem = _unique(f"{name}_{path.stem}", ids)
            save_image(open_image(path, max_pixels=max_pixels), mode,
                       root / "images" / f"{stem}.png")
            rows.append({"id": stem, "image": f"images/{stem}.png", "mask": "", "label": label,
                         "source": f"{name}/{path.name}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False, lineterminator="\n")
    (root / "classes.json").write_text(json.dumps({"classes": list(folders), "masks": False},
                                                  indent=1) + "\n")


def _unique(stem: str, taken: set[str]) -> str:
    """stem, or stem_2, stem_3...: a.png and a.jpg in one folder both get an id."""
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate)
    return candidate


def write_digits_folders(root: Path) -> int:
    """scikit-learn's bundled handwritten digits (no download) as root/<digit>/<index>.png:
    values 0..16 scaled to 0..255 uint8 greyscale, upscaled 8x8 -> 32x32 by nearest neighbour."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255 / DIGITS_MAX)).astype(np.uint8)  # (1797, 8, 8)
    block = np.ones((DIGITS_SCALE, DIGITS_SCALE), np.uint8)
    for index, (image, target) in enumerate(zip(pixels, digits.target)):
        folder = root / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.kron(image, block), "L").save(folder / f"{index:04d}.png")
    return len(pixels)


def import_digits(out_dir: Path, *, max_pixels: int) -> ClassImportSummary:
    """The builtin digits, through import_classes (so the same checks and layout)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # the folder tree is written beside it
    with tempfile.TemporaryDirectory(prefix=".digits-", dir=out_dir.parent) as tmp:
        write_digits_folders(Path(tmp))
        return import_classes(Path(tmp), out_dir, max_pixels=max_pixels)
