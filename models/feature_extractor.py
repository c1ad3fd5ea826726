"""A small CNN classifier whose penultimate layer is the pinned feature space for FID, KID and
precision/recall. No Inception weights can be downloaded here, so the pipeline trains this on
its own labelled images and pins it (see tasks/feature_extractor_fit.py)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MIN_SIDE = 4  # downsample until the feature map is about 4x4


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # BatchNorm: with GroupNorm(1, c) (one mean/std over the whole image) the net never left
    # chance on the shapes data (loss stayed at ln 4): a small shape is a few % of the pixels,
    # so per-image normalisation drowns it in the background texture. The running statistics
    # are recomputed on the final weights after training (tasks/feature_extractor_fit.py
    # recalibrate_batch_norm), so eval mode does not lag behind a short run.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _with_chroma(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 4, H, W): RGB plus chroma (max - min over RGB, rescaled to [-1, 1]).
    Saturation separates objects from greyish, textured backgrounds; the net can learn it, but
    not within a few hundred steps on a few hundred images."""
    chroma = x.amax(1, keepdim=True) - x.amin(1, keepdim=True)  # in [0, 2]
    return torch.cat([x, chroma - 1], 1)


class FeatureClassifier(nn.Module):
    """Conv stages (width, 2*width, ... doubling at each stride-2 step) -> global average and
    max pool -> linear feature layer (B, feature_dim) -> ReLU -> linear classifier (B, n_classes).
    Images (B, C, H, W) in [-1, 1] with H = W = image_size; RGB gets a chroma channel."""

    def __init__(self, channels: int, image_size: int, n_classes: int, width: int,
                 feature_dim: int):
        super().__init__()
        if image_size < MIN_SIDE or n_classes < 2 or width < 1 or feature_dim < 2:
            raise ValueError(f"FeatureClassifier: expected image_size >= {MIN_SIDE}, n_classes >= "
                             f"2, width >= 1, feature_dim >= 2; got image_size={image_size}, "
                             f"n_classes={n_classes}, width={width}, feature_dim={feature_dim}")
        self.channels, self.image_size = channels, image_size
        self.num_features = feature_dim  # torchmetrics reads this instead of probing the net
        n_down = max(1, int(math.log2(image_size / MIN_SIDE)))
        self.chroma = channels == 3
        layers, c = [_block(channels + int(self.chroma), width, 1)], width
        for _ in range(n_down):
            layers += [_block(c, 2 * c, 2), _block(2 * c, 2 * c, 1)]
            c *= 2
        self.body = nn.Sequential(*layers)
        for conv in self.body.modules():
            if isinstance(conv, nn.Conv2d):  # He init keeps activations' scale layer to layer, so
                # even an untrained net (identity batch norm in eval mode) has usable features
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        self.embed = nn.Linear(2 * c, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, c, h, w), h = w = image_size / 2**n_down."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"FeatureClassifier expects (B, {self.channels}, {self.image_size}, "
                             f"{self.image_size}) images in [-1, 1]; got {tuple(x.shape)}")
        return self.body(_with_chroma(x) if self.chroma else x)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim): the embedding before the classifier."""
        fmap = self.feature_map(x)
        # (B, 2c): the max keeps a small shape's evidence that the mean dilutes with background
        return self.embed(torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], 1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, n_classes) logits."""
        return self.head(F.relu(self.features(x)))


@torch.no_grad()
def extract_features(extractor: FeatureClassifier, images: Tensor, batch_size: int) -> Tensor:
    """(N, C, H, W) -> (N, feature_dim) float32 on the CPU, in eval mode, without gradients."""
    was_training = extractor.training
    extractor.eval()
    device = next(extractor.parameters()).device
    try:
        parts = [extractor.features(b.to(device, torch.float32)).float().cpu()
                 for b in images.split(batch_size)]
    finally:
        extractor.train(was_training)
    return torch.cat(parts)


@torch.no_grad()
def predict_classes(extractor: FeatureClassifier, images: Tensor, batch_size: int) -> Tensor:
    """(N, C, H, W) -> (N,) int64 predicted class ids, in eval mode."""
    was_training = extractor.training
    extractor.eval()
    device = next(extractor.parameters()).device
    try:
        parts = [extractor(b.to(device, torch.float32)).argmax(1).cpu()
                 for b in images.split(batch_size)]
    finally:
        extractor.train(was_training)
    return torch.cat(parts)
