"""The default dataset: shapes on textured backgrounds, procedurally and deterministically.

The same seed gives byte-identical PNGs and CSV (so the same DVC md5) on every machine:
each image draws from its own child of one SeedSequence, so image i never depends on
how many numbers image i-1 consumed, and Pillow (pinned) writes the PNG bytes.
Colour is never tied to class: a model has to tell classes apart by shape.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from segen.data.transaction import publish_folder

CLASSES = ["background", "circle", "square", "triangle", "star"]
PALETTES = {"warm": [(0.0, 0.17), (0.85, 1.0)], "cool": [(0.3, 0.72)]}  # hue ranges
BACKGROUNDS = ("noise", "stripes", "checker")
PNG_OPTIONS = {"compress_level": 6, "optimize": False}  # fixed: the bytes feed the DVC hash


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 class ids
    label: int
    background: str
    palette: str
    n_shapes: int


def generate_shapes_dataset(out_dir: Path, *, seed: int, n_images: int, image_size: int,
                            min_shapes: int, max_shapes: int, replace: bool = False) -> None:
    """Write images/, masks/, manifest.csv and classes.json, published atomically (replace:
    in place of an out_dir that holds data)."""
    _check_args(n_images, image_size, min_shapes, max_shapes)
    out_dir = Path(out_dir)
    if not replace and out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already holds data; remove it first (or use "
                              "`segen data generate --force`) to regenerate the default set.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-generate-", dir=out_dir.parent))
    try:
        _write_dataset(tmp, seed, n_images, image_size, min_shapes, max_shapes)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; data/ should read like any folder
        publish_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_args(n_images: int, image_size: int, min_shapes: int, max_shapes: int) -> None:
    if n_images < 1 or image_size < 16 or not 1 <= min_shapes <= max_shapes:
        raise ValueError(
            f"dataset params: expected n_images >= 1, image_size >= 16 and 1 <= min_shapes <= "
            f"max_shapes; got n_images={n_images}, image_size={image_size}, "
            f"min_shapes={min_shapes}, max_shapes={max_shapes}. Fix the dataset section of "
            "params.yaml.")


def _write_dataset(root: Path, seed: int, n: int, size: int, lo: int, hi: int) -> None:
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rows = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        sample = make_sample(np.random.default_rng(child), size, lo, hi)
        name = f"img_{i:05d}"
        Image.fromarray(sample.image, "RGB").save(root / "images" / f"{name}.png", **PNG_OPTIONS)
        Image.fromarray(sample.mask, "L").save(root / "masks" / f"{name}.png", **PNG_OPTIONS)
        rows.append({"id": name, "image": f"images/{name}.png", "mask": f"masks/{name}.png",
                     "label": sample.label, "background": sample.background,
                     "palette": sample.palette, "n_shapes": sample.n_shapes})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False, lineterminator="\n")
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES}, indent=1) + "\n")


def make_sample(rng: np.random.Generator, size: int, lo: int, hi: int) -> Sample:
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    palette = ("warm", "cool")[rng.integers(2)]
    image = _background(rng, size, background)
    mask = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint16)  # 1 + index of the shape on top, 0 = none
    n_shapes = int(rng.integers(lo, hi + 1))
    kinds = [int(rng.integers(1, len(CLASSES))) for _ in range(n_shapes)]
    for index, cls in enumerate(kinds):
        inside = _shape_mask(rng, size, CLASSES[cls])
        colour = _colour(rng, palette) + rng.normal(0, 6, (size, size, 3))  # shading noise
        image = np.where(inside[..., None], colour, image)  # later shapes paint over earlier
        mask[inside] = cls
        instances[inside] = index + 1
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    return Sample(image, mask, _largest_visible(instances, kinds), background, palette, n_shapes)


def _largest_visible(instances: np.ndarray, kinds: list[int]) -> int:
    """Class of the shape with the most visible pixels (0 if every shape is hidden)."""
    visible = np.bincount(instances.ravel(), minlength=len(kinds) + 1)[1:]
    return kinds[int(visible.argmax())] if visible.any() else 0


def _background(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """(H, W, 3) float: greyish two-tone gradient, stripes or checker, plus gaussian noise.

    Low saturation and mid value so the saturated, bright shapes always stand out.
    """
    a, b = (np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.25),
                                         rng.uniform(0.2, 0.65))) * 255 for _ in range(2))
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, math.pi)
    along = np.cos(angle) * xx + np.sin(angle) * yy
    if kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(3, 7) * along)
    elif kind == "checker":
        across = -np.sin(angle) * xx + np.cos(angle) * yy
        cells = rng.uniform(3, 6)  # squares per side
        t = ((np.floor(along * cells) + np.floor(across * cells)) % 2).astype(float)
    else:
        t = (along - along.min()) / max(along.max() - along.min(), 1e-9)
    base = a + t[..., None] * (b - a)
    return base + rng.normal(0, 12, (size, size, 3))


def _colour(rng: np.random.Generator, palette: str) -> np.ndarray:
    ranges = PALETTES[palette]
    low, high = ranges[rng.integers(len(ranges))]
    rgb = colorsys.hsv_to_rgb(rng.uniform(low, high), rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return np.array(rgb) * 255


def _shape_mask(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """Boolean (H, W) of one shape; size 9-21% of the side, anywhere mostly inside."""
    radius = size * rng.uniform(0.09, 0.21)
    cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
    turn = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        r = radius * 0.8  # area 2.0 r^2, like every other kind: no class is the big one
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(_polygon(kind, cx, cy, radius, turn), fill=1)
    return np.asarray(canvas, dtype=bool)


def _polygon(kind: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Corners of a square, triangle or star, each scaled to an area of 2.0 r^2."""
    if kind == "square":
        radii, corners = [r] * 4, 4
    elif kind == "triangle":
        radii, corners = [r * 1.24] * 3, 3
    else:  # a five-pointed star: alternating outer and inner radii
        radii, corners = [r * 1.3, r * 0.53] * 5, 10
    return [(cx + rad * math.cos(turn + 2 * math.pi * k / corners),
             cy + rad * math.sin(turn + 2 * math.pi * k / corners))
            for k, rad in enumerate(radii)]
