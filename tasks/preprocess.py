"""preprocess: decode, resize and split once, into uint8 arrays that training reads fast."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segen.config import PreprocessParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


def split_indices(n: int, params: PreprocessParams) -> dict[str, list[int]]:
    """Deterministic train/val/test split by seed (at least one image in val and test)."""
    order = np.random.default_rng(params.seed).permutation(n)
    n_test = max(1, round(n * params.test_fraction))
    n_val = max(1, round(n * params.val_fraction))
    return {"test": sorted(order[:n_test].tolist()),
            "val": sorted(order[n_test:n_test + n_val].tolist()),
            "train": sorted(order[n_test + n_val:].tolist())}


def _load_pair(data_dir: Path, image: str, mask: str | None, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, C) uint8 image and (size, size) uint8 mask (all 0 when mask is None)."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    img = torch.from_numpy(np.asarray(Image.open(data_dir / image)))
    img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)  # (C, H, W)
    msk = (torch.from_numpy(np.asarray(Image.open(data_dir / mask)))[None] if mask is not None
           else torch.zeros((1, *img.shape[-2:]), dtype=torch.uint8))  # (1, H, W)
    if img.shape[-2:] != (size, size):
        img = TF.resize(img, [size, size], antialias=True)
        msk = TF.resize(msk, [size, size], interpolation=InterpolationMode.NEAREST_EXACT)
    return img.permute(1, 2, 0).numpy(), msk[0].numpy()


@stage_task("preprocess")
def preprocess(project: Project, version_data: StageResult, validate: StageResult,
               preprocess: PreprocessParams, out: Path, key: str) -> StageOutput:
    """images.npy (N,H,W,C) uint8, masks.npy (N,H,W) uint8 (all 0 without masks), labels.npy
    (image-level class ids indexing `classes`), split + stats; `has_masks` in dataset.json and
    the stage info."""
    import pandas as pd  # lazy here and above: a cached run never imports pandas or torch

    manifest = pd.read_csv(project.data / "manifest.csv", dtype={"id": str})
    described = json.loads((project.data / "classes.json").read_text())
    classes, has_masks = described["classes"], described.get("masks", True) is not False
    pairs = [_load_pair(project.data, r.image, r.mask if has_masks else None,
                        preprocess.image_size)
             for r in manifest.itertuples()]
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    split = split_indices(len(manifest), preprocess)
    train = images[split["train"]].reshape(-1, images.shape[-1]) / 255.0
    meta = {"classes": classes, "label_names": classes, "has_masks": has_masks,
            "channels": int(images.shape[-1]),
            "image_size": preprocess.image_size, "ids": manifest["id"].astype(str).tolist(),
            "mean": train.mean(0).tolist(), "std": train.std(0).clip(1e-3).tolist(),
            "data_version": version_data.info["data_version"]}
    np.save(out / "images.npy", images)
    np.save(out / "masks.npy", masks)
    np.save(out / "labels.npy", manifest["label"].to_numpy(np.int64))
    (out / "split.json").write_text(json.dumps(split))
    # every manifest column, in the arrays' order: train_cyclegan splits its two domains by
    # the column generative.cyclegan_domain_column names (so no params section here)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return StageOutput({**{k: len(v) for k, v in split.items()}, "has_masks": has_masks})
