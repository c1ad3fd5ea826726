"""The generative stages in the real flow on tiny params: run, cache, rerun one kind, a
diverged model failing on its own (exit 1, nothing registered), resume after a kill, and a
dataset without masks skipping the stages that need them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    MAX_PIXELS,
    init_project,
    kill_mid_training,
    segen_cli,
    statuses,
    write_params,
)

from segen.pipeline.graph import GENERATIVE_KINDS, STAGES
from segen.pipeline.store import read_pointer
from segen.project import Project

slow = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def test_long_profile_has_the_same_keys() -> None:
    """params-long.yaml (the longer-training profile) loads and mirrors params.yaml."""
    import yaml

    from segen.config import load_params

    load_params(REPO / "params-long.yaml")
    base, long = (yaml.safe_load((REPO / name).read_text())
                  for name in ("params.yaml", "params-long.yaml"))
    assert {s: sorted(v) for s, v in long.items()} == {s: sorted(v) for s, v in base.items()}


def _ran(summary: dict) -> set[str]:
    return {name for name, status in statuses(summary).items() if status == "ran"}


def _family(kind: str) -> set[str]:
    return {name for name in STAGES if name.endswith(f"_{kind}")}


def _enabled(root: Path) -> set[str]:
    """The stages this project's params turn on (optional ones have an enabled flag)."""
    from segen.config import load_params

    params = load_params(root / "params.yaml")
    return {name for name, spec in STAGES.items()
            if spec.enabled_by is None or getattr(params, spec.enabled_by).enabled}


@pytest.fixture(scope="module")
def cold(tmp_path_factory, prefect_harness) -> tuple[Path, dict]:
    """One tiny project, run once: the tests below build on it, in file order."""
    from flows.pipeline import pipeline

    root = init_project(tmp_path_factory.mktemp("gen") / "proj")
    return root, pipeline(str(root), str(root / "params.yaml"))


def test_divergence_checks() -> None:
    """NaN/inf and huge losses always stop training; near-constant samples only count as a
    collapse in the second half of the epochs (an untrained generator is not collapsed)."""
    import torch

    from segen.config import load_params
    from segen.engines.gen_trainer import GenerativeDivergenceError, check_divergence

    params = load_params(REPO / "params.yaml").generative
    varied, constant = torch.randn(8, 3, 4, 4), torch.zeros(8, 3, 4, 4)
    check_divergence("gan", 1, 10, {"d_loss": 1.0}, varied, params)
    with pytest.raises(GenerativeDivergenceError, match=r"d_loss = nan.*gan\.lr"):
        check_divergence("gan", 1, 10, {"d_loss": float("nan")}, varied, params)
    with pytest.raises(GenerativeDivergenceError, match="max_loss"):
        check_divergence("vae", 1, 10, {"loss": 10 * params.divergence.max_loss}, varied, params)
    check_divergence("dcgan", 5, 10, {"g_loss": 1.0}, constant, params)  # first half
    with pytest.raises(GenerativeDivergenceError, match="collapsed at epoch 6"):
        check_divergence("dcgan", 6, 10, {"g_loss": 1.0}, constant, params)


@slow
def test_every_generative_stage_runs_then_caches(cold, run_pipeline) -> None:
    root, first = cold
    assert _ran(first) == _enabled(root), first["stages"]
    rows = {row["model"]: row for row in first["generative"]}
    assert set(rows) == {*GENERATIVE_KINDS, "ref: ceiling", "ref: floor"}
    extractor = json.loads((root / ".segen/stages/train_feature_extractor.json").read_text())
    sha = extractor["info"]["extractor"]["sha256"]
    for kind in GENERATIVE_KINDS:
        info = json.loads((root / f".segen/stages/evaluate_{kind}.json").read_text())["info"]
        metrics, protocol = info["metrics"], info["protocol"]
        assert protocol["extractor_sha256"] == sha and protocol["real_split"] == "test"
        assert metrics["fid"] >= 0 and 0 <= metrics["precision"] <= 1
        assert metrics["ref_ceiling_fid"] == rows["ref: ceiling"]["fid"]
        trained = Path(read_pointer(Project.at(root), f"train_{kind}").path)
        assert {"generator.pt", "generator.json", "samples.png"} <= {
            p.name for p in trained.iterdir()}
    assert 0 <= rows["cgan"]["accuracy"] <= 1 and "accuracy_class_1" in rows["cvae"]
    assert 0 <= rows["pix2pix"]["unet_mean_iou"] <= 1
    assert rows["vae"]["elbo"] == pytest.approx(-(rows["vae"]["recon"] + rows["vae"]["kl"]))

    second = run_pipeline(root)
    assert {n for n, s in statuses(second).items() if s == "cached"} == _enabled(root)

    write_params(root, {"vae": {"lr": 0.002}})
    assert _ran(run_pipeline(root)) == _family("vae")


