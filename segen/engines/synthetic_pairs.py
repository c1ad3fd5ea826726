"""The work behind synthesize_pairs (imported only when it runs): new mask layouts from the
train split, rendered into images by the trained mask-to-image generator.

Stored like the preprocess arrays (images.npy (N, H, W, C) uint8, masks.npy (N, H, W) uint8
at preprocess.image_size), so the U-Net trains on them with the same loader.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segen.config import SyntheticParams
from segen.engines.training import load_split
from segen.pipeline.store import StageResult
from segen.serving.device import pick_device
from segen.serving.generator import generate_images, load_generator
from segen.serving.grid import label_tiles, rows_of, save_grid
from segen.serving.images import to_zero_one

BATCH = 64  # images generated per forward pass


def new_layouts(masks: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """(n, H, W) masks drawn from masks (N, H, W), each flipped and turned at random, so
    most are layouts the train split does not hold."""
    rng = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(masks), (n,), generator=rng)
    flips = torch.randint(0, 2, (n, 2), generator=rng)
    turns = torch.randint(0, 4, (n,), generator=rng)
    out = []
    for i, (h, v), k in zip(pick.tolist(), flips.tolist(), turns.tolist()):
        m = masks[i]
        m = m.flip(-1) if h else m
        m = m.flip(-2) if v else m
        out.append(m.rot90(k, (-2, -1)) if m.shape[-1] == m.shape[-2] else m)
    return torch.stack(out)


def render(config: dict[str, Any], nets: torch.nn.Module, masks: torch.Tensor, seed: int
           ) -> np.ndarray:
    """(N, H, W, C) uint8 images for masks (N, H, W) at the masks' own size: the generator
    draws at its size (masks resized with nearest), images resized back (bilinear)."""
    size, out = config["spec"]["image_size"], []
    for b, start in enumerate(range(0, len(masks), BATCH)):
        part = masks[start:start + BATCH]
        small = F.interpolate(part[:, None].float(), size=(size, size),
                              mode="nearest-exact")[:, 0].long()
        images = generate_images(config, nets, len(part), masks=small, seed=seed + b)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # (B, C, S, S)
        if x.shape[-2:] != part.shape[-2:]:
            x = F.interpolate(x, size=tuple(part.shape[-2:]), mode="bilinear",
                              antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def synthesize(preprocess: StageResult, train_pix2pix: StageResult,
               register_pix2pix: StageResult, params: SyntheticParams, out: Path
               ) -> dict[str, Any]:
    """images.npy, masks.npy, synthetic.json (lineage) and grid.png into out."""
    nets, config = load_generator(Path(train_pix2pix.path), pick_device())
    _, train_masks = load_split(preprocess, "train")  # (N, H, W) int64
    masks = new_layouts(train_masks, params.n_pairs, params.seed)
    images = render(config, nets, masks, params.seed)
    np.save(out / "images.npy", images)
    np.save(out / "masks.npy", masks.numpy().astype(np.uint8))
    lineage = {"generator_model": register_pix2pix.info["model_name"],
               "generator_version": register_pix2pix.info["version"],
               "generator_run_id": register_pix2pix.info["run_id"],
               "train_pix2pix_key": train_pix2pix.key, "preprocess_key": preprocess.key,
               "source_split": "train", "n_pairs": params.n_pairs, "seed": params.seed}
    (out / "synthetic.json").write_text(json.dumps(lineage, indent=1))
    save_grid(rows_of(to_zero_one(images[:8]), label_tiles(masks[:8])), out / "grid.png", 2)
    return lineage


def load_pairs(synthetic: StageResult) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, C) uint8 images and (N, H, W) int64 masks of a synthesize_pairs result (no
    split: every pair joins the train split)."""
    return load_split(synthetic, None)
