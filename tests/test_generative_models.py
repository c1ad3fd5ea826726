"""Generative model zoo: shapes, backward, losses against hand values, one train_step
per kind, sampling contracts, DCGAN init."""

from __future__ import annotations

import math

import pytest
import torch

import models.generative as gen
from models.generative.blocks import GenSpec
from models.generative.losses import (
    d_loss_bce,
    g_loss_nonsaturating,
    gaussian_kl,
    gradient_penalty,
    lsgan_per_sample,
    recon_sse,
    weighted_mean,
)

WEIGHTS = {"beta": 1.0, "likelihood": "fixed", "gp_weight": 10.0, "n_critic": 2,
           "loss": "bce", "r1_weight": 0.0, "augment": (), "l1_weight": 100.0,
           "cycle_weight": 10.0, "identity_weight": 5.0}
N_CLASSES = 3


def _spec(size: int = 16, channels: int = 3, width: int = 4) -> GenSpec:
    return GenSpec(channels=channels, image_size=size, n_classes=N_CLASSES, latent_dim=8,
                   width=width)


def _batch(spec: GenSpec, b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = spec.image_size
    return {
        "image": torch.rand(b, spec.channels, s, s, generator=g) * 2 - 1,
        "label": torch.randint(0, spec.n_classes, (b,), generator=g),
        "mask": torch.randint(0, spec.n_classes, (b, s, s), generator=g),
        "domain": torch.arange(b) % 2,
    }


def _setup(kind: str, spec: GenSpec, lr: float = 2e-4):
    torch.manual_seed(0)
    nets = gen.create(kind, spec)
    opts = {name: torch.optim.Adam(ps, lr=lr, betas=gen.default_betas(kind))
            for name, ps in gen.param_groups(kind, nets).items()}
    return nets, opts


def _conditions(kind: str, spec: GenSpec, n: int) -> dict:
    batch = _batch(spec, n, seed=1)
    return {"label": {"labels": batch["label"]}, "mask": {"masks": batch["mask"]},
            "image": {"images": batch["image"], "domain": 0}}.get(gen.CONDITIONING[kind], {})


# --- networks: shapes and backward ------------------------------------------------


@pytest.mark.parametrize("kind", gen.KINDS)
@pytest.mark.parametrize(("size", "channels"), [(16, 1), (16, 3), (32, 1), (32, 3)])
def test_train_step_backpropagates_into_every_parameter(
    kind: str, size: int, channels: int
) -> None:
    spec = _spec(size, channels)
    nets, opts = _setup(kind, spec)
    losses = gen.train_step(kind, nets, opts, _batch(spec), WEIGHTS)
    for name, value in losses.items():
        assert value.ndim == 0 and not value.requires_grad, name
        assert torch.isfinite(value), name
    for group, params in gen.param_groups(kind, nets).items():
        for p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all(), group
    images = gen.sample(kind, nets, 3, **_conditions(kind, spec, 3))
    assert images.shape == (3, channels, size, size)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_network_output_shapes(size: int) -> None:
    spec, b = _spec(size), 2
    x = torch.zeros(b, 3, size, size)
    z, y = torch.zeros(b, spec.latent_dim), torch.eye(N_CLASSES)[:b]
    for kind in ("gan", "dcgan", "wgan_gp"):
        nets = gen.create(kind, spec)
        assert nets.generator(z).shape == (b, 3, size, size)
        assert nets.discriminator(x).shape == (b,)
    nets = gen.create("cgan", spec)
    assert nets.generator(z, y).shape == (b, 3, size, size)
    assert nets.discriminator(x, y).shape == (b,)
    mu, logvar = gen.create("cvae", spec).encoder(x, y)
    assert mu.shape == logvar.shape == (b, spec.latent_dim)
    p2p = gen.create("pix2pix", spec)
    assert p2p.generator(torch.zeros(b, N_CLASSES, size, size)).shape == (b, 3, size, size)
    patches = size // 4 - 2  # two stride-2 and two stride-1 4x4 convs
    assert p2p.discriminator(torch.zeros(b, N_CLASSES + 3, size, size)).shape == (
        b, 1, patches, patches)
    cyc = gen.create("cyclegan", spec)
    assert cyc.g_ab(x).shape == cyc.g_ba(x).shape == (b, 3, size, size)
    assert cyc.d_a(x).shape == (b, 1, patches, patches)


def test_param_groups_cover_every_parameter_once() -> None:
    for kind in gen.KINDS:
        nets = gen.create(kind, _spec())
        grouped = [id(p) for ps in gen.param_groups(kind, nets).values() for p in ps]
        assert sorted(grouped) == sorted(id(p) for p in nets.parameters()), kind
    cyc = gen.create("cyclegan", _spec())
    assert set(gen.param_groups("cyclegan", cyc)) == {"generator", "discriminator"}
    assert set(gen.param_groups("vae", gen.create("vae", _spec()))) == {"vae"}


# --- losses against hand-computed values ---------------------------------------------


def test_gradient_penalty_of_a_linear_critic() -> None:
    # f(x) = w.x has gradient w everywhere: penalty = (||w|| - 1)^2 = (5 - 1)^2.
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])

    def critic(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ w

    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert gradient_penalty(critic, real, fake) == pytest.approx(16.0)
    w_unit = w / 5
    penalty = gradient_penalty(lambda x: x.flatten(1) @ w_unit, real, fake)
    assert penalty == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_uses_per_sample_norms_and_trains_the_critic() -> None:
    # f(x) = 0.5 ||x||^2 has gradient x; with real == fake the interpolate is x itself.
    x = torch.tensor([[0.0, 2.0], [3.0, 4.0]])  # norms 2 and 5
    scale = torch.tensor(1.0, requires_grad=True)
    penalty = gradient_penalty(lambda v: 0.5 * scale * (v**2).sum(1), x, x)
    assert penalty.item() == pytest.approx(((2 - 1) ** 2 + (5 - 1) ** 2) / 2)  # 8.5
    penalty.backward()  # create_graph=True: the penalty reaches the critic's parameters
    # d/ds mean((s||x|| - 1)^2) = mean(2 (s||x|| - 1) ||x||) = (2*1*2 + 2*4*5) / 2 = 22
    assert scale.grad.item() == pytest.approx(22.0)


def test_gaussian_kl_hand_values() -> None:
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).tolist() == [0.0, 0.0]
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # -0.5 * [(1 + 0 - 1 - 1) + (1 + ln 2 - 4 - 2)] = 3 - ln(2) / 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(3 - math.log(2) / 2)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(
        torch.distributions.kl_divergence(q, p).sum().item())


