"""The synthetic-pairs stages (off unless synthetic.enabled): synthesize_pairs, train_unet_synthetic,
evaluate_unet_synthetic."""
from __future__ import annotations

from pathlib import Path

from segen.config import EvaluateParams, SyntheticParams, UNetParams
from segen.pipeline.stage import StageOutput, stage_task
from segen.pipeline.store import StageResult
from segen.project import Project


@stage_task("synthesize_pairs")
def synthesize_pairs(project: Project, preprocess: StageResult, train_pix2pix: StageResult,
                     register_pix2pix: StageResult, synthetic: SyntheticParams, out: Path,
                     key: str) -> StageOutput:
    """images.npy + masks.npy (as preprocess stores them), synthetic.json, grid.png."""
    from segen.engines.synthetic_pairs import synthesize

    return StageOutput(synthesize(preprocess, train_pix2pix, register_pix2pix, synthetic, out))


@stage_task("train_unet_synthetic")
def train_unet_synthetic(project: Project, preprocess: StageResult,
                         synthesize_pairs: StageResult, unet: UNetParams, out: Path,
                         key: str) -> StageOutput:
    """Train (or resume) the U-Net on real + synthetic pairs; publishes model.pt + model.json."""
    from segen.engines.unet_trainer import fit

    made_by = synthesize_pairs.info
    tags = {"segen.synthetic.generator": f"{made_by['generator_model']}/"
                                         f"{made_by['generator_version']}",
            "segen.synthetic.key": synthesize_pairs.key,
            "segen.synthetic.n_pairs": str(made_by["n_pairs"])}
    info = fit(project, preprocess, unet, out, key, stage="train_unet_synthetic",
               extra_train=synthesize_pairs, tags=tags)
    return StageOutput({**info, "synthetic": made_by})


@stage_task("evaluate_unet_synthetic")
def evaluate_unet_synthetic(project: Project, preprocess: StageResult,
                            train_unet_synthetic: StageResult, evaluate: EvaluateParams,
                            out: Path, key: str) -> StageOutput:
    """metrics.json, per_image.npz and grid.png on the test split."""
    from segen.engines.unet_evaluation import evaluate as run_evaluation

    return StageOutput(run_evaluation(preprocess, train_unet_synthetic, evaluate, out))
