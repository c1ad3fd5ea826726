"""WGAN-GP (Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved Training of
Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028).

DCGAN-shaped generator (batch norm kept, as in the paper's DCGAN experiments) and a
critic with layer norm instead of batch norm (Sec. 4: batch norm would make each
sample's gradient penalty depend on the batch). Algorithm 1: n_critic critic updates
of E[f(G(z))] - E[f(x)] + lambda * GP per generator update of -E[f(G(z))];
Adam(lr 1e-4, betas (0, 0.9)).

Deviation: the n_critic critic updates use the trainer's one batch split into
n_critic chunks (the paper draws a fresh real batch each time), so one call costs
about what one DCGAN step costs; a batch smaller than n_critic is reused whole.
"augment": a DiffAugment policy (Zhao et al. 2020) applied to every image the critic sees
(the penalty interpolates between the augmented ones); empty: off.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.generative.augment import diff_augment
from models.generative.blocks import (
    Batch, ConvDiscriminator, ConvGenerator, GenSpec, Optimizers, dcgan_init, frozen, randn, step,
)
from models.generative.gan import AdversarialPair, draw, param_groups
from models.generative.losses import critic_loss, gradient_penalty

BETAS = (0.0, 0.9)  # Algorithm 1 defaults
WEIGHTS = ("gp_weight", "n_critic", "augment")

__all__ = ["BETAS", "WEIGHTS", "build", "draw", "param_groups", "train_step"]


def build(spec: GenSpec) -> AdversarialPair:
    nets = AdversarialPair(
        spec,
        ConvGenerator(spec, in_dim=spec.latent_dim, norm="batch"),
        ConvDiscriminator(spec, n_cond=0, norm="layer"),
    )
    nets.apply(dcgan_init)
    return nets


def _critic_batches(real: Tensor, n_critic: int) -> list[Tensor]:
    """n_critic real batches: the batch split in n_critic chunks, or repeated if too small."""
    if real.shape[0] >= n_critic:
        return list(torch.tensor_split(real, n_critic))
    return [real] * n_critic


def train_step(
    nets: AdversarialPair, optimizers: Optimizers, batch: Batch, weights: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """n_critic critic updates, then one generator update (Algorithm 1)."""
    n_critic, gp_weight = int(weights["n_critic"]), float(weights["gp_weight"])
    policy = tuple(weights["augment"])
    if n_critic < 1:
        raise ValueError(f"weights['n_critic'] must be >= 1, got {weights['n_critic']}")
    critic, latent = nets.discriminator, nets.spec.latent_dim
    real = batch["image"]
    d_total, gp_total, w_total = (real.new_zeros(()) for _ in range(3))  # no .item(): no sync
    for chunk in _critic_batches(real, n_critic):
        with torch.no_grad():  # the critic step needs no graph through G
            fake = nets.generator(randn(chunk.shape[0], latent, nets.generator, generator))
        chunk, fake = diff_augment(chunk, policy, generator), diff_augment(fake, policy, generator)
        real_scores, fake_scores = critic(chunk), critic(fake)
        gp = gradient_penalty(critic, chunk, fake, generator)
        d_loss = critic_loss(real_scores, fake_scores) + gp_weight * gp
        step(optimizers["discriminator"], d_loss)
        d_total += d_loss.detach()
        gp_total += gp.detach()
        w_total += (real_scores.mean() - fake_scores.mean()).detach()
    fake = nets.generator(randn(real.shape[0], latent, nets.generator, generator))
    with frozen(critic):
        g_loss = -critic(diff_augment(fake, policy, generator)).mean()
    step(optimizers["generator"], g_loss)
    return {"d_loss": d_total / n_critic, "g_loss": g_loss.detach(), "gp": gp_total / n_critic,
            "wasserstein": w_total / n_critic}
