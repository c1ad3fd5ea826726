"""Numerical faults fail their own stage with the reason: a U-Net whose loss became NaN/inf,
a clustering fit on non-finite pixel features. Nothing is published or registered for
them, and the other stages run."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import init_project, statuses

from segen.engines.loop import DivergenceError, check_finite

TARGETS = ["register_unet", "register_kmeans", "register_dbscan"]


def test_check_finite_names_the_loss_and_the_epoch() -> None:
    check_finite("train_unet", 1, {"train_loss": 0.5}, "fix")
    with pytest.raises(DivergenceError, match=r"train_unet: loss val_loss became nan at "
                                              r"epoch 2\. Lower unet\.lr"):
        check_finite("train_unet", 2, {"train_loss": 0.5, "val_loss": math.nan},
                     "Lower unet.lr")
    with pytest.raises(DivergenceError, match="became inf at epoch 3"):
        check_finite("train_unet", 3, {"train_loss": math.inf}, "")


@pytest.mark.slow
def test_numerical_faults_fail_their_stage_alone(tmp_path: Path, run_pipeline) -> None:
    # Real triggers from params.yaml: AdamW steps of 1e30 overflow the U-Net's weights, and
    # a finite but huge position weight overflows the float32 position features to inf
    # (params.yaml itself refuses .inf and .nan).
    root = init_project(tmp_path / "proj", {"unet": {"lr": 1.0e30},
                                            "kmeans": {"position_weight": 1.0e308}})
    summary = run_pipeline(root, TARGETS)
    by_name = {s["name"]: s for s in summary["stages"]}

    unet = by_name["train_unet"]
    assert unet["status"] == "failed", unet
    assert "DivergenceError" in unet["reason"] and "unet.lr" in unet["reason"]
    assert _matches(r"loss (train|val)_loss became (nan|inf) at epoch \d", unet["reason"])
    kmeans = by_name["train_kmeans"]
    assert kmeans["status"] == "failed", kmeans
    assert "pixel features are not finite" in kmeans["reason"]
    assert "kmeans.position_weight = 1e+308" in kmeans["reason"]
    for family in ("unet", "kmeans"):
        assert by_name[f"register_{family}"]["status"] == "failed"
        assert f"train_{family} failed" in by_name[f"register_{family}"]["reason"]
        published = [p for p in (root / ".segen/store" / f"train_{family}").iterdir()
                     if not p.name.startswith(".")]
        assert published == []

    others = set(statuses(summary)) - {n for n in statuses(summary)
                                       if n.endswith(("_unet", "_kmeans"))}
    assert {"train_dbscan", "register_dbscan", "preprocess"} <= others
    assert {statuses(summary)[n] for n in others} == {"ran"}
    assert [m["name"] for m in summary["models"]] == ["test-dbscan"]

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / '.segen' / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("test-unet", "test-kmeans"):
        assert registry.search_model_versions(f"name='{name}'") == []
    assert len(registry.search_model_versions("name='test-dbscan'")) == 1


def _matches(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
