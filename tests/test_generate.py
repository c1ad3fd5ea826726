"""Registered generative models: the register_<kind> stage body on tiny generators (lineage
and protocol tags, champion), the pyfunc through models:/NAME@champion, and `segen generate`
through the real CLI; bad input gives exit code 2 and a clear message."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, segen_cli
from PIL import Image

CLASSES = ["background", "circle", "square"]
SIZE = 16


def _generator(kind: str, folder: Path) -> Path:
    """A tiny generator folder of `kind`, as a train_<kind> stage publishes it."""
    import torch

    from models.generative import CONDITIONING, GenSpec, create
    from segen.serving.generator import save_generator

    torch.manual_seed(0)
    spec = {"channels": 3, "image_size": SIZE, "n_classes": len(CLASSES), "latent_dim": 8,
            "width": 4}
    folder.mkdir(parents=True)
    save_generator(create(kind, GenSpec(**spec)), {
        "kind": kind, "conditioning": CONDITIONING[kind], "spec": spec, "classes": CLASSES,
        "domains": None, "domain_column": None}, folder)
    return folder


def _result(stage: str, path: Path, **info: object):  # noqa: ANN202
    from segen.pipeline.store import StageResult

    return StageResult(stage=stage, key=f"key-{stage}", digest=f"digest-{stage}",
                       path=str(path), info={"params": {}, **info})


def _register(project, kind: str, root: Path):  # noqa: ANN001, ANN202
    """Run the register_<kind> stage body (no Prefect engine) on stand-in upstream results."""
    from segen.config import RegisterGenerativeParams
    from tasks.generative import REGISTER_TASKS

    evaluation = root / f"eval-{kind}"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text("{}")
    protocol = {"extractor_sha256": "f" * 64, "real_split": "test", "n_real": 4, "n_fake": 8,
                "seed": 0, "kid_subset_size": 4, "k": 3}
    return REGISTER_TASKS[f"register_{kind}"].fn(
        project=project,
        version_data=_result("version_data", root, data_version="d" * 32 + ".dir",
                             params={"data": {"remote": "x"}}),
        preprocess=_result("preprocess", root, train=3, val=1, test=1),
        train_feature_extractor=_result("train_feature_extractor", root,
                                        extractor={"sha256": "f" * 64}),
        **{f"train_{kind}": _result(f"train_{kind}", _generator(kind, root / kind),
                                    mlflow_run_id="none", params={kind: {"epochs": 1}}),
           f"evaluate_{kind}": _result(f"evaluate_{kind}", evaluation, protocol=protocol,
                                       metrics={"fid": 12.5, "kid": 0.1, "name": "x"})},
        register_generative=RegisterGenerativeParams(model_prefix="test-",
                                                     champion_alias="champion"))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose embedded registry holds test-dcgan, test-cgan and test-pix2pix v1."""
    from segen.config import load_params
    from segen.project import Project
    from segen.tracking import configure_tracking

    root = tmp_path_factory.mktemp("generate") / "proj"
    (root / "data").mkdir(parents=True)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (root / "data" / "manifest.csv").write_text("id,image,mask,label\n0,a.png,a.png,1\n")
    project = Project.at(root)
    configure_tracking(project, load_params(root / "params.yaml").mlflow)
    work = root.parent / "work"
    work.mkdir()
    results = {kind: _register(project, kind, work) for kind in ("dcgan", "cgan", "pix2pix")}
    (root / "registered.json").write_text(json.dumps({k: r.info for k, r in results.items()}))
    masks = root / "masks"
    masks.mkdir()
    mask = np.zeros((24, 24), np.uint8)
    mask[4:14, 6:20] = 1
    Image.fromarray(mask).save(masks / "a.png")  # another size than the model's: resized
    Image.fromarray(np.full((SIZE, SIZE), 2, np.uint8)).save(masks / "b.png")
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(masks / "rgb.png")
    return root


def test_registered_version_has_lineage_and_protocol_tags(registered: Path) -> None:
    from segen.tracking import client

    info = json.loads((registered / "registered.json").read_text())["dcgan"]
    assert info["model_name"] == "test-dcgan" and info["version"] == 1 and info["champion"]
    assert info["metrics"] == {"fid": 12.5, "kid": 0.1}  # non-numeric metrics not logged
    version = client().get_model_version("test-dcgan", "1")
    tags = version.tags
    assert tags["segen.data_version"] == "d" * 32 + ".dir"
    assert tags["segen.feature_extractor_sha256"] == "f" * 64
    assert tags["segen.eval.real_split"] == "test" and tags["segen.eval.n_fake"] == "8"
    assert tags["segen.eval.seed"] == "0" and tags["segen.kind"] == "dcgan"
    assert tags["segen.key.train_feature_extractor"] == "key-train_feature_extractor"
    run = client().get_run(version.run_id)
    assert run.data.params["register_generative.model_prefix"] == "test-"
    assert run.data.params["dcgan.epochs"] == "1"
    assert run.inputs.dataset_inputs[0].tags[0].value == "d" * 32 + ".dir"  # full DVC md5


