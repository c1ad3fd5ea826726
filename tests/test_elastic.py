"""The U-Net paper's elastic deformation (unet.elastic_px): displacements of the stated size
on a coarse grid, smooth in between, applied alike to an image and its mask, which keeps
its class ids (plus the ignored label where pixels come from outside the crop)."""
from __future__ import annotations

import torch
from torchvision import tv_tensors

from models.labels import IGNORE_INDEX
from segen.engines.segmentation_data import CoarseElastic, train_transform


def _pair(size: int = 64) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    mask = torch.zeros(size, size, dtype=torch.int64)
    mask[:, size // 2 - 2: size // 2 + 2] = 1  # a vertical bar
    mask[size // 4: size // 2, size // 4: size // 2] = 2
    image = (mask * 100).to(torch.uint8)[None]  # the image shows the mask
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def test_displacements_have_the_stated_size_at_the_grid_nodes() -> None:
    torch.manual_seed(0)
    elastic, image = CoarseElastic(10.0), _pair(65)[0]
    fields = torch.stack([elastic.make_params([image])["displacement"][0]
                          for _ in range(400)])  # (400, H, W, 2) in grid units
    pixels = fields * 65 / 2  # back to pixels: 2 units span the width
    centre = pixels[:, 32, 32]  # a node of the 3 x 3 grid (align_corners)
    assert 8.5 < float(centre.std()) < 11.5
    step = (pixels[:, 1:, :] - pixels[:, :-1, :]).abs().max()
    assert float(step) < 3.0  # smooth: neighbours move almost together


def test_image_and_mask_move_together_and_the_mask_keeps_its_ids() -> None:
    torch.manual_seed(1)
    image, mask = _pair()
    warped_image, warped_mask = CoarseElastic(6.0)(image, mask)
    assert warped_image.shape == image.shape and warped_mask.shape == mask.shape
    assert not torch.equal(warped_mask, mask)  # it deformed
    assert set(warped_mask.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}
    inside = warped_mask != IGNORE_INDEX
    # the image was drawn from the mask, so where both are defined they still agree
    agree = (warped_image[0][inside] == (warped_mask[inside] * 100).to(torch.uint8))
    assert float(agree.float().mean()) > 0.95  # bilinear image edges vs nearest mask


def test_train_transform_adds_it_only_when_asked() -> None:
    assert train_transform(None, False, 0.0) is None
    steps = train_transform(32, True, 10.0).transforms
    assert isinstance(steps[-1], CoarseElastic) and steps[-1].std_px == 10.0
    assert not any(isinstance(t, CoarseElastic) for t in train_transform(32, True, 0.0).transforms)
