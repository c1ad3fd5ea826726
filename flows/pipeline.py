"""The segen pipeline: version_data -> validate -> preprocess -> train -> evaluate -> register."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from segen.config import Params, load_params
from segen.data.versioning import ensure_data
from segen.locking import project_lock
from segen.pipeline.graph import STAGES, stages_for
from segen.pipeline.runner import StageLog, switched_off
from segen.pipeline.store import StageResult, read_pointer
from segen.pipeline.summary import summarise
from segen.project import Project
from segen.tracking import configure_tracking
from tasks import stage_table


# The runner bounds how many stages run at once (run.max_parallel_stages); the pool only
# has to hold them.
@flow(name="segen-pipeline", log_prints=True, task_runner=ThreadPoolTaskRunner())
def pipeline(project_dir: str, params_path: str, targets: list[str] | None = None
             ) -> dict[str, Any]:
    """Every stage (or only targets and what they depend on), each as soon as its inputs
    exist; each one a cache hit when its inputs are unchanged."""
    project, params = Project.at(project_dir), load_params(Path(params_path))
    configure_tracking(project, params.mlflow)
    # One writer per project. Re-entered under `segen run`/`retrain` in this process; the
    # flow run of a work pool's worker is a process of its own, which takes it here.
    with project_lock(project, "segen-pipeline flow"):
        data_source = ensure_data(project, params.data, params.dataset)
        stages = StageLog(project, params, stage_table())
        stages.run_all(list(STAGES) if targets is None else stages_for(targets))
        return summarise(project, params, stages.results, stages.statuses, data_source)


@flow(name="segen-stage", task_runner=ThreadPoolTaskRunner())
def single_stage(project_dir: str, params_path: str, name: str) -> dict[str, Any]:
    """One stage on the latest results of its upstream stages (what dvc.yaml calls)."""
    project, params = Project.at(project_dir), load_params(Path(params_path))
    configure_tracking(project, params.mlflow)
    data_source = "present"
    if not STAGES[name].upstream:  # a root stage reads data/ itself
        data_source = ensure_data(project, params.data, params.dataset)
    stages = StageLog(project, params, stage_table(),
                      results=_latest_upstream(project, params, name))
    stages.run_all([name])
    return summarise(project, params, stages.results, stages.statuses, data_source)


def _latest_upstream(project: Project, params: Params, name: str) -> dict[str, StageResult]:
    results, spec = {}, STAGES[name]
    for upstream in spec.upstream:
        if upstream in spec.optional and switched_off(STAGES[upstream], params):
            continue  # an old pointer of it is not this configuration's
        result = read_pointer(project, upstream)
        if result is None:
            raise FileNotFoundError(f"stage {name} needs the result of {upstream}, which has "
                                    f"not run here yet. Run `segen stage {upstream}` first (or "
                                    f"`dvc repro {name}`, or `segen run`).")
        results[upstream] = result
    return results
