"""segen data import-classes and segen data builtin: class-folder datasets (no masks) for the
generative models. Imports stay light: heavy ones go inside handlers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

BUILTINS = ("digits",)


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli import command

    classes = command(data, "import-classes", "import one sub-folder of images per class "
                      "(no masks) as a new data version", _import_classes)
    classes.add_argument("root", type=Path, metavar="DIR",
                         help="folder holding one sub-folder of images per class")
    _common(classes)
    builtin = command(data, "builtin", "write a bundled dataset (no download) into data/ as a "
                      "new data version", _builtin)
    builtin.add_argument("name", choices=BUILTINS, help="digits: scikit-learn's 1797 "
                         "handwritten 8x8 digits, upscaled to 32x32 greyscale, 10 classes")
    _common(builtin)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (its data "
                        "section names the DVC remote)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary last")


def _import_classes(args: argparse.Namespace) -> int:
    from segen.class_importers import import_classes

    return _import(args, lambda data: import_classes(args.root, data))


def _builtin(args: argparse.Namespace) -> int:
    from segen.class_importers import import_digits

    return _import(args, import_digits)


def _import(args: argparse.Namespace, write: Callable[[Path], Any]) -> int:
    """Write data/ with `write`, then record it as `segen data import-pairs` does."""
    from segen.cli import params_path
    from segen.config import load_params
    from segen.data_lock import data_lock
    from tasks.version_data import track_data

    params = load_params(Path(params_path(args)))
    args.project.require_dvc()
    with data_lock(args.project, "segen data"):  # one writer of data/ at a time
        summary = write(args.project.data)
        version = track_data(args.project, params.data)
    if args.json:
        print(json.dumps({"data_version": version, "n_images": summary.n_images,
                          "classes": summary.classes, "per_class": summary.per_class,
                          "image_mode": summary.image_mode, "skipped": summary.skipped}))
    else:
        print(f"{summary}\nnew data version {version} (data.dvc updated; commit it with git)")
    return 0
