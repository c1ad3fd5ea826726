"""The data stages: version_data (DVC), validate, preprocess."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from segen.config import DataParams, PreprocessParams, ValidateParams
from segen.data.transaction import data_change
from segen.data.versioning import data_content_key, data_dvc_agrees, track_data
from segen.pipeline.budget import cores
from segen.pipeline.stage import StageOutput, stage_task
from segen.pipeline.store import StageResult, write_atomic
from segen.project import Project

log = logging.getLogger("segen.data")


@stage_task("version_data", content_key=data_content_key, still_valid=data_dvc_agrees)
def version_data(project: Project, data: DataParams, out: Path, key: str) -> StageOutput:
    """Record data/ in DVC and push it; the data version is the .dir md5."""
    with data_change(project):  # a kill inside `dvc add` cannot leave data.dvc half written
        version = track_data(project, data)
    (out / "data_version.txt").write_text(version + "\n")
    n_files = sum(1 for p in project.data.rglob("*") if p.is_file())
    return StageOutput({"data_version": version, "n_files": n_files}, digest=version)


@stage_task("validate")
def validate(project: Project, version_data: StageResult, validate: ValidateParams,
             out: Path, key: str) -> StageOutput:
    """Stop the run, naming every bad file, if the dataset at this version is unusable."""
    from segen.data.validation import (  # pandas, PIL
        DataValidationError,
        validate_dataset,
    )

    report = validate_dataset(project.data, min_class_fraction=validate.min_class_fraction,
                              max_pixels=validate.max_image_pixels)
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


@stage_task("preprocess")
def preprocess(project: Project, version_data: StageResult, validate: StageResult,
               preprocess: PreprocessParams, out: Path, key: str) -> StageOutput:
    """images.npy (N,H,W,C) uint8 on one padded canvas, masks.npy (N,H,W) uint8 (255: ignored
    classes and padding; all 0 without masks), sizes.npy, labels.npy, the split (the
    manifest's own where it has a split column), stats and class weights; streamed, so memory
    does not grow with the number of images."""
    from segen.data.prepare import prepare  # numpy, PIL, torch: only when it runs

    info = prepare(project.data, out, preprocess, workers=decode_workers(),
                   data_version=version_data.info["data_version"])
    return StageOutput(info)


def decode_workers() -> int:
    """Decode processes for preprocess: the machine's cores, up to 8 (PNG decoding scales
    until the disk, not the CPU, is the limit); 1 on a single core (no pool at all)."""
    return min(8, cores())
