"""validate: check every image and mask before any training."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from segen.config import ValidateParams
from segen.project import Project
from segen.store import StageResult, write_atomic
from tasks.caching import StageOutput, stage_task

log = logging.getLogger("segen.validate")


class DataValidationError(ValueError):
    """The dataset has bad files; the message is the full report."""


@stage_task("validate")
def validate(project: Project, version_data: StageResult, validate: ValidateParams,
             out: Path, key: str) -> StageOutput:
    """Stop the run, naming every bad file, if the dataset at this version is unusable."""
    from segen.validation import validate_dataset  # pandas, PIL: only when it runs

    report = validate_dataset(project.data, min_class_fraction=validate.min_class_fraction)
    text = report.format()
    write_atomic(project.state / "reports" / "validation.txt", text)
    if not report.ok:
        raise DataValidationError(
            f"data version {version_data.info['data_version']} failed validation; nothing was "
            f"trained or registered.\n{text}\n(report saved to .segen/reports/validation.txt)")
    for warning in report.warnings:
        log.warning("%s", warning)
    (out / "report.txt").write_text(text)
    (out / "class_pixels.json").write_text(json.dumps(report.class_counts))
    return StageOutput({"n_images": report.n_images, "warnings": len(report.warnings)})
