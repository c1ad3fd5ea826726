"""Where everything lives: one place for every path the pipeline reads or writes.

Outputs never go inside data/ (DVC tracks it as a whole) nor inside a code folder;
they go under .segen/ (git-ignored).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ProjectError(RuntimeError):
    """The working directory is not a usable segen project."""


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "Project":
        return cls(Path(root).resolve())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def data_dvc(self) -> Path:
        return self.root / "data.dvc"

    @property
    def state(self) -> Path:
        return self.root / ".segen"

    @property
    def store(self) -> Path:
        """Content-addressed stage outputs: store/<stage>/<key>/."""
        return self.state / "store"

    @property
    def work(self) -> Path:
        """Resumable in-progress work (checkpoints), by stage and key."""
        return self.state / "work"

    @property
    def pointers(self) -> Path:
        """The latest result of each stage (what dvc.yaml sees as outs)."""
        return self.state / "stages"

    @property
    def prefect_home(self) -> Path:
        return self.state / "prefect"

    @property
    def prefect_cache(self) -> Path:
        """Prefect cache records (one per stage key)."""
        return self.state / "prefect-cache"

    @property
    def mlflow_db(self) -> Path:
        return self.state / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.state / "mlartifacts"

    def pointer(self, stage: str) -> Path:
        return self.pointers / f"{stage}.json"

    def require_dvc(self) -> None:
        if not (self.root / ".dvc").is_dir():
            raise ProjectError(
                f"{self.root} is not a DVC project (no .dvc/ folder). Run segen from the "
                "repository root, or set one up with `git init && dvc init`.")
