"""The generative stages in the real flow on tiny params: run, cache, rerun one kind, a
diverged model failing on its own (exit 1, nothing registered), resume after a kill, and a
dataset without masks skipping the stages that need them.

A cold run takes about a minute on tiny params. The test of the cold run and its cached
rerun makes its own; the others share one (module fixture `cold`) but nothing else: each
builds the state it needs from there, and its params.yaml is put back after it (`project`),
so any one of them passes alone and in any order."""
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


def slow(test):
    """Slow; the first test on the cold project also waits for its cold run of every stage."""
    return pytest.mark.slow(pytest.mark.timeout(1800)(test))


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", sorted(p.name for p in REPO.glob("params-*.yaml")))
def test_every_profile_has_the_same_keys(profile: str) -> None:
    """Each profile beside params.yaml (params-long.yaml, params-scarce.yaml) loads and
    mirrors params.yaml."""
    import yaml

    from segen.config import load_params

    load_params(REPO / profile)
    base, other = (yaml.safe_load((REPO / name).read_text()) for name in ("params.yaml", profile))
    assert {s: sorted(v) for s, v in other.items()} == {s: sorted(v) for s, v in base.items()}


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


def _cold_run(folder: Path) -> tuple[Path, dict]:
    """A tiny project in folder and the summary of its cold run (every version: 1)."""
    from flows.pipeline import pipeline

    root = init_project(folder / "proj")
    return root, pipeline(str(root), str(root / "params.yaml"))


@pytest.fixture(scope="module")
def cold(tmp_path_factory, prefect_harness) -> tuple[Path, dict]:
    return _cold_run(tmp_path_factory.mktemp("gen"))


@pytest.fixture
def project(cold) -> Path:
    """The cold project, its params.yaml as the cold run read it and put back after the test
    (the store keeps what the test trained: back on those params, every stage is cached)."""
    root, _ = cold
    params = root / "params.yaml"
    saved = params.read_text()
    yield root
    params.write_text(saved)


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
def test_every_generative_stage_runs_then_caches(tmp_path: Path, run_pipeline) -> None:
    root, first = _cold_run(tmp_path)  # its own: the rerun must find only the cold run's work
    assert _ran(first) == _enabled(root), first["stages"]
    rows = {row["model"]: row for row in first["generative"]}
    assert set(rows) == {*GENERATIVE_KINDS, "ref: ceiling", "ref: floor", "ref: real"}
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
    assert rows["ref: real"]["unet_mean_iou"] == rows["pix2pix"]["ref_real_unet_mean_iou"]
    assert rows["ref: real"]["accuracy"] == rows["cgan"]["ref_real_accuracy"]
    assert rows["vae"]["elbo"] == pytest.approx(-(rows["vae"]["recon"] + rows["vae"]["kl"]))

    second = run_pipeline(root)
    assert {n for n, s in statuses(second).items() if s == "cached"} == _enabled(root)

    write_params(root, {"vae": {"lr": 0.002}})
    assert _ran(run_pipeline(root)) == _family("vae")


@slow
def test_generation_gate_through_the_cli(project, run_pipeline) -> None:
    """`segen promote` on a generator: FID of both versions under the challenger's pinned
    extractor and a paired-bootstrap interval. The margin asked for is more than any FID
    difference of these generators, so the verdict is decided: rejected, exit code 3."""
    root = project
    write_params(root, {"vae": {"lr": 0.0015}})  # a challenger only this test trains
    run_pipeline(root, ["register_vae"])
    challenger = read_pointer(Project.at(root), "register_vae").info["version"]
    assert challenger >= 2
    write_params(root, {"promote": {"generation": {"metric": "fid", "margin": 1.0e9}}})
    result = segen_cli("promote", "test-vae", "--version", str(challenger), "--json", cwd=root)
    assert result.returncode == 3, result.stderr[-3000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert (verdict["decision"], verdict["previous"], verdict["champion"]) == ("rejected", 1, 1)
    report = verdict["report"]
    assert (report["family"], report["metric"], report["margin"]) == ("generation", "fid", 1.0e9)
    extractor = json.loads((root / ".segen/stages/train_feature_extractor.json").read_text())
    assert report["extractor_sha256"] == extractor["info"]["extractor"]["sha256"]
    assert report["ci_low"] <= report["ci_high"] and not report["passed"]
    assert report["challenger"]["metrics"]["fid"] >= 0 and report["champion"]["version"] == 1


@slow
def test_diverged_model_fails_alone(project) -> None:
    """A NaN in one model's losses: that stage and its dependents fail with the reason,
    the others are untouched (cached), nothing is published or registered, exit code 1."""
    root = project
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


@slow
def test_killed_generative_training_resumes(project) -> None:
    root = project
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
    # in the order logged (MLflow sorts the history by timestamp): every epoch exactly once,
    # none lost to the kill and none logged again by the resumed run
    assert [m.step for m in history] == list(range(1, epochs + 1))


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


@pytest.mark.slow
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
