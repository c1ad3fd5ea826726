"""U-Net for semantic segmentation.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (arXiv:1505.04597).

Differences from the paper, on purpose:
- 3x3 convs use padding=1 ("same" size), where the paper uses unpadded ("valid")
  convs. The output is then the input's size and the skip needs no centre-crop, at
  the price of needing H and W divisible by 2**depth (see `required_multiple`).
- BatchNorm after each conv (Ioffe & Szegedy 2015), which the 2015 paper predates;
  it lets small batches train at higher learning rates.
- Depth and base width are parameters: the paper is depth=4, base_width=64.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def required_multiple(depth: int) -> int:
    """H and W must be multiples of this: each of `depth` 2x2 max-pools halves them,
    and the transposed convs must restore exactly the skip's size to concatenate."""
    _check_int("depth", depth, minimum=1)
    return 2**depth


def _check_int(name: str, value: int, *, minimum: int) -> None:
    # bool is a subclass of int; reject it so that `depth=True` is not read as 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class DoubleConv(nn.Sequential):
    """(conv3x3 -> BatchNorm -> ReLU) x 2: (B, in_ch, H, W) -> (B, out_ch, H, W)."""

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__(
            # bias=False: BatchNorm's learned shift makes a conv bias redundant.
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """One decoder step: 2x2 up-conv, concatenate the skip, DoubleConv.

    (B, in_ch, H, W) + skip (B, in_ch // 2, 2H, 2W) -> (B, in_ch // 2, 2H, 2W).
    """

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # The paper's "up-conv 2x2 that halves the number of feature channels".
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        # After concatenation: out_channels from the skip + out_channels from below.
        self.conv = DoubleConv(in_channels=2 * out_channels, out_channels=out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net: (B, in_channels, H, W) -> logits (B, num_classes, H, W).

    Level l (0 = full resolution) has base_width * 2**l channels; the bottleneck,
    at 1 / 2**depth of the input size, has base_width * 2**depth.
    """

    def __init__(self, *, in_channels: int, num_classes: int, depth: int, base_width: int) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, minimum=1)
        _check_int("num_classes", num_classes, minimum=1)
        _check_int("depth", depth, minimum=1)
        _check_int("base_width", base_width, minimum=1)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.base_width = base_width

        widths = [base_width * 2**level for level in range(depth + 1)]  # last = bottleneck
        in_widths = [in_channels] + widths[:-2]
        self.down = nn.ModuleList(
            DoubleConv(in_channels=c_in, out_channels=c_out)
            for c_in, c_out in zip(in_widths, widths[:-1])
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = DoubleConv(in_channels=widths[-2], out_channels=widths[-1])
        # Ordered deepest first, the order forward() walks the decoder in.
        self.up = nn.ModuleList(
            Up(in_channels=widths[level + 1], out_channels=widths[level])
            for level in reversed(range(depth))
        )
        # 1x1 conv maps each pixel's feature vector to class logits (paper, Sec. 2).
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        skips: list[Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)  # level l: (B, base_width * 2**l, H / 2**l, W / 2**l)
            x = self.pool(x)
        x = self.bottleneck(x)  # (B, base_width * 2**depth, H / 2**depth, W / 2**depth)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.head(x)  # (B, num_classes, H, W)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"UNet expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet was built for in_channels={self.in_channels}, got input with "
                f"{x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        multiple = required_multiple(self.depth)
        height, width = x.shape[-2:]
        if height % multiple or width % multiple:
            raise ValueError(
                f"UNet with depth={self.depth} needs H and W divisible by 2**depth = "
                f"{multiple}, got {height}x{width}. Resize or crop the images to a multiple "
                f"of {multiple} (e.g. {_round_down(height, multiple)}x"
                f"{_round_down(width, multiple)}), or lower depth."
            )


def _round_down(size: int, multiple: int) -> int:
    """Largest multiple of `multiple` that fits in `size` (a crop target), at least `multiple`."""
    return max(multiple, size // multiple * multiple)