@slow
def test_generation_gate_through_the_cli(cold) -> None:
    """`segen promote` on a generator: FID of both versions under the challenger's pinned
    extractor, a paired-bootstrap interval, and a decision that follows from it."""
    root, _ = cold
    result = segen_cli("promote", "test-vae", "--version", "2", "--json", cwd=root)
    assert result.returncode in (0, 3), result.stderr[-3000:]  # promoted | rejected
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    report = verdict["report"]
    assert (report["family"], report["metric"], verdict["previous"]) == ("generation", "fid", 1)
    extractor = json.loads((root / ".segen/stages/train_feature_extractor.json").read_text())
    assert report["extractor_sha256"] == extractor["info"]["extractor"]["sha256"]
    assert report["ci_low"] <= report["ci_high"] and report["margin"] == 1.0
    clears = report["ci_high"] < -report["margin"]  # lower FID wins
    assert verdict["decision"] == ("promoted" if clears else "rejected")
    assert (result.returncode == 0) == clears


@slow
def test_diverged_model_fails_alone(cold) -> None:
    """A NaN in one model's losses: that stage and its dependents fail with the reason,
    the others are untouched (cached), nothing is published or registered, exit code 1."""
    root, _ = cold
    write_params(root, {"gan": {"lr": 1.0e30}})  # Adam steps of 1e30: weights and losses NaN
    result = segen_cli("run", "--json", cwd=root)
    assert result.returncode == 1, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    by_name = {s["name"]: s for s in summary["stages"]}
    assert by_name["train_gan"]["status"] == "failed"
    assert "GenerativeDivergenceError" in by_name["train_gan"]["reason"]
    assert "gan.lr" in by_name["train_gan"]["reason"]
    for name in _family("gan") - {"train_gan"}:
        assert by_name[name]["status"] == "failed" and "train_gan failed" in by_name[name]["reason"]
    assert summary["failed"] == sorted(_family("gan"), key=list(STAGES).index)
    others = _enabled(root) - _family("gan")
    # cached (or ran, where a source file changed since the cold run): never failed
    assert {by_name[n]["status"] for n in others} <= {"cached", "ran"}
    published = [p for p in (root / ".segen/store/train_gan").iterdir()
                 if not p.name.startswith(".")]
    assert len(published) == 1  # the cold run's: the diverged one published nothing
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / '.segen' / 'mlflow.db'}"
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
        "name='test-gan'")
    assert len(versions) == 1  # the cold run's; the diverged one registered nothing
    write_params(root, {"gan": {"lr": 0.0002}})


@slow
def test_killed_generative_training_resumes(cold) -> None:
    root, _ = cold
    epochs = 60
    write_params(root, {"vae": {"epochs": epochs}})
    checkpoint, interrupted_at = kill_mid_training(root, "train_vae")
    assert 1 <= interrupted_at < epochs

    result = segen_cli("stage", "train_vae", "--json", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((root / ".segen/stages/train_vae.json").read_text())["info"]
    assert info["epochs"] == epochs and info["resumed_from_epoch"] >= interrupted_at
    assert not checkpoint.exists()

    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{root / '.segen' / 'mlflow.db'}"
    history = MlflowClient(tracking_uri=uri).get_metric_history(info["mlflow_run_id"], "loss")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))  # each epoch once


def _class_folder_data(root: Path) -> None:
    """Two class folders of 16x16 RGB images, imported as `segen data import-classes` does."""
    import numpy as np
    from PIL import Image

    from segen.data.class_importers import import_classes

    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        folder = root.parent / "classes-src" / name
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 80, (16, 16, 3)) + 150 * label
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    import_classes(root.parent / "classes-src", root / "data", max_pixels=MAX_PIXELS)


@slow
def test_dataset_without_masks_skips_mask_stages(tmp_path: Path, run_pipeline) -> None:
    root = init_project(tmp_path / "classes", {"preprocess": {"image_size": 16}})
    _class_folder_data(root)
    summary = run_pipeline(root)
    by_name = {s["name"]: s for s in summary["stages"]}
    needs_masks = {name for name, spec in STAGES.items() if spec.needs_masks}
    assert {by_name[n]["status"] for n in needs_masks} == {"skipped"}
    assert "no masks" in by_name["train_unet"]["reason"]
    # no palette column: CycleGAN does not apply either
    assert {by_name[n]["status"] for n in _family("cyclegan")} == {"skipped"}
    ran = {n for n, s in by_name.items() if s["status"] == "ran"}
    assert ran == _enabled(root) - needs_masks - _family("cyclegan")
    assert not summary["failed"]
