"""The U-Net and the torchvision model side by side on a generated non-square dataset with a
void label, thin classes and a given split: what a road-scene dataset asks of segen.

Data (written here, seeded): 4:3 street scenes (--width x --height, default 128x96) with
sky, building, road, pole (2-3 px wide: a thin class), pedestrian (small) and a void label
over unlabelled clutter (random-colour blobs) and a strip along the bottom (the car's
bonnet, as road-scene datasets leave unlabelled). Every fourth image is portrait (the
transpose of a scene), so the canvas pads. Folders train/, val/, test/ under images/ and
masks/ are imported with `segen data import-pairs --split-dirs --ignore void`, so the
split is the given one and void is out of the loss and every score.

Run: `segen run --json --stages compare_segmenters` with torchvision.enabled true,
preprocess.long_side = the long side (no resize), and the budgets below. Figures: each
model's test mean IoU and per-class IoU (evaluate_unet / evaluate_torchvision, void out),
beside a floor (predict the train split's most frequent class everywhere) and the
comparison table (compare_segmenters).

Usage:  .venv/bin/python bench/void_labels.py [--train N --val N --test N]
            [--unet-epochs E --torchvision-epochs E --arch A] [--keep]
Writes bench/out/void_labels.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bench_environment,
    busy_warning,
    fresh_dir,
    init_project,
    last_json,
    machine,
    segen_exe,
    table,
    timed_run,
    write_json,
)

CLASSES = ["sky", "building", "road", "pole", "pedestrian", "void"]
VOID = CLASSES.index("void")


def scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 street scene and its (H, W) uint8 class ids. Colour alone does
    not name a class: sky runs from blue to overcast grey, as grey as the road can be;
    every building block, pole and pedestrian has a colour of its own from one shared
    range; windows and lane markings (of the building and the road) break each region up;
    shadows, sensor noise and a blur over the thin poles' edges, as a camera gives."""
    from PIL import Image, ImageFilter

    mask = np.full((height, width), CLASSES.index("sky"), np.uint8)
    image = np.zeros((height, width, 3), np.float64)
    overcast = rng.uniform()
    image[:] = (1 - overcast) * np.array([100, 150, 225]) + overcast * rng.uniform(120, 190)
    horizon = int(rng.uniform(0.35, 0.55) * height)
    x = 0
    while x < width:  # buildings: blocks of random width, height and colour, with windows
        w, top = int(rng.integers(width // 10, width // 4)), int(rng.uniform(0.05, 0.3) * height)
        mask[top:horizon, x:x + w] = CLASSES.index("building")
        image[top:horizon, x:x + w] = rng.uniform(40, 200, 3)
        window = rng.uniform(20, 230, 3)
        for wy in range(top + 2, horizon - 3, 6):
            for wx in range(x + 2, min(x + w, width) - 2, 5):
                image[wy:wy + 3, wx:wx + 2] = window
        x += w + int(rng.integers(0, width // 12))
    mask[horizon:] = CLASSES.index("road")
    image[horizon:] = rng.uniform(50, 150)
    lane = (horizon + height) // 2
    for lx in range(int(rng.integers(0, 8)), width, 14):  # lane markings, labelled road
        image[lane:lane + 2, lx:lx + 7] = 235
    for _ in range(rng.integers(1, 4)):  # poles: thin, from the road up past the horizon
        x, w = int(rng.integers(0, width - 3)), int(rng.integers(2, 4))
        rows = slice(int(rng.uniform(0.1, 0.3) * height),
                     int(horizon + rng.uniform(0.1, 0.3) * height))
        mask[rows, x:x + w] = CLASSES.index("pole")
        image[rows, x:x + w] = rng.uniform(40, 200, 3)
    for _ in range(rng.integers(0, 4)):  # pedestrians: small, standing on the road
        h, w = int(rng.integers(height // 10, height // 6)), int(rng.integers(3, 7))
        foot, x = int(rng.integers(horizon + h // 2, height - 4)), int(rng.integers(0, width - w))
        mask[foot - h:foot, x:x + w] = CLASSES.index("pedestrian")
        image[foot - h:foot, x:x + w] = rng.uniform(20, 235, 3)
        image[foot - h:foot - h + max(2, h // 5), x:x + w] = rng.uniform(120, 220)  # a head
    for _ in range(rng.integers(2, 6)):  # unlabelled clutter: void blobs of any colour
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(3, 9)
        yy, xx = np.ogrid[:height, :width]
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        mask[blob], image[blob] = VOID, rng.uniform(0, 255, 3)
    bonnet = height - max(2, height // 16)
    mask[bonnet:], image[bonnet:] = VOID, rng.uniform(0, 255, 3)
    if rng.uniform() < 0.5:  # a shadow across part of the scene
        left = int(rng.integers(0, width // 2))
        image[:, left:left + width // 3] *= rng.uniform(0.5, 0.8)
    image += rng.normal(0, 20, image.shape)
    blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.7))
    return np.asarray(blurred), mask


def write_dataset(root: Path, counts: dict[str, int], height: int, width: int,
                  seed: int) -> dict[str, np.ndarray]:
    """images/<split>/*.png and masks/<split>/*.png; returns each split's pixel counts per
    class."""
    from PIL import Image

    rng, pixels = np.random.default_rng(seed), {}
    for split, n in counts.items():
        pixels[split] = np.zeros(len(CLASSES), np.int64)
        for folder in ("images", "masks"):
            (root / folder / split).mkdir(parents=True)
        for i in range(n):
            image, mask = scene(rng, height, width)
            if i % 4 == 3:  # portrait: another aspect ratio in the same split
                image, mask = image.transpose(1, 0, 2).copy(), mask.T.copy()
            Image.fromarray(image).save(root / "images" / split / f"{split}{i:04d}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"{split}{i:04d}.png")
            pixels[split] += np.bincount(mask.ravel(), minlength=len(CLASSES))
    return pixels


def majority_floor(pixels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test mean IoU of predicting the train split's most frequent (non-void) class at every
    pixel: that class scores its test share, every other present class 0."""
    train, test = pixels["train"][:VOID], pixels["test"][:VOID]
    majority = int(np.argmax(train))
    return {"class": CLASSES[majority], "mean_iou": float(test[majority] / test.sum()
                                                           / np.count_nonzero(test))}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=160)
    p.add_argument("--val", type=int, default=24)
    p.add_argument("--test", type=int, default=48)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--unet-epochs", type=int, default=30)
    p.add_argument("--torchvision-epochs", type=int, default=30)
    p.add_argument("--arch", default="deeplabv3_resnet18")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the /tmp work folder")
    return p.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    recipe = {"batch_size": 8, "augment": True, "crop_size": None, "seed": args.seed}
    return {"preprocess": {"image_size": None, "long_side": max(args.width, args.height),
                           "pad_multiple": 16},
            "validate": {"min_class_fraction": 0.0},
            "unet": {**recipe, "epochs": args.unet_epochs},
            "torchvision": {**recipe, "enabled": True, "arch": args.arch,
                            "epochs": args.torchvision_epochs}}


def stage_metrics(root: Path, keys: dict[str, str], stage: str) -> dict[str, Any]:
    return json.loads((root / ".segen" / "store" / stage / keys[stage] / "metrics.json")
                      .read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warning = busy_warning()
    work = fresh_dir("segen-bench-void-", keep=args.keep)
    env = {**os.environ, **bench_environment(work / "state")}
    root = work / "proj"
    params = init_project(root, overrides(args))
    counts = {"train": args.train, "val": args.val, "test": args.test}
    pixels = write_dataset(work / "src", counts, args.height, args.width, args.seed)
    cli = [*segen_exe(), "--project", str(root)]
    _, proc = timed_run([*cli, "data", "import-pairs", str(work / "src/images"),
                         str(work / "src/masks"), "--split-dirs", "--classes", *CLASSES,
                         "--ignore", "void", "--params", str(params)], cwd=root, env=env)
    print("  " + proc.stdout.strip().replace("\n", "\n  "), flush=True)
    run_s, proc = timed_run([*cli, "run", "--json", "--stages", "compare_segmenters",
                             "--params", str(params)], cwd=root, env=env, timeout=3 * 3600)
    keys = {s["name"]: s["key"] for s in last_json(proc.stdout)["stages"]}
    models = {}
    for model in ("unet", "torchvision"):
        metrics = stage_metrics(root, keys, f"evaluate_{model}")
        iou = dict(zip(metrics["classes"], metrics["iou_per_class"]))
        if iou.pop("void") is not None:  # ignored: no pixel of it is scored or predicted
            raise AssertionError(f"{model} scored the void class: {metrics}")
        models[model] = {"mean_iou": metrics["mean_iou"], "mean_dice": metrics["mean_dice"],
                         "pixel_accuracy": metrics["pixel_accuracy"], "iou_per_class": iou}
    comparison = json.loads((root / ".segen" / "store" / "compare_segmenters"
                             / keys["compare_segmenters"] / "comparison.json").read_text())
    results = {"images": counts, "size": [args.height, args.width], "arch": args.arch,
               "epochs": {"unet": args.unet_epochs, "torchvision": args.torchvision_epochs},
               "void_fraction": {s: float(p[VOID] / p.sum()) for s, p in pixels.items()},
               "models": models, "floor": majority_floor(pixels),
               "comparison": comparison["rows"], "segen_run_seconds": run_s,
               "machine": machine(), "warning": warning}
    path = write_json("void_labels", results)
    rows = [("test images", f"{args.test} given (of {sum(counts.values())}), "
                            f"{args.width}x{args.height} and portrait, void "
                            f"{results['void_fraction']['test']:.1%} of test pixels"),
            ("floor", f"mean IoU {results['floor']['mean_iou']:.3f} (always "
                      f"{results['floor']['class']})")]
    for model, row in models.items():
        rows.append((f"{model} mean IoU", f"{row['mean_iou']:.3f} (pixel accuracy "
                                          f"{row['pixel_accuracy']:.3f})"))
        rows.append((f"{model} per class", ", ".join(f"{c} {v:.2f}" for c, v in
                                                     row["iou_per_class"].items())))
    rows.append(("segen run", f"{run_s:.0f} s (import to compare_segmenters)"))
    print(table(rows, "void labels, given split, non-square: U-Net vs torchvision"))
    if warning:
        print(warning)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
