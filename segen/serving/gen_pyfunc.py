"""The registered generative models: an MLflow pyfunc whose predict turns a request into
images (every kind of models/generative behind one call).

    model = mlflow.pyfunc.load_model("models:/segen-dcgan@champion")
    images = model.predict({"n": 64}, params={"seed": 0})           # (64, H, W, C) uint8
    model.predict({"n": 8, "class": 2})                              # cgan / cvae: class id
    model.predict({"n": 8, "class": "circle"})                       # ... or class name
    model.predict({"masks": masks})                                  # pix2pix: (N, h, w) ids
    model.predict({"images": images, "domain": 0})                   # cyclegan: A -> B

A pandas DataFrame works too: one request per row (columns n and class), the images of
all rows concatenated. Masks may be a list of (h, w) arrays of any size (resized with
nearest to the model's size); with "n" larger than the number of masks they are cycled.
The same request and seed give the same images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segen.serving.image_batch import as_image_batch
from segen.serving.pyfunc import FolderModel, torch_requirement

GENERATE_BATCH = 64  # images per forward pass: bounds memory for large n
_KEYS = ("n", "class", "masks", "images", "domain")


class GenerativeModel(FolderModel):
    """A trained generator behind a stable predict(): a request in, uint8 images out."""

    ARTIFACT = "generator"

    def load(self, folder: Path) -> None:
        from segen.serving.device import pick_device
        from segen.serving.generator import load_generator

        self.nets, self.config = load_generator(folder, pick_device())

    # No type hints on model_input: MLflow 3 would turn them into input validation that
    # rejects plain dicts.
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        request = parse_request(model_input, self.config)
        seed = int((params or {}).get("seed", 0))
        return generate(self.config, self.nets, request, seed)


def generate(config: dict[str, Any], nets: Any, request: dict[str, Any], seed: int
             ) -> np.ndarray:
    """(n, H, W, C) uint8 in batches of GENERATE_BATCH; batch b is seeded with seed + b,
    so the first k images of a larger request equal a request of k (k a batch multiple)."""
    from segen.serving.generator import generate_images

    n, out = request["n"], []
    for b, start in enumerate(range(0, n, GENERATE_BATCH)):
        part = slice(start, min(start + GENERATE_BATCH, n))
        cond = {k: v[part] for k, v in request.items() if k in ("labels", "masks", "images")}
        if "domain" in request:
            cond["domain"] = request["domain"]
        out.append(generate_images(config, nets, part.stop - part.start, seed=seed + b, **cond))
    return np.concatenate(out)


def parse_request(model_input: Any, config: dict[str, Any]) -> dict[str, Any]:
    """{"n", and "labels" (n,) | "masks" (n, S, S) | "images" + "domain"} as the model's
    kind needs them; a ValueError saying what is wrong and what the model takes."""
    rows = _rows(model_input)
    unknown = sorted({k for row in rows for k in row} - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown request key(s) {unknown}; a request takes {list(_KEYS)}")
    need = config["conditioning"]
    if need == "mask":
        return _mask_request(rows, config)
    if need == "image":
        return _image_request(rows, config)
    requests = [_class_request(row, config) for row in rows]
    request: dict[str, Any] = {"n": sum(r["n"] for r in requests)}
    if need == "label":
        request["labels"] = np.concatenate([r["labels"] for r in requests])
    return request


def _rows(model_input: Any) -> list[dict[str, Any]]:
    """A dict (one request) or a DataFrame / list of dicts (one request per row)."""
    if isinstance(model_input, dict):
        return [model_input]
    if hasattr(model_input, "to_dict"):  # pandas.DataFrame, without importing pandas
        rows = model_input.to_dict(orient="records")
        return [{k: v for k, v in row.items() if not _missing(v)} for row in rows]
    if isinstance(model_input, list) and all(isinstance(r, dict) for r in model_input):
        return model_input
    raise ValueError(f"expected a request dict such as {{'n': 16}}, {{'n': 16, 'class': 1}} "
                     f"or {{'masks': array}}, or a DataFrame of them; got "
                     f"{type(model_input).__name__}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN: empty cell


def _count(row: dict[str, Any]) -> int:
    if "n" not in row:
        raise ValueError("the request needs 'n', the number of images (e.g. {'n': 16})")
    n = row["n"]
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # a DataFrame column with empty cells holds floats
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"'n' must be an int >= 1, got {n!r}")
    return int(n)


def _class_request(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    n, kind = _count(row), config["kind"]
    _reject(row, ("masks", "images", "domain"), config)
    if config["conditioning"] is None:
        if "class" in row:
            raise ValueError(f"model kind {kind!r} is unconditional: it takes no class (drop "
                             "'class' / --class); class-conditional kinds are cgan and cvae")
        return {"n": n}
    if "class" not in row:
        raise ValueError(f"model kind {kind!r} generates a requested class: pass 'class' "
                         f"(--class K), one of 0..{len(config['classes']) - 1} "
                         f"{_class_names(config)}")
    return {"n": n, "labels": np.full(n, class_id(row["class"], config), dtype=np.int64)}


def class_id(value: Any, config: dict[str, Any]) -> int:
    """A class id from an id or a class name, checked against the model's classes."""
    classes = config["classes"]
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        if value not in classes:
            raise ValueError(f"class {value!r} is not one of the model's classes "
                             f"{_class_names(config)}")
        return classes.index(value)
    k = int(value)
    if not 0 <= k < len(classes):
        raise ValueError(f"class {k} is out of range: the model has {len(classes)} classes, "
                         f"ids 0..{len(classes) - 1} {_class_names(config)}")
    return k


