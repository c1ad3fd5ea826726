"""Generative model zoo: GAN, DCGAN, WGAN-GP, VAE, cGAN, CVAE, pix2pix, CycleGAN.

Pure PyTorch: networks, losses and one training update per model; the loop, data,
devices and logging belong to the caller. Every kind is reached through the same
functions, dispatched by a table:

    nets = create("dcgan", GenSpec(channels=3, image_size=32, n_classes=4, latent_dim=64, width=16))
    opts = {name: torch.optim.Adam(ps, lr, betas=default_betas("dcgan"))
            for name, ps in param_groups("dcgan", nets).items()}
    losses = train_step("dcgan", nets, opts, batch, weights)   # detached scalars, no sync
    images = sample("dcgan", nets, 16, generator=torch.Generator().manual_seed(0))

batch: "image" (B, C, S, S) float in [-1, 1], "label" (B,) long, "mask" (B, S, S) long,
"domain" (B,) long 0 (A) / 1 (B). weights: "beta", "likelihood", "gp_weight", "n_critic",
"loss", "r1_weight", "augment", "l1_weight", "cycle_weight", "identity_weight" (only those
of the kind: `WEIGHTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor, nn

from models.generative import cgan, cyclegan, dcgan, gan, pix2pix, vae, wgan_gp
from models.generative.augment import diff_augment
from models.generative.blocks import GenSpec, one_hot
from models.generative.gan import AdversarialPair
from models.generative.losses import gaussian_kl, gradient_penalty

__all__ = [
    "CONDITIONING", "KINDS", "WEIGHTS", "AdversarialPair", "GenSpec", "create", "default_betas",
    "diff_augment", "gaussian_kl", "gradient_penalty", "one_hot", "param_groups", "sample",
    "train_step", "vae_terms",
]


@dataclass(frozen=True)
class _Recipe:
    build: Callable[[GenSpec], nn.Module]
    param_groups: Callable[[nn.Module], dict[str, list[nn.Parameter]]]
    train_step: Callable[..., dict[str, Tensor]]
    draw: Callable[..., Tensor]  # (nets, n, generator, **conditions) -> (n, C, S, S)
    betas: tuple[float, float]
    weights: tuple[str, ...]  # keys of `weights` that train_step reads
    conditioning: str | None  # None, "label", "mask" or "image"


def _recipe(module: ModuleType, conditioning: str | None, build: Callable | None = None) -> _Recipe:
    return _Recipe(build or module.build, module.param_groups, module.train_step, module.draw,
                   module.BETAS, getattr(module, "WEIGHTS", ()), conditioning)


_cvae = _Recipe(vae.build_conditional, vae.param_groups, vae.train_step, vae.draw, vae.BETAS,
                vae.WEIGHTS, "label")
_RECIPES: dict[str, _Recipe] = {
    "gan": _recipe(gan, None),
    "dcgan": _recipe(dcgan, None),
    "wgan_gp": _recipe(wgan_gp, None),
    "vae": _recipe(vae, None),
    "cgan": _recipe(cgan, "label"),
    "cvae": _cvae,
    "pix2pix": _recipe(pix2pix, "mask"),
    "cyclegan": _recipe(cyclegan, "image"),
}
KINDS = ("gan", "dcgan", "wgan_gp", "vae", "cgan", "cvae", "pix2pix", "cyclegan")
CONDITIONING = {kind: _RECIPES[kind].conditioning for kind in KINDS}
WEIGHTS = {kind: _RECIPES[kind].weights for kind in KINDS}
_BATCH_KEYS = {None: (), "label": ("label",), "mask": ("mask",), "image": ("domain",)}


def _get(kind: str) -> _Recipe:
    if kind not in _RECIPES:
        raise ValueError(f"unknown generative model kind {kind!r}; expected one of {KINDS}")
    return _RECIPES[kind]


def create(kind: str, spec: GenSpec) -> nn.Module:
    """The nets of `kind` (attributes generator/discriminator, encoder/decoder, or
    g_ab/g_ba/d_a/d_b), with the published init, in training mode, on the CPU."""
    return _get(kind).build(spec)


def param_groups(kind: str, nets: nn.Module) -> dict[str, list[nn.Parameter]]:
    """One parameter list per optimiser train_step expects, by optimiser name."""
    return _get(kind).param_groups(nets)


def default_betas(kind: str) -> tuple[float, float]:
    """The Adam (beta1, beta2) of the kind's paper."""
    return _get(kind).betas


