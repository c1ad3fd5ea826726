"""params.yaml errors: one line per problem, naming the file, the key path, the value that
arrived and what was expected (the pydantic models' rules, read back as text)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from segen.config import Params, ParamsError, load_params


def _error(tmp_path: Path, mutate) -> str:
    """The ParamsError message for a copy of the repository's params.yaml, mutated."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
    return message


def test_typo_key_names_the_path_and_suggests_the_right_one(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["unet"].update(epochz=r["unet"].pop("epochs")))
    assert "unet.epochz: unknown key; did you mean epochs?" in message
    assert "expected one of epochs, batch_size, lr," in message and "depth, base_width" in message
    assert "unet.epochs: missing key" in message  # the typo also leaves epochs unset


def test_typo_section_is_suggested(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r.update(unett=r.pop("unet")))
    assert "unett: unknown key; did you mean unet?" in message
    assert "unet: missing section" in message


def test_out_of_range_value_gives_value_and_fix(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["unet"].update(epochs=-3))
    assert message.endswith("params.yaml: unet.epochs: expected an int >= 1, got -3 "
                            "(fix the value in params.yaml)")


@pytest.mark.parametrize("key, value, shown, expected", [
    ("epochs", 1.5, "1.5", "an int >= 1"),  # no silent truncation
    ("epochs", True, "true", "an int >= 1"),  # bool is an int in Python, not here
    ("epochs", "10", "'10'", "an int >= 1"),
    ("augment", 1, "1", "true or false"),
    ("lr", "fast", "'fast'", "a float > 0"),
    ("crop_size", 32.0, "32.0", "null or an int >= 16 or [height, width], each an int >= 16"),
    ("crop_size", [32], "[32]", "null or an int >= 16 or [height, width], each an int >= 16"),
])
def test_wrong_type_is_rejected(tmp_path: Path, key: str, value, shown: str,
                                expected: str) -> None:
    message = _error(tmp_path, lambda r: r["unet"].update({key: value}))
    assert f"unet.{key}: expected {expected}, got {shown} (fix the value" in message


@pytest.mark.parametrize("section, key, text, shown", [
    ("unet", "lr", ".nan", "nan"),
    ("kmeans", "position_weight", ".inf", "inf"),
    ("generative", "divergence.max_loss", "-.inf", "-inf"),
])
def test_nan_and_inf_are_refused_naming_the_key(tmp_path: Path, section: str, key: str,
                                                text: str, shown: str) -> None:
    # Written as YAML spells them (.nan, .inf): what a user would type in params.yaml.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, leaf = [section, *key.split(".")]
    owner = raw
    for part in parents:
        owner = owner[part]
    owner[leaf] = "SENTINEL"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw).replace("SENTINEL", text))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert f"{section}.{key}: expected a finite number, a float" in str(info.value)
    assert f"got {shown} (fix the value in params.yaml)" in str(info.value)


def test_strings_do_not_come_from_numbers(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["register"].update(model_name=3))
    assert "register.model_name: expected a non-empty string, got 3" in message


