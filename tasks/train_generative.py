"""train_<kind> for every generative model: one body, one task per kind (the stage graph in
segen.stages names each one's inputs). The loop lives in tasks/gen_trainer.py, imported
only when a stage runs, so a fully cached pipeline never imports torch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task

from segen.config import GenerativeParams
from segen.project import Project
from segen.stages import GENERATIVE_KINDS
from segen.store import StageResult
from tasks.caching import StageOutput, family_stage_task


def train_generative(name: str, *, project: Project, preprocess: StageResult,
                     generative: GenerativeParams, out: Path, key: str,
                     **section: Any) -> StageOutput:
    """Train (or resume) one generator; publishes generator.pt, generator.json, samples.png."""
    from tasks.gen_trainer import fit

    kind = name.removeprefix("train_")
    return StageOutput(fit(project, kind, preprocess, generative, section[kind], out, key))


TRAIN_TASKS: dict[str, Task] = {
    f"train_{kind}": family_stage_task(f"train_{kind}", train_generative)
    for kind in GENERATIVE_KINDS}
