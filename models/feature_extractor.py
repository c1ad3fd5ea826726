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
    # GroupNorm, not BatchNorm: features never depend on the batch or on running statistics
    # that lag behind a short training run, so the pinned feature space is the same in any mode.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(1, c_out), nn.ReLU(inplace=True))


class FeatureClassifier(nn.Module):
    """Conv stages (width, 2*width, ... doubling at each stride-2 step) -> global average pool
    -> linear feature layer (B, feature_dim) -> ReLU -> linear classifier (B, n_classes).
    Images (B, C, H, W) in [-1, 1] with H = W = image_size."""

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
        layers, c = [_block(channels, width, 1)], width
        for _ in range(n_down):
            layers += [_block(c, 2 * c, 2), _block(2 * c, 2 * c, 1)]
            c *= 2
        self.body = nn.Sequential(*layers)
        self.embed = nn.Linear(c, feature_dim)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim): the embedding before the classifier."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"FeatureClassifier expects (B, {self.channels}, {self.image_size}, "
                             f"{self.image_size}) images in [-1, 1]; got {tuple(x.shape)}")
        return self.embed(self.body(x).mean(dim=(2, 3)))  # (B, c) after global average pool

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
