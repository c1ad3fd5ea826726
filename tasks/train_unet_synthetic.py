"""train_unet_synthetic: the train_unet recipe (tasks/unet_trainer.fit) on the train split
plus the synthetic pairs; its MLflow run is tagged with the generator version behind them."""
from __future__ import annotations

from pathlib import Path

from segen.config import UNetParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("train_unet_synthetic")
def train_unet_synthetic(project: Project, preprocess: StageResult,
                         synthesize_pairs: StageResult, unet: UNetParams, out: Path,
                         key: str) -> StageOutput:
    """Train (or resume) the U-Net on real + synthetic pairs; publishes model.pt + model.json."""
    from tasks.synthetic_pairs import load_pairs
    from tasks.unet_trainer import fit

    made_by = synthesize_pairs.info
    tags = {"segen.synthetic.generator": f"{made_by['generator_model']}/"
                                         f"{made_by['generator_version']}",
            "segen.synthetic.key": synthesize_pairs.key,
            "segen.synthetic.n_pairs": str(made_by["n_pairs"])}
    info = fit(project, preprocess, unet, out, key, stage="train_unet_synthetic",
               extra_train=load_pairs(synthesize_pairs), tags=tags)
    return StageOutput({**info, "synthetic": made_by})
