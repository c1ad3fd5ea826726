"""synthesize_pairs: extra (image, mask) pairs for the U-Net from the registered
mask-to-image generator, with lineage to the generator version that made them. Skipped
unless synthetic.enabled; the work lives in tasks/synthetic_pairs.py (torch, lazily)."""
from __future__ import annotations

from pathlib import Path

from segen.config import SyntheticParams
from segen.project import Project
from segen.store import StageResult
from tasks.caching import StageOutput, stage_task


@stage_task("synthesize_pairs")
def synthesize_pairs(project: Project, preprocess: StageResult, train_pix2pix: StageResult,
                     register_pix2pix: StageResult, synthetic: SyntheticParams, out: Path,
                     key: str) -> StageOutput:
    """images.npy + masks.npy (as preprocess stores them), synthetic.json, grid.png."""
    from tasks.synthetic_pairs import synthesize

    return StageOutput(synthesize(preprocess, train_pix2pix, register_pix2pix, synthetic, out))
