"""Process environment for the tools segen drives: telemetry off, state in the project.

Must run before prefect, mlflow or dvc are imported (they read settings at import).
"""
from __future__ import annotations

import os

from segen.project import Project

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # DO_NOT_TRACK alone does not stop MLflow
    "DVC_NO_ANALYTICS": "1",
}


def configure_environment(project: Project) -> None:
    """Turn telemetry off and keep Prefect/DVC state under .segen/ unless the user chose."""
    os.environ.update(TELEMETRY_OFF)
    make_state_folder(project)
    defaults = {
        "PREFECT_HOME": str(project.prefect_home),
        "DVC_SITE_CACHE_DIR": str(project.state / "dvc-site"),
        # The temporary Prefect server takes 5-15 s to start here; CI machines are slower.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        # The temporary per-run server needs no UI; `prefect server start` serves one.
        "PREFECT_UI_ENABLED": "false",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    # Prefect only creates the last level of PREFECT_HOME itself.
    os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)


def make_state_folder(project: Project) -> None:
    """Create .segen/ readable by its owner only: it holds the MLflow database, Prefect's
    cache records (unpickled by Prefect) and checkpoints, so another local user must be
    able neither to read them nor to plant a file there. A folder that already exists keeps
    the permissions its owner gave it."""
    project.state.mkdir(mode=0o700, parents=True, exist_ok=True)
