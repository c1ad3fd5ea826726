"""`segen data add`: append new samples to data/ as a new data version.

The new files are converted and checked on their own first (segen.data.importers for pairs:
readable, sizes, class ids within classes.json; then segen.data.validation on the converted
files), so bad input stops with an error naming each bad file while data/ is untouched.
The new data/ is built in a temporary folder beside it (the existing files hard-linked, the
new ones written, manifest.csv rewritten with the old rows kept verbatim) and swapped in
with one rename; the caller records the version (segen.data.versioning.track_data, inside segen.data.transaction.data_change).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from segen.data.image_files import inside, open_image
from segen.data.importers import (
    IMAGE_SUFFIXES,
    ImportPairsError,
    decide_mask_kind,
    import_pairs,
    listing,
    pair_files,
    save_image,
    scan_mask_values,
)
from segen.data.layouts import SPLITS
from segen.data.transaction import publish_folder
from segen.data.validation import (
    IMAGE_MODES,
    Problem,
    ValidationReport,
    open_decoded,
    validate_dataset,
)


class DataAddError(ValueError):
    """The new samples can't be added as they are; the message names the files and the fix."""


@dataclass(frozen=True)
class AddSummary:
    n_added: int
    n_total: int
    ids: list[str]  # the ids the new samples got, in order
    image_mode: str
    n_present: int = 0  # samples identical to ones data/ already holds: not added again

    def __str__(self) -> str:
        again = (f"; {self.n_present} already in data/ (the same image and mask bytes), not "
                 "added again" if self.n_present else "")
        return (f"added {self.n_added} sample(s) ({self.image_mode}) to data/, now "
                f"{self.n_total}; new ids {listing(self.ids)}{again}")


