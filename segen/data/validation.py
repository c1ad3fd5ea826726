"""Dataset checks before any training: every bad file is named, with the reason and the fix.

Checks collect problems rather than stopping at the first, so one report lists them all.
Each file is decoded once. Image.LOAD_TRUNCATED_IMAGES stays False: truncated files must fail.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from segen.data.image_files import ImageFileError, open_image

REQUIRED_COLUMNS = ("id", "image", "mask", "label")
IMAGE_MODES = ("RGB", "L")  # the contract: 8-bit colour or 8-bit greyscale
MASK_MODES = ("L", "P", "I", "I;16", "1")  # single-channel integer ids
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a complete PNG ends with this empty IEND chunk


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the data directory
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} -> {self.fix}"


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    n_images: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)  # pixels (no masks: images)
    masks: bool = True  # False for class-folder datasets (classes.json "masks": false)
    max_pixels: int = 0  # the size limit files are opened under (validate.max_image_pixels)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        head = (f"{self.n_images} {'image/mask pairs' if self.masks else 'images'}: "
                + ("OK" if self.ok else f"{len(self.problems)} problem(s)"))
        lines = [head] + [f"  ERROR {p}" for p in self.problems]
        return "\n".join(lines + [f"  warning {w}" for w in self.warnings])


def validate_dataset(data_dir: Path, *, min_class_fraction: float, max_pixels: int
                     ) -> ValidationReport:
    """Check data_dir against the dataset contract; classes under min_class_fraction warn,
    images over max_pixels are refused undecoded."""
    data_dir = Path(data_dir)
    report = ValidationReport(max_pixels=max_pixels)
    classes = read_classes(data_dir, report)
    manifest = read_manifest(data_dir, report)
    if manifest is None:
        return report
    report.n_images = len(manifest)
    if manifest.empty:
        report.problems.append(Problem("manifest.csv", "the dataset is empty (no rows)",
                                       "add images, e.g. with `segen data import-pairs`"))
    if not has_masks(data_dir):
        return check_images_only(data_dir, manifest, classes, report)
    check_duplicates(manifest, report, ("id", "image", "mask"))
    check_unlisted(data_dir, manifest, report)
    pixels = np.zeros(max(len(classes), 1), np.int64)
    channels: dict[str, int] = {}
    for row in manifest.itertuples():
        check_label(row, classes, report)
        counts = check_pair(data_dir, str(row.image), str(row.mask), classes, channels, report)
        if counts is not None:
            pixels += counts[:len(pixels)]
    check_channels(channels, report)
    if classes and manifest.size:
        check_balance(classes, pixels, min_class_fraction, report, ignored_classes(data_dir))
        report.class_counts = {c: int(n) for c, n in zip(classes, pixels)}
    return report


def read_classes(data_dir: Path, report: ValidationReport) -> list[str]:
    try:
        classes = json.loads((data_dir / "classes.json").read_text())["classes"]
        if not (isinstance(classes, list) and len(classes) >= 2):
            raise ValueError(f"'classes' must list at least two names, got {classes!r}")
        return [str(c) for c in classes]
    except (OSError, ValueError, KeyError, TypeError) as err:
        report.problems.append(Problem("classes.json", f"missing or invalid ({err})",
                                       'write {"classes": ["background", ...]} (index = class id)'))
        return []


def has_masks(data_dir: Path) -> bool:
    """False only when classes.json says "masks": false (a class-folder dataset); a missing or
    broken classes.json is reported by read_classes."""
    try:
        return json.loads((data_dir / "classes.json").read_text()).get("masks", True) is not False
    except (OSError, ValueError, AttributeError):
        return True


def read_manifest(data_dir: Path, report: ValidationReport) -> pd.DataFrame | None:
    try:
        manifest = pd.read_csv(data_dir / "manifest.csv", dtype={"id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        report.problems.append(Problem("manifest.csv", f"missing or unreadable ({err})",
                                       "regenerate it (segen data import-pairs writes one)"))
        return None
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        report.problems.append(Problem("manifest.csv", f"missing column(s) {missing}",
                                       f"columns must include {list(REQUIRED_COLUMNS)}"))
        return None
    return manifest


def check_duplicates(manifest: pd.DataFrame, report: ValidationReport,
                     columns: tuple[str, ...]) -> None:
    for column in columns:
        for value in sorted(manifest[column][manifest[column].duplicated()].astype(str).unique()):
            report.problems.append(Problem("manifest.csv", f"{column} {value!r} appears more "
                                           "than once", "keep one row per image/mask pair"))


def check_unlisted(data_dir: Path, manifest: pd.DataFrame, report: ValidationReport) -> None:
    listed = set(manifest["image"].astype(str)) | set(manifest["mask"].astype(str))
    for folder in ("images", "masks"):
        for path in sorted((data_dir / folder).glob("*")):
            rel = path.relative_to(data_dir).as_posix()
            if rel not in listed:
                report.problems.append(Problem(rel, "not listed in manifest.csv (no pair)",
                                               "add a manifest row with its pair, or delete it"))


def check_label(row: Any, classes: list[str], report: ValidationReport) -> None:
    label = _class_id(row.label)
    if classes and not (label is not None and 0 <= label < len(classes)):
        report.problems.append(Problem(str(row.image), f"manifest label {row.label!r} is not "
                                       f"a class id in 0..{len(classes) - 1}",
                                       "fix its label column"))


def _class_id(value: Any) -> int | None:
    """The label as an int, judged per value: one bad or empty cell makes pandas read the whole
    column as str or float, and only that cell's row should be reported."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def open_decoded(data_dir: Path, rel: str, report: ValidationReport) -> Image.Image | None:
    """The fully decoded image, or None after recording why it is missing, outside data/,
    too large (report.max_pixels) or broken."""
    path = data_dir / rel
    if Path(rel).is_absolute() or not path.resolve().is_relative_to(data_dir.resolve()):
        report.problems.append(Problem(rel, f"outside the data folder (resolves to "
                                       f"{path.resolve()})", "copy the file into data/ and "
                                       "list it by its path inside data/"))
        return None
    if not path.is_file():
        report.problems.append(Problem(rel, "missing (listed in manifest.csv)",
                                       "restore the file or remove its manifest row"))
        return None
    try:
        image = open_image(path, max_pixels=report.max_pixels)
        if image.format == "PNG" and not _ends_like_png(path):
            raise ImageFileError(f"{path} ends before the PNG's IEND chunk (truncated); "
                                 "re-export or replace the file")
        return image
    except ImageFileError as err:
        report.problems.append(Problem(rel, str(err).replace(f"{path} ", "", 1),
                                       "re-export, replace or remove the file"))
        return None


