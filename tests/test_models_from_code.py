"""Registered models are MLflow models from code: their artifacts hold a script that builds
the pyfunc, no cloudpickled instance, so loading one unpickles nothing; a fresh interpreter
with only the tracking URI loads and runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
_LOAD = """
import json, sys
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/code-unet/1")
masks = model.predict(np.zeros((2, 20, 30, 3), dtype=np.uint8))
print(json.dumps({"shape": list(masks.shape), "dtype": str(masks.dtype)}))
"""


_REGISTER = """
import sys
from pathlib import Path
import mlflow, torch
from segen.serving.unet import build_unet, save_unet
from segen.serving.unet_pyfunc import log_segmentation_model
uri, root = sys.argv[1], Path(sys.argv[2])
mlflow.set_tracking_uri(uri)
experiment = mlflow.MlflowClient(uri).create_experiment(
    "code", artifact_location=(root / "artifacts").as_uri())
torch.manual_seed(0)
config = {"in_channels": 3, "classes": ["background", "thing"], "depth": 2, "base_width": 4,
          "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
(root / "unet").mkdir()
save_unet(build_unet(config), config, root / "unet")
with mlflow.start_run(experiment_id=experiment):
    print(log_segmentation_model(root / "unet", "code-unet").model_uri)
"""


def _python(code: str, *args: str, cwd: Path) -> str:
    """Run code in a fresh interpreter (mlflow's URIs are process-wide: none of this test's
    may outlive it in the pytest process); its last stdout line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_registered_unet_is_a_model_from_code_and_loads_elsewhere(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_uri = _python(_REGISTER, uri, str(tmp_path), cwd=REPO)
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=mlflow.MlflowClient(uri).get_model_version_download_uri("code-unet", "1"),
        dst_path=str(tmp_path / "dl")))
    assert model_uri.startswith("models:/")
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("unet_model.py") and "python_model" not in flavor
    script = local / Path(flavor["model_code_path"]).name  # copied beside MLmodel
    assert "set_model(SegmentationModel())" in script.read_text()

    loaded = json.loads(_python(_LOAD, uri, cwd=tmp_path))  # only the tracking URI
    assert loaded == {"shape": [2, 20, 30], "dtype": "uint8"}
