"""A full disk during publish, import, checkpoint and sample writing fails with a clear error
(which file, which filesystem, what was left as it was), exit 2 or the stage failed with
that reason, and nothing half written is visible; what was there before is intact.

The disk is real where the machine allows it: a tmpfs mounted for the test and filled with
a preallocated file until only `free` bytes are left. Elsewhere (not root, no mount) the
CLI runs under RLIMIT_FSIZE = `free` (any file growing past it fails with EFBIG), with
SIGXFSZ ignored so the write fails instead of killing the process, and a Prefect server
started outside the limit (its SQLite database outgrows any limit chosen here). Each case
picks `free` above the small writes before the one it targets and below that one.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml
from conftest import init_project, write_params
from PIL import Image

pytestmark = pytest.mark.slow
FORCE_RLIMIT = "SEGEN_TEST_DISK_RLIMIT"  # set: test the RLIMIT_FSIZE way even as root


class SmallDisk:
    """A folder whose filesystem is out of space but for `free` bytes while a CLI runs."""

    def __init__(self, root: Path, mounted: bool, env: dict[str, str]):
        self.root, self.mounted, self.env = root, mounted, env

    def cli(self, *args: str, cwd: Path, free: int | None) -> subprocess.CompletedProcess:
        """The real CLI; free: the bytes left for it to write (None: no limit)."""
        cmd = [sys.executable, "-m", "segen.cli.main", *args]
        env = {**os.environ, **self.env}
        if free is None:
            return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True,
                                  timeout=600)
        if self.mounted:
            with self._filled(free):
                return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True,
                                      timeout=600)
        return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=600, preexec_fn=lambda: _limit_file_size(free))

    @contextmanager
    def _filled(self, free: int) -> Iterator[None]:
        filler = self.root / ".filler"
        stat = os.statvfs(self.root)
        with open(filler, "wb") as out:
            os.posix_fallocate(out.fileno(), 0, stat.f_bavail * stat.f_frsize - free)
        try:
            yield
        finally:
            filler.unlink()


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or os.environ.get(FORCE_RLIMIT):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Iterator[SmallDisk]:
    root = tmp_path_factory.mktemp("small-disk")
    if _mount_tmpfs(root, "256m"):
        try:
            yield SmallDisk(root, True, {})
        finally:
            subprocess.run(["umount", "-l", str(root)], check=True)
        return
    from servers import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect")) as api:
        yield SmallDisk(root, False, {"PREFECT_API_URL": api})


@pytest.fixture(scope="module")
def project(disk: SmallDisk) -> Path:
    """A project on the small disk with its data versioned and preprocessed, and a K-means
    and a GAN registered (for predict and generate), all written with room to spare."""
    root = init_project(disk.root / "proj", {"dataset": {"image_size": 64},
                                             "preprocess": {"image_size": 64}})
    done = disk.cli("run", "--stages", "register_kmeans", "register_gan", cwd=root,
                    free=None)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def _params_with(root: Path, name: str, overrides: dict) -> Path:
    """A second params file beside params.yaml (the project's own is left as it is)."""
    other = root.parent / f"{name}-params"
    other.mkdir(exist_ok=True)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    (other / "params.yaml").write_text(yaml.safe_dump(raw))
    return write_params(other, overrides)


def _fails_clearly(result: subprocess.CompletedProcess, code: int, *phrases: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == code, text[-4000:]
    assert "no space left writing" in text and "free space on the filesystem" in text, text
    for phrase in phrases:
        assert phrase in text, text[-4000:]
    return text


def _store_keys(root: Path, stage: str) -> list[str]:
    folder = root / ".segen/store" / stage
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _partial_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name)


def test_publish_fails_clearly_and_publishes_nothing(disk: SmallDisk, project: Path) -> None:
    before = _store_keys(project, "preprocess")
    pointer = (project / ".segen/stages/preprocess.json").read_text() \
        if (project / ".segen/stages/preprocess.json").is_file() else None
    params = _params_with(project, "publish", {"preprocess": {"seed": 7}})  # a new key
    result = disk.cli("run", "--stages", "preprocess", "--params", str(params), cwd=project,
                      free=96 * 1024)  # the arrays of 64x64 images outgrow it
    text = _fails_clearly(result, 2, "nothing of preprocess was published")
    # the last word is segen's (above it, Prefect's engine logs the failed task run)
    assert result.stderr.strip().splitlines()[-1].startswith("segen: error: no space left")
    assert _store_keys(project, "preprocess") == before  # no new key, no .tmp- folder
    if pointer is not None:
        assert (project / ".segen/stages/preprocess.json").read_text() == pointer
    for key in before:  # the earlier result still loads
        assert (project / ".segen/store/preprocess" / key / "_meta.json").is_file(), text


def test_checkpoint_fails_its_stage_and_leaves_no_partial_file(disk: SmallDisk,
                                                               project: Path) -> None:
    # base_width 64: the checkpoint (weights and AdamW moments) is several MB, while the
    # MLflow database and everything else the stage writes first stay far below 2 MB.
    params = _params_with(project, "checkpoint", {"unet": {"base_width": 64, "epochs": 1}})
    result = disk.cli("run", "--stages", "train_unet", "--params", str(params), "--json",
                      cwd=project, free=2 << 20)
    _fails_clearly(result, 1, "checkpoint")
    import json

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    unet = next(s for s in summary["stages"] if s["name"] == "train_unet")
    assert unet["status"] == "failed" and "no space left writing" in unet["reason"], unet
    assert "the previous checkpoint is kept" in unet["reason"]
    assert _partial_files(project / ".segen/work") == []
    assert not [k for k in _store_keys(project, "train_unet") if k.startswith(".tmp")]
    assert _store_keys(project, "preprocess")  # the upstream result is stored still


def _big_pairs(where: Path) -> Path:
    """Three 256x256 image/mask pairs whose images are noise (PNG cannot shrink them)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
            where / "images" / f"n{i}.png")
        Image.fromarray(rng.integers(0, 2, (256, 256), dtype=np.uint8)).save(
            where / "masks" / f"n{i}.png")
    return where


def test_import_fails_clearly_and_keeps_the_old_data(disk: SmallDisk, project: Path,
                                                     tmp_path: Path) -> None:
    from segen.hashing import hash_tree

    source = _big_pairs(tmp_path / "pairs")
    data_before, dvc_before = hash_tree(project / "data"), (project / "data.dvc").read_text()
    result = disk.cli("data", "import-pairs", str(source / "images"), str(source / "masks"),
                      "--classes", "background", "thing", cwd=project, free=96 * 1024)
    _fails_clearly(result, 2, "data/ and data.dvc still hold the previous version")
    assert "Traceback" not in result.stderr, result.stderr[-6000:]
    assert hash_tree(project / "data") == data_before
    assert (project / "data.dvc").read_text() == dvc_before
    assert [p.name for p in project.iterdir() if p.name.startswith(".data")] == []


def _whole_pngs(folder: Path) -> list[str]:
    """Every PNG in folder, each decoded to its last row (a truncated one raises)."""
    names = sorted(p.name for p in folder.glob("*.png"))
    for name in names:
        with Image.open(folder / name) as image:
            image.load()
    return names


def test_generate_fails_clearly_and_leaves_only_whole_pngs(disk: SmallDisk,
                                                           project: Path) -> None:
    out = disk.root / "samples"
    out.mkdir(exist_ok=True)
    (out / "earlier.txt").write_text("kept")
    result = disk.cli("generate", "--model", "test-gan", "--n", "256", "--out", str(out),
                      cwd=project, free=12 * 1024)  # some samples fit, the grid cannot
    _fails_clearly(result, 2, str(out), "no half-written PNG")
    assert "Traceback" not in result.stderr, result.stderr[-6000:]
    assert _partial_files(out) == []
    names = _whole_pngs(out)
    assert "grid.png" not in names and not (out / "generated.json").exists()
    assert (out / "earlier.txt").read_text() == "kept"


def test_predict_fails_clearly_and_leaves_only_whole_pngs(disk: SmallDisk, project: Path,
                                                          tmp_path: Path) -> None:
    source = _big_pairs(tmp_path / "pairs") / "images"
    out = disk.root / "predictions"
    result = disk.cli("predict", "--model", "test-kmeans", *map(str, source.glob("*.png")),
                      "--out", str(out), cwd=project, free=48 * 1024)  # an overlay is ~190 KB
    _fails_clearly(result, 2, "no half-written PNG")
    assert "Traceback" not in result.stderr, result.stderr[-6000:]
    assert _partial_files(out) == []
    _whole_pngs(out)
    assert not (out / "predictions.json").exists()
