"""segen data import-pairs (images with masks), import-classes and builtin (class-folder
datasets, no masks, for the generative models): each writes data/ and records a new data
version. Imports stay light: heavy ones go inside handlers."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

BUILTINS = ("digits",)


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli.main import command, params_and_json

    pairs = command(data, "import-pairs", "import paired image/mask folders (or TIFF stacks) "
                    "as a new data version", _import_pairs, writes=True)
    pairs.epilog = (
        "Layouts: IMAGES MASKS, two folders paired by file stem, or two multi-page TIFF stacks "
        "(one sample per slice); with --split-dirs, IMAGES and MASKS hold train/, val/, test/ "
        "(the split is kept); with --mask-dirs, IMAGES and one folder of binary masks per "
        "class (class 0 'background' is the pixels in no mask; where masks overlap, the class "
        "given later wins). Images wider than 8 bits are mapped to 8 bits linearly from the "
        "dataset's range.")
    pairs.add_argument("images_dir", type=Path)
    pairs.add_argument("masks_dir", type=Path, nargs="?")
    pairs.add_argument("--classes", nargs="+", help="class names, index 0 first")
    pairs.add_argument("--class-map", help='RGB palette masks: "R,G,B=name;R,G,B=name"')
    pairs.add_argument("--ignore", nargs="+", metavar="CLASS", default=[],
                       help="classes out of the loss, every score and every prediction "
                            "(e.g. --ignore void)")
    pairs.add_argument("--split-dirs", action="store_true",
                       help="IMAGES and MASKS each hold train/, val/ and test/ sub-folders")
    pairs.add_argument("--mask-dirs", nargs="+", metavar="NAME=DIR",
                       help="one folder of binary masks per class, or one DIR whose "
                            "sub-folders are the classes (in name order)")
    params_and_json(pairs, "its data section (the DVC remote) and validate.max_image_pixels")
    nnunet = command(data, "import-nnunet", "import an nnU-Net v2 raw dataset folder "
                     "(imagesTr/, labelsTr/, dataset.json; 2-D cases) as a new data version",
                     _import_nnunet, writes=True)
    nnunet.add_argument("root", type=Path, metavar="DIR", help="e.g. Dataset001_Membranes")
    nnunet.add_argument("--ignore", nargs="+", metavar="CLASS", default=[],
                        help="classes to ignore besides dataset.json's own 'ignore' label")
    params_and_json(nnunet, "its data section (the DVC remote) and validate.max_image_pixels")
    classes = command(data, "import-classes", "import one sub-folder of images per class "
                      "(no masks) as a new data version", _import_classes,
                      writes=True)
    classes.add_argument("root", type=Path, metavar="DIR",
                         help="folder holding one sub-folder of images per class")
    params_and_json(classes, "its data section: the DVC remote")
    builtin = command(data, "builtin", "write a bundled dataset (no download) into data/ as a "
                      "new data version", _builtin, writes=True)
    builtin.add_argument("name", choices=BUILTINS, help="digits: scikit-learn's 1797 "
                         "handwritten 8x8 digits, upscaled to 32x32 greyscale, 10 classes")
    params_and_json(builtin, "its data section: the DVC remote")


def _import_pairs(args: argparse.Namespace) -> int:
    from segen.data import layouts
    from segen.data.importers import import_layout, parse_class_map

    class_map = parse_class_map(args.class_map) if args.class_map else None

    def layout(max_pixels: int) -> layouts.Layout:
        if args.mask_dirs:
            if args.masks_dir is not None or args.split_dirs:
                raise ValueError("--mask-dirs takes the place of MASKS_DIR and --split-dirs: "
                                 "give IMAGES_DIR --mask-dirs NAME=DIR ...")
            return layouts.class_folders_layout(args.images_dir, _mask_dirs(args.mask_dirs),
                                                max_pixels=max_pixels)
        if args.masks_dir is None:
            raise ValueError("import-pairs needs MASKS_DIR (or --mask-dirs NAME=DIR ...)")
        read = layouts.split_dirs_layout if args.split_dirs else layouts.pair_layout
        return read(args.images_dir, args.masks_dir, max_pixels=max_pixels)

    sources = tuple(p for p in (args.images_dir, args.masks_dir) if p is not None)
    return _import(args, lambda data, max_pixels: import_layout(
        layout(max_pixels), data, classes=args.classes, class_map=class_map,
        ignore=args.ignore, max_pixels=max_pixels, sources=sources))


def _mask_dirs(values: list[str]) -> dict[str, Path]:
    """NAME=DIR pairs in order, or one DIR whose sub-folders are the classes."""
    if len(values) == 1 and "=" not in values[0]:
        root = Path(values[0])
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not folders:
            raise ValueError(f"--mask-dirs {root}: expected a folder with one sub-folder of "
                             "binary masks per class, or NAME=DIR pairs")
        return {p.name: p for p in folders}
    pairs = [v.partition("=") for v in values]
    if bad := [v for v, (name, eq, folder) in zip(values, pairs) if not (name and eq and folder)]:
        raise ValueError(f"--mask-dirs {' '.join(bad)}: expected NAME=DIR, e.g. "
                         "membrane=masks/membrane")
    return {name: Path(folder) for name, _, folder in pairs}


def _import_nnunet(args: argparse.Namespace) -> int:
    from segen.data.importers import import_layout
    from segen.data.layouts import nnunet_layout

    return _import(args, lambda data, max_pixels: import_layout(
        nnunet_layout(args.root, max_pixels=max_pixels), data, classes=None, class_map=None,
        ignore=args.ignore, max_pixels=max_pixels, sources=(args.root,)))


def _import_classes(args: argparse.Namespace) -> int:
    from segen.data.class_importers import import_classes

    return _import(args, lambda data, max_pixels: import_classes(args.root, data,
                                                                 max_pixels=max_pixels))


def _builtin(args: argparse.Namespace) -> int:
    from segen.data.class_importers import import_digits

    return _import(args, lambda data, max_pixels: import_digits(data, max_pixels=max_pixels))


def _import(args: argparse.Namespace, write: Callable[[Path, int], Any]) -> int:
    """Write data/ with `write(data, max_pixels)` (an importer returning its summary
    dataclass), then record it as a new DVC data version."""
    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.data.transaction import data_change
    from segen.data.versioning import track_data

    params = load_params(Path(params_path(args)))
    args.project.require_dvc()
    with data_change(args.project):  # a kill inside is rolled back by the next writer
        summary = write(args.project.data, params.validate.max_image_pixels)
        version = track_data(args.project, params.data)
    if args.json:
        print(json.dumps({"data_version": version, **dataclasses.asdict(summary)}))
    else:
        print(f"{summary}\nnew data version {version} (data.dvc updated; commit it with git)")
    return 0