def test_small_losses_hand_values() -> None:
    zero = torch.zeros(4)
    assert d_loss_bce(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert g_loss_nonsaturating(zero).item() == pytest.approx(math.log(2))
    x_hat, x = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    x[1] = -1
    assert recon_sse(x_hat, x).tolist() == [4.0, 4.0]
    assert lsgan_per_sample(torch.tensor([[[[0.0, 2.0]]]]), 1.0).tolist() == [1.0]
    assert weighted_mean(torch.tensor([1.0, 5.0, 9.0]), torch.tensor([1.0, 0.0, 1.0])).item() == 5.0
    assert weighted_mean(torch.tensor([1.0]), torch.tensor([0.0])).item() == 0.0


# --- training -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", gen.KINDS)
def test_train_step_moves_every_parameter_group(kind: str) -> None:
    spec = _spec()
    nets, opts = _setup(kind, spec)
    groups = gen.param_groups(kind, nets)
    before = {name: torch.cat([p.detach().flatten().clone() for p in ps])
              for name, ps in groups.items()}
    gen.train_step(kind, nets, opts, _batch(spec), WEIGHTS, torch.Generator().manual_seed(0))
    for name, ps in groups.items():
        after = torch.cat([p.detach().flatten() for p in ps])
        assert not torch.equal(before[name], after), f"{kind}: group {name} did not move"


@pytest.mark.parametrize(("kind", "key"), [("vae", "loss"), ("cvae", "loss"), ("pix2pix", "l1"),
                                           ("cyclegan", "cycle")])
def test_a_few_steps_lower_the_reconstruction_loss(kind: str, key: str) -> None:
    spec = _spec()
    nets, opts = _setup(kind, spec, lr=2e-3)
    batch, g = _batch(spec), torch.Generator().manual_seed(0)
    losses = [gen.train_step(kind, nets, opts, batch, WEIGHTS, g)[key] for _ in range(8)]
    assert losses[-1] < losses[0], [round(v.item(), 3) for v in losses]


def test_train_step_is_reproducible_with_seeds() -> None:
    spec = _spec()
    runs = []
    for _ in range(2):
        nets, opts = _setup("dcgan", spec)
        runs.append(gen.train_step("dcgan", nets, opts, _batch(spec), WEIGHTS,
                                   torch.Generator().manual_seed(3)))
    assert {k: v.item() for k, v in runs[0].items()} == {k: v.item() for k, v in runs[1].items()}


def test_wgan_gp_makes_n_critic_critic_steps_per_generator_step() -> None:
    spec = _spec()
    nets, opts = _setup("wgan_gp", spec)
    losses = gen.train_step("wgan_gp", nets, opts, _batch(spec, b=6), WEIGHTS | {"n_critic": 3})
    critic_param, gen_param = opts["discriminator"].param_groups[0]["params"][0], \
        opts["generator"].param_groups[0]["params"][0]
    assert opts["discriminator"].state[critic_param]["step"].item() == 3
    assert opts["generator"].state[gen_param]["step"].item() == 1
    assert {"d_loss", "g_loss", "gp", "wasserstein"} <= set(losses)
    # a batch smaller than n_critic is reused whole
    gen.train_step("wgan_gp", nets, opts, _batch(spec, b=2), WEIGHTS | {"n_critic": 3})
    assert opts["discriminator"].state[critic_param]["step"].item() == 6


def test_wgan_gp_critic_has_no_batch_norm() -> None:
    nets = gen.create("wgan_gp", _spec())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in nets.discriminator.modules())


