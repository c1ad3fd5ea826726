"""The later literature's GAN and VAE recipes, each against what it computes: spectral norm,
the weight average (EMA), DiffAugment, the hinge loss, R1, the projection discriminator and
the calibrated VAE decoder; and that train_step applies the options it is given."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import models.generative as gen
from models.generative.augment import (
    CUTOUT_RATIO,
    color,
    cutout,
    diff_augment,
    translation,
)
from models.generative.blocks import (
    GenSpec,
    ProjectionDiscriminator,
    spectral_normalise,
)
from models.generative.losses import (
    d_loss_hinge,
    g_loss_hinge,
    r1_penalty,
    recon_calibrated,
    recon_sse,
)
from segen.engines.gen_trainer import weight_average

SPEC = dict(channels=3, image_size=16, n_classes=3, latent_dim=8, width=4)


def _images(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- spectral norm ---------------------------------------------------------------


def test_spectral_norm_makes_every_layer_1_lipschitz() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 14 * 14, 5))
    with torch.no_grad():
        for m in net:
            if hasattr(m, "weight"):
                m.weight.mul_(10)  # far from norm 1 before
    spectral_normalise(net)
    for _ in range(30):  # the power iteration converges over forward passes in train mode
        net(torch.randn(2, 3, 16, 16))
    for layer in (net[0], net[2]):
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_spectral_norm_dcgan_discriminator_has_no_batch_norm_and_reloads() -> None:
    spec = GenSpec(**SPEC, spectral_norm=True)
    nets = gen.create("dcgan", spec)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nets.discriminator.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in nets.generator.modules())
    again = gen.create("dcgan", spec)
    again.load_state_dict(nets.state_dict())  # the parametrised keys round-trip


# --- EMA -------------------------------------------------------------------------


def testweight_average_is_an_exponential_moving_average() -> None:
    nets = gen.create("dcgan", GenSpec(**SPEC))
    assert weight_average(nets, 0.0) is None
    ema = weight_average(nets, 0.9)
    first = next(nets.generator.parameters())
    values = [1.0, 3.0, 5.0]
    for value in values:
        with torch.no_grad():
            first.fill_(value)
        ema.update_parameters(nets.generator)
    expected = 1.0  # the first update copies; then p <- 0.9 p + 0.1 x
    for value in values[1:]:
        expected = 0.9 * expected + 0.1 * value
    averaged = next(ema.module.parameters())
    assert torch.allclose(averaged, torch.full_like(averaged, expected))
    assert first.flatten()[0] == 5.0  # the trained weights are untouched


# --- DiffAugment -----------------------------------------------------------------


def test_empty_policy_is_the_identity_and_unknown_operations_fail() -> None:
    x = _images()
    assert diff_augment(x, ()) is x
    with pytest.raises(ValueError, match="rotate"):
        diff_augment(x, ("rotate",))


def test_translation_shifts_whole_pixels_and_fills_with_zeros() -> None:
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).expand(64, 3, 16, 16)
    y = translation(x.contiguous(), torch.Generator().manual_seed(0))
    shifts = set()
    for image, out in zip(x, y):
        found = None
        for dy in range(-2, 3):  # ratio 1/8 of 16: at most 2 pixels each way
            for dx in range(-2, 3):
                rolled = torch.zeros_like(image)
                src = image[:, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
                rolled[:, max(0, dy):16 - max(0, -dy), max(0, dx):16 - max(0, -dx)] = src
                if torch.equal(rolled, out):
                    found = (dy, dx)
        assert found is not None, "not an exact whole-pixel shift with zero fill"
        shifts.add(found)
    assert len(shifts) > 5  # each image draws its own shift


def test_cutout_erases_one_square_of_half_the_side() -> None:
    x = torch.ones(32, 3, 16, 16)
    y = cutout(x, torch.Generator().manual_seed(0))
    erased = (y == 0).all(dim=1)  # (B, H, W): every channel zero
    side = int(16 * CUTOUT_RATIO)
    for plane in erased:
        rows, cols = plane.any(dim=1).nonzero(), plane.any(dim=0).nonzero()
        assert 0 < plane.sum() <= side * side
        assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
        assert plane.sum() == len(rows) * len(cols)  # a rectangle (a square clipped by edges)
    assert erased.float().mean() > 0.1


def test_color_shifts_brightness_and_keeps_grey_images_grey() -> None:
    grey = torch.zeros(16, 3, 16, 16) + torch.linspace(-0.5, 0.5, 16)  # no saturation
    out = color(grey, torch.Generator().manual_seed(0))
    channels_agree = (out - out.mean(dim=1, keepdim=True)).abs().max()
    assert channels_agree < 1e-5  # saturation scales a zero chroma
    offsets = out.mean(dim=(1, 2, 3))  # contrast keeps the mean: the brightness offset
    assert offsets.abs().max() <= 0.5 and offsets.std() > 0.1


def test_augmentation_is_differentiable_and_seeded() -> None:
    x = _images().requires_grad_(True)
    policy = ("color", "translation", "cutout")
    y = diff_augment(x, policy, torch.Generator().manual_seed(3))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = diff_augment(x.detach(), policy, torch.Generator().manual_seed(3))
    assert torch.equal(y.detach(), again)


# --- losses ----------------------------------------------------------------------


def test_hinge_loss_hand_values() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # real: max(0, 1 - x) = 0, 0.5, 2 -> 2.5 / 3; fake: max(0, 1 + x) = 0, 1, 2 -> 1
    assert d_loss_hinge(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert g_loss_hinge(fake).item() == pytest.approx(1 / 3 * (2.0 - 0.0 - 1.0))


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm() -> None:
    w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    x = torch.randn(5, 3).requires_grad_(True)
    r1 = r1_penalty(x @ w, x)
    assert r1.item() == pytest.approx(14.0)
    r1.backward()  # create_graph: the penalty trains D
    assert torch.allclose(w.grad, 2 * w.detach())


def test_calibrated_decoder_is_the_gaussian_at_the_batch_error() -> None:
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.full_like(x, 0.1)  # every pixel off by 0.1: sigma^2 = 0.01
    pixels = 4
    expected = 0.5 * (pixels * 0.01 / 0.01 + pixels * math.log(0.01))
    assert torch.allclose(recon_calibrated(x_hat, x), torch.full((2,), expected))
    # the fixed variance (0.5) is the SSE: 0.04 per image
    assert torch.allclose(recon_sse(x_hat, x), torch.full((2,), 0.04))


# --- the projection discriminator ------------------------------------------------


def test_projection_discriminator_adds_the_label_embedding_inner_product() -> None:
    torch.manual_seed(0)
    spec = GenSpec(**SPEC)
    d = ProjectionDiscriminator(spec, norm="none")
    x = _images(2)
    cond = torch.eye(3)[[0, 2]]
    phi = d.body(x).sum(dim=(2, 3))
    expected = d.head(phi).flatten() + (phi * d.embed.weight.T[[0, 2]]).sum(dim=1)
    assert torch.allclose(d(x, cond), expected, atol=1e-5)
    assert not torch.allclose(d(x, torch.eye(3)[[1, 1]]), d(x, cond))


def test_cgan_with_projection_trains_and_samples() -> None:
    spec = GenSpec(**SPEC, spectral_norm=True, projection=True)
    nets = gen.create("cgan", spec)
    assert isinstance(nets.discriminator, ProjectionDiscriminator)
    opts = {n: torch.optim.Adam(p, 1e-3) for n, p in gen.param_groups("cgan", nets).items()}
    batch = {"image": _images(4), "label": torch.tensor([0, 1, 2, 0])}
    before = [p.clone() for p in nets.discriminator.parameters()]
    losses = gen.train_step("cgan", nets, opts, batch,
                            {"loss": "hinge", "r1_weight": 0.0, "augment": ("translation",)})
    assert set(losses) == {"d_loss", "g_loss"}
    assert any(not torch.equal(a, b) for a, b in zip(before, nets.discriminator.parameters()))
    assert gen.sample("cgan", nets, 3, labels=torch.arange(3)).shape == (3, 3, 16, 16)


# --- the options reach the update ------------------------------------------------


def test_train_step_adds_r1_and_uses_the_chosen_loss() -> None:
    torch.manual_seed(0)
    nets = gen.create("dcgan", GenSpec(**SPEC))
    opts = {n: torch.optim.SGD(p, lr=0.0) for n, p in gen.param_groups("dcgan", nets).items()}
    batch = {"image": _images(4)}
    g = torch.Generator().manual_seed(0)
    plain = gen.train_step("dcgan", nets, opts, batch,
                           {"loss": "bce", "r1_weight": 0.0, "augment": ()}, g)
    g = torch.Generator().manual_seed(0)
    with_r1 = gen.train_step("dcgan", nets, opts, batch,
                             {"loss": "bce", "r1_weight": 2.0, "augment": ()}, g)
    # lr 0: the same nets and latents, so D's loss grows by exactly gamma / 2 * R1
    assert with_r1["r1"].item() > 0
    assert with_r1["d_loss"].item() == pytest.approx(
        (plain["d_loss"] + with_r1["r1"]).item(), rel=1e-5)
    g = torch.Generator().manual_seed(0)
    hinge = gen.train_step("dcgan", nets, opts, batch,
                           {"loss": "hinge", "r1_weight": 0.0, "augment": ()}, g)
    assert hinge["d_loss"].item() != pytest.approx(plain["d_loss"].item())


def test_standing_batch_norm_measures_the_exact_statistics_of_the_batches() -> None:
    from segen.engines.training import standing_batch_norm

    net = nn.Sequential(nn.BatchNorm1d(3))
    net[0].running_mean.fill_(100.0)  # stale statistics, to be replaced
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 2 + 5
    with standing_batch_norm(net):
        for chunk in x.split(10):
            net(chunk)
    assert torch.allclose(net[0].running_mean, x.mean(0), atol=1e-5)
    assert not net.training and net[0].momentum == 0.1  # eval mode, momentum restored


def test_the_weight_average_is_checkpointed_and_restored() -> None:
    from tqdm import tqdm

    from segen.config import DCGanParams
    from segen.engines.gen_trainer import GenTrainer

    params = DCGanParams(epochs=1, lr=2e-4, width=4, d_lr=4e-4, ema=0.9, augment=("color",),
                         loss="bce", r1_weight=0.5, spectral_norm=False)
    config = {"spec": {**SPEC, **params.architecture()}}
    data = {"image": _images(8)}
    trainer = GenTrainer("dcgan", config, params, 0, data, 4)
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == 4e-4  # TTUR
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == 2e-4
    with tqdm(disable=True) as bar:
        losses = trainer.train_epoch(bar)
    assert "r1" in losses
    state = trainer.state("run")
    again = GenTrainer("dcgan", config, params, 1, data, 4)
    again.restore(state)
    for a, b in zip(trainer.ema.module.parameters(), again.ema.module.parameters()):
        assert torch.equal(a, b)
    averaged = next(trainer.ema.module.parameters())
    assert not torch.equal(averaged, next(trainer.nets.generator.parameters()))
    assert trainer.sampler().generator is trainer.ema.module
