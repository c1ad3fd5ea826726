"""Losses of the generative models, as pure functions of tensors.

Adversarial losses take raw discriminator scores (logits) and use softplus, so
log(sigmoid(x)) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x) stay finite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from models.generative.noise import per_row


def d_loss_bce(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """GAN discriminator loss (Goodfellow et al. 2014, Eq. 1), to minimise:
    -[log D(x) + log(1 - D(G(z)))], averaged over the batch."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, Sec. 3):
    strong gradients early in training, when D rejects the samples easily."""
    return F.softplus(-fake_logits).mean()


def g_loss_minimax(fake_logits: Tensor) -> Tensor:
    """The minimax generator loss log(1 - D(G(z))) of Eq. 1 (saturates; for reference)."""
    return -F.softplus(fake_logits).mean()


def d_loss_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017;
    the loss of SN-GAN, Miyato et al. 2018, and of BigGAN)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: Tensor) -> Tensor:
    """The hinge loss's generator side, -E[D(G(z))]."""
    return -fake_logits.mean()


ADVERSARIAL_LOSSES = {  # name -> (discriminator loss, generator loss), on logits
    "bce": (d_loss_bce, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_hinge),
}


def r1_penalty(scores: Tensor, inputs: Tensor) -> Tensor:
    """R1 = E[||grad_x D(x)||^2] on real inputs, without the gamma / 2 factor (Mescheder,
    Geiger & Nowozin, "Which Training Methods for GANs do actually Converge?", ICML 2018,
    Eq. 9). inputs: the (B, ...) reals D scored, with requires_grad; scores: (B,) or (B, ...)
    of them. The graph is kept (create_graph) so the penalty trains D."""
    (grad,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """WGAN critic loss E[f(G(z))] - E[f(x)], to minimise (Arjovsky et al. 2017;
    Gulrajani et al. 2017, Alg. 1)."""
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty E[(||grad_x f(x_hat)||_2 - 1)^2], without the lambda factor.

    Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, Eq. 3 and
    Alg. 1: x_hat = eps * x + (1 - eps) * G(z), eps ~ U[0, 1] per sample. The graph is
    kept (create_graph) so the penalty trains the critic. critic: (B, ...) -> (B,).
    """
    eps = per_row(real.shape[0], *([1] * (real.ndim - 1)), normal=False, device=real.device,
                  dtype=real.dtype, generator=generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)  # (B,)
    return ((norms - 1) ** 2).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample, (B, D) -> (B,).

    Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014, Appendix B:
    -0.5 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def recon_sse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image sum of squared errors on [-1, 1] images, (B, C, H, W) -> (B,).

    This is -log N(x; x_hat, 0.5 I) up to a constant: a Gaussian decoder with fixed
    variance. Chosen over BCE, which assumes Bernoulli pixels in [0, 1] and does not
    fit colour images; summed (not averaged) over pixels so the KL keeps its weight.
    """
    return (x_hat - x).pow(2).flatten(1).sum(dim=1)


def recon_calibrated(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image -log N(x; x_hat, sigma^2 I) with the one sigma^2 that maximises it for the
    batch, sigma^2 = the batch's mean squared error (sigma-VAE, Rybkin, Daniilidis & Levine,
    "Simple and Effective VAE Training with Calibrated Decoders", ICML 2021, Sec. 3.2):
    (B, C, H, W) -> (B,), up to the constant D/2 log(2 pi e).

    A fixed sigma^2 (recon_sse's 0.5) weighs the KL term as if every pixel were that noisy,
    and the decoder learns blurry means; the calibrated one follows the error as it falls.
    """
    sse = (x_hat - x).pow(2).flatten(1).sum(dim=1)  # (B,)
    pixels = x[0].numel()
    var = (sse.detach().mean() / pixels).clamp(min=1e-6)  # sigma^2, not trained through
    return 0.5 * (sse / var + pixels * var.log())


def lsgan_per_sample(scores: Tensor, target: float) -> Tensor:
    """Least-squares GAN loss (Mao et al. 2017) per sample: mean of (D - target)^2 over a
    (B, ...) patch map -> (B,). CycleGAN (Zhu et al. 2017, Sec. 4) trains D with
    targets 1 (real) / 0 (fake), halved, and G with target 1 on its fakes."""
    return (scores - target).pow(2).flatten(1).mean(1)


def l1_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error per sample, (B, ...) -> (B,)."""
    return (a - b).abs().flatten(1).mean(1)


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """sum(w * v) / max(sum(w), 1): the mean over the rows selected by a 0/1 weight,
    computed without boolean indexing (which would sync the host with the device)."""
    return (values * weights).sum() / weights.sum().clamp(min=1.0)
