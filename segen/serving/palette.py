"""The one palette: class (or cluster) k has the same colour in every grid and overlay,
whatever the number of classes beside it (numpy only).

Id 0 (the background) is black; id k >= 1 takes the hue (k - 1) * golden ratio (mod 1), so
any number of ids stay apart and adding a class leaves the others' colours alone. Ids
below 0 (DBSCAN noise, clusters matched to no class) are grey, and so are ignored pixels
(IGNORE_INDEX: ignored classes and padding).
"""
from __future__ import annotations

import colorsys

import numpy as np

from models.labels import IGNORE_INDEX

GOLDEN = 0.61803398875  # hue step: consecutive ids land far apart on the hue wheel
NO_CLASS = (128, 128, 128)


def class_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours of ids 0..n-1."""
    rgb = [colorsys.hsv_to_rgb(((k - 1) * GOLDEN) % 1.0, 0.85, 1.0) if k else (0.0, 0.0, 0.0)
           for k in range(n)]
    return (np.array(rgb, dtype=np.float64).reshape(n, 3) * 255).round().astype(np.uint8)


def colourise(labels: np.ndarray) -> np.ndarray:
    """(...) integer ids -> (..., 3) uint8 RGB; ids below 0 and ignored pixels in grey."""
    labels = np.asarray(labels).astype(np.int64)
    unscored = (labels < 0) | (labels == IGNORE_INDEX)
    labels = np.where(unscored, 0, labels)
    out = class_colours(int(labels.max(initial=0)) + 1)[labels]
    out[unscored] = NO_CLASS
    return out
