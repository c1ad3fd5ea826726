"""Saving, loading and sampling a trained generator: the one path the evaluation, the pyfunc
and `segen generate` all go through.

torch and models/ only (no Prefect, no MLflow), so a registered model loads without the
pipeline. A trained generator is a folder holding:

    generator.pt    state_dict of models.generative.create(kind, GenSpec(**config["spec"]))
    generator.json  config: {"format": 1, "kind", "conditioning": null|"label"|"mask"|"image",
                     "spec": {channels, image_size, n_classes, latent_dim, width},
                     "classes": [class names, index = label id],
                     "domains": [value of domain 0, value of domain 1] or null (cyclegan),
                     "domain_column": manifest column or null}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segen.serving.images import to_uint8, to_unit_range
from segen.serving.model_folder import load_model_folder, save_model_folder

WEIGHTS = "generator.pt"
CONFIG = "generator.json"
FORMAT = 1


def save_generator(nets: torch.nn.Module, config: dict[str, Any], out: Path) -> None:
    """Write generator.pt (CPU tensors) and generator.json into out."""
    state = {k: v.detach().cpu() for k, v in nets.state_dict().items()}
    save_model_folder(out, CONFIG, {"format": FORMAT, **config}, WEIGHTS, state)


def build_generator(config: dict[str, Any]) -> torch.nn.Module:
    from models.generative import GenSpec, create

    return create(config["kind"], GenSpec(**config["spec"]))


def load_generator(folder: Path, device: torch.device | None = None
                   ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(nets in eval mode on device (CPU by default), config) from a generator folder."""
    folder = Path(folder)
    config, state = load_model_folder(folder, CONFIG, WEIGHTS)
    if config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG}: format {config.get('format')!r}, this segen reads "
                         f"format {FORMAT}; retrain the model with this version.")
    nets = build_generator(config)
    nets.load_state_dict(state)
    return nets.to(device or torch.device("cpu")).eval(), config


@torch.inference_mode()
def generate_images(config: dict[str, Any], nets: torch.nn.Module, n: int, *,
                    labels: Any = None, masks: Any = None, images: Any = None,
                    domain: int | None = None, seed: int) -> np.ndarray:
    """n images (n, H, W, C) uint8 from the generator; the conditioning its kind needs:
    labels (n,) class ids | masks (n, h, w) class ids | images (n, h, w, C) uint8 + domain
    (0: translate domain 0 to 1, 1: the reverse). Same seed, same images."""
    from models.generative import sample

    device = next(nets.parameters()).device
    cond = _conditioning(config, n, labels, masks, images, domain)
    cond = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
    generator = torch.Generator(device).manual_seed(seed)
    nets.eval()
    return to_uint8(sample(config["kind"], nets, n, generator=generator, **cond))


def _conditioning(config: dict[str, Any], n: int, labels: Any, masks: Any, images: Any,
                  domain: int | None) -> dict[str, Any]:
    kind, needs, spec = config["kind"], config["conditioning"], config["spec"]
    given = {"label": labels is not None, "mask": masks is not None, "image": images is not None}
    extra = [k for k, v in given.items() if v and k != needs]
    if extra or (needs is not None and not given[needs]):
        raise ValueError(f"model kind {kind!r} takes {needs or 'no'} conditioning; got "
                         f"{[k for k, v in given.items() if v] or 'none'}. "
                         + _HOW.get(needs, "Pass only --n."))
    if needs == "label":
        ids = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        if len(ids) != n or ids.min() < 0 or ids.max() >= spec["n_classes"]:
            raise ValueError(f"expected {n} class ids in 0..{spec['n_classes'] - 1} "
                             f"(classes {config['classes']}), got {ids.tolist()[:8]}")
        return {"labels": ids}
    if needs == "mask":
        m = torch.as_tensor(np.asarray(masks), dtype=torch.long)
        if m.ndim != 3 or len(m) != n or m.min() < 0 or m.max() >= spec["n_classes"]:
            raise ValueError(f"expected {n} masks (n, H, W) of class ids in "
                             f"0..{spec['n_classes'] - 1}, got shape {tuple(m.shape)}")
        size = spec["image_size"]
        if m.shape[-2:] != (size, size):  # nearest: class ids stay class ids
            m = F.interpolate(m[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0]
        return {"masks": m.long()}
    if needs == "image":
        if domain not in (0, 1) or len(images) != n:
            raise ValueError(f"expected {n} images and domain 0 or 1 "
                             f"(0: {config['domains'][0]} -> {config['domains'][1]}), "
                             f"got {len(images)} images and domain {domain!r}")
        return {"images": to_unit_range(images, spec["image_size"]), "domain": domain}
    return {}


_HOW = {"label": "Pass one class id per image (--class K).",
        "mask": "Pass one mask per image (--mask FILE).",
        "image": "Pass the images to translate and their domain."}
