"""GAN (Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, arXiv:1406.2661)
with MLP generator and discriminator, and the adversarial update shared by every
(G, D) pair with a logistic discriminator (gan, dcgan, cgan).

Differences from the paper, on purpose: LeakyReLU(0.2) in D instead of maxout units and
dropout; the generator is trained with the non-saturating loss -log D(G(z)) (Sec. 3),
the one the paper recommends in practice (`losses.g_loss_minimax` is Eq. 1's).

The update takes the later literature's options through `weights` (WEIGHTS): "loss" "bce"
(the paper's) or "hinge" (SN-GAN's); "r1_weight" gamma of the R1 penalty on reals (0: off;
Mescheder et al. 2018); "augment" a DiffAugment policy (empty: off; Zhao et al. 2020).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.generative.augment import diff_augment
from models.generative.blocks import (
    Batch, GenSpec, Optimizers, frozen, randn, spectral_normalise, step,
)
from models.generative.losses import ADVERSARIAL_LOSSES, r1_penalty

BETAS = (0.5, 0.999)  # Radford et al. 2016 Sec. 4; the usual choice for logistic GANs
WEIGHTS = ("loss", "r1_weight", "augment")


class AdversarialPair(nn.Module):
    """A generator (z [, cond] -> image) and a discriminator (image [, cond] -> (B,) logits)."""

    def __init__(self, spec: GenSpec, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.generator = generator
        self.discriminator = discriminator


class MLPGenerator(nn.Module):
    """(B, in_dim) -> (B, C, S, S) in [-1, 1]: two hidden ReLU layers, tanh output."""

    def __init__(self, spec: GenSpec, *, in_dim: int) -> None:
        super().__init__()
        hidden = 8 * spec.width
        self.shape = (spec.channels, spec.image_size, spec.image_size)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * hidden), nn.ReLU(inplace=True),
            nn.Linear(2 * hidden, spec.channels * spec.image_size**2), nn.Tanh(),
        )

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=1)
        return self.net(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """(B, C, S, S) [+ cond (B, K)] -> (B,) logits: two hidden LeakyReLU(0.2) layers."""

    def __init__(self, spec: GenSpec, *, n_cond: int) -> None:
        super().__init__()
        hidden = 8 * spec.width
        self.net = nn.Sequential(
            nn.Linear(spec.channels * spec.image_size**2 + n_cond, 2 * hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = x.flatten(1)
        if cond is not None:
            x = torch.cat([x, cond], dim=1)
        return self.net(x).flatten()


def build(spec: GenSpec) -> AdversarialPair:
    """MLP GAN with PyTorch's default (Kaiming-uniform) init."""
    nets = AdversarialPair(spec, MLPGenerator(spec, in_dim=spec.latent_dim),
                           MLPDiscriminator(spec, n_cond=0))
    if spec.spectral_norm:
        spectral_normalise(nets.discriminator)
    return nets


def param_groups(nets: AdversarialPair) -> dict[str, list[nn.Parameter]]:
    return {"generator": list(nets.generator.parameters()),
            "discriminator": list(nets.discriminator.parameters())}


def adversarial_step(
    nets: AdversarialPair,
    optimizers: Optimizers,
    real: Tensor,
    cond: Tensor | None,
    generator: torch.Generator | None,
    weights: dict[str, Any],
) -> dict[str, Tensor]:
    """One D update then one G update on the same fakes (Goodfellow et al. 2014, Alg. 1, k=1).

    real: (B, C, S, S) in [-1, 1]; cond: (B, K) one-hot or None. D sees every image, real or
    fake, through the same augmentation (DiffAugment's rule); R1 is taken at its real inputs.
    """
    d_loss_fn, g_loss_fn = ADVERSARIAL_LOSSES[weights["loss"]]
    r1_weight, policy = float(weights["r1_weight"]), tuple(weights["augment"])

    def augment(x: Tensor) -> Tensor:
        return diff_augment(x, policy, generator)

    z = randn(real.shape[0], nets.spec.latent_dim, nets.generator, generator)
    fake = nets.generator(z, cond)  # (B, C, S, S)
    d = nets.discriminator
    real_in = augment(real).detach().requires_grad_(r1_weight > 0)
    real_scores = d(real_in, cond)
    d_loss = d_loss_fn(real_scores, d(augment(fake.detach()), cond))
    losses = {}
    if r1_weight > 0:
        r1 = r1_penalty(real_scores, real_in)
        d_loss = d_loss + r1_weight / 2 * r1
        losses["r1"] = r1.detach()
    step(optimizers["discriminator"], d_loss)
    with frozen(d):
        g_loss = g_loss_fn(d(augment(fake), cond))
    step(optimizers["generator"], g_loss)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **losses}


def train_step(
    nets: AdversarialPair, optimizers: Optimizers, batch: Batch, weights: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    return adversarial_step(nets, optimizers, batch["image"], None, generator, weights)


def draw(nets: AdversarialPair, n: int, generator: torch.Generator | None, **_: object) -> Tensor:
    """n unconditional samples (B, C, S, S); the caller sets eval mode and no_grad."""
    return nets.generator(randn(n, nets.spec.latent_dim, nets.generator, generator))
