"""UNet: shapes, gradients, input-size checks, argument checks, state_dict round trip."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.unet import UNet, required_multiple

torch.set_num_threads(2)


def _net(**overrides: int) -> UNet:
    args = {"in_channels": 3, "num_classes": 4, "depth": 2, "base_width": 4} | overrides
    return UNet(**args)


@pytest.mark.parametrize(
    ("depth", "base_width", "in_channels", "num_classes", "height", "width"),
    [
        (1, 4, 1, 2, 64, 64),
        (2, 8, 3, 5, 64, 64),
        (3, 4, 1, 3, 64, 64),
        (4, 4, 3, 4, 48, 80),  # 48 = 3*16, 80 = 5*16
        (3, 2, 3, 1, 8, 96),  # 1:12 aspect ratio, both multiples of 8
        (2, 4, 1, 2, 36, 12),  # taller than wide
    ],
)
def test_output_shape(
    depth: int, base_width: int, in_channels: int, num_classes: int, height: int, width: int
) -> None:
    net = UNet(in_channels=in_channels, num_classes=num_classes, depth=depth, base_width=base_width)
    x = torch.randn(2, in_channels, height, width)
    assert net(x).shape == (2, num_classes, height, width)


def test_channel_widths_double_per_level() -> None:
    net = _net(depth=3, base_width=5)
    assert [block[0].out_channels for block in net.down] == [5, 10, 20]
    assert net.bottleneck[0].out_channels == 40
    assert [up.up.in_channels for up in net.up] == [40, 20, 10]
    assert net.head.in_channels == 5 and net.head.out_channels == 4


def test_backward_gives_finite_gradients_on_all_parameters() -> None:
    torch.manual_seed(0)
    net = _net(depth=3)
    logits = net(torch.randn(2, 3, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, 32, 32))).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(("depth", "height", "width"), [(2, 30, 32), (4, 64, 72), (3, 4, 8)])
def test_size_not_divisible_raises_with_fix(depth: int, height: int, width: int) -> None:
    net = _net(depth=depth)
    with pytest.raises(ValueError) as info:
        net(torch.randn(1, 3, height, width))
    message = str(info.value)
    assert f"{height}x{width}" in message
    assert str(2**depth) in message
    assert "Resize or crop" in message


def test_wrong_input_rank_or_channels_raise() -> None:
    net = _net()
    with pytest.raises(ValueError, match="in_channels=3"):
        net(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(3, 16, 16))


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"depth": 0}, "depth must be >= 1"),
        ({"depth": -2}, "depth must be >= 1"),
        ({"base_width": 0}, "base_width must be >= 1"),
        ({"in_channels": 0}, "in_channels must be >= 1"),
        ({"num_classes": 0}, "num_classes must be >= 1"),
        ({"depth": 2.0}, "depth must be an int"),
        ({"base_width": True}, "base_width must be an int"),
    ],
)
def test_invalid_constructor_args_raise(overrides: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        _net(**overrides)


def test_constructor_args_are_keyword_only_and_required() -> None:
    with pytest.raises(TypeError):
        UNet(3, 4, 2, 4)  # type: ignore[misc]
    with pytest.raises(TypeError):
        UNet(in_channels=3, num_classes=4, depth=2)  # type: ignore[call-arg]


def test_required_multiple() -> None:
    assert [required_multiple(d) for d in (1, 2, 4)] == [2, 4, 16]
    with pytest.raises(ValueError, match="depth must be >= 1"):
        required_multiple(0)


def test_state_dict_round_trip_gives_identical_eval_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _net(depth=2)
    net.train()
    net(torch.randn(4, 3, 16, 16))  # move BatchNorm running stats off their init values
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
    path = tmp_path / "unet.pt"
    torch.save(net.state_dict(), path)

    torch.manual_seed(1)  # a different init, so a failed load would show
    loaded = _net(depth=2)
    loaded.load_state_dict(torch.load(path, weights_only=True))
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_segmenters_are_created_by_name() -> None:
    from models.segmentation import SEGMENTERS, create

    net = create("unet", in_channels=3, num_classes=4, depth=2, base_width=4)
    assert isinstance(net, SEGMENTERS["unet"])
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="unknown segmentation model .unet3d.; known: .*unet"):
        create("unet3d")


def test_params_name_every_torchvision_arch() -> None:
    """params.yaml's torchvision.arch choices are the registry's networks other than the
    U-Net (config.py spells them out so that reading params.yaml does not import torch)."""
    import typing

    from models.segmentation import SEGMENTERS
    from segen.config import TorchvisionArch

    assert set(typing.get_args(TorchvisionArch)) == set(SEGMENTERS) - {"unet"}
