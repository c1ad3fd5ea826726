"""params.yaml: the one reader rejects unknown, missing, mistyped and out-of-range values."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from segen.config import ParamsError, load_params


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repository_params_load_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.unet.depth >= 1
    with pytest.raises(AttributeError):
        params.unet.depth = 3  # type: ignore[misc]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["unet"].update(lr_typo=1.0), "unknown key"),
    (lambda r: r["unet"].pop("epochs"), "missing key"),
    (lambda r: r["unet"].update(epochs="ten"), "unet.epochs: expected an int >= 1, got 'ten'"),
    (lambda r: r["unet"].update(lr=-1.0), "unet.lr: expected a float > 0"),
    (lambda r: r["unet"].update(crop_size=30), "unet.crop_size"),
    (lambda r: r["preprocess"].update(test_fraction=0.9), "preprocess.test_fraction"),
    (lambda r: r.update(surprise={}), "unknown key"),
    (lambda r: r["unet"].update(augment="yes"), "unet.augment: expected true or false"),
])
def test_bad_params_are_rejected_with_the_key(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load_params(_write(tmp_path, mutate))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("unet: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
