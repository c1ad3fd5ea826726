"""The segen pipeline: version_data -> validate -> preprocess -> train -> evaluate -> register."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from segen.config import load_params
from segen.project import Project
from segen.stages import STAGES, stages_for
from segen.store import StageResult
from segen.summary import summarise
from segen.tracking import configure_tracking
from tasks.stage_log import StageLog
from tasks.version_data import ensure_data


@flow(name="segen-pipeline", log_prints=True)
def pipeline(project_dir: str, params_path: str, targets: list[str] | None = None
             ) -> dict[str, Any]:
    """Every stage in order (or only targets and what they depend on); each one a cache hit
    when its inputs are unchanged."""
    project, params = Project.at(project_dir), load_params(Path(params_path))
    configure_tracking(project, params.mlflow)
    data_source = ensure_data(project, params.data, params.dataset)
    stages = StageLog(project, params)
    for name in (STAGES if targets is None else stages_for(targets)):
        stages.run(name)
    return summarise(project, params, stages.results, stages.statuses, data_source)


@flow(name="segen-stage")
def single_stage(project_dir: str, params_path: str, name: str) -> dict[str, Any]:
    """One stage on the latest results of its upstream stages (what dvc.yaml calls)."""
    project, params = Project.at(project_dir), load_params(Path(params_path))
    configure_tracking(project, params.mlflow)
    data_source = "present"
    if not STAGES[name].upstream:  # a root stage reads data/ itself
        data_source = ensure_data(project, params.data, params.dataset)
    stages = StageLog(project, params, results=_latest_upstream(project, name))
    stages.run(name)
    return summarise(project, params, stages.results, stages.statuses, data_source)


def _latest_upstream(project: Project, name: str) -> dict[str, StageResult]:
    results = {}
    for upstream in STAGES[name].upstream:
        pointer = project.pointer(upstream)
        if not pointer.is_file():
            raise FileNotFoundError(f"stage {name} needs the result of {upstream}, which has "
                                    f"not run here yet. Run `segen stage {upstream}` first (or "
                                    f"`dvc repro {name}`, or `segen run`).")
        results[upstream] = StageResult.from_json(pointer.read_text())
    return results
