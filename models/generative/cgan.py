"""Class-conditional GAN (Mirza & Osindero, "Conditional Generative Adversarial Nets",
2014, arXiv:1411.1784) on DCGAN nets (Radford et al. 2016).

The label y is fed to both nets, as the paper does: one-hot y concatenated to z in G,
and to the image as K constant planes in D (the conv counterpart of the paper's
concatenation of y to D's input), or with GenSpec.projection the projection discriminator
(Miyato & Koyama 2018), where the label is an inner product with D's top features.
DCGAN init and betas; the update of `gan.adversarial_step`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.generative.blocks import (
    Batch, ConvDiscriminator, ConvGenerator, GenSpec, Optimizers, ProjectionDiscriminator,
    dcgan_init, discriminator_norm, one_hot, randn, spectral_normalise,
)
from models.generative.gan import WEIGHTS, AdversarialPair, adversarial_step, param_groups

BETAS = (0.5, 0.999)  # DCGAN's

__all__ = ["BETAS", "WEIGHTS", "build", "draw", "param_groups", "train_step"]


def build(spec: GenSpec) -> AdversarialPair:
    k, norm = spec.n_classes, discriminator_norm(spec, "batch")
    discriminator = (ProjectionDiscriminator(spec, norm=norm) if spec.projection
                     else ConvDiscriminator(spec, n_cond=k, norm=norm))
    nets = AdversarialPair(
        spec, ConvGenerator(spec, in_dim=spec.latent_dim + k, norm="batch"), discriminator)
    nets.apply(dcgan_init)
    if spec.spectral_norm:
        spectral_normalise(nets.discriminator)
    return nets


def train_step(
    nets: AdversarialPair, optimizers: Optimizers, batch: Batch, weights: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The GAN update with G and D both given the batch's labels (B,)."""
    cond = one_hot(batch["label"], nets.spec.n_classes)  # (B, K)
    return adversarial_step(nets, optimizers, batch["image"], cond, generator, weights)


def draw(nets: AdversarialPair, n: int, generator: torch.Generator | None,
         labels: Tensor | None = None, **_: object) -> Tensor:
    """n samples of the requested classes, labels (n,) -> (n, C, S, S)."""
    z = randn(n, nets.spec.latent_dim, nets.generator, generator)
    return nets.generator(z, one_hot(labels, nets.spec.n_classes))
