"""DCGAN (Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR 2016, arXiv:1511.06434).

Architecture guidelines of Sec. 3: strided convs instead of pooling, batch norm in both
nets except G's output and D's input layers, ReLU in G with tanh out, LeakyReLU(0.2)
in D; Sec. 4: weights ~ N(0, 0.02), Adam(lr 2e-4, betas (0.5, 0.999)). The update is
the GAN one (`gan.adversarial_step`: non-saturating G loss, or the hinge loss, R1 and
DiffAugment as params.yaml chooses). With GenSpec.spectral_norm, D's layers are spectrally
normalised and lose their batch norm (SN-GAN, Miyato et al. 2018).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.generative.blocks import (
    Batch, ConvDiscriminator, ConvGenerator, GenSpec, Optimizers, dcgan_init, discriminator_norm,
    spectral_normalise,
)
from models.generative.gan import WEIGHTS, AdversarialPair, adversarial_step, draw, param_groups

BETAS = (0.5, 0.999)  # Sec. 4: beta1 = 0.9 oscillated, 0.5 stabilised training

__all__ = ["BETAS", "WEIGHTS", "build", "draw", "param_groups", "train_step"]


def build(spec: GenSpec) -> AdversarialPair:
    nets = AdversarialPair(
        spec,
        ConvGenerator(spec, in_dim=spec.latent_dim, norm="batch"),
        ConvDiscriminator(spec, n_cond=0, norm=discriminator_norm(spec, "batch")),
    )
    nets.apply(dcgan_init)
    if spec.spectral_norm:
        spectral_normalise(nets.discriminator)
    return nets


def train_step(
    nets: AdversarialPair, optimizers: Optimizers, batch: Batch, weights: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    return adversarial_step(nets, optimizers, batch["image"], None, generator, weights)
