"""Names segen writes inside a folder the user gave stay inside it: outputs are named by a
file name's stem (never a path), and each is written to a temporary name and renamed, so a
symlink planted in --out under an output's name is replaced, not written through."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segen.cli.generate import write_images
from segen.serving.predict import save_labels


def _planted(out: Path, name: str, tmp_path: Path) -> Path:
    """out/name as a symlink to a file outside out; returns that file."""
    victim = tmp_path / "outside.txt"
    victim.write_text("untouched")
    out.mkdir(parents=True, exist_ok=True)
    (out / name).symlink_to(victim)
    return victim


def test_predict_labels_replace_a_planted_symlink(tmp_path: Path) -> None:
    out = tmp_path / "out"
    victim = _planted(out, "x.labels.png", tmp_path)
    save_labels(np.zeros((4, 4), dtype=np.int64), out / "x.labels.png")
    assert victim.read_text() == "untouched"
    assert not (out / "x.labels.png").is_symlink()
    assert np.array(Image.open(out / "x.labels.png")).shape == (4, 4)


def test_generate_outputs_replace_planted_symlinks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    victim = _planted(out, "generated.json", tmp_path)
    (out / "grid.png").symlink_to(victim)
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    report = write_images(images, out, {"model": "m"})
    assert victim.read_text() == "untouched"
    assert all(not (out / n).is_symlink() for n in ("generated.json", "grid.png"))
    assert [Path(p).parent for p in report["images"]] == [out, out]


def test_predict_names_come_from_the_stem_only() -> None:
    # the image's own path (../, absolute) never reaches the output name
    for given in ("../../etc/x.png", "/abs/dir/x.png", "a/../x.png"):
        assert Path(given).stem == "x"