def test_float_key_takes_an_int_as_a_float(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["unet"]["dice_weight"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    value = load_params(path).unet.dice_weight
    assert value == 2.0 and type(value) is float  # cache keys hash 2.0, not 2


def test_several_problems_are_listed_one_per_line(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: (r["unet"].update(epochs=0, lr=-1.0),
                                          r["kmeans"].update(colour="hsv")))
    lines = message.splitlines()
    assert len(lines) == 3, message
    assert any("unet.epochs" in line for line in lines)
    assert any("unet.lr: expected a float > 0" in line for line in lines)
    assert any("kmeans.colour: expected one of 'rgb', 'lab', got 'hsv'" in line
               for line in lines)


def test_padding_must_suit_the_unet_depth(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: (r["preprocess"].update(pad_multiple=8),
                                          r["unet"].update(depth=4)))
    assert "preprocess.pad_multiple: expected a multiple of 2**unet.depth = 16, got 8" in message


def test_one_of_image_size_and_long_side(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["preprocess"].update(image_size=64, long_side=96))
    assert "preprocess.image_size, long_side: expected exactly one of them set (the other " \
        "null), got (64, 96)" in message


@pytest.mark.parametrize("size, expected", [
    (24, "a power of two >= 16"), (48, "a power of two >= 16"), (8, "an int >= 16")])
def test_generative_image_size_must_suit_the_generators(tmp_path: Path, size: int,
                                                        expected: str) -> None:
    message = _error(tmp_path, lambda r: r["generative"].update(image_size=size))
    assert f"generative.image_size: expected {expected}" in message
    assert f"got {size}" in message


@pytest.mark.parametrize("size, expected", [
    (48, "a power of two >= 16"), (8, "null or an int >= 16")])
def test_pix2pix_working_size_must_suit_the_generators(tmp_path: Path, size: int,
                                                       expected: str) -> None:
    message = _error(tmp_path, lambda r: r["pix2pix"].update(image_size=size))
    assert f"pix2pix.image_size: expected {expected}" in message and f"got {size}" in message


def test_crop_larger_than_the_images_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: (r["preprocess"].update(image_size=64),
                                          r["unet"].update(crop_size=128)))
    assert "unet.crop_size: expected null or sides <= preprocess.image_size = [64, 64], got " \
        "128" in message


def test_crop_must_be_a_multiple_of_the_pooling(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["unet"].update(depth=4, crop_size=40))
    assert "unet.crop_size: expected null or sides that are multiples of 2**depth = 16, got " \
        "40" in message


def test_fractions_must_leave_a_train_split(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: (r["dataset"].update(n_images=4),
                                          r["preprocess"].update(val_fraction=0.4,
                                                                 test_fraction=0.4)))
    assert "preprocess.val_fraction, test_fraction: expected fractions that leave" in message
    assert "(they take 2 val + 2 test), got (0.4, 0.4)" in message


def test_fraction_out_of_range(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["preprocess"].update(val_fraction=0.6))
    assert "preprocess.val_fraction: expected a float in (0, 0.5), got 0.6" in message


def test_missing_section_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r.pop("kmeans"))
    assert "kmeans: missing section; add it to params.yaml (expected a mapping of " \
        "n_clusters, colour," in message


def test_missing_key_is_named_even_if_it_may_be_null(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r["unet"].pop("crop_size"))
    assert "unet.crop_size: missing key; add it to params.yaml (expected null or an int >= 16 or [height, width], each an int >= 16)" in message


def test_nested_section_and_gate_metric(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: (
        r["promote"]["segmentation"].update(metric="fid"),
        r["generative"]["divergence"].update(max_loss=0)))
    assert "promote.segmentation.metric: expected one of 'mean_iou', 'mean_dice', got 'fid'" \
        in message
    assert "generative.divergence.max_loss: expected a float > 0, got 0" in message


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda r: r.update(unet=None))
    assert "unet: expected a mapping of epochs, batch_size," in message and "got null" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    for text in ("", "- 1\n- 2\n"):
        path.write_text(text)
        with pytest.raises(ParamsError, match="expected a mapping of sections"):
            load_params(path)


def test_both_profiles_load_and_stay_standard_dataclasses() -> None:
    import typing

    for path in sorted(REPO.glob("params*.yaml")):
        params = load_params(path)
        hints = typing.get_type_hints(Params)
        for field in dataclasses.fields(params):
            section = getattr(params, field.name)
            assert hints[field.name] is type(section) and dataclasses.is_dataclass(section)
        changed = dataclasses.replace(params, unet=dataclasses.replace(params.unet, epochs=2))
        assert changed.unet.epochs == 2 and dataclasses.asdict(changed)["unet"]["epochs"] == 2


def test_config_imports_nothing_heavy() -> None:
    code = ("import sys, segen.config; heavy = {'torch', 'numpy', 'prefect', 'mlflow', 'tasks',"
            " 'models'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
