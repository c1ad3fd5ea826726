"""The supervised segmenters' input pipeline: a Dataset over the preprocess memmaps (one
pair read per item, so memory does not grow with the dataset), torchvision transforms v2
applied jointly to the image and its mask, and the DataLoader settings per device.

Shapes: items are (C, H, W) uint8 images and (H, W) int64 masks (IGNORE_INDEX: ignored).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
)
from torchvision import tv_tensors
from torchvision.transforms import v2

from models.labels import IGNORE_INDEX
from segen.config import height_width
from segen.data.arrays import open_split, read_rows
from segen.pipeline.store import StageResult


class PairDataset(Dataset):
    """Rows of (N, H, W, C) images and (N, H, W) masks (arrays or NpyRows), one per item."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, rows: Sequence[int],
                 transform: Any = None):
        self.images, self.masks, self.rows, self.transform = images, masks, list(rows), transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[i]
        image = tv_tensors.Image(torch.from_numpy(np.array(self.images[row])).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(self.masks[row].astype(np.int64)))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


class RandomTurn(v2.Transform):
    """A random multiple of 90 degrees, the same for the image and its mask (lossless, unlike
    v2.RandomRotation's resampling); only square inputs keep their shape, so only those."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"turns": int(torch.randint(0, 4, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt.shape[-1] != inpt.shape[-2] or not params["turns"]:
            return inpt
        return tv_tensors.wrap(inpt.rot90(params["turns"], (-2, -1)), like=inpt)


class CoarseElastic(v2.ElasticTransform):
    """The U-Net paper's elastic deformation (Ronneberger et al. 2015, Sec. 3.1): random
    displacements on a coarse 3 x 3 grid, drawn from N(0, std_px) pixels and smoothed to
    every pixel by bicubic interpolation. torchvision's ElasticTransform then warps the image
    (bilinear) and the mask (nearest) by that field; pixels pulled from outside the input
    become 0 in the image and the ignored label in the mask. Its own displacement (blurred
    per-pixel noise) would need an 8-sigma Gaussian kernel per image for deformations this
    smooth: ~170 ms for a 256 px crop on one core, against a few ms here."""

    def __init__(self, std_px: float, grid: int = 3):
        super().__init__(fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX})
        self.std_px, self.grid = std_px, grid

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.functional.get_size(
            next(x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask))))
        coarse = torch.randn(1, 2, self.grid, self.grid) * self.std_px  # (dx, dy) in pixels
        dense = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                                align_corners=True)
        per_unit = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)  # grid units
        return {"displacement": (dense * per_unit).permute(0, 2, 3, 1)}  # (1, H, W, 2)


def train_transform(crop_size: int | list[int] | None, augment: bool,
                    elastic_px: float) -> v2.Compose | None:
    """Random crops (padded with the ignored label where an image is smaller), then flips,
    turns and (elastic_px > 0) an elastic deformation; None when there is nothing to do."""
    steps: list[Any] = []
    if crop_size:
        steps.append(v2.RandomCrop(height_width(crop_size), pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
    if augment:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomTurn()]
    if elastic_px > 0:
        steps.append(CoarseElastic(elastic_px))
    return v2.Compose(steps) if steps else None


def split_dataset(prepared: StageResult, split: str | None, transform: Any = None
                  ) -> PairDataset:
    _, _, rows = open_split(prepared, split)
    images, masks = read_rows(prepared)  # pread per item: no map's pages held
    return PairDataset(images, masks, rows, transform)


def train_dataset(prepared: StageResult, extra: StageResult | None, transform: Any) -> Dataset:
    """The train split, and every pair of an extra folder (synthesize_pairs) after it."""
    train = split_dataset(prepared, "train", transform)
    return train if extra is None else ConcatDataset([train, split_dataset(extra, None, transform)])


def loader(dataset: Dataset, batch_size: int, device: torch.device, *,
           generator: torch.Generator | None, sampler: Sampler | None = None) -> DataLoader:
    """Shuffled (generator given: the seeded order, restorable), ordered, or in a sampler's
    order (one rank's share of the dataset: rank_sampler).

    On CUDA, worker processes decode and augment while the GPU computes, into pinned memory
    for asynchronous copies. On the CPU the same cores train, and workers would only take
    them from the model (measured in bench/train_throughput.py): batches are made in the
    training process."""
    cuda, shuffled = device.type == "cuda", generator is not None
    workers = min(4, max(1, (torch.get_num_threads() or 2) - 1)) if cuda else 0
    # A training batch of one image cannot train BatchNorm after global pooling (DeepLabV3's
    # ASPP): such a last batch is dropped (its image is in the next epoch's other batches).
    # Every rank's sampler has the same length, so the ranks drop alike and stay in step.
    size = len(dataset) if sampler is None else len(sampler)
    drop_last = (shuffled or sampler is not None) and size % batch_size == 1 and size > 1
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffled, sampler=sampler,
                      generator=generator, num_workers=workers, pin_memory=cuda,
                      persistent_workers=workers > 0, drop_last=drop_last)


def rank_sampler(dataset: Dataset, rank: int, world: int, seed: int) -> DistributedSampler:
    """One rank's share of each epoch's seeded permutation: perm[rank::world] (padded to a
    multiple of world by repeating its start), so the ranks' batches together are one
    process's global batch. set_epoch(epoch) before each epoch draws that epoch's order."""
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
