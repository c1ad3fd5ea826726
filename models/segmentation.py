"""The segmentation networks by name, as models.generative has the generators: one place
that says which architectures exist and what each takes.

    create("unet", in_channels=3, num_classes=4, depth=4, base_width=16)
    create("deeplabv3_resnet18", in_channels=1, num_classes=2)

Every network maps (B, C, H, W) standardised images to (B, K, H, W) logits at the input's
size. The torchvision families (DeepLabV3, Chen et al. 2017; FCN, Long et al. 2015; LRASPP,
Howard et al. 2019) are built untrained, weights=None and weights_backbone=None: nothing is
downloaded.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models import segmentation as tv
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from models.unet import UNet


class Logits(nn.Module):
    """A torchvision segmentation model as a plain network: its dict's "out" entry, logits
    (B, K, H, W) that torchvision has already resized (bilinearly) to the input's size."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def deeplabv3_resnet18(*, in_channels: int, num_classes: int) -> nn.Module:
    """DeepLabV3 on a ResNet-18 from torchvision's parts: a light member of the family.

    Output stride 16 (layer4 dilated instead of strided) with the paper's atrous rates for
    that stride, (6, 12, 18) (Chen et al. 2017, section 4.1).
    """
    backbone = resnet18(weights=None)
    _dilate(backbone.layer4, 2)
    net = DeepLabV3(IntermediateLayerGetter(backbone, {"layer4": "out"}),
                    DeepLabHead(512, num_classes, (6, 12, 18)), None)
    return Logits(_with_in_channels(net, in_channels))


def _torchvision(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """A torchvision builder as a constructor of architecture arguments only."""
    def build(*, in_channels: int, num_classes: int) -> nn.Module:
        net = builder(weights=None, weights_backbone=None, num_classes=num_classes)
        return Logits(_with_in_channels(net, in_channels))

    build.__name__ = builder.__name__
    return build


def _dilate(layer: nn.Module, dilation: int) -> None:
    """Trade a ResNet stage's stride 2 for dilated 3x3 convolutions (same receptive field,
    twice the resolution), as torchvision's replace_stride_with_dilation does for the
    Bottleneck blocks; its BasicBlock (ResNet-18/34) refuses the argument."""
    for conv in layer.modules():
        if isinstance(conv, nn.Conv2d):
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                conv.dilation = conv.padding = (dilation, dilation)


def _with_in_channels(net: nn.Module, in_channels: int) -> nn.Module:
    """The backbone's first convolution made to take in_channels (greyscale: 1), untrained
    like the rest; torchvision's backbones take RGB."""
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels != in_channels:
        parent, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent), attr, nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            bias=conv.bias is not None))
    return net


# name -> constructor taking architecture arguments only (no training settings, no I/O)
SEGMENTERS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "deeplabv3_resnet18": deeplabv3_resnet18,
    **{b.__name__: _torchvision(b) for b in (tv.deeplabv3_resnet50, tv.fcn_resnet50,
                                             tv.lraspp_mobilenet_v3_large)},
}


def create(name: str, **arch: Any) -> nn.Module:
    """A new, untrained network `name` built from its architecture arguments."""
    try:
        build = SEGMENTERS[name]
    except KeyError:
        raise ValueError(f"unknown segmentation model {name!r}; known: "
                         f"{', '.join(sorted(SEGMENTERS))}") from None
    return build(**arch)
