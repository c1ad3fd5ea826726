"""`segen generate`: images from a registered generative model, loaded through the MLflow
registry (NAME, NAME@ALIAS or NAME/VERSION, parsed as `segen predict` does).

    segen generate --model segen-dcgan@champion --n 64 --out samples/
    segen generate --model segen-cgan --n 16 --class 2 --out samples/
    segen generate --model segen-pix2pix --mask m1.png m2.png --out samples/

Writes sample-0000.png ... (one per image), grid.png and generated.json into --out. Each
file is written to a temporary name and renamed, so an interrupted run never leaves a half
written PNG. Imports stay light: heavy ones go inside the handler.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
    from segen.cli.main import command, params_and_json

    gen = command(sub, "generate", "images from a registered generative model", _generate)
    gen.add_argument("--model", required=True, metavar="NAME[@ALIAS|/VERSION]",
                     help="registered model, e.g. segen-dcgan@champion or segen-cgan/2 "
                     "(a bare NAME: its latest version)")
    gen.add_argument("--n", type=int, help="number of images (default: 64; with --mask or "
                     "--image: one per file, masks cycled when --n is larger)")
    cond = gen.add_mutually_exclusive_group()
    cond.add_argument("--class", dest="class_", metavar="K", help="class id or name "
                      "(class-conditional models: cgan, cvae)")
    cond.add_argument("--mask", nargs="+", type=Path, metavar="FILE", help="class-index PNG "
                      "masks (mask-to-image: pix2pix); resized with nearest to the model's size")
    cond.add_argument("--image", nargs="+", type=Path, metavar="FILE", help="images to "
                      "translate (cyclegan), with --domain")
    gen.add_argument("--domain", type=int, choices=(0, 1), help="domain of the --image files "
                     "(0: translate domain 0 -> 1, 1: the reverse)")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")
    gen.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    params_and_json(gen, "its mlflow section: where the registry is")


def _generate(args: argparse.Namespace) -> int:
    import json

    from segen.cli.main import params_path
    from segen.config import load_params
    from segen.disk import writing
    from segen.serving.gen_pyfunc import GenerativeModel
    from segen.serving.predict import load_model
    from segen.tracking import configure_tracking

    params = load_params(Path(params_path(args)))
    request = _request(args, params.validate.max_image_pixels)  # before the model loads
    configure_tracking(args.project, params.mlflow)  # as `segen run` does
    model, uri = load_model(args.model)
    if not isinstance(model.unwrap_python_model(), GenerativeModel):
        raise ValueError(f"{uri} is not a generative model (a segmentation model? call it "
                         "with `segen predict`); generative models are registered as "
                         "<register_generative.model_prefix><kind>, e.g. segen-dcgan")
    images = model.predict(request, params={"seed": args.seed})
    with writing(args.out, "each file in it is whole or absent (no half-written PNG)"):
        report = write_images(images, args.out, {"model": uri, "seed": args.seed,
                                                 "run_id": model.metadata.run_id,
                                                 **_described(args)})
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {len(report['images'])} image(s) {report['images'][0]} ... "
              f"{report['images'][-1]}, {report['grid']} and {report['manifest']}")
        print(f"generated with {uri} (seed {args.seed})")
    return 0


def _request(args: argparse.Namespace, max_pixels: int) -> dict[str, Any]:
    """The pyfunc request the arguments describe (the model checks it against its kind);
    files are read through segen.data.image_files (size limit, damage)."""
    from segen.serving.predict import read_image

    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if (args.domain is None) != (args.image is None):
        raise ValueError("--image and --domain go together: pass the images to translate "
                         "and their domain (0 or 1)")
    request: dict[str, Any] = {} if args.n is None else {"n": args.n}
    if args.mask:
        request["masks"] = [_read_mask(path, max_pixels) for path in args.mask]
    elif args.image:
        request.update(images=[read_image(path, max_pixels) for path in args.image],
                       domain=args.domain)
    else:
        request.setdefault("n", 64)
        if args.class_ is not None:
            request["class"] = args.class_
    return request


def _read_mask(path: Path, max_pixels: int) -> Any:
    """(H, W) class ids from a class-index PNG (greyscale or palette indices, as stored)."""
    import numpy as np

    from segen.data.image_files import open_image

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mask file")
    image = open_image(path, max_pixels=max_pixels)
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise ValueError(f"{path}: a {image.mode} image, expected a class-index PNG (one "
                         "channel of class ids, e.g. a mask from data/masks/)")
    return np.array(image).astype(np.int64)


def _described(args: argparse.Namespace) -> dict[str, Any]:
    if args.mask:
        return {"masks": [str(p) for p in args.mask]}
    if args.image:
        return {"images_in": [str(p) for p in args.image], "domain": args.domain}
    return {"class": args.class_} if args.class_ is not None else {}


def write_images(images: Any, out: Path, about: dict[str, Any]) -> dict[str, Any]:
    """(N, H, W, C) uint8 -> out/sample-NNNN.png, out/grid.png and out/generated.json, each
    written to a temporary name in out and renamed (readers never see half a file)."""
    import json
    import math

    import numpy as np
    from PIL import Image

    from segen.pipeline.store import write_atomic
    from segen.serving.grid import save_grid
    from segen.serving.images import to_zero_one

    images = np.asarray(images)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"sample-{i:04d}.png" for i in range(len(images))]
    for name, image in zip(names, images):
        _save_png(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image), out / name)
    save_grid(to_zero_one(images), out / "grid.png", per_row=math.ceil(math.sqrt(len(images))))
    report = {**about, "shape": list(images.shape), "images": [str(out / n) for n in names],
              "grid": str(out / "grid.png"), "manifest": str(out / "generated.json")}
    write_atomic(out / "generated.json", json.dumps(report, indent=1))
    return report


def _save_png(image: Any, path: Path) -> None:
    from segen.disk import replace_atomic

    replace_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
