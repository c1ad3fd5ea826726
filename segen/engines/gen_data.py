"""The preprocess stage's arrays as the tensors generative models train and are scored on:
images in [-1, 1] at a generator's working size (working_size), labels, masks and CycleGAN
domains."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segen.config import GenerativeParams, GeneratorParams
from segen.data.arrays import (
    MANIFEST,
    dataset_meta,
    load_arrays,
    load_labels,
    manifest_rows,
    split_index,
)
from segen.pipeline.stage import StageSkipped
from segen.pipeline.store import StageResult
from segen.serving.images import to_unit_range


def working_size(params: GenerativeParams, section: GeneratorParams) -> int:
    """The square side a generator trains and draws at: its section's image_size where it
    has one (pix2pix), else generative.image_size."""
    return getattr(section, "image_size", None) or params.image_size


def load_batch(prepared: StageResult, params: GenerativeParams, split: str,
               domain_values: list[str] | None = None, size: int | None = None
               ) -> dict[str, torch.Tensor]:
    """One split, whole: "image" (N, C, S, S) in [-1, 1], "label" (N,), "mask" (N, S, S)
    and, when domain_values is given, "domain" (N,) 0/1. S: size, else
    generative.image_size."""
    size = size or params.image_size
    images, stored_masks = load_arrays(prepared, split)
    masks = torch.from_numpy(stored_masks.astype(np.int64))
    if masks.shape[-2:] != (size, size):  # nearest: class ids stay class ids
        masks = F.interpolate(masks[:, None].float(), size=(size, size),
                              mode="nearest-exact")[:, 0].long()
    batch = {"image": to_unit_range(images, size),
             "label": torch.from_numpy(load_labels(prepared, split)).long(),
             "mask": masks}
    if domain_values is not None:
        index = split_index(prepared, split)
        column = np.asarray(manifest_column(prepared, params.cyclegan_domain_column))[index]
        batch["domain"] = torch.from_numpy(column == domain_values[1]).long()
    return batch


def manifest_column(prepared: StageResult, column: str) -> list[str]:
    """One column of the manifest the preprocess stage read, in the arrays' order."""
    rows = manifest_rows(prepared)
    if rows is None:
        raise StageSkipped(f"the preprocess output has no {MANIFEST} to take CycleGAN "
                           f"domains from ({Path(prepared.path) / MANIFEST})")
    if rows and column not in rows[0]:
        raise StageSkipped(f"the dataset's manifest.csv has no column {column!r} to split "
                           f"CycleGAN's two domains (columns: {sorted(rows[0])}); set "
                           "generative.cyclegan_domain_column in params.yaml")
    return [row[column] for row in rows]


def domain_values(prepared: StageResult, params: GenerativeParams) -> list[str]:
    """The two values of the domain column (sorted: domain 0 is the first)."""
    values = sorted(set(manifest_column(prepared, params.cyclegan_domain_column)))
    if len(values) != 2:
        raise StageSkipped(f"CycleGAN needs exactly two domains, but manifest column "
                           f"{params.cyclegan_domain_column!r} holds {len(values)} values "
                           f"({values[:6]}); set generative.cyclegan_domain_column in "
                           "params.yaml to a two-valued column")
    return values


def generator_config(kind: str, conditioning: str | None, prepared: StageResult,
                     params: GenerativeParams, section: GeneratorParams,
                     domains: list[str] | None) -> dict[str, Any]:
    """What segen.serving.generator needs to rebuild the generator (see its docstring)."""
    meta = dataset_meta(prepared)
    spec = {"channels": meta["channels"], "image_size": working_size(params, section),
            "n_classes": len(meta["classes"]), "latent_dim": params.latent_dim,
            "width": section.width, **section.architecture()}
    return {"kind": kind, "conditioning": conditioning, "spec": spec, "classes": meta["classes"],
            "domains": domains, "domain_column": domains and params.cyclegan_domain_column,
            "data_version": meta["data_version"]}


def grid_conditioning(kind_conditioning: str | None, batch: dict[str, torch.Tensor], n: int,
                      classes_present: list[int]) -> dict[str, Any]:
    """Fixed conditioning for a grid/sample batch of n: labels cycling through the classes
    present, the first n masks, or the first n domain-0 images (translated to domain 1)."""
    if kind_conditioning == "label":
        present = torch.tensor(classes_present)
        return {"labels": present[torch.arange(n) % len(present)]}
    if kind_conditioning == "mask":
        return {"masks": batch["mask"][torch.arange(n) % len(batch["mask"])]}
    if kind_conditioning == "image":
        source = batch["image"][batch["domain"] == 0]
        if len(source) == 0:
            raise ValueError("no domain-0 images to translate")
        return {"images": source[torch.arange(n) % len(source)], "domain": 0}
    return {}