def _ends_like_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - len(PNG_END), 0))
        return handle.read() == PNG_END


def check_pair(data_dir: Path, image_rel: str, mask_rel: str, classes: list[str],
               channels: dict[str, int], report: ValidationReport) -> np.ndarray | None:
    """The mask's pixel count per class id, or None when the pair is unusable."""
    image = open_decoded(data_dir, image_rel, report)
    mask = open_decoded(data_dir, mask_rel, report)
    image = usable_image(image, image_rel, channels, report)
    if mask is not None and mask.mode not in MASK_MODES:
        report.problems.append(Problem(mask_rel, f"mask has {len(mask.getbands())} channel(s) "
                                       f"(mode {mask.mode}); masks must be single-channel class "
                                       "ids", "convert it, e.g. import-pairs --class-map"))
        mask = None
    if image is None or mask is None:
        return None
    if image.size != mask.size:
        report.problems.append(Problem(mask_rel, f"size {mask.size[0]}x{mask.size[1]} differs "
                                       f"from its image {image_rel} ({image.size[0]}x"
                                       f"{image.size[1]})", "resize or re-export the pair"))
        return None
    return count_classes(mask, mask_rel, classes, report)


def usable_image(image: Image.Image | None, image_rel: str, channels: dict[str, int],
                 report: ValidationReport) -> Image.Image | None:
    """The image if its mode is allowed (its channel count recorded), else None."""
    if image is not None and image.mode not in IMAGE_MODES:
        report.problems.append(Problem(image_rel, f"image mode {image.mode} (expected "
                                       f"{' or '.join(IMAGE_MODES)}, 8-bit)",
                                       "convert it, e.g. re-import with segen data import-pairs"))
        image = None
    if image is not None:
        channels[image_rel] = len(image.getbands())
    return image


