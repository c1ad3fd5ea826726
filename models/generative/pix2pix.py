"""pix2pix mask-to-image translation (Isola, Zhu, Zhou & Efros, "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR 2017, arXiv:1611.07004).

U-Net generator (Sec. 3.2.1) from the one-hot mask (n_classes planes) to the image;
PatchGAN discriminator (Sec. 3.2.2) on (mask, image) pairs; objective (Eq. 4)
cGAN loss + l1_weight * L1 (lambda = 100 in the paper), D's loss halved (Sec. 3.3),
non-saturating G loss; Adam(lr 2e-4, betas (0.5, 0.999)); N(0, 0.02) init.
Noise enters only as dropout in the decoder during training (Sec. 3.1); sample() runs
in eval mode, so a mask maps to one image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.generative.blocks import (
    Batch, GenSpec, Optimizers, PatchDiscriminator, dcgan_init, frozen, mask_one_hot, step,
)
from models.generative.losses import d_loss_bce, g_loss_nonsaturating

BETAS = (0.5, 0.999)  # Sec. 3.3
WEIGHTS = ("l1_weight",)


class UNetGenerator(nn.Module):
    """(B, K, S, S) one-hot mask -> (B, C, S, S) image in [-1, 1].

    Encoder: stride-2 4x4 convs down to 2x2, channels width * 2**min(i, 3), BN (not on
    the first), LeakyReLU(0.2). Decoder: stride-2 transposed convs, BN, ReLU, dropout
    0.5 on the two deepest, each concatenated with the mirrored encoder output.
    """

    def __init__(self, spec: GenSpec) -> None:
        super().__init__()
        n_down = spec.stages + 1  # S -> 2x2
        widths = [spec.width * 2 ** min(i, 3) for i in range(n_down)]
        ins = [spec.n_classes] + widths[:-1]
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0),
                nn.BatchNorm2d(c_out) if i else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            )
            for i, (c_in, c_out) in enumerate(zip(ins, widths))
        )
        # ups[j] maps level k = n_down-1-j to level k-1 (deepest first).
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(widths[k] * (1 if k == n_down - 1 else 2), widths[k - 1],
                                   4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[k - 1]),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5) if k >= n_down - 2 else nn.Identity(),
            )
            for k in range(n_down - 1, 0, -1)
        )
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * widths[0], spec.channels, 4, 2, 1),
                                 nn.Tanh())

    def forward(self, mask: Tensor) -> Tensor:
        skips = []
        x = mask
        for down in self.downs:
            x = down(x)
            skips.append(x)  # level i: (B, widths[i], S / 2**(i+1), S / 2**(i+1))
        x = skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.out(x)


class Pix2Pix(nn.Module):
    """generator: mask -> image; discriminator: (mask, image) pair -> patch logits."""

    def __init__(self, spec: GenSpec) -> None:
        super().__init__()
        self.spec = spec
        self.generator = UNetGenerator(spec)
        self.discriminator = PatchDiscriminator(
            spec, in_channels=spec.n_classes + spec.channels, norm="batch")


def build(spec: GenSpec) -> Pix2Pix:
    nets = Pix2Pix(spec)
    nets.apply(dcgan_init)
    return nets


def param_groups(nets: Pix2Pix) -> dict[str, list[nn.Parameter]]:
    return {"generator": list(nets.generator.parameters()),
            "discriminator": list(nets.discriminator.parameters())}


def train_step(
    nets: Pix2Pix, optimizers: Optimizers, batch: Batch, weights: dict[str, float],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One D update on (mask, real) vs (mask, fake), then one G update (Eq. 4)."""
    mask = mask_one_hot(batch["mask"], nets.spec.n_classes)  # (B, K, S, S)
    real = batch["image"]
    fake = nets.generator(mask)
    d = nets.discriminator
    d_loss = 0.5 * d_loss_bce(d(torch.cat([mask, real], 1)),
                              d(torch.cat([mask, fake.detach()], 1)))
    step(optimizers["discriminator"], d_loss)
    with frozen(d):
        g_adv = g_loss_nonsaturating(d(torch.cat([mask, fake], 1)))
    l1 = (fake - real).abs().mean()
    g_loss = g_adv + float(weights["l1_weight"]) * l1
    step(optimizers["generator"], g_loss)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "g_adv": g_adv.detach(),
            "l1": l1.detach()}


def draw(nets: Pix2Pix, n: int, generator: torch.Generator | None,
         masks: Tensor | None = None, **_: object) -> Tensor:
    """Images for masks (n, S, S) of class ids: (n, C, S, S)."""
    return nets.generator(mask_one_hot(masks, nets.spec.n_classes))
