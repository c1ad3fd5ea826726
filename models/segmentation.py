"""The segmentation networks by name, as models.generative has the generators: one place
that says which architectures exist and what each takes.

    create("unet", in_channels=3, num_classes=4, depth=4, base_width=16)
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from models.unet import UNet

# name -> constructor taking architecture arguments only (no training settings, no I/O)
SEGMENTERS: dict[str, Callable[..., nn.Module]] = {"unet": UNet}


def create(name: str, **arch: Any) -> nn.Module:
    """A new, untrained network `name` built from its architecture arguments."""
    try:
        build = SEGMENTERS[name]
    except KeyError:
        raise ValueError(f"unknown segmentation model {name!r}; known: "
                         f"{', '.join(sorted(SEGMENTERS))}") from None
    return build(**arch)
