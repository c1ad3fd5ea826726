"""CycleGAN unpaired translation (Zhu, Park, Isola & Efros, "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks", ICCV 2017, arXiv:1703.10593).

Two ResNet generators G_AB, G_BA (Johnson et al. 2016 layout, Sec. 4 / Appendix 7.2,
with 2 residual blocks instead of 6-9 and 3x3 instead of 7x7 end convs, for 16-64 px
images), two PatchGAN
discriminators with instance norm, least-squares adversarial loss, cycle loss
lambda * (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|) and identity loss
|G_AB(b) - b| + |G_BA(a) - a| (Sec. 5.2, weighted 0.5 * lambda); Adam betas (0.5, 0.999).
Not implemented: the 50-image history buffer of fakes for D (Sec. 4, Shrivastava et al.).

Batches mix domains ("domain" 0 = A, 1 = B). Every net runs on the whole batch and
each loss term averages over the rows of its domain with 0/1 weights, so no boolean
indexing (a host sync) is needed; G_AB(x) then gives the fakes for the A rows and the
identity term for the B rows in one pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.generative.blocks import (
    Batch, GenSpec, Optimizers, PatchDiscriminator, dcgan_init, frozen, step,
)
from models.generative.losses import l1_per_sample, lsgan_per_sample, weighted_mean

BETAS = (0.5, 0.999)  # Sec. 7.1
WEIGHTS = ("cycle_weight", "identity_weight")
N_RESIDUAL = 2  # the paper uses 6 at 128 px and 9 at 256 px; 2 is enough at 16-64 px


def _conv_in_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """x + (pad, conv3x3, IN, ReLU, pad, conv3x3, IN)(x), (B, c, h, w) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            # bias=False: instance norm subtracts each channel's mean, cancelling a bias.
            nn.ReflectionPad2d(1),
            *_conv_in_relu(nn.Conv2d(channels, channels, 3, bias=False), channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ResNetGenerator(nn.Module):
    """(B, C, S, S) -> (B, C, S, S) in [-1, 1]: c3s1-w, d2w, d4w, R4w x 2, u2w, uw, c3s1-C.

    The paper's 7x7 end convs are 3x3 here: at 16-64 px a 7x7 kernel spans a large part
    of the image, and on CPU the 7x7 conv to 3 channels cost as much as the residual
    blocks together.
    """

    def __init__(self, spec: GenSpec) -> None:
        super().__init__()
        w, c = spec.width, spec.channels
        self.net = nn.Sequential(
            nn.ReflectionPad2d(1), *_conv_in_relu(nn.Conv2d(c, w, 3, bias=False), w),
            *_conv_in_relu(nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False), 2 * w),  # S/2
            *_conv_in_relu(nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), 4 * w),  # S/4
            *(ResidualBlock(4 * w) for _ in range(N_RESIDUAL)),
            *_conv_in_relu(nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, 1, bias=False), 2 * w),
            *_conv_in_relu(nn.ConvTranspose2d(2 * w, w, 3, 2, 1, 1, bias=False), w),  # S
            nn.ReflectionPad2d(1), nn.Conv2d(w, c, 3), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CycleGAN(nn.Module):
    """g_ab: A -> B, g_ba: B -> A, d_a judges A images, d_b judges B images."""

    def __init__(self, spec: GenSpec) -> None:
        super().__init__()
        self.spec = spec
        self.g_ab, self.g_ba = ResNetGenerator(spec), ResNetGenerator(spec)
        self.d_a, self.d_b = (PatchDiscriminator(spec, in_channels=spec.channels, norm="instance")
                              for _ in range(2))


def build(spec: GenSpec) -> CycleGAN:
    nets = CycleGAN(spec)
    nets.apply(dcgan_init)  # N(0, 0.02), Sec. 7.1
    return nets


def param_groups(nets: CycleGAN) -> dict[str, list[nn.Parameter]]:
    return {"generator": [*nets.g_ab.parameters(), *nets.g_ba.parameters()],
            "discriminator": [*nets.d_a.parameters(), *nets.d_b.parameters()]}


def train_step(
    nets: CycleGAN, optimizers: Optimizers, batch: Batch, weights: dict[str, float],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One update of both generators, then one of both discriminators."""
    x = batch["image"]  # (B, C, S, S), rows of domain A and B
    w_a = (batch["domain"] == 0).to(x.dtype)  # (B,) 1 on A rows
    w_b = 1 - w_a
    ab, ba = nets.g_ab(x), nets.g_ba(x)  # fakes on the source rows, identities on the others
    rec_a, rec_b = nets.g_ba(ab), nets.g_ab(ba)
    with frozen(nets.d_a), frozen(nets.d_b):
        adv = (weighted_mean(lsgan_per_sample(nets.d_b(ab), 1.0), w_a)
               + weighted_mean(lsgan_per_sample(nets.d_a(ba), 1.0), w_b))
    cycle = (weighted_mean(l1_per_sample(rec_a, x), w_a)
             + weighted_mean(l1_per_sample(rec_b, x), w_b))
    identity = weighted_mean(l1_per_sample(ab, x), w_b) + weighted_mean(l1_per_sample(ba, x), w_a)
    g_loss = (adv + float(weights["cycle_weight"]) * cycle
              + float(weights["identity_weight"]) * identity)
    step(optimizers["generator"], g_loss)
    d_loss = (_d_loss(nets.d_a, x, ba.detach(), w_real=w_a, w_fake=w_b)
              + _d_loss(nets.d_b, x, ab.detach(), w_real=w_b, w_fake=w_a))
    step(optimizers["discriminator"], d_loss)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "g_adv": adv.detach(),
            "cycle": cycle.detach(), "identity": identity.detach()}


def _d_loss(d: nn.Module, real: Tensor, fake: Tensor, *, w_real: Tensor, w_fake: Tensor) -> Tensor:
    """Halved LSGAN D loss over the real rows of its domain and the fakes made for it."""
    return 0.5 * (weighted_mean(lsgan_per_sample(d(real), 1.0), w_real)
                  + weighted_mean(lsgan_per_sample(d(fake), 0.0), w_fake))


def draw(nets: CycleGAN, n: int, generator: torch.Generator | None,
         images: Tensor | None = None, domain: int | None = None, **_: object) -> Tensor:
    """Translate images of `domain` (0: A -> B with g_ab, 1: B -> A with g_ba)."""
    return (nets.g_ab if domain == 0 else nets.g_ba)(images)
