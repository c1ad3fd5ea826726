"""VAE (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014, arXiv:1312.6114)
and its label-conditional form, the CVAE (Sohn, Lee & Yan, "Learning Structured Output
Representation using Deep Conditional Generative Models", NeurIPS 2015).

Conv encoder (DCGAN discriminator body) -> (mu, logvar); z = mu + sigma * eps (the
reparameterisation trick, Sec. 2.4); DCGAN-generator decoder with tanh output.
Loss per image: recon + beta * KL (beta = 1 is the ELBO; beta > 1 is Higgins et al.
2017's beta-VAE), recon = sum of squared errors on [-1, 1] images (`losses.recon_sse`:
a fixed-variance Gaussian decoder, since BCE assumes Bernoulli pixels in [0, 1]), or with
"likelihood": "calibrated" the Gaussian whose variance is the batch's own error
(`losses.recon_calibrated`, the sigma-VAE of Rybkin et al. 2021). `terms` (what evaluation
reports) always uses the fixed one, so ELBOs compare across recipes.
The CVAE feeds the one-hot label to both the encoder (as constant planes) and the
decoder (concatenated to z), the recognition and generation nets of Sohn et al. Sec. 4.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.generative.blocks import (
    Batch, ConvGenerator, GenSpec, Optimizers, conv_encoder, encoder_features, label_planes,
    one_hot, randn, step,
)
from models.generative.losses import gaussian_kl, recon_calibrated, recon_sse

BETAS = (0.9, 0.999)  # Adam's defaults (Kingma & Ba 2015), as in the VAE literature
WEIGHTS = ("beta", "likelihood")
RECONSTRUCTION = {"fixed": recon_sse, "calibrated": recon_calibrated}  # decoder likelihoods


class Encoder(nn.Module):
    """(B, C, S, S) [+ cond (B, K)] -> mu, logvar, each (B, latent_dim)."""

    def __init__(self, spec: GenSpec, *, n_cond: int) -> None:
        super().__init__()
        self.body = conv_encoder(spec, in_channels=spec.channels + n_cond, norm="batch")
        self.head = nn.Linear(encoder_features(spec) * 16, 2 * spec.latent_dim)  # from 4x4

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if cond is not None:
            x = torch.cat([x, label_planes(cond, x.shape[-1])], dim=1)
        mu, logvar = self.head(self.body(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar


class VAE(nn.Module):
    """encoder q(z | x [, y]) and decoder p(x | z [, y]); n_cond = 0 for the plain VAE."""

    def __init__(self, spec: GenSpec, *, n_cond: int) -> None:
        super().__init__()
        self.spec = spec
        self.n_cond = n_cond
        self.encoder = Encoder(spec, n_cond=n_cond)
        self.decoder = ConvGenerator(spec, in_dim=spec.latent_dim + n_cond, norm="batch")


def build(spec: GenSpec) -> VAE:
    return VAE(spec, n_cond=0)


def build_conditional(spec: GenSpec) -> VAE:
    return VAE(spec, n_cond=spec.n_classes)


def param_groups(nets: VAE) -> dict[str, list[nn.Parameter]]:
    return {"vae": list(nets.parameters())}


def _cond(nets: VAE, labels: Tensor | None) -> Tensor | None:
    return one_hot(labels, nets.spec.n_classes) if nets.n_cond else None


def terms(nets: VAE, batch: Batch, generator: torch.Generator | None = None,
          likelihood: str = "fixed") -> dict[str, Tensor]:
    """Per-image "recon", "kl" and "elbo" = -(recon + kl), each (B,), with one z sample.

    The ELBO is in nats up to the Gaussian decoder's constant (see `losses.recon_sse`).
    """
    x = batch["image"]
    cond = _cond(nets, batch.get("label"))
    mu, logvar = nets.encoder(x, cond)  # (B, latent_dim) each
    eps = randn(x.shape[0], nets.spec.latent_dim, nets.encoder, generator)
    x_hat = nets.decoder(mu + (0.5 * logvar).exp() * eps, cond)  # (B, C, S, S)
    recon, kl = RECONSTRUCTION[likelihood](x_hat, x), gaussian_kl(mu, logvar)
    return {"recon": recon, "kl": kl, "elbo": -(recon + kl)}


def train_step(
    nets: VAE, optimizers: Optimizers, batch: Batch, weights: dict[str, Any],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One Adam step on mean(recon + beta * KL) (the negative ELBO when beta = 1)."""
    t = terms(nets, batch, generator, weights["likelihood"])
    recon, kl = t["recon"].mean(), t["kl"].mean()
    loss = recon + float(weights["beta"]) * kl
    step(optimizers["vae"], loss)
    return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}


def draw(nets: VAE, n: int, generator: torch.Generator | None,
         labels: Tensor | None = None, **_: object) -> Tensor:
    """Decode z ~ N(0, I) (the prior) [with labels (n,)]: (n, C, S, S)."""
    z = randn(n, nets.spec.latent_dim, nets.decoder, generator)
    return nets.decoder(z, _cond(nets, labels))