def train_step(
    kind: str, nets: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
    batch: dict[str, Tensor], weights: dict[str, float],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One update of every net of the model; detached scalar losses (no .item(), no NaN check)."""
    recipe = _get(kind)
    _require(kind, "optimizers", optimizers, tuple(recipe.param_groups(nets)))
    _require(kind, "batch", batch, ("image", *_BATCH_KEYS[recipe.conditioning]))
    _require(kind, "weights", weights, recipe.weights)
    return recipe.train_step(nets, optimizers, batch, weights, generator)


def _require(kind: str, what: str, given: dict, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in given]
    if missing:
        raise ValueError(f"{kind} train_step needs {what} keys {list(keys)}; missing {missing}"
                         f" (got {sorted(given)})")


def sample(
    kind: str, nets: nn.Module, n: int, *, labels: Tensor | None = None,
    masks: Tensor | None = None, images: Tensor | None = None, domain: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """n images (n, C, S, S) in [-1, 1], drawn in eval mode under no_grad.

    cgan/cvae need labels (n,); pix2pix masks (n, S, S); cyclegan images (n, C, S, S)
    of `domain` (0: A -> B, 1: B -> A). Latents come from `generator`, which must live
    on the nets' device. The nets' train/eval mode is restored afterwards.
    """
    recipe = _get(kind)
    _check_conditions(kind, recipe.conditioning, n, nets, labels, masks, images, domain)
    was_training = nets.training
    nets.eval()
    try:
        with torch.no_grad():
            out = recipe.draw(nets, n, generator, labels=labels, masks=masks, images=images,
                              domain=domain)
    finally:
        nets.train(was_training)
    return out.clamp(-1.0, 1.0)


def _check_conditions(kind: str, conditioning: str | None, n: int, nets: nn.Module,
                      labels: Tensor | None, masks: Tensor | None, images: Tensor | None,
                      domain: int | None) -> None:
    spec: GenSpec = nets.spec
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"sample needs n >= 1, got {n!r}")
    expected = {
        "label": ("labels", labels, (n,)),
        "mask": ("masks", masks, (n, spec.image_size, spec.image_size)),
        "image": ("images", images, (n, spec.channels, spec.image_size, spec.image_size)),
    }.get(conditioning)
    if expected is None:
        return
    name, value, shape = expected
    if value is None or tuple(value.shape) != shape:
        got = "nothing" if value is None else f"shape {tuple(value.shape)}"
        raise ValueError(f"{kind} is conditioned on {conditioning}: sample() needs {name} "
                         f"of shape {shape}, got {got}")
    if conditioning == "image" and domain not in (0, 1):
        raise ValueError(f"cyclegan sample() needs domain=0 (translate A -> B) or 1 "
                         f"(B -> A) for the given images, got {domain!r}")


def vae_terms(kind: str, nets: nn.Module, batch: dict[str, Tensor],
              generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """vae/cvae: per-image "elbo", "recon", "kl", each (B,), in eval mode under no_grad."""
    if kind not in ("vae", "cvae"):
        raise ValueError(f"vae_terms is for kinds 'vae' and 'cvae', got {kind!r}")
    if kind == "cvae" and "label" not in batch:
        raise ValueError("cvae vae_terms needs batch['label'] (B,)")
    was_training = nets.training
    nets.eval()
    try:
        with torch.no_grad():
            return vae.terms(nets, batch, generator)
    finally:
        nets.train(was_training)
