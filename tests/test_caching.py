"""The caching matrix: what reruns when params, code inputs or data change."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import UNET, statuses, write_params
from segen.stages import STAGES, stages_for

pytestmark = pytest.mark.slow
ALL = [name for name, spec in STAGES.items() if spec.enabled_by is None]  # tiny: all on


def downstream(*names: str) -> set[str]:
    """The stages named and every stage whose upstream (transitively) includes one."""
    found = set(names)
    for name, spec in STAGES.items():  # STAGES is in dependency order
        if found & set(spec.upstream):
            found.add(name)
    return found & set(ALL)


def reading(section: str) -> set[str]:
    return {name for name, spec in STAGES.items() if section in spec.params} & set(ALL)


def _ran(summary: dict) -> set[str]:
    return {name for name, status in statuses(summary).items() if status == "ran"}


def test_caching_matrix(tiny_project: Path, run_pipeline) -> None:
    cold = run_pipeline(tiny_project)
    assert _ran(cold) == set(ALL)

    write_params(tiny_project, {"evaluate": {"grid_images": 3}})
    # the grid changes evaluate_unet's output, so its register reruns too
    assert _ran(run_pipeline(tiny_project)) == reading("evaluate") | {"register_unet"}

    write_params(tiny_project, {"unet": {"lr": 0.002}})
    # a stage whose inputs' contents came out unchanged stays a hit (e.g. register_pix2pix
    # when the tiny U-Net scores pix2pix's images the same): downstream is the upper bound
    ran = _ran(run_pipeline(tiny_project))
    assert {"train_unet", "evaluate_unet", "register_unet"} <= ran <= downstream("train_unet")

    image = tiny_project / "data" / "images" / "img_00003.png"
    original = image.read_bytes()
    from PIL import Image
    pixels = Image.open(image).copy()
    pixels.putpixel((0, 0), (255 - pixels.getpixel((0, 0))[0], 0, 0))
    pixels.save(image)
    changed = run_pipeline(tiny_project)
    assert _ran(changed) == set(ALL)
    assert changed["data_version"] != cold["data_version"]

    image.write_bytes(original)  # revert by hand: data.dvc is stale, so version_data re-adds
    reverted = run_pipeline(tiny_project)
    assert reverted["data_version"] == cold["data_version"]
    assert _ran(reverted) == {"version_data"}
    assert _ran(run_pipeline(tiny_project)) == set()


def test_missing_artifact_recomputes(tiny_project: Path, run_pipeline) -> None:
    first = run_pipeline(tiny_project, UNET)
    train_key = statuses_keys(first)["train_unet"]
    shutil.rmtree(tiny_project / ".segen" / "store" / "train_unet" / train_key)
    second = run_pipeline(tiny_project, UNET)
    assert statuses(second)["train_unet"] == "ran"
    assert (tiny_project / ".segen" / "store" / "train_unet" / train_key / "model.pt").is_file()
    # retraining with the same seed and data reproduces the same weights: downstream hits
    assert statuses(second)["evaluate_unet"] == "cached"


def test_changed_source_reruns_dependent_stages(tiny_project: Path, run_pipeline, monkeypatch
                                                ) -> None:
    import segen.hashing
    import tasks.caching

    run_pipeline(tiny_project, UNET)
    real = segen.hashing.hash_sources

    def edited(modules):  # as if models/unet.py had been edited
        return real(modules) + ("-edited" if "models.unet" in modules else "")

    monkeypatch.setattr(tasks.caching, "hash_sources", edited)
    # the stages whose sources include models/unet.py rerun; the edit changes no output
    # here, so their digests are unchanged and the stages after them stay hits.
    assert _ran(run_pipeline(tiny_project, UNET)) == {
        name for name, spec in STAGES.items() if "models.unet" in spec.sources} & set(
        stages_for(UNET))


def statuses_keys(summary: dict) -> dict[str, str]:
    return {s["name"]: s["key"] for s in summary["stages"]}


def test_deleted_model_version_is_registered_again_and_reported(tiny_project: Path,
                                                                run_pipeline) -> None:
    from segen.tracking import client

    first = run_pipeline(tiny_project, UNET)
    unet = next(m for m in first["models"] if m["name"] == "test-unet")
    client().delete_model_version("test-unet", str(unet["version"]))
    second = run_pipeline(tiny_project, UNET)
    assert statuses(second)["register_unet"] == "ran"
    again = next(m for m in second["models"] if m["name"] == "test-unet")
    assert again["version"] == unet["version"] + 1  # the new version, not the stored old one
    client().get_model_version("test-unet", str(again["version"]))  # and it exists
