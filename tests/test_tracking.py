"""Which MLflow store a process uses: the user's MLFLOW_TRACKING_URI, else the project's."""
from __future__ import annotations

import os
from pathlib import Path

from segen.config import MlflowParams
from segen.project import Project
from segen.tracking import configure_tracking

EMBEDDED = MlflowParams(tracking_uri=None, experiment="segen")


def test_a_uri_segen_set_for_one_project_does_not_follow_into_the_next(tmp_path: Path) -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    first = configure_tracking(Project.at(tmp_path / "a"), EMBEDDED)
    second = configure_tracking(Project.at(tmp_path / "b"), EMBEDDED)
    assert first == f"sqlite:///{tmp_path / 'a' / '.segen' / 'mlflow.db'}"
    assert second == f"sqlite:///{tmp_path / 'b' / '.segen' / 'mlflow.db'}"


def test_the_users_uri_wins_every_time(tmp_path: Path) -> None:
    configure_tracking(Project.at(tmp_path / "a"), EMBEDDED)
    os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"
    for name in ("a", "b"):
        assert configure_tracking(Project.at(tmp_path / name), EMBEDDED) == "http://127.0.0.1:5000"


def test_restoring_a_segen_set_uri_after_the_users_keeps_it_segens(tmp_path: Path) -> None:
    """A fixture sets a server URI for a while, then puts the earlier value back: that value
    was segen's choice for project a and must not follow project b (it did, in CI)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    earlier = configure_tracking(Project.at(tmp_path / "a"), EMBEDDED)
    os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"
    configure_tracking(Project.at(tmp_path / "a"), EMBEDDED)
    os.environ["MLFLOW_TRACKING_URI"] = earlier
    assert configure_tracking(Project.at(tmp_path / "b"), EMBEDDED) == \
        f"sqlite:///{tmp_path / 'b' / '.segen' / 'mlflow.db'}"