def test_cyclegan_batch_of_one_domain_is_finite() -> None:
    spec = _spec()
    nets, opts = _setup("cyclegan", spec)
    batch = _batch(spec) | {"domain": torch.zeros(4, dtype=torch.long)}
    losses = gen.train_step("cyclegan", nets, opts, batch, WEIGHTS)
    assert all(torch.isfinite(v) for v in losses.values())


def test_train_step_rejects_missing_keys_and_unknown_kinds() -> None:
    spec = _spec()
    nets, opts = _setup("wgan_gp", spec)
    with pytest.raises(ValueError, match="n_critic"):
        gen.train_step("wgan_gp", nets, opts, _batch(spec), {"gp_weight": 10.0})
    nets, opts = _setup("cgan", spec)
    with pytest.raises(ValueError, match="label"):
        gen.train_step("cgan", nets, opts, {"image": _batch(spec)["image"]}, WEIGHTS)
    with pytest.raises(ValueError, match="discriminator"):
        gen.train_step("cgan", nets, {"generator": opts["generator"]}, _batch(spec), WEIGHTS)
    with pytest.raises(ValueError, match="unknown generative model kind 'diffusion'"):
        gen.create("diffusion", spec)


@pytest.mark.parametrize("bad", [{"image_size": 24}, {"image_size": 8}, {"channels": 0},
                                 {"width": 2.5}])
def test_genspec_rejects_bad_values(bad: dict) -> None:
    args = {"channels": 3, "image_size": 32, "n_classes": 2, "latent_dim": 8, "width": 4} | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        GenSpec(**args)


