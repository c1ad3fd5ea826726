"""Hostile files, refused by every path that reads user files (import, data add, validate,
predict, generate --mask): exit 2 and a message naming the file, no traceback, and data/
and data.dvc untouched."""
from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import MAX_PIXELS, init_project, segen_cli
from PIL import Image

from segen.data.validation import validate_dataset


def bomb_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A valid PNG header declaring width x height greyscale pixels (1.6 GB decoded) in a
    few dozen bytes: what a decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))
    return path


def _pairs(root: Path, n: int = 3, size: tuple[int, int] = (16, 16)) -> Path:
    for i in range(n):
        for folder, value in (("images", 120), ("masks", 1)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            pixels = np.zeros(size, np.uint8)
            pixels[: size[0] // 2] = value
            Image.fromarray(pixels).save(root / folder / f"{i}.png")
    return root


def _state(project: Path) -> dict[str, str]:
    """Hashes of data/ and data.dvc: what a refused command must leave as it was."""
    files = [p for p in [project / "data.dvc", *sorted((project / "data").rglob("*"))]
             if p.is_file()]
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def _refused(result, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "segen: error:" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project holding a small imported dataset (the state every refusal must keep)."""
    root = tmp_path_factory.mktemp("hostile")
    project = init_project(root / "proj")
    src = _pairs(root / "good")
    result = segen_cli("data", "import-pairs", str(src / "images"), str(src / "masks"),
                       "--classes", "background", "cell", cwd=project)
    assert result.returncode == 0, result.stderr
    return project


def _import(project: Path, src: Path, *extra: str):
    return segen_cli("data", "import-pairs", str(src / "images"), str(src / "masks"), *extra,
                     cwd=project)


def test_decompression_bomb_is_refused_by_import_and_add(project: Path, tmp_path: Path) -> None:
    before = _state(project)
    src = _pairs(tmp_path / "src")
    bomb_png(src / "images" / "1.png")
    _refused(_import(project, src), "1.png", "too large", "40000x40000",
             "validate.max_image_pixels")
    _refused(segen_cli("data", "add", str(src / "images"), str(src / "masks"), cwd=project),
             "1.png", "too large")
    assert _state(project) == before


def test_images_beyond_the_configured_maximum_are_refused(project: Path, tmp_path: Path) -> None:
    before = _state(project)
    src = _pairs(tmp_path / "src", size=(40, 40))  # 1600 pixels
    params = tmp_path / "small.yaml"
    params.write_text((project / "params.yaml").read_text().replace(
        f"max_image_pixels: {MAX_PIXELS}", "max_image_pixels: 1024"))
    assert "max_image_pixels: 1024" in params.read_text()
    _refused(_import(project, src, "--params", str(params)), "40x40 = 1,600 pixels",
             "limit is validate.max_image_pixels = 1,024")
    assert _state(project) == before


def test_symlink_out_of_the_source_folder_is_refused(project: Path, tmp_path: Path) -> None:
    before = _state(project)
    src = _pairs(tmp_path / "src")
    secret = _pairs(tmp_path / "elsewhere", n=1)
    (src / "images" / "0.png").unlink()
    (src / "images" / "0.png").symlink_to(secret / "images" / "0.png")
    _refused(_import(project, src), "is a symlink to", "outside")
    _refused(segen_cli("data", "add", str(src / "images"), str(src / "masks"), cwd=project),
             "is a symlink to")
    assert _state(project) == before


def test_mixed_bit_depths_are_refused(project: Path, tmp_path: Path) -> None:
    before = _state(project)
    src = _pairs(tmp_path / "src")
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(src / "images" / "2.png")
    _refused(_import(project, src), "mixed bit depths", "2.png")
    assert _state(project) == before


def test_manifest_paths_outside_data_are_reported(tmp_path: Path) -> None:
    """validate (the stage every run starts with) names a manifest row that leaves data/,
    absolute or by .., or through a symlink, instead of reading it."""
    data = _pairs(tmp_path / "data", n=4)
    (data / "classes.json").write_text('{"classes": ["background", "cell"]}')
    outside = _pairs(tmp_path / "outside", n=1)
    (data / "images" / "3.png").unlink()
    (data / "images" / "3.png").symlink_to(outside / "images" / "0.png")
    rows = [{"id": str(i), "image": f"images/{i}.png", "mask": f"masks/{i}.png", "label": 1}
            for i in range(4)]
    rows[1]["image"] = "../outside/images/0.png"
    rows[2]["mask"] = str(outside / "masks" / "0.png")
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    report = validate_dataset(data, min_class_fraction=0.0, max_pixels=MAX_PIXELS)
    outside_data = {p.path for p in report.problems if "outside the data folder" in p.reason}
    assert outside_data == {"../outside/images/0.png", str(outside / "masks" / "0.png"),
                            "images/3.png"}


def test_a_bomb_in_data_fails_validation_by_name(tmp_path: Path) -> None:
    data = _pairs(tmp_path / "data", n=2)
    (data / "classes.json").write_text('{"classes": ["background", "cell"]}')
    bomb_png(data / "images" / "1.png")
    pd.DataFrame([{"id": str(i), "image": f"images/{i}.png", "mask": f"masks/{i}.png",
                   "label": 1} for i in range(2)]).to_csv(data / "manifest.csv", index=False)
    report = validate_dataset(data, min_class_fraction=0.0, max_pixels=MAX_PIXELS)
    assert [p.path for p in report.problems] == ["images/1.png"]
    assert "too large" in report.problems[0].reason


def test_predict_and_generate_refuse_a_bomb_before_loading_a_model(project: Path,
                                                                    tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    _refused(segen_cli("predict", "--model", "test-unet@champion", "--out",
                       str(tmp_path / "out"), str(bomb), cwd=project), "bomb.png", "too large")
    assert not (tmp_path / "out").exists()
    _refused(segen_cli("generate", "--model", "test-pix2pix@champion", "--mask", str(bomb),
                       "--out", str(tmp_path / "gen"), cwd=project), "bomb.png", "too large")
