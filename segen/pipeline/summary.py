"""The run summary: what `segen run` prints (and returns as JSON)."""
from __future__ import annotations

import os
from typing import Any

from segen.config import Params
from segen.pipeline.store import StageResult
from segen.project import Project
from segen.redact import redact


def summarise(project: Project, params: Params, results: dict[str, StageResult],
              statuses: list[dict[str, str]], data_source: str) -> dict[str, Any]:
    data = results.get("version_data")
    models = [{"name": r.info["model_name"], "version": r.info["version"],
               "metrics": r.info["metrics"], "champion": r.info["champion"],
               "run_id": r.info["run_id"]}
              for r in results.values() if "model_name" in r.info]
    comparison = results.get("compare_segmenters")
    return {"data_version": data.info["data_version"] if data else None,
            "data_source": data_source, "stages": statuses, "models": models,
            "comparison": comparison.info["comparison"] if comparison else None,
            "generative": generative_rows(results),
            "failed": [s["name"] for s in statuses if s["status"] == "failed"],
            "ui": ui_commands(project)}


def generative_rows(results: dict[str, StageResult]) -> list[dict[str, Any]]:
    """One row per evaluated generator, then the references: the floor and ceiling FIDs, and
    real test images (the extractor's class accuracy; the U-Net's IoU at pix2pix's size)."""
    rows = [{"model": name.removeprefix("evaluate_"), **r.info["metrics"]}
            for name, r in results.items()
            if name.startswith("evaluate_") and "protocol" in r.info]
    extractor = results.get("train_feature_extractor")
    if extractor is not None:
        refs = extractor.info["references"]
        rows += [{"model": f"ref: {which}", **refs[which]} for which in ("ceiling", "floor")]
        real = {"accuracy": refs["test_accuracy"]}
        real.update({"unet_mean_iou": r["ref_real_unet_mean_iou"] for r in rows
                     if "ref_real_unet_mean_iou" in r})
        rows.append({"model": "ref: real", **real})
    return rows


def ui_commands(project: Project) -> dict[str, str]:
    tracking = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{project.mlflow_db}")
    prefect_home = os.environ.get("PREFECT_HOME", str(project.prefect_home))
    api = os.environ.get("PREFECT_API_URL")  # a server (team mode): its UI is beside its API
    return {
        "mlflow": (f"mlflow ui --backend-store-uri {tracking} --port 5000"
                   if tracking.startswith("sqlite:") else f"open {redact(tracking)}"),
        "prefect": (f"open {redact(api.removesuffix('/api'))}" if api else
                    f"PREFECT_HOME={prefect_home} prefect server start  # then open "
                    "http://127.0.0.1:4200"),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"data version  {summary['data_version']}  ({summary['data_source']})", "stages"]
    lines += [f"  {s['name']:<24} {s['status']:<7} {s['key'][:12]}"
              + (f"  {s['reason']}" if s.get("reason") else "") for s in summary["stages"]]
    for model in summary["models"]:
        alias = "  [champion]" if model["champion"] else ""
        lines.append(f"model         {model['name']} v{model['version']}{alias}")
        lines += [f"  {k:<22} {v:.4f}" for k, v in sorted(model["metrics"].items())]
    if summary.get("comparison"):
        lines += format_comparison(summary["comparison"])
    if summary.get("generative"):
        lines += format_generative(summary["generative"])
    if summary.get("failed"):
        lines.append(f"FAILED: {', '.join(summary['failed'])} (reasons above)")
    lines += ["open the UIs", f"  MLflow:  {summary['ui']['mlflow']}",
              f"  Prefect: {summary['ui']['prefect']}"]
    return "\n".join(lines)


def format_generative(rows: list[dict[str, Any]]) -> list[str]:
    """Generators on the test split with the pinned extractor, beside the references
    (ceiling: the train split itself; floor: per-pixel mean + noise)."""
    columns = {"fid": "fid", "kid_mean": "kid", "precision": "precision", "recall": "recall",
               "accuracy": "class acc", "unet_mean_iou": "unet iou", "elbo": "elbo"}

    def cell(value: Any) -> str:
        return f"{value:>11.4g}" if isinstance(value, float) else f"{'-':>11}"

    lines = ["generators on the test split (pinned extractor)",
             f"  {'model':<12}" + "".join(f"{c:>11}" for c in columns.values())]
    lines += [f"  {r['model']:<12}" + "".join(cell(r.get(c)) for c in columns) for r in rows]
    return lines


def format_comparison(rows: list[dict[str, Any]]) -> list[str]:
    """Segmenters side by side on the test split (compare_segmenters)."""
    def cell(value: Any) -> str:
        return f"{value:>11.4f}" if isinstance(value, float) else f"{'-':>11}"

    columns = ("mean_iou", "ari", "silhouette", "seconds_per_image")
    lines = ["segmenters on the test split", f"  {'model':<8}" + "".join(
        f"{c if c != 'seconds_per_image' else 's/image':>11}" for c in columns)]
    lines += [f"  {r['model']:<8}" + "".join(cell(r.get(c)) for c in columns) for r in rows]
    return lines
