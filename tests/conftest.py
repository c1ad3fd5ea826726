"""Test harness: telemetry off, tool state in temp dirs, one Prefect harness per session,
and tiny throwaway segen projects (real git, DVC and MLflow in tmp_path)."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from segen.env import TELEMETRY_OFF

REPO = Path(__file__).resolve().parent.parent
_STATE = Path(tempfile.mkdtemp(prefix="segen-tests-"))
os.environ.update({
    **TELEMETRY_OFF,
    "PREFECT_HOME": str(_STATE / "prefect"), "XDG_CONFIG_HOME": str(_STATE / "xdg"),
    "DVC_SITE_CACHE_DIR": str(_STATE / "dvc-site"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
})

# Real datasets kept beside the checkout (../shared/datasets), never inside the repository.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    """../shared/datasets/NAME beside the checkout; the calling test fails, naming the path,
    where it is missing (a skip would let the test pass without running)."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.fail(f"{path} is missing: this test reads the real {name} copy kept beside the "
                    "repository in ../shared/datasets", pytrace=False)
    return path


@pytest.fixture
def isbi() -> Path:
    """The ISBI 2012 membrane set's train split (30 image/label pairs)."""
    return shared_dataset("isbi2012-membrane") / "train"


# The default validate.max_image_pixels, for tests that call the readers of user files.
MAX_PIXELS = yaml.safe_load((REPO / "params.yaml").read_text())["validate"]["max_image_pixels"]

# Small enough that a whole pipeline trains in seconds on 2 CPU cores.
TINY = {
    "dataset": {"n_images": 40, "image_size": 32},
    "preprocess": {"image_size": 32, "val_fraction": 0.15, "test_fraction": 0.2},
    "unet": {"depth": 2, "base_width": 4, "epochs": 2, "batch_size": 8, "augment": False},
    "evaluate": {"batch_size": 16, "grid_images": 4},
    "register": {"model_name": "test-unet"},
    "torchvision": {"enabled": True, "arch": "lraspp_mobilenet_v3_large", "epochs": 1,
                    "batch_size": 8, "augment": False},
    "register_torchvision": {"model_name": "test-torchvision"},
    "kmeans": {"fit_pixels": 2000, "n_init": 2},
    "dbscan": {"fit_pixels": 1000, "min_samples": 4},
    "cluster_evaluate": {"silhouette_pixels": 200, "grid_images": 4},
    "register_kmeans": {"model_name": "test-kmeans"},
    "register_dbscan": {"model_name": "test-dbscan"},
    "generative": {"image_size": 16, "latent_dim": 8, "batch_size": 8, "sample_grid": 8,
                   "eval_samples": 16,  # a few steps cannot spread samples: no collapse check
                   "divergence": {"max_loss": 10000.0, "collapse_std": 0.0}},
    "feature_extractor": {"width": 4, "feature_dim": 8, "epochs": 1, "batch_size": 8},
    "generative_evaluate": {"kid_subset_size": 4, "k": 2},
    **{kind: {"epochs": 1, "width": 4} for kind in ("gan", "dcgan", "wgan_gp", "vae", "cgan",
                                                    "cvae", "pix2pix", "cyclegan")},
    "pix2pix": {"epochs": 1, "width": 4, "image_size": 32},  # its own size: resized to score
    "register_generative": {"model_prefix": "test-"},
}


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


def write_params(project: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    current = yaml.safe_load((project / "params.yaml").read_text())
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(merge(current, overrides), sort_keys=False))
    return path


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def init_project(root: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """A fresh git + DVC project with tiny params and a DVC remote beside it."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@segen"), git(root, "config", "user.name", "segen test")
    Repo.init(str(root)).close()
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = merge(merge(base, TINY), {"data": {"remote": str(root.parent / f"{root.name}-remote")}})
    (root / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides or {}), sort_keys=False))
    git(root, "add", "-A"), git(root, "commit", "-qm", "init")
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, prefect_harness):
    """(Project, preprocess StageResult) of a tiny project with its preprocess stage run, one
    per test module (each test trains its own key)."""
    from flows.pipeline import pipeline
    from segen.pipeline.store import StageResult
    from segen.project import Project

    root = init_project(tmp_path_factory.mktemp("prepared") / "proj")
    pipeline(str(root), str(root / "params.yaml"), ["preprocess"])
    project = Project.at(root)
    preprocess = StageResult.from_json(project.pointer("preprocess").read_text(), project.store)
    return project, preprocess


@pytest.fixture(autouse=True)
def _restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return init_project(tmp_path / "proj")


@pytest.fixture
def run_pipeline(prefect_harness) -> Callable[[Path], dict[str, Any]]:
    """Run the real flow in-process (under the session's Prefect harness)."""
    from flows.pipeline import pipeline

    def run(project: Path, targets: list[str] | None = None) -> dict[str, Any]:
        return pipeline(str(project), str(project / "params.yaml"), targets)

    return run


# The U-Net's stages only: tests about the pipeline's mechanics need no other model family.
UNET = ["register_unet"]


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["stages"]}


def kill_mid_training(project: Path, stage: str, timeout: float = 300) -> tuple[Path, int]:
    """Start `segen stage STAGE`, SIGKILL it once its first checkpoint exists (never a clean
    stop) and return that checkpoint with the epoch it holds."""
    import torch

    proc = subprocess.Popen([sys.executable, "-m", "segen.cli.main", "stage", stage], cwd=project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        checkpoint = _wait_for_checkpoint(project / ".segen/work" / stage, proc, timeout)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return checkpoint, torch.load(checkpoint, weights_only=False)["epoch"]


def _wait_for_checkpoint(work: Path, proc: subprocess.Popen, timeout: float) -> Path:
    """The first checkpoint.pt under work/<key>/ while proc trains (fails if it ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(work.glob("*/checkpoint.pt"))
        if found:
            return found[0]
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError("no checkpoint appeared")


def segen_cli(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (own temporary Prefect server); env: extra variables."""
    return subprocess.run([sys.executable, "-m", "segen.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


class CounterTrainer:
    """The smallest trainer segen.engines.loop can drive (a Resumable): one parameter, its
    'loss' is the epoch number, so what was resumed and logged is plain to check."""

    def __init__(self) -> None:
        import torch

        self.epoch, self.device, self.weight = 0, torch.device("cpu"), torch.zeros(1)

    def state(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "epoch": self.epoch, "weight": self.weight}

    def restore(self, state: dict[str, Any]) -> None:
        self.epoch, self.weight = state["epoch"], state["weight"].clone()

    def train_epoch(self, bar: Any) -> dict[str, float]:
        self.epoch += 1
        self.weight += 1
        return {"loss": float(self.epoch)}


class Stopped(Exception):
    """Raised by a test's end_of_epoch to stop a loop where a kill would."""


def tiny_shapes(out: Path, seed: int, n: int) -> Path:
    """n shapes pairs at TINY's image size into out (a data/ folder layout)."""
    from segen.data.shapes import generate_shapes_dataset

    generate_shapes_dataset(out, seed=seed, n_images=n, image_size=TINY["dataset"]["image_size"],
                            min_shapes=1, max_shapes=2)
    return out


@pytest.fixture
def versioned(tmp_path: Path):
    """A tiny project whose data/ (TINY shapes) is recorded in data.dvc."""
    from segen.config import load_params
    from segen.data.versioning import track_data
    from segen.project import Project

    project = Project.at(init_project(tmp_path / "proj"))
    params = load_params(project.root / "params.yaml")
    tiny_shapes(project.data, seed=params.dataset.seed, n=params.dataset.n_images)
    track_data(project, params.data)
    return project
