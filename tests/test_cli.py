"""The real `segen` command line in subprocesses (each with its own temporary Prefect server)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, segen_cli, write_params


def test_help_is_instant() -> None:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "segen.cli.main", "--help"], capture_output=True,
                         text=True, check=True)
    assert "run" in out.stdout and "stage" in out.stdout
    # correctness, not speed: --help must not import the heavy stack
    probe = ("import sys, segen.cli.main; segen.cli.main._parser(); "
             "print([m for m in ('torch', 'prefect', 'mlflow', 'dvc') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
    assert time.perf_counter() - start < 60


def test_bad_params_exit_2_with_the_key(tiny_project: Path) -> None:
    write_params(tiny_project, {"unet": {"epochs": 0}})
    result = segen_cli("run", cwd=tiny_project)
    assert result.returncode == 2
    assert "unet.epochs" in result.stderr and "params.yaml" in result.stderr


def test_not_a_dvc_project(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = segen_cli("run", cwd=tmp_path)
    assert result.returncode == 2 and "dvc init" in result.stderr


@pytest.mark.slow
def test_run_json_then_bad_data_stops_before_training(tiny_project: Path) -> None:
    result = segen_cli("run", "--stages", "register_unet", "--json", cwd=tiny_project)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["data_version"].endswith(".dir")
    assert [s["status"] for s in summary["stages"]] == ["ran"] * 6
    assert summary["models"][0]["version"] == 1 and "mean_iou" in summary["models"][0]["metrics"]
    assert "mlflow ui" in summary["ui"]["mlflow"]
    store_before = sorted(p.relative_to(tiny_project) for p in
                          (tiny_project / ".segen" / "store").rglob("*"))

    bad = tiny_project / "data" / "images" / "img_00002.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    (tiny_project / "data" / "masks" / "img_00005.png").unlink()  # missing pair
    result = segen_cli("run", "--json", cwd=tiny_project)
    assert result.returncode == 2
    assert "images/img_00002.png" in result.stderr and "truncated" in result.stderr
    assert "masks/img_00005.png" in result.stderr and "missing" in result.stderr
    assert "nothing was trained or registered" in result.stderr

    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tiny_project / '.segen' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name='test-unet'")) == 1
    assert str(client.get_registered_model("test-unet").aliases["champion"]) == "1"
    store_after = sorted(p.relative_to(tiny_project) for p in
                         (tiny_project / ".segen" / "store").rglob("*")
                         if not p.is_relative_to(tiny_project / ".segen/store/version_data"))
    assert set(store_after) <= set(store_before)  # nothing new beyond recording the data
