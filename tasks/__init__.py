"""Stage bodies, one module per family of stages (see segen.pipeline.graph for the graph).

stage_table() collects the stages these modules define; importing them is light (no torch,
Prefect or MLflow: each body imports its engine when it runs).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segen.pipeline.stage import Stage


def stage_table() -> dict[str, "Stage"]:
    """Stage name -> Stage, for every stage of the graph, in the graph's order."""
    from segen.pipeline.graph import STAGES
    from segen.pipeline.stage import collect_stages

    modules = [importlib.import_module(f"{__name__}.{m.name}")
               for m in pkgutil.iter_modules(__path__)]
    found = collect_stages(modules)
    if missing := sorted(set(STAGES) - set(found)):
        raise LookupError(f"stages without a body in tasks/: {missing}")
    return {name: found[name] for name in STAGES}
