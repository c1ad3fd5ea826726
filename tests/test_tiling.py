"""Sliding-window inference (segen/serving/tiling.py) against hand-computable truths, its
params keys, and the model config that carries them to evaluation, predict and the pyfunc."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from torch import nn

from models.segmentation import create
from segen.config import ParamsError, load_params
from segen.serving.images import standardise
from segen.serving.tiling import tiled_logits
from segen.serving.unet import (
    load_segmenter,
    predict_canvas,
    predict_masks,
    save_segmenter,
)

torch.set_num_threads(2)
FILL = torch.tensor([-7.0, 9.0])  # a per-channel padding value nothing else takes


@pytest.mark.parametrize("height, width, tile, overlap", [
    (96, 64, (32, 32), 0.5), (64, 96, (32, 32), 0.5),
    (90, 70, (32, 32), 0.5), (70, 90, (40, 24), 0.25),  # sides not multiples of the step
    (50, 40, (64, 64), 0.5), (50, 40, (16, 64), 0.0),  # a tile larger than the image
])
def test_a_pointwise_network_gives_the_same_logits_tiled_as_whole(
        height: int, width: int, tile: tuple[int, int], overlap: float) -> None:
    torch.manual_seed(0)
    net = nn.Conv2d(2, 4, 1)
    x = torch.randn(2, 2, height, width)
    with torch.inference_mode():
        whole, tiled = net(x), tiled_logits(net, x, tile, overlap, FILL)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(tiled.argmax(1), whole.argmax(1))


def test_the_weights_normalise_so_every_pixel_is_covered() -> None:
    def constant(t: torch.Tensor) -> torch.Tensor:
        return torch.full((len(t), 3, *t.shape[-2:]), 2.5)

    out = tiled_logits(constant, torch.zeros(1, 2, 70, 45), (32, 32), 0.5, FILL)
    torch.testing.assert_close(out, torch.full((1, 3, 70, 45), 2.5))


def test_the_centre_of_a_tile_outweighs_its_border() -> None:
    # Tiles 32 wide, step 16, on a 48-wide image: tiles at x = 0 and x = 16. The network
    # outputs each pixel's column within its tile, so on the shared columns 16..31 the
    # left tile says c and the right one c - 16 (a plain average: c - 8). Gaussian weights
    # (sigma 4 px) favour the tile the pixel is central in: column 16 (the left tile's
    # centre, the right one's border) reads about 16, column 31 about 15.
    def column(t: torch.Tensor) -> torch.Tensor:
        return torch.arange(t.shape[-1], dtype=torch.float32).repeat(len(t), 1, t.shape[-2], 1)

    out = tiled_logits(column, torch.zeros(1, 1, 32, 48), (32, 32), 0.5, FILL[:1])[0, 0, 16]
    assert out[16].item() == pytest.approx(16, abs=0.05)
    assert out[31].item() == pytest.approx(15, abs=0.05)
    torch.testing.assert_close(out[:16], torch.arange(16.0))  # one tile each
    torch.testing.assert_close(out[32:], torch.arange(16.0, 32.0))


class Recorder(nn.Module):
    """Outputs a copy of its input (as logits), keeping every tile it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x.clone()


def test_padding_is_the_standardised_zero_and_never_reaches_the_output() -> None:
    x = torch.randn(1, 2, 20, 28)
    net = Recorder()
    out = tiled_logits(net, x, (32, 32), 0.5, FILL)
    torch.testing.assert_close(out, x)  # cropped back at the top left, where x sits
    (tile,) = net.seen
    assert tile.shape == (1, 2, 32, 32) and torch.equal(tile[..., :20, :28], x)
    for c, value in enumerate(FILL.tolist()):
        assert set(tile[0, c, 20:].unique().tolist()) == {value}
        assert set(tile[0, c, :, 28:].unique().tolist()) == {value}


def _config(tile: list[int] | None, **changes) -> dict:
    """A model config as training writes it: 3 classes, class 1 ignored, 40 x 56 canvases."""
    return {"arch": "unet", "in_channels": 3, "classes": ["a", "b", "c"], "ignore_ids": [1],
            "depth": 2, "base_width": 4, "height": 40, "width": 56, "mean": [0.4, 0.5, 0.6],
            "std": [0.2, 0.25, 0.3], "tile_size": tile, "tile_overlap": 0.5,
            "geometry": {"image_size": None, "long_side": 56, "pad_multiple": 4}} | changes