def count_classes(mask: Image.Image, mask_rel: str, classes: list[str],
                  report: ValidationReport) -> np.ndarray | None:
    if not classes:
        return None  # classes.json is already reported; ids can't be judged without it
    ids = np.asarray(mask).astype(np.int64).ravel()
    bad = np.unique(ids[(ids >= len(classes)) | (ids < 0)]).tolist()
    if bad:
        report.problems.append(Problem(mask_rel, f"class ids {bad} out of range (classes.json "
                                       f"has {len(classes)} classes: 0..{len(classes) - 1})",
                                       "fix the mask or add the classes to classes.json"))
        return None
    counts = np.bincount(ids, minlength=len(classes))
    if counts[0] == ids.size:
        report.warnings.append(Problem(mask_rel, "all background", "check the annotation"))
    return counts


def check_channels(channels: dict[str, int], report: ValidationReport) -> None:
    if len(set(channels.values())) <= 1:
        return
    majority, _ = Counter(channels.values()).most_common(1)[0]
    for rel, count in sorted(channels.items()):
        if count != majority:
            report.problems.append(Problem(rel, f"{count} channel(s) while most images have "
                                           f"{majority}", "convert every image to the same "
                                           "mode (all RGB or all greyscale)"))


def ignored_classes(data_dir: Path) -> set[str]:
    """The names classes.json lists under "ignore" (none when absent or unreadable: a broken
    classes.json is reported by read_classes)."""
    try:
        ignore = json.loads((data_dir / "classes.json").read_text()).get("ignore", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(name) for name in ignore} if isinstance(ignore, list) else set()


def check_balance(classes: list[str], pixels: np.ndarray, min_fraction: float,
                  report: ValidationReport, ignored: set[str] | frozenset[str] = frozenset()
                  ) -> None:
    """Warn of classes with no pixels or under min_fraction of them. Ignored classes are
    out of the loss and of every metric, so out of this check too: never warned of, and
    their pixels not counted in the total the fractions are taken of."""
    kept = [name not in ignored for name in classes]
    total = max(int(pixels[:len(classes)][kept].sum()), 1)
    for name, count, keep in zip(classes, pixels, kept):
        if not keep:
            continue
        if count == 0:
            report.warnings.append(Problem("masks/", f"class {name!r} has no pixels",
                                           "drop it from classes.json or add examples"))
        elif count / total < min_fraction:
            report.warnings.append(Problem("masks/", f"class {name!r} covers only "
                                           f"{count / total:.2%} of pixels", "expect poor scores "
                                           "on it; add examples or weight the loss"))


def check_images_only(data_dir: Path, manifest: pd.DataFrame, classes: list[str],
                      report: ValidationReport) -> ValidationReport:
    """A class-folder dataset (no masks): readable images of one channel count, labels in
    range, every class with images (fewer than 2 warn)."""
    report.masks = False
    check_duplicates(manifest, report, ("id", "image"))
    check_unlisted(data_dir, manifest, report)
    channels: dict[str, int] = {}
    for row in manifest.itertuples():
        check_label(row, classes, report)
        if not pd.isna(row.mask) and str(row.mask).strip():
            report.problems.append(Problem(str(row.image), f"manifest lists mask {row.mask!r} "
                                           'but classes.json says "masks": false',
                                           "empty its mask cell, or set masks true"))
        usable_image(open_decoded(data_dir, str(row.image), report), str(row.image), channels,
                     report)
    check_channels(channels, report)
    if classes and manifest.size:
        check_class_sizes(classes, manifest["label"], report)
    return report


def check_class_sizes(classes: list[str], labels: pd.Series, report: ValidationReport) -> None:
    ids = [i for i in map(_class_id, labels) if i is not None and 0 <= i < len(classes)]
    counts = np.bincount(np.array(ids, np.int64), minlength=len(classes))
    report.class_counts = {c: int(n) for c, n in zip(classes, counts)}
    for name, count in report.class_counts.items():
        if count == 0:
            report.problems.append(Problem("manifest.csv", f"class {name!r} has no images",
                                           "add images of it, or re-import without that class "
                                           "folder (labels index classes.json)"))
        elif count < 2:
            report.warnings.append(Problem("manifest.csv", f"class {name!r} has only {count} "
                                           "image", "add examples: it may land in one split only"))


class DataValidationError(ValueError):
    """The dataset has bad files; the message is the full report."""