def _class_names(config: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{i}={c}" for i, c in enumerate(config["classes"])) + ")"


def _reject(row: dict[str, Any], keys: tuple[str, ...], config: dict[str, Any]) -> None:
    given = [k for k in keys if k in row]
    if given:
        takes = {None: "only 'n'", "label": "'n' and 'class'", "mask": "'masks'",
                 "image": "'images' and 'domain'"}[config["conditioning"]]
        raise ValueError(f"model kind {config['kind']!r} does not take {given}; it takes "
                         f"{takes}")


def _single(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    if len(rows) != 1:
        raise ValueError(f"model kind {kind!r} takes one request dict, got {len(rows)} rows")
    return rows[0]


def _mask_request(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    row = _single(rows, config["kind"])
    _reject(row, ("class", "images", "domain"), config)
    if "masks" not in row:
        raise ValueError(f"model kind {config['kind']!r} turns masks into images: pass "
                         "'masks', (N, H, W) class ids (--mask FILE...)")
    masks = resize_masks(row["masks"], config)
    n = _count(row) if "n" in row else len(masks)
    return {"n": n, "masks": masks[np.arange(n) % len(masks)]}  # cycled when n > N


def resize_masks(masks: Any, config: dict[str, Any]) -> np.ndarray:
    """(N, S, S) int64 class ids at the model's size S (nearest), checked against its
    classes; masks: an (N, h, w) or (h, w) array, or a list of (h, w) arrays of any size."""
    import torch
    import torch.nn.functional as F

    spec = config["spec"]
    items = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    arrays = [a for item in items for a in _mask_arrays(np.asarray(item))]
    size, k = spec["image_size"], spec["n_classes"]
    out = []
    for i, m in enumerate(arrays):
        if not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() >= k:
            raise ValueError(f"mask {i}: expected class ids in 0..{k - 1} "
                             f"{_class_names(config)}, got values {np.unique(m)[:10].tolist()} "
                             f"({m.dtype}); masks are class-index images")
        t = torch.from_numpy(m.astype(np.int64))[None, None].float()
        out.append(F.interpolate(t, size=(size, size), mode="nearest-exact")[0, 0].long())
    return torch.stack(out).numpy()


def _mask_arrays(m: np.ndarray) -> list[np.ndarray]:
    if m.ndim == 2:
        return [m]
    if m.ndim == 3:
        return list(m)
    raise ValueError(f"expected masks of shape (N, H, W) or (H, W) holding class ids, got "
                     f"shape {m.shape} (RGB masks? save masks as class-index images)")


def _image_request(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    row = _single(rows, config["kind"])
    _reject(row, ("class", "masks"), config)
    if "images" not in row or row.get("domain") not in (0, 1):
        a, b = config["domains"]
        raise ValueError(f"model kind {config['kind']!r} translates images: pass 'images' "
                         f"(N, H, W, C) uint8 and 'domain' 0 ({a} -> {b}) or 1 ({b} -> {a})")
    images = as_image_batch(row["images"], config["spec"]["channels"])
    n = len(images)
    if "n" in row and _count(row) != n:
        raise ValueError(f"'n' is {row['n']} but {n} images were given; drop 'n'")
    return {"n": n, "images": images, "domain": int(row["domain"])}


def log_generative_model(model_dir: Path, registered_name: str) -> Any:
    """Log the pyfunc with its generator folder and code; register a new version of it."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    # No input schema (requests are free-form dicts); the params schema lets MLflow pass
    # params={"seed": ...} through (it drops params a signature does not declare).
    signature = ModelSignature(params=ParamSchema([ParamSpec("seed", "long", 0)]))
    return GenerativeModel.log(model_dir, registered_name, [torch_requirement(), "numpy"],
                               signature)
