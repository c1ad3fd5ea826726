"""A trained model as a folder: the JSON config it is rebuilt from, beside its weights (a
torch state_dict; the clustering segmenters keep numpy arrays instead). One writer and one
reader for every kind; torch is imported only by the weight functions, so the clustering
segmenters load without it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Sorted keys: the same config is the same bytes (a stable digest)."""
    path.write_text(json.dumps(config, indent=1, sort_keys=True))


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} holds no {path.name}: not a trained model "
                                "folder (the output of a train_* stage).")
    return json.loads(path.read_text())


def save_model_folder(out: Path, config_name: str, config: dict[str, Any], weights_name: str,
                      state: Mapping[str, Any]) -> None:
    """config_name (JSON) and weights_name (torch.save of state) into the folder out."""
    import torch

    torch.save(state, Path(out) / weights_name)
    write_config(Path(out) / config_name, config)


def load_model_folder(folder: Path, config_name: str, weights_name: str
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, state_dict on the CPU) of a folder save_model_folder wrote."""
    import torch

    config = read_config(Path(folder) / config_name)
    state = torch.load(Path(folder) / weights_name, map_location="cpu", weights_only=True)
    return config, state
