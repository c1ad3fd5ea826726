"""Building blocks shared by the generative models: DCGAN-style conv stacks, norms, init.

Shapes: images (B, C, S, S) with S = spec.image_size a power of two >= 16; the conv
stacks halve/double S per stage between S and 4x4, as in DCGAN (Radford, Metz &
Chintala, "Unsupervised Representation Learning with Deep Convolutional GANs",
ICLR 2016, arXiv:1511.06434, Fig. 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.generative.noise import per_row

NORMS = ("batch", "layer", "instance", "none")
Optimizers = dict[str, torch.optim.Optimizer]  # one per param_groups entry
Batch = dict[str, Tensor]  # "image" (B, C, S, S), "label" (B,), "mask" (B, S, S), "domain" (B,)


@dataclass(frozen=True)
class GenSpec:
    """Architecture of a generative model (no training hyper-parameters)."""

    channels: int  # image channels, 1 or 3
    image_size: int  # S of (S, S) images, a power of two >= 16
    n_classes: int  # image-level classes (cgan/cvae); mask classes (pix2pix)
    latent_dim: int
    width: int  # base channel width of the nets
    # the discriminator's: spectral norm on every layer (then no batch norm), and for a
    # class-conditional GAN the projection head instead of label planes at the input
    spectral_norm: bool = False
    projection: bool = False

    def __post_init__(self) -> None:
        for name in ("channels", "image_size", "n_classes", "latent_dim", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GenSpec.{name} must be an int >= 1, got {value!r}")
        for name in ("spectral_norm", "projection"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GenSpec.{name} must be a bool, got {getattr(self, name)!r}")
        size = self.image_size
        if size < 16 or size & (size - 1):
            raise ValueError(
                f"GenSpec.image_size must be a power of two >= 16 (16, 32, 64, ...), got "
                f"{size}; resize the images in the preprocess section"
            )

    @property
    def stages(self) -> int:
        """Stride-2 stages between S x S and 4 x 4: log2(S) - 2."""
        return self.image_size.bit_length() - 3


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-d normalisation layer by name."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # Layer norm over (C, H, W) per sample, with a per-channel affine: the norm
        # WGAN-GP recommends for the critic (Gulrajani et al. 2017, Sec. 4), since batch
        # norm makes the gradient penalty of one sample depend on the others.
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        # CycleGAN's choice (Zhu et al. 2017, Sec. 4; Ulyanov et al. 2016).
        return nn.InstanceNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def one_hot(labels: Tensor, n_classes: int) -> Tensor:
    """(B,) long -> (B, n_classes) float. n_classes is explicit so no host sync."""
    return F.one_hot(labels, n_classes).float()


def mask_one_hot(masks: Tensor, n_classes: int) -> Tensor:
    """(B, H, W) long class ids -> (B, n_classes, H, W) float one-hot planes."""
    return F.one_hot(masks, n_classes).permute(0, 3, 1, 2).float()


def label_planes(cond: Tensor, size: int) -> Tensor:
    """(B, K) -> (B, K, size, size): a condition vector broadcast as constant planes."""
    return cond[:, :, None, None].expand(-1, -1, size, size)


class ConvGenerator(nn.Module):
    """DCGAN generator: (B, latent_dim [+ n_cond]) -> (B, channels, S, S) in [-1, 1].

    Project to 4x4 with a transposed conv, then one stride-2 transposed conv per stage,
    halving channels: 4x4 has width * 2**(stages-1) channels, S/2 x S/2 has `width`.
    Norm after every layer but the last; ReLU inside; tanh out (DCGAN, Sec. 3).
    A condition vector (one-hot label, cGAN/CVAE) is concatenated to z.
    """

    def __init__(self, spec: GenSpec, *, in_dim: int, norm: str) -> None:
        super().__init__()
        stages = spec.stages
        top = spec.width * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, top, 4, 1, 0, bias=norm == "none"),  # (B, top, 4, 4)
            make_norm(norm, top),
            nn.ReLU(inplace=True),
        ]
        for i in range(stages - 1):
            c_in = top // 2**i
            layers += [
                nn.ConvTranspose2d(c_in, c_in // 2, 4, 2, 1, bias=norm == "none"),
                make_norm(norm, c_in // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(spec.width, spec.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.in_dim = in_dim

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=1)  # (B, latent_dim + n_cond)
        return self.net(z[:, :, None, None])


def conv_encoder(spec: GenSpec, *, in_channels: int, norm: str) -> nn.Sequential:
    """DCGAN discriminator body: (B, in_channels, S, S) -> (B, width * 2**(stages-1), 4, 4).

    Stride-2 4x4 convs doubling channels, LeakyReLU(0.2), no norm on the first layer
    (DCGAN, Sec. 3).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, spec.width, 4, 2, 1),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    for i in range(spec.stages - 1):
        c_in = spec.width * 2**i
        layers += [
            nn.Conv2d(c_in, 2 * c_in, 4, 2, 1, bias=norm == "none"),
            make_norm(norm, 2 * c_in),
            nn.LeakyReLU(0.2, inplace=True),
        ]
    return nn.Sequential(*layers)


