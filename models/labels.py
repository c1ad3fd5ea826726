"""The label value segen uses for pixels that take no part in training or scoring.

IGNORE_INDEX marks, in every mask segen writes (masks.npy) and in every target the losses
and metrics receive, the pixels that are out of the loss and out of every metric (IoU,
Dice, pixel accuracy, ARI, Hungarian-matched IoU): pixels of a class that classes.json
lists under "ignore" (e.g. "void", unlabelled pixels) and the padding that preprocess adds
at the bottom/right of each image to reach the common canvas.

255 is the usual choice (PASCAL VOC and Cityscapes write their void label as 255; it is
the largest uint8 value, so it never collides with a class id of a uint8 mask holding
fewer than 255 classes).
"""

from __future__ import annotations

IGNORE_INDEX = 255

__all__ = ["IGNORE_INDEX"]
