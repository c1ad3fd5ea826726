"""Differentiable augmentation for GANs on small datasets (DiffAugment: Zhao, Liu, Lin, Zhu &
Han, "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020,
arXiv:2006.10738; the operations and ranges of its official DiffAugment_pytorch.py).

The same random transform family is applied to real and generated images wherever the
discriminator sees them, in its own update and in the generator's, so D cannot tell reals
by their lack of augmentation and G gets gradients through the transform (every operation
is differentiable in the image). Images (B, C, H, W) in [-1, 1]; each image draws its own
parameters from `generator`, so a seeded run augments the same way again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.generative.noise import per_row

OPERATIONS = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the side, zero padded (the paper's)
CUTOUT_RATIO = 0.5  # erase a square of half the side (the paper's)


def diff_augment(x: Tensor, policy: tuple[str, ...],
                 generator: torch.Generator | None = None) -> Tensor:
    """x transformed by each operation of `policy` in turn (an empty policy: x itself)."""
    unknown = set(policy) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"DiffAugment operations are {OPERATIONS}, got {sorted(unknown)}")
    for name in policy:
        x = _OPS[name](x, generator)
    return x


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, 1, 1, 1) uniform [0, 1) per image."""
    return per_row(x.shape[0], 1, 1, 1, normal=False, device=x.device, dtype=x.dtype,
                   generator=generator)


def color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Brightness + [-0.5, 0.5), saturation x [0, 2), contrast x [0.5, 1.5), per image."""
    x = x + (_uniform(x, generator) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (_uniform(x, generator) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def translation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted by whole pixels, up to TRANSLATION_RATIO of each side, with zeros
    (grey) filling in: nearest-neighbour sampling at an integer offset moves pixels exactly."""
    b, _, h, w = x.shape
    limits = torch.tensor([int(w * TRANSLATION_RATIO + 0.5), int(h * TRANSLATION_RATIO + 0.5)],
                          device=x.device)
    rand = per_row(b, 2, normal=False, device=x.device, generator=generator)
    shift = (rand * (2 * limits + 1)).floor() - limits  # (B, 2) integers in [-limit, limit]
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / w  # normalised units: 2 / side per pixel
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A square of CUTOUT_RATIO of each side set to zero (grey), at a random centre per image
    (it may hang over the border, as the paper's does)."""
    b, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    rand = per_row(b, 2, normal=False, device=x.device, generator=generator)
    top = (rand[:, 0] * (h + 1 - size_h % 2)).floor() - size_h // 2  # (B,) may be < 0
    left = (rand[:, 1] * (w + 1 - size_w % 2)).floor() - size_w // 2
    rows = torch.arange(h, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=x.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)  # (B, H)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)  # (B, W)
    erased = inside_rows[:, :, None] & inside_cols[:, None, :]  # (B, H, W)
    return x * (~erased)[:, None].to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}
