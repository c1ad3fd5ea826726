"""Peak memory of preprocess and of one training epoch against the dataset's size.

Generates N image/mask pairs (default 1024x768 RGB, two classes), then, each in its own
subprocess so that ru_maxrss is theirs alone: (a) `import torch` (the baseline), (b)
segen.data.prepare.prepare on the pairs at their native size, (c) one epoch of the U-Net
trainer's DataLoader pipeline and model (tiny U-Net on 256-px random crops: memory, not
accuracy, is measured). Prints peak RSS beside the dataset on disk (PNG) and as arrays.

    .venv/bin/python bench/memory.py --sizes 1000 4000
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_pairs(root: Path, n: int, height: int, width: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True), (root / "masks").mkdir()
    rows = []
    for i in range(n):
        image = np.full((height, width, 3), 70, np.uint8)
        mask = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[top:top + height // 3, left:left + width // 3] = rng.integers(120, 255, 3)
        mask[top:top + height // 3, left:left + width // 3] = 1
        Image.fromarray(image).save(root / "images" / f"{i}.png", compress_level=1)
        Image.fromarray(mask).save(root / "masks" / f"{i}.png", compress_level=1)
        rows.append(f"{i},images/{i}.png,masks/{i}.png,1")
    (root / "manifest.csv").write_text("id,image,mask,label\n" + "\n".join(rows) + "\n")
    (root / "classes.json").write_text('{"classes": ["background", "thing"]}')


def child(mode: str, data: Path, out: Path) -> None:
    import torch  # noqa: F401 - the baseline every mode includes

    from segen.config import load_params
    params = load_params(REPO / "params.yaml")
    if mode == "prepare":
        from segen.data.prepare import prepare
        pre = dataclasses.replace(params.preprocess, image_size=None, long_side=1024)
        prepare(data, out, pre, workers=2, data_version="bench")
    elif mode == "epoch":
        from types import SimpleNamespace

        from tqdm import tqdm

        from segen.data.arrays import dataset_meta
        from segen.engines.segmentation_data import (
            split_dataset,
            train_dataset,
            train_transform,
        )
        from segen.engines.unet_trainer import Trainer, segmenter_config
        prepared = SimpleNamespace(path=str(out))
        unet = dataclasses.replace(params.unet, depth=2, base_width=4, epochs=1, batch_size=8,
                                   crop_size=256)
        train = train_dataset(prepared, None, train_transform(256, True, 0.0))
        trainer = Trainer(segmenter_config(dataset_meta(prepared), unet), unet, train,
                          split_dataset(prepared, "val"), None)
        trainer.train_epoch(tqdm(disable=True))
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(mode: str, data: Path, out: Path) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(data), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"], \
        time.perf_counter() - start


def size_mib(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern)) / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.child[2]))
    with tempfile.TemporaryDirectory(prefix="segen-memory-") as tmp:
        base, _ = measure("torch", Path(tmp), Path(tmp))
        print(f"baseline: import torch {base:.0f} MiB peak RSS")
        print(f"{'pairs':>6} {'PNG MiB':>8} {'arrays MiB':>10} {'prepare MiB':>12} "
              f"{'(+torch)':>9} {'epoch MiB':>10} {'(+torch)':>9} {'s':>6}")
        for n in args.sizes:
            data, out = Path(tmp) / f"data{n}", Path(tmp) / f"out{n}"
            write_pairs(data, n, args.height, args.width)
            out.mkdir()
            prep, prep_s = measure("prepare", data, out)
            epoch, epoch_s = measure("epoch", data, out)
            print(f"{n:>6} {size_mib(data, '*/*.png'):>8.0f} {size_mib(out, '*.npy'):>10.0f} "
                  f"{prep:>12.0f} {prep - base:>+9.0f} {epoch:>10.0f} {epoch - base:>+9.0f} "
                  f"{prep_s + epoch_s:>6.0f}", flush=True)
            for folder in (data, out):
                subprocess.run(["rm", "-rf", str(folder)], check=True)


if __name__ == "__main__":
    main()