def add_samples(data_dir: Path, images_dir: Path, masks_dir: Path | None, *, max_pixels: int,
                split: str = "") -> AddSummary:
    """Check the new samples, then publish data_dir + them atomically.

    split: train, val or test puts them in that split (manifest.csv's split column); ""
    leaves them to preprocess's seeded split."""
    if split and split not in SPLITS:
        raise DataAddError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    classes, has_masks = _read_classes(data_dir)
    if has_masks != (masks_dir is not None):
        kind, give = (("image/mask pairs", "IMAGES_DIR and MASKS_DIR") if has_masks else
                      ("class folders (no masks)", "IMAGES_DIR only, one sub-folder per class"))
        raise DataAddError(f"{data_dir} holds {kind}: give {give}")
    for source in (images_dir, masks_dir):
        if source is not None and source.resolve().is_relative_to(data_dir.resolve()):
            raise DataAddError(f"{source} is inside {data_dir}; add samples from outside it")
    manifest = pd.read_csv(data_dir / "manifest.csv", dtype=str, keep_default_na=False)
    mode = _data_image_mode(data_dir, manifest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-add-", dir=data_dir.parent))
    try:
        new = tmp / "new"
        if has_masks:
            _stage_pairs(images_dir, masks_dir, new, classes, max_pixels)
        else:
            _stage_class_folders(images_dir, new, classes, max_pixels)
        _match_mode(new, mode)
        _check_staged(new, has_masks, max_pixels)
        build = tmp / "data"
        ids, n_present = _merge(data_dir, new, manifest, build, split)
        os.chmod(build, 0o755)  # mkdtemp's 0700 parent is not data/'s mode
        publish_folder(build, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return AddSummary(len(ids), len(manifest) + len(ids), ids, mode, n_present)


def _read_classes(data_dir: Path) -> tuple[list[str], bool]:
    path = data_dir / "classes.json"
    if not path.is_file() or not (data_dir / "manifest.csv").is_file():
        raise FileNotFoundError(f"{data_dir} has no dataset to add to (classes.json and "
                                "manifest.csv expected). Create one first: `segen run`, "
                                "`segen data generate` or `segen data import-pairs`.")
    doc = json.loads(path.read_text())
    return [str(c) for c in doc["classes"]], bool(doc.get("masks", True))


def _data_image_mode(data_dir: Path, manifest: pd.DataFrame) -> str:
    """"L" or "RGB": the mode of the dataset's first image (validation keeps them uniform)."""
    if manifest.empty:
        return "RGB"
    with Image.open(data_dir / manifest["image"].iloc[0]) as image:
        return "L" if image.mode == "L" else "RGB"


def _stage_pairs(images_dir: Path, masks_dir: Path, out: Path, classes: list[str],
                 max_pixels: int) -> None:
    """Convert the pairs with the importer, held to the dataset's classes, after one pass
    that names every unreadable file and every mask with class ids outside classes.json."""
    try:
        pairs = pair_files(images_dir, masks_dir)
    except ImportPairsError as err:
        raise DataAddError(f"the new samples were not added (data/ unchanged): {err}") from err
    problems, readable = [], {}
    for stem, (image, mask) in pairs.items():
        errors = [_decode_error(path, max_pixels) for path in (image, mask)]
        problems += [e for e in errors if e]
        if not any(errors):
            readable[stem] = (image, mask)
    try:
        if readable:  # sizes, then class ids against classes.json
            decide_mask_kind(scan_mask_values(readable, None, max_pixels=max_pixels)[0],
                             classes)
        if not problems:
            import_pairs(images_dir, masks_dir, out, classes=classes, class_map=None,
                         max_pixels=max_pixels)
    except ImportPairsError as err:
        problems.append(f"{err} (the classes are those of data/classes.json)")
    if problems:
        raise DataAddError("the new samples were not added (data/ unchanged); "
                           f"{len(problems)} problem(s):\n" + "\n".join(
                               f"  {p}" for p in problems))


def _decode_error(path: Path, max_pixels: int) -> str | None:
    try:
        open_image(path, decode=True, max_pixels=max_pixels)
    except ImportPairsError as err:
        return str(err)
    return None


def _stage_class_folders(images_dir: Path, out: Path, classes: list[str], max_pixels: int
                         ) -> None:
    """IMAGES_DIR/<class name>/<image>: images/<stem>.png rows labelled by class index."""
    folders = sorted(p for p in images_dir.iterdir() if p.is_dir()) if images_dir.is_dir() else []
    if unknown := [f.name for f in folders if f.name not in classes]:
        raise DataAddError(f"sub-folder(s) {unknown} of {images_dir} are not classes of the "
                           f"dataset {classes}; rename them or add the class first")
    files = [(f, p) for f in folders for p in sorted(f.iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "."]
    if not files:
        raise DataAddError(f"{images_dir} holds no images in class sub-folders ({classes})")
    (out / "images").mkdir(parents=True)
    rows, images = [], [(f, p, open_image(inside(p, images_dir, "source"), decode=True,
                                          max_pixels=max_pixels))
                        for f, p in files]  # all checked first
    for folder, path, image in images:
        stem = _unique(f"{folder.name}_{path.stem}", {r["id"] for r in rows})
        save_image(image, "RGB" if image.mode not in ("L", "1") else "L",
                    out / "images" / f"{stem}.png")
        rows.append({"id": stem, "image": f"images/{stem}.png", "mask": "",
                     "label": classes.index(folder.name), "source": f"{folder.name}/{path.name}"})
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    (out / "classes.json").write_text(json.dumps({"classes": classes, "masks": False}) + "\n")


def _match_mode(new: Path, mode: str) -> None:
    """Grey images join an RGB dataset as RGB (lossless); colour ones can't join a grey one."""
    manifest = pd.read_csv(new / "manifest.csv", dtype=str, keep_default_na=False)
    colour = []
    for rel, source in zip(manifest["image"], manifest["source"]):
        with Image.open(new / rel) as image:
            image.load()
            if image.mode == mode:
                continue
            if mode == "L":
                colour.append(source)
            else:
                image.convert("RGB").save(new / rel)
    if colour:
        raise DataAddError(f"{len(colour)} new image(s) are colour but the dataset is greyscale: "
                           f"{listing(colour)}; convert them to greyscale first")


def _check_staged(new: Path, has_masks: bool, max_pixels: int) -> None:
    """The dataset checks on the converted new files; problems named by their source file."""
    manifest = pd.read_csv(new / "manifest.csv", dtype=str, keep_default_na=False)
    if has_masks:
        problems = validate_dataset(new, min_class_fraction=0.0, max_pixels=max_pixels).problems
    else:  # no masks to pair: each image must decode in an allowed mode
        report = ValidationReport(max_pixels=max_pixels)
        for rel in manifest["image"]:
            image = open_decoded(new, rel, report)
            if image is not None and image.mode not in IMAGE_MODES:
                report.problems.append(Problem(rel, f"image mode {image.mode}", "convert it"))
        problems = report.problems
    if not problems:
        return
    sources = {}  # staged path -> what the user knows: the file they gave
    for _, row in manifest.iterrows():
        sources[row["image"]] = f"image {row['source']}"
        sources[row["mask"]] = f"mask of image {row['source']}"
    lines = [f"  {sources.get(p.path, p.path)}: {p.reason} -> {p.fix}" for p in problems]
    raise DataAddError(f"the new samples were not added (data/ unchanged); "
                       f"{len(problems)} problem(s):\n" + "\n".join(lines))


def _merge(data_dir: Path, new: Path, manifest: pd.DataFrame, build: Path, split: str
           ) -> tuple[list[str], int]:
    """build = data_dir (hard links) + the new files under fresh ids (in split, if given);
    returns those ids, and how many new samples data_dir already held byte for byte (left
    out: adding the same files again, e.g. rerunning an add whose result a kill hid, must
    not duplicate them)."""
    shutil.copytree(data_dir, build, copy_function=_link_or_copy)
    added = pd.read_csv(new / "manifest.csv", dtype=str, keep_default_na=False)
    taken = set(manifest["id"]) | {p.stem for p in (build / "images").iterdir()}
    present = {_content(build, row) for _, row in manifest.iterrows()}
    rows, n_present = [], 0
    for _, row in added.iterrows():
        if _content(new, row) in present:
            n_present += 1
            continue
        fresh = _unique(row["id"], taken)
        taken.add(fresh)
        row = row.copy()
        for column in ("image", "mask"):
            if row.get(column):
                target = f"{Path(row[column]).parent.as_posix()}/{fresh}.png"
                os.replace(new / row[column], build / target)
                row[column] = target
        row["id"] = fresh
        if split:
            row["split"] = split
        rows.append(row)
    merged = pd.concat([manifest, pd.DataFrame(rows)], ignore_index=True).fillna("")
    (build / "manifest.csv").unlink()  # a hard link into the old data/ (and DVC's cache)
    merged.to_csv(build / "manifest.csv", index=False, lineterminator="\n")
    return [r["id"] for r in rows], n_present


def _content(root: Path, row: pd.Series) -> tuple[str, str]:
    """(image, mask) file digests of a manifest row (the same code writes both sides' PNGs,
    so equal pixels are equal bytes)."""
    return tuple(hashlib.sha256((root / row[c]).read_bytes()).hexdigest() if row.get(c) else ""
                 for c in ("image", "mask"))


def _unique(stem: str, taken: set[str]) -> str:
    """stem, or stem_2, stem_3 ... : an id (and file name) no existing sample uses."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    return candidate


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links make the copy cheap; files are never written in place, so sharing is safe."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
