"""The caching matrix: what reruns when params, code inputs or data change."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, TINY, UNET, segen_cli, statuses, write_params

from segen.pipeline.graph import STAGES, SUPERVISED_KINDS

pytestmark = pytest.mark.slow
# the stages TINY switches on (synthetic pairs stay off)
ALL = [name for name, spec in STAGES.items()
       if spec.enabled_by is None or TINY.get(spec.enabled_by, {}).get("enabled")]


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
    # the grid changes each network's evaluate output, so its register reruns too
    registers = {f"register_{kind}" for kind in SUPERVISED_KINDS}
    assert _ran(run_pipeline(tiny_project)) == reading("evaluate") | registers

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
    import torch

    train_key = statuses_keys(first)["train_unet"]
    weights = tiny_project / ".segen" / "store" / "train_unet" / train_key / "model.pt"
    before = torch.load(weights, weights_only=True)  # the U-Net's state_dict
    shutil.rmtree(weights.parent)
    second = run_pipeline(tiny_project, UNET)
    assert statuses(second)["train_unet"] == "ran"
    after = torch.load(weights, weights_only=True)
    # retraining with the same seed and data reproduces the same weights: downstream hits
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert statuses(second)["evaluate_unet"] == "cached"


def test_edited_helper_reruns_its_stage_in_a_copied_checkout(tiny_project: Path,
                                                             tmp_path: Path) -> None:
    """Real edits to a copy of the code: a helper only the generators' engines import
    (segen/engines/gen_data.py) reruns train_dcgan and leaves the U-Net cached; a
    comment-only edit reruns nothing."""
    code = tmp_path / "code"
    for folder in ("segen", "tasks", "flows", "models"):
        shutil.copytree(REPO / folder, code / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(code)}
    targets = ("--stages", "train_dcgan", "train_unet", "--json")
    cold = _json(segen_cli("run", *targets, cwd=tiny_project, env=env))
    assert {"train_dcgan", "train_unet"} <= _ran(cold)

    helper = code / "segen" / "engines" / "gen_data.py"
    helper.write_text(helper.read_text() + "\n\nEDITED = 1\n")
    assert _ran(_json(segen_cli("run", *targets, cwd=tiny_project, env=env))) == {"train_dcgan"}

    helper.write_text(helper.read_text() + "\n# a comment only\n")
    assert _ran(_json(segen_cli("run", *targets, cwd=tiny_project, env=env))) == set()


# Runs the CLI with Prefect, torch and MLflow made unimportable.
_WITHOUT_HEAVY_IMPORTS = ("import sys\n"
                          "for name in ('prefect', 'torch', 'mlflow'): sys.modules[name] = None\n"
                          "from segen.cli.main import main\n"
                          "sys.exit(main(sys.argv[1:]))\n")


def test_fully_cached_run_needs_no_prefect_torch_or_mlflow(tiny_project: Path) -> None:
    """Every key is a valid hit: the summary comes from the store alone, recorded in the
    run log; the keys and models are the ones the Prefect run reported."""
    cold = _json(segen_cli("run", "--stages", "register_unet", "--json", cwd=tiny_project))
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_HEAVY_IMPORTS, "run", "--stages",
                           "register_unet", "--json"], cwd=tiny_project, text=True,
                          capture_output=True, timeout=120)
    warm = _json(proc)
    assert set(statuses(warm).values()) == {"cached"}
    assert statuses_keys(warm) == statuses_keys(cold) and warm["models"] == cold["models"]
    runs = _json(segen_cli("runs", "--json", cwd=tiny_project))
    assert [(r["mode"], r["cached"], r["ran"]) for r in runs] == [
        ("prefect", 0, len(cold["stages"])), ("store", len(warm["stages"]), 0)]


def _json(proc) -> Any:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
