"""The data stages: version_data (DVC), validate, preprocess."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from segen.config import DataParams, PreprocessParams, ValidateParams
from segen.data.preprocessing import load_pair, split_indices
from segen.data.versioning import data_content_key, data_dvc_agrees, track_data
from segen.pipeline.stage import StageOutput, stage_task
from segen.pipeline.store import StageResult, write_atomic
from segen.project import Project

log = logging.getLogger("segen.data")


@stage_task("version_data", content_key=data_content_key, still_valid=data_dvc_agrees)
def version_data(project: Project, data: DataParams, out: Path, key: str) -> StageOutput:
    """Record data/ in DVC and push it; the data version is the .dir md5."""
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


@stage_task("preprocess")
def preprocess(project: Project, version_data: StageResult, validate: StageResult,
               preprocess: PreprocessParams, out: Path, key: str) -> StageOutput:
    """images.npy (N,H,W,C) uint8, masks.npy (N,H,W) uint8 (all 0 without masks), labels.npy
    (image-level class ids indexing `classes`), split + stats; `has_masks` in dataset.json and
    the stage info."""
    import pandas as pd  # lazy here and above: a cached run never imports pandas or torch

    manifest = pd.read_csv(project.data / "manifest.csv", dtype={"id": str})
    described = json.loads((project.data / "classes.json").read_text())
    classes, has_masks = described["classes"], described.get("masks", True) is not False
    pairs = [load_pair(project.data, r.image, r.mask if has_masks else None,
                        preprocess.image_size)
             for r in manifest.itertuples()]
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    split = split_indices(len(manifest), preprocess)
    train = images[split["train"]].reshape(-1, images.shape[-1]) / 255.0
    meta = {"classes": classes, "label_names": classes, "has_masks": has_masks,
            "channels": int(images.shape[-1]),
            "image_size": preprocess.image_size, "ids": manifest["id"].astype(str).tolist(),
            "mean": train.mean(0).tolist(), "std": train.std(0).clip(1e-3).tolist(),
            "data_version": version_data.info["data_version"]}
    np.save(out / "images.npy", images)
    np.save(out / "masks.npy", masks)
    np.save(out / "labels.npy", manifest["label"].to_numpy(np.int64))
    (out / "split.json").write_text(json.dumps(split))
    # every manifest column, in the arrays' order: train_cyclegan splits its two domains by
    # the column generative.cyclegan_domain_column names (so no params section here)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return StageOutput({**{k: len(v) for k, v in split.items()}, "has_masks": has_masks})