def test_pyfunc_through_the_registry(registered: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/test-dcgan@champion")
    images = model.predict({"n": 5}, params={"seed": 3})
    assert images.shape == (5, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images, model.predict({"n": 5}, params={"seed": 3}))  # seeded
    assert not np.array_equal(images, model.predict({"n": 5}, params={"seed": 4}))
    cgan = mlflow.pyfunc.load_model("models:/test-cgan@champion")
    rows = cgan.predict(pd.DataFrame({"n": [2, 3], "class": [1, "square"]}))
    assert rows.shape == (5, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="class 3 is out of range"):
        cgan.predict({"n": 2, "class": 3})
    pix = mlflow.pyfunc.load_model("models:/test-pix2pix@champion")
    assert pix.predict({"masks": np.zeros((2, 40, 40), np.uint8)}).shape == (2, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="class ids in 0..2"):  # a mask of another dataset
        pix.predict({"masks": np.full((1, 8, 8), 5)})


def _pngs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("sample-*.png"))


def _check_samples(out: Path, n: int) -> None:
    """n SIZE x SIZE RGB samples with content, and grid.png tiling them: ceil(sqrt(n)) to a
    row, 2 px of white around each (segen.serving.grid), sample-0000.png the first tile."""
    assert _pngs(out) == [f"sample-{i:04d}.png" for i in range(n)]
    samples = [Image.open(out / name) for name in _pngs(out)]
    assert {(im.mode, im.size) for im in samples} == {("RGB", (SIZE, SIZE))}
    assert all(np.ptp(np.asarray(im)) > 0 for im in samples)  # no blank image
    per_row = math.ceil(math.sqrt(n))
    rows, step = math.ceil(n / per_row), SIZE + 2
    grid = Image.open(out / "grid.png")
    assert (grid.mode, grid.size) == ("RGB", (per_row * step + 2, rows * step + 2))
    tiles = np.asarray(grid).astype(int)
    np.testing.assert_allclose(tiles[2:2 + SIZE, 2:2 + SIZE], np.asarray(samples[0]), atol=1)
    if n > 1:  # the second tile, to the right of the first
        np.testing.assert_allclose(tiles[2:2 + SIZE, 2 + step:2 + step + SIZE],
                                   np.asarray(samples[1]), atol=1)


@pytest.mark.slow
def test_generate_writes_pngs_and_grid(registered: Path) -> None:
    out = registered / "out-dcgan"
    result = segen_cli("generate", "--model", "test-dcgan@champion", "--n", "6", "--seed", "1",
                       "--out", str(out), cwd=registered)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_samples(out, 6)
    assert "wrote 6 image(s)" in result.stdout
    report = json.loads((out / "generated.json").read_text())
    assert report["model"] == "models:/test-dcgan@champion" and report["seed"] == 1
    assert report["shape"] == [6, SIZE, SIZE, 3] and report["grid"] == str(out / "grid.png")
    assert report["images"] == [str(out / name) for name in _pngs(out)]
    assert not list(out.glob(".*"))  # no temporary files left behind

    out = registered / "out-cgan"
    result = segen_cli("generate", "--model", "test-cgan/1", "--n", "3", "--class", "2",
                       "--out", str(out), cwd=registered)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_samples(out, 3)

    out = registered / "out-pix2pix"
    result = segen_cli("generate", "--model", "test-pix2pix", "--mask", "masks/a.png",
                       "masks/b.png", "--out", str(out), cwd=registered)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_samples(out, 2)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("--model", "test-cgan", "--n", "2", "--class", "7"), "class 7 is out of range"),
    (("--model", "test-dcgan", "--n", "2", "--class", "1"), "is unconditional"),
    (("--model", "test-pix2pix", "--mask", "masks/rgb.png"), "expected a class-index PNG"),
])
def test_generate_bad_input_exits_2(registered: Path, args: tuple[str, ...], message: str
                                    ) -> None:
    out = registered / "out-bad"
    result = segen_cli("generate", *args, "--out", str(out), cwd=registered)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()  # nothing written


def test_synthetic_stages_skipped_unless_enabled(tmp_path: Path) -> None:
    import dataclasses

    from segen.config import load_params
    from segen.pipeline.graph import stage
    from segen.pipeline.runner import blocked_reason

    params = load_params(REPO / "params.yaml")
    assert not params.synthetic.enabled  # off by default
    for name in ("synthesize_pairs", "train_unet_synthetic", "evaluate_unet_synthetic"):
        assert blocked_reason(stage(name), params, {}, {}) == (
            "skipped", "synthetic.enabled is false in params.yaml")
    enabled = dataclasses.replace(params, synthetic=dataclasses.replace(params.synthetic,
                                                                        enabled=True))
    assert blocked_reason(stage("synthesize_pairs"), enabled, {}, {}) is None


