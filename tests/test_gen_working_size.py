"""A generator's working size (pix2pix may draw at its own, larger than generative.image_size)
and the scoring protocol across sizes: real test images at the extractor's size, the request
at the generator's."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from conftest import REPO

from segen.config import load_params
from segen.engines.gen_data import working_size
from segen.engines.gen_evaluation import real_images_and_request
from segen.serving.images import to_unit_range


def test_pix2pix_has_its_own_working_size_and_others_share_the_generative_one() -> None:
    params = load_params(REPO / "params.yaml")
    generative = dataclasses.replace(params.generative, image_size=16)
    for section in (params.dcgan, params.cgan, params.cyclegan):
        assert working_size(generative, section) == 16
    assert working_size(generative, dataclasses.replace(params.pix2pix, image_size=None)) == 16
    assert working_size(generative, dataclasses.replace(params.pix2pix, image_size=64)) == 64
    assert "image_size" not in params.pix2pix.weights()  # a size, not an objective weight


def test_real_images_are_resized_to_the_extractor_and_masks_kept_at_the_generators() -> None:
    rng = np.random.default_rng(0)
    stored = torch.from_numpy(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    test = {"image": to_unit_range(stored, 32), "label": torch.zeros(3).long(),
            "mask": torch.from_numpy(rng.integers(0, 3, (3, 32, 32)))}
    config = {"conditioning": "mask"}
    real, request = real_images_and_request(config, test, 5, real_size=16)
    # exactly as if the stored uint8 images had been loaded at the extractor's size
    torch.testing.assert_close(real, to_unit_range(stored, 16), atol=1e-6, rtol=0)
    assert request["masks"].shape == (5, 32, 32)
    assert torch.equal(request["masks"][3], test["mask"][0])  # cycled through the test split
    same, _ = real_images_and_request(config, test, 5, real_size=32)
    assert same is test["image"]


def test_pix2pix_trains_and_draws_at_its_own_size(tmp_path: Path) -> None:
    """generator_config's spec carries the working size, so the saved generator, the pyfunc
    and synthesize_pairs all draw at it."""
    from segen.data.arrays import META
    from segen.engines.gen_data import generator_config
    from segen.pipeline.store import StageResult

    (tmp_path / META).write_text('{"channels": 3, "classes": ["bg", "a", "b"], '
                                        '"data_version": "v"}')
    prepared = StageResult(stage="preprocess", key="k", digest="d", path=str(tmp_path),
                           info={})
    params = load_params(REPO / "params.yaml")
    section = dataclasses.replace(params.pix2pix, image_size=64)
    config = generator_config("pix2pix", "mask", prepared, params.generative, section, None)
    assert config["spec"]["image_size"] == 64
