"""Stored uint8 pixels, (N, H, W, C) in [0, 255], to the float tensors networks take,
(N, C, H, W), and back: the one place images are scaled.

    to_zero_one     [0, 1]                  grids, and the step before standardise
    standardise     (x - mean) / std        the U-Net's input (train-split statistics)
    to_unit_range   [-1, 1], resized        generative models and the pinned extractor
    to_uint8        [-1, 1] -> uint8        generated images, stored like real ones
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def to_zero_one(images: Any) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1], on the input's device."""
    return _channels_first(images, "to_zero_one") / 255.0


def standardise(images: Any, mean: list[float], std: list[float]) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32, standardised per channel."""
    x = to_zero_one(images)
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def to_unit_range(images: Any, image_size: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, image_size, image_size) float32 in [-1, 1]; resized with
    antialiasing (bilinear) only when the stored size differs."""
    x = _channels_first(images, "to_unit_range")  # (N, C, H, W) in [0, 255]
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          antialias=True).clamp_(0, 255)
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 on the CPU."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(
        0, 2, 3, 1).cpu().numpy()


def _channels_first(images: Any, name: str) -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"{name} expects (N, H, W, C) uint8 images, got {tuple(x.shape)} "
                         f"{x.dtype}")
    return x.permute(0, 3, 1, 2).float()