def _preprocessed(folder: Path, n: int = 10, size: int = 32) -> Path:
    """A preprocess stage's arrays: squares of class 1 on class 0, images to match."""
    rng = np.random.default_rng(0)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        top, left = rng.integers(0, size // 2, 2)
        masks[i, top:top + size // 3, left:left + size // 4] = 1 + i % 2
    images = np.stack([masks * 100] * 3, axis=-1).astype(np.uint8)
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", masks)
    (folder / "split.json").write_text(json.dumps({"train": list(range(6)), "val": [6, 7],
                                                   "test": [8, 9]}))
    (folder / "dataset.json").write_text(json.dumps({
        "classes": CLASSES, "channels": 3, "height": size, "width": size, "ignore_ids": [],
        "geometry": {"image_size": [size, size], "long_side": None, "pad_multiple": 16},
        "class_weights": None, "mean": [0.2] * 3, "std": [0.3] * 3,
        "data_version": "d" * 32 + ".dir"}))
    return folder


def _check_pair_grid(path: Path, images, masks) -> None:  # noqa: ANN001
    """grid.png: rows of synthetic image | its mask in the palette, 2 px of white between."""
    from segen.serving.palette import colourise

    n, size = len(images), images.shape[1]
    step = size + 2
    grid = Image.open(path)
    assert (grid.mode, grid.size) == ("RGB", (2 * step + 2, n * step + 2))
    tiles = np.asarray(grid).astype(int)
    np.testing.assert_allclose(tiles[2:2 + size, 2:2 + size], np.asarray(images[0]), atol=1)
    np.testing.assert_allclose(tiles[2 + step:2 + step + size, 2 + step:2 + step + size],
                               colourise(np.asarray(masks[1])), atol=1)
    assert np.ptp(tiles[2:2 + size, 2:2 + size]) > 0


def test_synthetic_pairs_train_the_unet(tmp_path: Path) -> None:
    """synthesize_pairs' work on a tiny pix2pix, then the U-Net recipe on real + synthetic
    pairs (segen.engines.unet_trainer.fit) and the U-Net evaluation on the test split."""
    from segen.config import EvaluateParams, SyntheticParams, UNetParams, load_params
    from segen.engines.synthetic_pairs import load_pairs, synthesize
    from segen.engines.unet_evaluation import evaluate
    from segen.engines.unet_trainer import fit
    from segen.project import Project
    from segen.tracking import configure_tracking

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    project = Project.at(tmp_path)
    configure_tracking(project, load_params(tmp_path / "params.yaml").mlflow)
    preprocess = _result("preprocess", _preprocessed(tmp_path / "pre"))
    pix2pix = _result("train_pix2pix", _generator("pix2pix", tmp_path / "pix2pix"))
    registered = _result("register_pix2pix", tmp_path, model_name="test-pix2pix", version=3,
                         run_id="r1")
    out = tmp_path / "synthetic"
    out.mkdir()
    lineage = synthesize(preprocess, pix2pix, registered, SyntheticParams(True, 5, 0), out)
    assert lineage["generator_model"] == "test-pix2pix" and lineage["generator_version"] == 3
    assert lineage["train_pix2pix_key"] == "key-train_pix2pix"
    synthetic = _result("synthesize_pairs", out, **lineage)
    images, masks = load_pairs(synthetic)
    assert images.shape == (5, 32, 32, 3) and masks.shape == (5, 32, 32)
    assert set(masks.unique().tolist()) <= {0, 1, 2}
    _check_pair_grid(out / "grid.png", images, masks)

    unet = UNetParams(depth=2, base_width=4, epochs=1, batch_size=4, lr=0.003,
                      weight_decay=0.0, dice_weight=1.0, augment=False, elastic_px=0.0,
                      crop_size=None, tile_size=None, tile_overlap=0.5, seed=0, processes=1)
    trained = tmp_path / "unet"
    trained.mkdir()
    info = fit(project, preprocess, unet, trained, "k", stage="train_unet_synthetic",
               extra_train=synthetic, tags={"segen.synthetic.key": "s"})
    assert info["train_images_per_second"] > 0
    scored = tmp_path / "scored"
    scored.mkdir()
    metrics = evaluate(preprocess, _result("train_unet_synthetic", trained),
                       EvaluateParams(batch_size=4, grid_images=2), scored)["metrics"]
    assert 0.0 <= metrics["mean_iou"] <= 1.0


def test_stage_tasks_take_what_the_graph_gives() -> None:
    """The register and synthetic stage tasks' inputs are their StageSpecs' (so the flow can
    wire them): project, upstream results, params sections."""
    import inspect

    from segen.pipeline.graph import GENERATIVE_KINDS, stage
    from tasks import stage_table

    tasks = stage_table()
    names = [f"register_{kind}" for kind in GENERATIVE_KINDS] + [
        "synthesize_pairs", "train_unet_synthetic", "evaluate_unet_synthetic"]
    for name in names:
        spec = stage(name)
        assert list(inspect.signature(tasks[name].fn).parameters) == [
            "project", *spec.upstream, *spec.params], name