def encoder_features(spec: GenSpec) -> int:
    """Channels of `conv_encoder`'s 4x4 output."""
    return spec.width * 2 ** (spec.stages - 1)


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator / WGAN critic: (B, C, S, S) [+ cond (B, K)] -> (B,) scores.

    A condition vector enters as K constant input planes (cGAN, Mirza & Osindero 2014,
    feed y to both nets; here by channel concatenation).
    """

    def __init__(self, spec: GenSpec, *, n_cond: int, norm: str) -> None:
        super().__init__()
        self.body = conv_encoder(spec, in_channels=spec.channels + n_cond, norm=norm)
        self.head = nn.Conv2d(encoder_features(spec), 1, 4, 1, 0)  # 4x4 -> 1x1
        self.n_cond = n_cond

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            x = torch.cat([x, label_planes(cond, x.shape[-1])], dim=1)
        return self.head(self.body(x)).flatten()  # (B,)


class ProjectionDiscriminator(nn.Module):
    """Class-conditional D with a projection head (Miyato & Koyama, "cGANs with Projection
    Discriminator", ICLR 2018, Eq. 3): D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, where
    phi(x) (B, F) is the DCGAN body's output summed over its 4x4 positions. The label meets
    the image's features at the top, instead of as input planes the first layer can ignore.
    cond: (B, K) one-hot, so the embedding is a bias-free linear map of it."""

    def __init__(self, spec: GenSpec, *, norm: str) -> None:
        super().__init__()
        features = encoder_features(spec)
        self.body = conv_encoder(spec, in_channels=spec.channels, norm=norm)
        self.head = nn.Linear(features, 1)
        self.embed = nn.Linear(spec.n_classes, features, bias=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        phi = self.body(x).sum(dim=(2, 3))  # (B, F)
        return self.head(phi).flatten() + (self.embed(cond) * phi).sum(dim=1)  # (B,)


def discriminator_norm(spec: GenSpec, norm: str) -> str:
    """A spectrally normalised D goes without batch norm (Miyato et al. 2018, Sec. 4)."""
    return "none" if spec.spectral_norm else norm


def spectral_normalise(net: nn.Module) -> nn.Module:
    """Spectral norm on every conv and linear layer of net (Miyato, Kataoka, Koyama & Yoshida,
    "Spectral Normalization for GANs", ICLR 2018): each weight divided by its largest
    singular value, estimated by one power iteration per forward pass, so D is 1-Lipschitz
    per layer. Apply after the init (the parametrization wraps the weight it finds)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for module in [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        spectral_norm(module)
    return net


def dcgan_init(module: nn.Module) -> None:
    """DCGAN init (Radford et al. 2016, Sec. 4): conv weights ~ N(0, 0.02), norm
    weights ~ N(1, 0.02), biases 0. pix2pix and CycleGAN use the same. Use with .apply."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)):
        if module.weight is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


def randn(n: int, dim: int, like: nn.Module, generator: torch.Generator | None) -> Tensor:
    """(n, dim) standard normal latents on `like`'s device, drawn with `generator`."""
    device = next(like.parameters()).device
    return per_row(n, dim, normal=True, device=device, generator=generator)


def step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """zero_grad, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@contextmanager
def frozen(net: nn.Module) -> Iterator[None]:
    """Turn off `net`'s parameter gradients for a generator update: the loss still
    backpropagates through `net` to the generator, but `net` gets no .grad to compute."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017, Sec. 3.2.2): (B, in_channels, S, S) -> (B, 1, P, P)
    logits, one per overlapping patch. Two stride-2 and two stride-1 4x4 convs: the
    70x70 design scaled down (P = S/4 - 2; receptive field 34 px) for small images."""

    def __init__(self, spec: GenSpec, *, in_channels: int, norm: str) -> None:
        super().__init__()
        w = spec.width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), make_norm(norm, 2 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 1, 1, bias=False), make_norm(norm, 4 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 1, 4, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