def test_predict_masks_pads_tiles_with_what_preprocess_padding_standardises_to() -> None:
    images = np.random.default_rng(0).integers(0, 256, (1, 18, 56, 3), dtype=np.uint8)
    net, config = Recorder(), _config([32, 32], classes=["a", "b", "c"], ignore_ids=[])
    predict_masks(net, images, config, 1, torch.device("cpu"))
    zero = standardise(torch.zeros(1, 1, 1, 3, dtype=torch.uint8), config["mean"], config["std"])
    assert len(net.seen) == 3  # at columns 0, 16 and 24 of the 56
    for tile in net.seen:  # the 18-row image at the top of a 32-row canvas
        assert tile.shape == (1, 3, 32, 32)
        assert torch.equal(tile[..., 18:, :], zero.view(1, 3, 1, 1).expand(1, 3, 14, 32))


def test_a_tiled_unet_predicts_at_the_image_size_and_never_an_ignored_class() -> None:
    torch.manual_seed(0)
    config = _config([16, 16])
    model = create("unet", in_channels=3, num_classes=3, depth=2, base_width=4).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 30, 42, 3), dtype=np.uint8)
    masks = predict_masks(model, images, config, 2, torch.device("cpu"))
    assert masks.shape == (3, 30, 42) and masks.dtype == np.uint8
    assert 1 not in np.unique(masks)
    canvases = torch.randint(0, 256, (2, 40, 56, 3), dtype=torch.uint8)
    pred = predict_canvas(model, canvases, config, torch.device("cpu"))
    assert pred.shape == (2, 40, 56) and 1 not in pred.unique()


def test_one_tile_the_size_of_the_canvas_predicts_as_whole() -> None:
    torch.manual_seed(0)
    model = create("unet", in_channels=3, num_classes=3, depth=2, base_width=4).eval()
    images = np.random.default_rng(1).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    whole, tiled = (predict_masks(model, images, _config(tile), 2, torch.device("cpu"))
                    for tile in (None, [40, 56]))
    assert np.array_equal(tiled, whole)


def _params(tmp_path: Path, **unet) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["unet"].update(unet)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"depth": 4, "tile_size": 40},
     "unet.tile_size: expected null or sides that are multiples of 2**depth = 16, got 40"),
    ({"depth": 2, "tile_size": [64, 30]},
     "unet.tile_size: expected null or sides that are multiples of 2**depth = 4, got [64, 30]"),
    ({"tile_overlap": 1.0}, "unet.tile_overlap: expected a float in [0, 1), got 1.0"),
    ({"tile_overlap": -0.1}, "unet.tile_overlap: expected a float in [0, 1), got -0.1"),
])
def test_bad_tiles_are_refused_with_the_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        load_params(_params(tmp_path, **change))
    assert message in str(info.value)


def test_the_trained_model_config_carries_the_tiling(tmp_path: Path) -> None:
    from segen.engines.unet_trainer import segmenter_config

    params = load_params(_params(tmp_path, depth=2, base_width=4, tile_size=[32, 48],
                                 tile_overlap=0.25))
    meta = {k: v for k, v in _config(None).items() if k in ("classes", "ignore_ids", "height",
                                                             "width", "mean", "std", "geometry")}
    meta["channels"] = 3
    config = segmenter_config(meta, params.unet)
    assert (config["tile_size"], config["tile_overlap"]) == ([32, 48], 0.25)
    square = dataclasses.replace(params.torchvision, tile_size=64)
    assert segmenter_config(meta, square)["tile_size"] == [64, 64]
    (tmp_path / "model").mkdir()
    save_segmenter(create("unet", in_channels=3, num_classes=3, depth=2, base_width=4),
                   config, tmp_path / "model")
    _, loaded = load_segmenter(tmp_path / "model", torch.device("cpu"))
    assert (loaded["tile_size"], loaded["tile_overlap"]) == ([32, 48], 0.25)
    assert segmenter_config(meta, load_params(REPO / "params.yaml").unet)["tile_size"] is None
