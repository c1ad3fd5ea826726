"""Where an import's samples come from: the layouts users keep segmentation data in.

- pairs: an image folder and a mask folder matched by file stem, or two multi-page TIFF
  stacks (one slice per sample); a multi-page TIFF inside a folder is a stack too;
- split dirs: the same under train/, val/ and test/ sub-folders (the split is kept);
- class folders: an image folder and one folder of binary masks per class;
- nnU-Net v2 raw: imagesTr/, labelsTr/, optional imagesTs/ + labelsTs/, and dataset.json.

Every file is checked to lie inside its folder (symlinks resolved), and stacks have as
many mask slices as image slices. Nothing is decoded here but TIFF headers.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from segen.data.image_files import ImageFileError, inside, n_pages

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless only: JPEG smears class ids
SPLITS = ("train", "val", "test")
LIST_AT_MOST = 20  # names shown in one error message
Pairs = dict[str, tuple[Path, Path]]  # id (the shared file stem) -> (image file, mask file)


class LayoutError(ImageFileError):
    """The folders do not form the layout asked for; the message says what and how to fix."""


@dataclass(frozen=True)
class Frame:
    """One 2-D image: a file, or one slice (page) of a multi-page TIFF."""
    path: Path
    page: int = 0

    def __str__(self) -> str:
        return f"{self.path} (slice {self.page + 1})" if self.page else str(self.path)


@dataclass(frozen=True)
class Sample:
    id: str
    image: Frame
    mask: Frame | None = None  # a class-id, binary or palette mask
    class_masks: tuple[tuple[int, Frame], ...] = ()  # (class id, binary mask): later wins
    split: str = ""  # train | val | test, or "" for the seeded split


@dataclass(frozen=True)
class Layout:
    samples: list[Sample]
    classes: list[str] | None = None  # named by the layout itself (class folders, nnU-Net)
    ignore: tuple[str, ...] = ()  # classes the layout marks as ignored (nnU-Net "ignore")


def pair_layout(images: Path, masks: Path, *, max_pixels: int, split: str = "") -> Layout:
    """Images and masks matched by stem (folders), or slice by slice (two TIFF stacks)."""
    if images.is_file() and masks.is_file():
        pairs = {images.stem: (images, masks)}
    else:
        pairs = pair_files(images, masks)
    return Layout([s for stem, (image, mask) in pairs.items()
                   for s in _slices(stem, image, mask, max_pixels, split)])


def split_dirs_layout(images: Path, masks: Path, *, max_pixels: int) -> Layout:
    """train/, val/, test/ under both roots (at least train/ and test/ with masks)."""
    present = [s for s in SPLITS if (images / s).is_dir()]
    if not {"train", "test"} <= set(present):
        raise LayoutError(f"--split-dirs: {images} has sub-folders {_subfolders(images)}; "
                          "expected train/ and test/ (val/ optional), each with a matching "
                          f"folder under {masks}")
    samples = [sample for split in present for sample in
               pair_layout(images / split, masks / split, max_pixels=max_pixels,
                           split=split).samples]
    return Layout(_unique_ids(samples))


def class_folders_layout(images: Path, mask_dirs: dict[str, Path], *, max_pixels: int
                         ) -> Layout:
    """One binary mask per image in every class folder, matched by stem.

    Class 0 is "background": the pixels in no mask. Where masks overlap, the class given
    later wins (give thin structures last, e.g. membrane after cell)."""
    if not mask_dirs:
        raise LayoutError("--mask-dirs: expected NAME=DIR for each class, e.g. "
                          "--mask-dirs membrane=masks/membrane mitochondria=masks/mito")
    if "background" in mask_dirs:
        raise LayoutError("--mask-dirs: 'background' is class 0, the pixels in no mask; give "
                          "only the foreground classes")
    per_class = {name: pair_files(images, folder) for name, folder in mask_dirs.items()}
    stems = list(next(iter(per_class.values())))
    samples = [Sample(stem, Frame(per_class[next(iter(per_class))][stem][0]),
                      class_masks=tuple((i + 1, Frame(pairs[stem][1]))
                                        for i, pairs in enumerate(per_class.values())))
               for stem in stems]
    return Layout(samples, ["background", *mask_dirs])


def nnunet_layout(root: Path, *, max_pixels: int) -> Layout:
    """nnU-Net v2 raw data (Isensee et al. 2021): 2-D cases <case>_0000.<ext> (one image
    file per case: greyscale, or RGB as nnU-Net's natural-image reader takes it) and
    labels <case>.<ext>; dataset.json's "labels" maps names to ids, and its "ignore" label
    is ignored here too. imagesTs/ becomes the test split where labelsTs/ exists."""
    doc = _nnunet_json(root)
    labels: dict[str, int] = doc["labels"]
    ids = sorted(labels.values())
    if ids != list(range(len(ids))):
        raise LayoutError(f"{root / 'dataset.json'}: labels {labels} are not the ids 0..K-1; "
                          "segen imports plain label maps (no regions)")
    classes = [name for name, _ in sorted(labels.items(), key=lambda item: item[1])]
    ending = doc.get("file_ending", ".png")
    samples = _nnunet_cases(root / "imagesTr", root / "labelsTr", ending, "")
    if (root / "labelsTs").is_dir():
        samples += _nnunet_cases(root / "imagesTs", root / "labelsTs", ending, "test")
    return Layout(_unique_ids(samples), classes, ("ignore",) if "ignore" in labels else ())


def _nnunet_json(root: Path) -> dict:
    path = root / "dataset.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LayoutError(f"{path}: not a readable nnU-Net dataset.json ({err})") from None
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
        raise LayoutError(f"{path}: expected a \"labels\" map of name -> int id, e.g. "
                          '{"background": 0, "membrane": 1}')
    channels = doc.get("channel_names", {"0": ""})
    if len(channels) != 1 and [str(v).upper() for v in channels.values()] != ["R", "G", "B"]:
        raise LayoutError(f"{path}: {len(channels)} channels in separate files; segen imports "
                          "one image file per case (greyscale or RGB)")
    return doc


def _nnunet_cases(images: Path, labels: Path, ending: str, split: str) -> list[Sample]:
    found = {}
    for path in _listed(images, (ending,)):
        case, _, channel = path.name[:-len(ending)].rpartition("_")
        if channel != "0000" or not case:
            raise LayoutError(f"{path}: expected <case>_0000{ending} (nnU-Net's channel suffix)")
        found[case] = path
    lone = [c for c in found if not (labels / f"{c}{ending}").is_file()]
    if lone:
        raise LayoutError(f"{len(lone)} case(s) in {images} have no label in {labels}: "
                          f"{listing(lone)}")
    return [Sample(case, Frame(path), Frame(inside(labels / f"{case}{ending}", labels)),
                   split=split) for case, path in found.items()]


def pair_files(images_dir: Path, masks_dir: Path) -> Pairs:
    """Pairs by stem, naturally sorted ("2" before "10"); one error lists every lone file."""
    images = _files_by_stem(images_dir, IMAGE_SUFFIXES)
    masks = _files_by_stem(masks_dir, MASK_SUFFIXES)
    lone_images = sorted(images[s].name for s in images.keys() - masks.keys())
    lone_masks = sorted(masks[s].name for s in masks.keys() - images.keys())
    if lone_images or lone_masks:
        raise LayoutError(
            f"{len(lone_images) + len(lone_masks)} file(s) have no partner with the same stem: "
            f"images without a mask in {images_dir}: {listing(lone_images)}; masks without an "
            f"image in {masks_dir}: {listing(lone_masks)}. Add the missing partners, rename "
            f"them to match, or move the extras out (masks must be {MASK_SUFFIXES}).")
    order = sorted(images, key=lambda s: [int(t) if t.isdigit() else t
                                          for t in re.split(r"(\d+)", s)])
    return {stem: (images[stem], masks[stem]) for stem in order}


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _listed(folder, suffixes):
        if path.stem in found:
            raise LayoutError(f"{found[path.stem]} and {path} share a stem, so neither can be "
                              "paired; keep one file per stem")
        found[path.stem] = path
    return found


def _listed(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The folder's image files (no hidden ones), each checked to stay inside it."""
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder; expected a folder of {suffixes} files")
    files = [inside(path, folder, "source") for path in sorted(folder.iterdir())
             if path.suffix.lower() in suffixes and path.name[0] != "." and
             (path.is_file() or path.is_symlink())]
    if not files:
        raise LayoutError(f"{folder} holds no {suffixes} files; check the path")
    return files


def _slices(stem: str, image: Path, mask: Path, max_pixels: int, split: str) -> list[Sample]:
    """One sample per slice of a pair (a plain image pair: one)."""
    pages = [n_pages(p, max_pixels=max_pixels) if p.suffix.lower() in (".tif", ".tiff") else 1
             for p in (image, mask)]
    if pages[0] != pages[1]:
        raise LayoutError(f"{image} has {pages[0]} slice(s) but its mask {mask} has "
                          f"{pages[1]}; expected one mask slice per image slice")
    if pages[0] == 1:
        return [Sample(stem, Frame(image), Frame(mask), split=split)]
    return [Sample(f"{stem}_{i:03d}", Frame(image, i), Frame(mask, i), split=split)
            for i in range(pages[0])]


def _unique_ids(samples: list[Sample]) -> list[Sample]:
    """Ids made unique across splits by prefixing the split where two share a name."""
    ids = [s.id for s in samples]
    if len(set(ids)) == len(ids):
        return samples
    return [Sample(f"{s.split or 'train'}_{s.id}", s.image, s.mask, s.class_masks, s.split)
            for s in samples]


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def listing(items: list[str]) -> str:
    more = f" ... and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else ""
    return (", ".join(items[:LIST_AT_MOST]) or "none") + more


