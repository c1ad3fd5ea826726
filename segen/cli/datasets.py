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

    pairs = command(data, "import-pairs", "import paired image/mask folders as a new data "
                    "version", _import_pairs)
    pairs.add_argument("images_dir", type=Path)
    pairs.add_argument("masks_dir", type=Path)
    pairs.add_argument("--classes", nargs="+", help="class names, index 0 first")
    pairs.add_argument("--class-map", help='RGB palette masks: "R,G,B=name;R,G,B=name"')
    params_and_json(pairs, "its data section: the DVC remote")
    classes = command(data, "import-classes", "import one sub-folder of images per class "
                      "(no masks) as a new data version", _import_classes)
    classes.add_argument("root", type=Path, metavar="DIR",
                         help="folder holding one sub-folder of images per class")
    params_and_json(classes, "its data section: the DVC remote")
    builtin = command(data, "builtin", "write a bundled dataset (no download) into data/ as a "
                      "new data version", _builtin)
    builtin.add_argument("name", choices=BUILTINS, help="digits: scikit-learn's 1797 "
                         "handwritten 8x8 digits, upscaled to 32x32 greyscale, 10 classes")
    params_and_json(builtin, "its data section: the DVC remote")


def _import_pairs(args: argparse.Namespace) -> int:
    from segen.data.importers import import_pairs, parse_class_map

    class_map = parse_class_map(args.class_map) if args.class_map else None
    return _import(args, lambda data: import_pairs(args.images_dir, args.masks_dir, data,
                                                   classes=args.classes, class_map=class_map))


def _import_classes(args: argparse.Namespace) -> int:
    from segen.data.class_importers import import_classes

    return _import(args, lambda data: import_classes(args.root, data))


def _builtin(args: argparse.Namespace) -> int:
    from segen.data.class_importers import import_digits

    return _import(args, import_digits)


def _import(args: argparse.Namespace, write: Callable[[Path], Any]) -> int:
    """Write data/ with `write` (an importer returning its summary dataclass), then record it
    as a new DVC data version."""
    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.data.lock import data_lock
    from segen.data.versioning import track_data

    params = load_params(Path(params_path(args)))
    args.project.require_dvc()
    with data_lock(args.project, "segen data"):  # one writer of data/ at a time
        summary = write(args.project.data)
        version = track_data(args.project, params.data)
    if args.json:
        print(json.dumps({"data_version": version, **dataclasses.asdict(summary)}))
    else:
        print(f"{summary}\nnew data version {version} (data.dvc updated; commit it with git)")
    return 0