# --- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", gen.KINDS)
def test_sample_shape_range_and_determinism(kind: str) -> None:
    spec = _spec(channels=1)
    nets, opts = _setup(kind, spec)
    gen.train_step(kind, nets, opts, _batch(spec), WEIGHTS)  # BN running stats move off init
    conds = _conditions(kind, spec, 5)
    first = gen.sample(kind, nets, 5, generator=torch.Generator().manual_seed(7), **conds)
    again = gen.sample(kind, nets, 5, generator=torch.Generator().manual_seed(7), **conds)
    assert first.shape == (5, 1, 16, 16) and not first.requires_grad
    assert first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again)
    assert nets.training  # the mode is restored
    if gen.CONDITIONING[kind] in (None, "label"):  # drawn from a latent: the seed matters
        other = gen.sample(kind, nets, 5, generator=torch.Generator().manual_seed(8), **conds)
        assert not torch.equal(first, other)


@pytest.mark.parametrize("kind", ["cgan", "cvae", "pix2pix", "cyclegan"])
def test_conditional_sample_rejects_missing_conditions(kind: str) -> None:
    nets = gen.create(kind, _spec())
    with pytest.raises(ValueError, match=f"{kind} is conditioned on"):
        gen.sample(kind, nets, 2)
    wrong_n = _conditions(kind, _spec(), 3)
    with pytest.raises(ValueError, match="shape"):
        gen.sample(kind, nets, 2, **wrong_n)


def test_cyclegan_sample_needs_a_domain_and_picks_the_generator() -> None:
    spec = _spec()
    nets = gen.create("cyclegan", spec).eval()
    images = _batch(spec)["image"]
    with pytest.raises(ValueError, match="domain"):
        gen.sample("cyclegan", nets, 4, images=images)
    with torch.no_grad():
        a_to_b, b_to_a = nets.g_ab(images), nets.g_ba(images)
    assert torch.equal(gen.sample("cyclegan", nets, 4, images=images, domain=0), a_to_b)
    assert torch.equal(gen.sample("cyclegan", nets, 4, images=images, domain=1), b_to_a)


def test_cgan_samples_depend_on_the_label() -> None:
    nets = gen.create("cgan", _spec())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = gen.sample("cgan", nets, 2, labels=torch.tensor([0, 0]), generator=g())
    b = gen.sample("cgan", nets, 2, labels=torch.tensor([1, 1]), generator=g())
    assert not torch.equal(a, b)


def test_vae_terms_per_image() -> None:
    spec = _spec()
    for kind in ("vae", "cvae"):
        nets = gen.create(kind, spec)
        terms = gen.vae_terms(kind, nets, _batch(spec, b=3), torch.Generator().manual_seed(0))
        assert {k: v.shape for k, v in terms.items()} == {k: (3,) for k in ("elbo", "recon", "kl")}
        assert torch.allclose(terms["elbo"], -(terms["recon"] + terms["kl"]))
        assert (terms["kl"] >= 0).all()
    with pytest.raises(ValueError, match="vae"):
        gen.vae_terms("dcgan", gen.create("dcgan", spec), _batch(spec))


# --- init -----------------------------------------------------------------------------


def test_dcgan_init_statistics() -> None:
    nets = gen.create("dcgan", _spec(size=32, width=32))
    convs = [m.weight for m in nets.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = torch.cat([w.detach().flatten() for w in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert abs(weights.mean().item()) < 1e-3
    bns = [m for m in nets.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn = torch.cat([m.weight.detach() for m in bns])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.std().item() == pytest.approx(0.02, rel=0.3)
    # DCGAN's placement of batch norm: none in D's first layer nor in G's output layer
    assert not isinstance(nets.discriminator.body[1], torch.nn.BatchNorm2d)
    assert isinstance(nets.generator.net[-1], torch.nn.Tanh)
    assert isinstance(nets.generator.net[-2], torch.nn.ConvTranspose2d)
