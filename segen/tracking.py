"""MLflow set-up: embedded SQLite store under .segen/ unless a server is configured."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from segen.config import MlflowParams
from segen.project import Project

_EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"


_SET_BY_SEGEN = "SEGEN_SET_MLFLOW_TRACKING_URI"  # the URI configure_tracking chose itself


def _user_uri() -> str | None:
    """MLFLOW_TRACKING_URI unless segen itself put it there (for another project earlier in
    this process: that is not the user's choice)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return None if uri and uri == os.environ.get(_SET_BY_SEGEN) else uri


def tracking_uri(project: Project, params: MlflowParams) -> str:
    """The user's MLFLOW_TRACKING_URI wins, then params.yaml, then the embedded SQLite store."""
    return _user_uri() or params.tracking_uri or f"sqlite:///{project.mlflow_db}"


def configure_tracking(project: Project, params: MlflowParams) -> str:
    """Point this process (and lazily imported mlflow) at the store; no mlflow import."""
    uri = tracking_uri(project, params)
    if not _user_uri():  # the marker stays while the user's URI rules: restoring the old
        os.environ[_SET_BY_SEGEN] = uri  # segen-set URI later must still read as segen's
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ[_EXPERIMENT_ENV] = params.experiment
    project.state.mkdir(parents=True, exist_ok=True)
    return uri


def start_run(project: Project, run_name: str, run_id: str | None = None,
              tags: dict[str, str] | None = None) -> Any:
    """mlflow.start_run in the configured experiment (created with its artifacts in .segen/)."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # set by configure_tracking
    name = os.environ.get(_EXPERIMENT_ENV, "segen")
    if mlflow.get_experiment_by_name(name) is None:
        _create_experiment(project, name)
    mlflow.set_experiment(name)
    return mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)


def _create_experiment(project: Project, name: str) -> None:
    """Create the experiment; a stage running beside this one may have just created it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):  # a server picks its own store
        location = project.mlflow_artifacts.as_uri()
    try:
        mlflow.create_experiment(name, artifact_location=location)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS" and \
                mlflow.get_experiment_by_name(name) is None:
            raise


def client() -> Any:
    """An MlflowClient on the store configure_tracking chose (not mlflow's global URI)."""
    from mlflow.tracking import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def git_revision(path: Path) -> str:
    """The commit checked out at path, with '-dirty' when tracked files differ; 'unknown'
    outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        rev = git("rev-parse", "HEAD")
        return rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def code_root() -> Path:
    """The checkout segen's own code runs from."""
    return Path(__file__).resolve().parent.parent
