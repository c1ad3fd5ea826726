"""The base of the three registered pyfuncs (U-Net, generators, clustering segmenters): the
trained model's folder travels as one artifact, load_context hands it to load(), and log()
logs the pyfunc with segen's code and pinned requirements and registers a new version."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc

ROOT = Path(__file__).resolve().parents[2]  # the checkout: segen/ and models/ ship with it


class FolderModel(mlflow.pyfunc.PythonModel):
    """A pyfunc whose trained model is the folder logged as the artifact ARTIFACT."""

    ARTIFACT: str

    def load_context(self, context: Any) -> None:
        self.load(Path(context.artifacts[self.ARTIFACT]))

    def load(self, folder: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} must say how it loads its folder")

    @classmethod
    def log(cls, model_dir: Path, registered_name: str | None, requirements: list[str],
            signature: Any = None) -> Any:
        """Log the pyfunc (model_dir as its artifact, segen/ and models/ as its code, the
        requirements plus mlflow), and register a new version of registered_name if given.

        Logged as a model from code: MLflow stores a two-line script that builds the pyfunc
        (set_model), not a cloudpickle of it, so loading a registered model runs readable
        code and unpickles nothing; the weights load with torch.load(weights_only=True)."""
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / f"{cls.ARTIFACT}_model.py"
            script.write_text(f"from mlflow.models import set_model\n"
                              f"from {cls.__module__} import {cls.__name__}\n"
                              f"set_model({cls.__name__}())\n")
            return mlflow.pyfunc.log_model(
                name="model", python_model=str(script), artifacts={cls.ARTIFACT: str(model_dir)},
                code_paths=[str(ROOT / "segen"), str(ROOT / "models")], signature=signature,
                pip_requirements=[*requirements, "mlflow"], registered_model_name=registered_name)


def installed_requirement(name: str) -> str:
    """A distribution pinned to the version installed here (monai==1.6.1)."""
    from importlib.metadata import version

    return f"{name}=={version(name)}"


def torch_requirement() -> str:
    """torch pinned to this version, without the local build tag (+cu130...)."""
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"
