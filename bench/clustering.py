"""K-means and DBSCAN segmenters: speed, peak memory and quality, beside a threshold baseline.

Speed and memory, on shapes images (segen.data.shapes.make_sample) of 64^2, 256^2 and 512^2:
pixels per second of segen.serving.clustering.segment (features + labels; one thread, as the
stages run it), for each segmenter in both modes: "global" (fitted once beforehand on 8
images of that size, what a registered model does) and "per_image" (a fit per image,
timed with it). Peak memory of segmenting one image: the rise of the process's peak
resident memory (VmHWM, reset through /proc/self/clear_refs; it sees scikit-learn's
native buffers) and tracemalloc's peak (numpy's allocations). Then plain scikit-learn
DBSCAN on every pixel of one image, in a subprocess capped at --naive-cap-gib of address
space: why segen's DBSCAN clusters a bounded sample instead.

Quality, global mode with params.yaml's kmeans/dbscan sections, on
- the default dataset (params.yaml's dataset section, generated in memory; the pipeline's
  own split: fitted on train, scored on the 120 test images), and
- the ISBI 2012 membranes (/work/shared/datasets/isbi2012-membrane: fitted on slices
  0-24, scored on 25-29, as bench/isbi_unet.py; two classes, so n_clusters=2 there, and
  DBSCAN's eps is picked from a few values by mean IoU on slices 0-24),
scored by segen.engines.label_map_scores (the evaluate stages' code): ARI per
image (averaged), mean IoU and pixel accuracy after one Hungarian matching for the split,
silhouette. Baseline: a global grey-level threshold (luminance > t), t tuned for mean IoU
on the training images, its two sides matched to classes the same way. The U-Net's
figures come from the pipeline (README; bench/isbi_unet.py) and are printed for reference
when bench/out holds them.

Usage:  .venv/bin/python bench/clustering.py [--quick]
Writes bench/out/clustering.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, REPO, busy_warning, machine, table, write_json  # noqa: E402

ISBI = Path("/work/shared/datasets/isbi2012-membrane")
SIZES = {64: 32, 256: 4, 512: 2}  # image side -> images timed


def _rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _config(kind: str, mode: str, params: Any, **overrides: Any) -> dict[str, Any]:
    from segen.serving.clustering import segmenter_config

    section = dataclasses.replace(getattr(params, kind), mode=mode, **overrides)
    return segmenter_config(kind, section, channels=3)


def speed_and_memory(kind: str, mode: str, size: int, params: Any) -> dict[str, float]:
    import numpy as np

    from segen.data.shapes import make_sample
    from segen.serving import clustering

    images = np.stack([make_sample(np.random.default_rng(i), size, 1, 4).image
                       for i in range(SIZES[size] + 8)])
    config = _config(kind, mode, params)
    fitted = clustering.fit_global(config, images[SIZES[size]:]) if mode == "global" else None
    clustering.segment(config, fitted, images[:1, :16, :16])  # imports, warm-up
    start = time.perf_counter()
    clustering.segment(config, fitted, images[:SIZES[size]])
    seconds = time.perf_counter() - start
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_peak_mib()
    tracemalloc.start()
    clustering.segment(config, fitted, images[:1])
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"pixels_per_second": SIZES[size] * size * size / seconds,
            "peak_rss_rise_mib": _rss_peak_mib() - before, "peak_traced_mib": traced}


def naive_dbscan(size: int, params: Any, cap_gib: float) -> dict[str, Any]:
    """scikit-learn DBSCAN on all pixels of one image, in a capped subprocess."""
    proc = subprocess.run([sys.executable, __file__, "--naive", str(size), "--naive-cap-gib",
                           str(cap_gib)], capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"status": f"failed: {proc.stderr[-300:]}"}


def _naive_child(size: int, cap_gib: float) -> None:
    import numpy as np
    from sklearn.cluster import DBSCAN

    from models.clustering import pixel_features
    from segen.config import load_params
    from segen.data.shapes import make_sample

    params = load_params(REPO / "params.yaml").dbscan
    image = make_sample(np.random.default_rng(0), size, 1, 4).image
    features = pixel_features(image, params.colour, params.position_weight)
    cap = int(cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    Path("/proc/self/clear_refs").write_text("5")
    before, start = _rss_peak_mib(), time.perf_counter()
    try:
        DBSCAN(eps=params.eps, min_samples=params.min_samples).fit(features)
        status = "ok"
    except MemoryError:
        status = f"MemoryError at the {cap_gib:g} GiB cap"
    print(json.dumps({"status": status, "seconds": time.perf_counter() - start,
                      "peak_rss_rise_mib": _rss_peak_mib() - before}))


def default_dataset(params: Any) -> dict[str, Any]:
    import numpy as np

    from segen.data.preprocessing import split_indices
    from segen.data.shapes import CLASSES, make_sample

    d = params.dataset
    samples = [make_sample(np.random.default_rng(child), d.image_size, d.min_shapes,
                           d.max_shapes)
               for child in np.random.SeedSequence(d.seed).spawn(d.n_images)]
    images = np.stack([s.image for s in samples])
    masks = np.stack([s.mask for s in samples])
    split = split_indices(len(samples), params.preprocess)
    return {"train": (images[split["train"]], masks[split["train"]]),
            "test": (images[split["test"]], masks[split["test"]]), "classes": CLASSES}


def isbi_dataset() -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    def load(ids: range) -> tuple[Any, Any]:
        images = np.stack([np.asarray(Image.open(ISBI / "train/image" / f"{i}.png"))
                           for i in ids])[..., None]
        labels = np.stack([np.asarray(Image.open(ISBI / "train/label" / f"{i}.png"))
                           for i in ids])
        return images, (labels > 127).astype(np.uint8)  # 0 membrane, 1 cell

    return {"train": load(range(25)), "test": load(range(25, 30)),
            "classes": ["membrane", "cell"]}


def score(pred: Any, data: dict[str, Any], params: Any) -> dict[str, float]:
    from segen.engines.label_map_scores import label_map_scores

    images, masks = data["test"]
    scores, _, _ = label_map_scores(pred, masks, images, len(data["classes"]),
                                    params.cluster_evaluate, "split")
    return {k: scores[k] for k in ("ari", "mean_iou", "pixel_accuracy", "silhouette")}


def clustering_quality(kind: str, data: dict[str, Any], params: Any, **overrides: Any
                       ) -> dict[str, Any]:
    from segen.serving import clustering

    channels = data["train"][0].shape[-1]
    config = {**_config(kind, "global", params, **overrides), "channels": channels}
    fitted = clustering.fit_global(config, data["train"][0])
    return score(clustering.segment(config, fitted, data["test"][0]), data, params)


def tune_dbscan_eps(data: dict[str, Any], params: Any, candidates: list[float]) -> float:
    """The eps with the best mean IoU on the training images (scored like the test)."""
    from segen.serving import clustering

    train = {**data, "test": data["train"]}
    best = (-1.0, candidates[0])
    for eps in candidates:
        config = {**_config("dbscan", "global", params, eps=eps),
                  "channels": data["train"][0].shape[-1]}
        fitted = clustering.fit_global(config, data["train"][0])
        if fitted.n_clusters == 0:
            continue
        mean_iou = score(clustering.segment(config, fitted, data["train"][0]), train,
                         params)["mean_iou"]
        best = max(best, (mean_iou, eps))
    return best[1]


def grey(images: Any) -> Any:
    import numpy as np

    if images.shape[-1] == 1:
        return images[..., 0]
    return np.round(images[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def threshold_baseline(data: dict[str, Any], params: Any) -> dict[str, Any]:
    """Luminance > t, with t tuned for mean IoU (after matching) on the training images."""
    import numpy as np

    from models import cluster_metrics as cm

    train_grey, (_, train_masks) = grey(data["train"][0]), data["train"]
    k = len(data["classes"])
    best = (-1.0, 0)
    for t in range(255):
        pred = (train_grey > t).astype(np.int64)
        counts = cm.cluster_class_counts(pred, train_masks, 2, k)
        classes = cm.apply_matching(pred, cm.match_clusters(counts))
        mean_iou = cm.iou_scores(cm.matched_confusion(classes, train_masks, k))["mean_iou"]
        best = max(best, (mean_iou, t))
    pred = (grey(data["test"][0]) > best[1]).astype(np.int32)
    return {**score(pred, data, params), "threshold": best[1]}


def unet_reference() -> dict[str, Any]:
    """The U-Net's figures from the pipeline benchmarks, when bench/out holds them."""
    path = OUT_DIR / "isbi_unet.json"
    isbi = json.loads(path.read_text())["held_out"] if path.is_file() else None
    return {"default": "mean IoU 0.930 (README: default `segen run`, test split; "
                       "see compare_segmenters for ARI/silhouette)",
            "isbi": (f"mean IoU {isbi['mean_iou']:.3f} (bench/isbi_unet.py, slices 25-29)"
                     if isbi else "run bench/isbi_unet.py")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64^2 and 256^2 only, no ISBI")
    parser.add_argument("--naive", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--naive-cap-gib", type=float, default=4.0,
                        help="address-space cap of plain DBSCAN's subprocess (GiB)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.naive:
        return _naive_child(args.naive, args.naive_cap_gib)
    from segen.config import load_params

    warning = busy_warning()
    if warning:
        print(warning, flush=True)
    params = load_params(REPO / "params.yaml")
    sizes = [64, 256] if args.quick else list(SIZES)
    results: dict[str, Any] = {"machine": machine(), "speed": {}, "naive_dbscan": {},
                               "quality": {}}
    rows = []
    for kind in ("kmeans", "dbscan"):
        for mode in ("global", "per_image"):
            for size in sizes:
                r = speed_and_memory(kind, mode, size, params)
                results["speed"][f"{kind}/{mode}/{size}"] = r
                rows.append((f"{kind:<6} {mode:<9} {size:>3}^2",
                             f"{r['pixels_per_second'] / 1e6:7.2f} Mpx/s   peak +"
                             f"{r['peak_rss_rise_mib']:6.1f} MiB RSS, "
                             f"{r['peak_traced_mib']:6.1f} MiB traced"))
    for size in ([64, 128] if args.quick else [64, 128, 256, 512]):
        r = naive_dbscan(size, params, args.naive_cap_gib)
        results["naive_dbscan"][str(size)] = r
        rows.append((f"sklearn DBSCAN, all pixels {size}^2",
                     f"{r['status']}, {r.get('seconds', 0):.1f} s, peak +"
                     f"{r.get('peak_rss_rise_mib', float('nan')):.0f} MiB RSS"))
    print(table(rows, "speed (one thread) and peak memory of segmenting one image"), flush=True)

    datasets = {"default": default_dataset(params)}
    if not args.quick and ISBI.is_dir():
        datasets["isbi"] = isbi_dataset()
    reference = unet_reference()
    rows = []
    for name, data in datasets.items():
        two_classes = {"n_clusters": 2} if name == "isbi" else {}
        eps = {}
        if name == "isbi":
            eps = {"eps": tune_dbscan_eps(data, params, [0.005, 0.01, 0.02, 0.05])}
        quality = {"kmeans": clustering_quality("kmeans", data, params, **two_classes),
                   "dbscan": {**clustering_quality("dbscan", data, params, **eps), **eps},
                   "threshold": threshold_baseline(data, params)}
        results["quality"][name] = quality
        for method, q in quality.items():
            extra = (f"  (t={q['threshold']})" if "threshold" in q else
                     f"  (eps={q['eps']})" if "eps" in q else "")
            rows.append((f"{name:<8} {method}", f"ARI {q['ari']:.3f}  mean IoU "
                         f"{q['mean_iou']:.3f}  pixel acc {q['pixel_accuracy']:.3f}{extra}"))
        rows.append((f"{name:<8} unet", reference[name]))
    print(table(rows, "quality on held-out images (global mode; clusters named by "
                      "Hungarian matching)"), flush=True)
    results["unet_reference"] = reference
    print(f"wrote {write_json('clustering', results)}")


if __name__ == "__main__":
    main()
