"""Class-conditional GAN (Mirza & Osindero, "Conditional Generative Adversarial Nets",
2014, arXiv:1411.1784) on DCGAN nets (Radford et al. 2016).

The label y is fed to both nets, as the paper does: one-hot y concatenated to z in G,
and to the image as K constant planes in D (the conv counterpart of the paper's
concatenation of y to D's input). DCGAN init, betas and the non-saturating update.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.generative.blocks import (
    Batch, ConvDiscriminator, ConvGenerator, GenSpec, Optimizers, dcgan_init, one_hot, randn,
)
from models.generative.gan import AdversarialPair, adversarial_step, param_groups

BETAS = (0.5, 0.999)  # DCGAN's

__all__ = ["BETAS", "build", "draw", "param_groups", "train_step"]


def build(spec: GenSpec) -> AdversarialPair:
    k = spec.n_classes
    nets = AdversarialPair(
        spec,
        ConvGenerator(spec, in_dim=spec.latent_dim + k, norm="batch"),
        ConvDiscriminator(spec, n_cond=k, norm="batch"),
    )
    nets.apply(dcgan_init)
    return nets


def train_step(
    nets: AdversarialPair, optimizers: Optimizers, batch: Batch, weights: dict[str, float],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The GAN update with G and D both given the batch's labels (B,)."""
    cond = one_hot(batch["label"], nets.spec.n_classes)  # (B, K)
    return adversarial_step(nets, optimizers, batch["image"], cond, generator)


def draw(nets: AdversarialPair, n: int, generator: torch.Generator | None,
         labels: Tensor | None = None, **_: object) -> Tensor:
    """n samples of the requested classes, labels (n,) -> (n, C, S, S)."""
    z = randn(n, nets.spec.latent_dim, nets.generator, generator)
    return nets.generator(z, one_hot(labels, nets.spec.n_classes))
