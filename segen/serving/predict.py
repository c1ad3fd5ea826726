"""`segen predict`: label maps and coloured overlays from any registered segmentation model.

The model is loaded through the MLflow registry (`models:/NAME@ALIAS`, `models:/NAME/VERSION`,
or the latest version for a bare NAME), so the U-Net and the clustering segmenters are
called the same way. Each image is predicted on its own, so sizes may differ.

Written per image: <stem>.labels.png (the label map: 8-bit when the labels fit, with 255
for DBSCAN noise; else 16-bit with 65535) and <stem>.overlay.png (each label's colour
blended over the image; noise left uncoloured); and predictions.json listing them.
"""
from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from segen.disk import replace_atomic, writing
from segen.serving.palette import colourise

NOISE = -1
_SPEC = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))?$")


def parse_model_spec(spec: str) -> tuple[str, str | None, str | None]:
    """NAME[@ALIAS|/VERSION] -> (name, alias or None, version or None); both None: latest."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ValueError(f"model {spec!r}: expected NAME, NAME@ALIAS or NAME/VERSION "
                         "(e.g. segen-unet@champion or segen-kmeans/2)")
    return match["name"], match["alias"], match["version"]


def model_uri(spec: str) -> str:
    """NAME[@ALIAS|/VERSION] -> a models:/ URI (a bare NAME means its latest version)."""
    name, alias, version = parse_model_spec(spec)
    return f"models:/{name}@{alias}" if alias else f"models:/{name}/{version or 'latest'}"


def load_model(spec: str) -> tuple[Any, str]:
    """The pyfunc behind spec (tracking already configured), or a ValueError naming the
    registered models there are."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from segen.tracking import client

    uri = model_uri(spec)
    try:
        with _without_type_hint_advice():
            return mlflow.pyfunc.load_model(uri), uri
    except MlflowException as err:
        names = sorted(m.name for m in client().search_registered_models())
        hint = (f"registered models here: {', '.join(names)}" if names else
                "no model is registered here yet: run `segen run` first")
        raise ValueError(f"cannot load {uri}: {str(err).splitlines()[0]} ({hint}; the "
                         "tracking store is set by params.yaml's mlflow section or "
                         "MLFLOW_TRACKING_URI).") from err


@contextmanager
def _without_type_hint_advice() -> Iterator[None]:
    """Hide MLflow's advice to add type hints to predict() (meaningless to a CLI user). A
    filter cannot: MLflow sets its own filters around that warning."""
    shown = warnings.showwarning

    def show(message: Any, *args: Any, **kwargs: Any) -> None:
        if "type hint" not in str(message):
            shown(message, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """(H, W, C) uint8 as stored (palette images expanded to RGB); no channel conversion.
    Read through segen.data.image_files: larger than max_pixels or damaged is refused."""
    from segen.data.image_files import open_image

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    image = open_image(path, max_pixels=max_pixels)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    array = np.array(image)  # writable: torch warns on read-only arrays
    return array[..., None] if array.ndim == 2 else array


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Labels' colours (segen.serving.palette) blended over the image (as RGB); noise pixels
    keep the image."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    blended = (1 - alpha) * rgb + alpha * colourise(labels)
    keep = (labels == NOISE)[..., None]
    return np.where(keep, rgb, blended).round().astype(np.uint8)


def save_labels(labels: np.ndarray, path: Path) -> None:
    """An 8-bit PNG when labels lie in [0, 254] (noise -> 255), else 16-bit (noise -> 65535)."""
    from PIL import Image

    labels = labels.astype(np.int64)
    if labels.max(initial=0) < 255:
        image = Image.fromarray(np.where(labels == NOISE, 255, labels).astype(np.uint8))
    else:
        image = Image.fromarray(np.where(labels == NOISE, 65535, labels).astype(np.uint16))
    replace_atomic(path, lambda tmp: image.save(tmp, format="PNG"))  # whole or absent


def predict_files(spec: str, images: list[Path], out_dir: Path, *, max_pixels: int
                  ) -> dict[str, Any]:
    """Predict every image with the registered model; returns what predictions.json holds."""
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise ValueError("two images share a file name stem, so their outputs would overwrite "
                         f"each other: {sorted({s for s in stems if stems.count(s) > 1})}. "
                         "Predict them into separate --out folders.")
    from segen.data.image_files import open_image

    for path in images:  # every header checked (exists, readable, size) before any output
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image")
        open_image(path, max_pixels=max_pixels, decode=False).close()
    model, uri = load_model(spec)
    with writing(out_dir, "each file in it is whole or absent (no half-written PNG)"):
        return _write_predictions(model, uri, images, out_dir, max_pixels)


def _write_predictions(model: Any, uri: str, images: list[Path], out_dir: Path,
                       max_pixels: int) -> dict[str, Any]:
    """Each image's label map and overlay, then predictions.json, every file atomically."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        image = read_image(path, max_pixels)
        try:
            labels = np.asarray(model.predict(image[None]))[0]
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        label_path = out_dir / f"{path.stem}.labels.png"
        overlay_path = out_dir / f"{path.stem}.overlay.png"
        save_labels(labels, label_path)
        blended = Image.fromarray(overlay(image, labels))
        replace_atomic(overlay_path, lambda tmp: blended.save(tmp, format="PNG"))
        written.append({"image": str(path), "labels": str(label_path),
                        "overlay": str(overlay_path), "shape": list(labels.shape),
                        "label_ids": sorted(int(k) for k in np.unique(labels))})
    report = {"model": uri, "run_id": model.metadata.run_id, "images": written}
    text = json.dumps(report, indent=1)
    replace_atomic(out_dir / "predictions.json", lambda tmp: tmp.write_text(text))
    return report
