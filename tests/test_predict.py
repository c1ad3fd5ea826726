"""`segen predict` on registered models (a K-means segmenter and a U-Net), through the real
CLI and the MLflow registry; bad input gives a clear error."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, segen_cli
from PIL import Image

from segen.serving.predict import NOISE, model_uri, overlay, save_labels

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _two_colour_image(height: int, width: int) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = RED
    image[height // 2:] = BLUE
    return image


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose embedded registry holds test-kmeans v1 and test-unet v1."""
    import torch

    from segen.config import load_params
    from segen.project import Project
    from segen.serving import clustering
    from segen.serving.cluster_pyfunc import log_cluster_model
    from segen.serving.unet import build_unet, save_unet
    from segen.serving.unet_pyfunc import log_segmentation_model
    from segen.tracking import configure_tracking, start_run

    root = tmp_path_factory.mktemp("predict") / "proj"
    root.mkdir()
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    project = Project.at(root)
    configure_tracking(project, load_params(root / "params.yaml").mlflow)

    kmeans_dir, unet_dir = root / "kmeans", root / "unet"
    kmeans_dir.mkdir(), unet_dir.mkdir()
    config = {"kind": "kmeans", "channels": 3, "colour": "rgb", "position_weight": 0.0,
              "mode": "global", "fit_pixels": 1000, "seed": 0, "n_clusters": 2, "n_init": 2,
              "max_iter": 100}
    fitted = clustering.fit_global(config, _two_colour_image(8, 8)[None])
    clustering.save(config, fitted, kmeans_dir)
    torch.manual_seed(0)
    unet_config = {"in_channels": 3, "classes": ["background", "thing"], "depth": 2,
                   "base_width": 4, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_unet(build_unet(unet_config), unet_config, unet_dir)
    with start_run(project, "test-kmeans"):
        log_cluster_model(kmeans_dir, "test-kmeans")
    with start_run(project, "test-unet"):
        log_segmentation_model(unet_dir, "test-unet")

    images = root / "images"
    images.mkdir()
    Image.fromarray(_two_colour_image(20, 30)).save(images / "a.png")
    Image.fromarray(_two_colour_image(12, 12)).save(images / "b.png")  # another size
    Image.fromarray(_two_colour_image(12, 12)[..., 0]).save(images / "grey.png")
    return root


@pytest.mark.slow
def test_predict_writes_label_maps_and_overlays(registered: Path) -> None:
    out = registered / "out-kmeans"
    result = segen_cli("predict", "--model", "test-kmeans", "images/a.png", "images/b.png",
                       "--out", str(out), cwd=registered)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "predictions.json").read_text())
    assert report["model"] == "models:/test-kmeans/latest"
    labels = np.asarray(Image.open(out / "a.labels.png"))
    assert labels.shape == (20, 30) and labels.dtype == np.uint8
    top, bottom = labels[:10], labels[10:]  # one cluster per colour band
    assert len(np.unique(top)) == 1 and len(np.unique(bottom)) == 1 and top[0, 0] != bottom[0, 0]
    assert np.asarray(Image.open(out / "b.overlay.png")).shape == (12, 12, 3)

    out = registered / "out-unet"
    result = segen_cli("predict", "--model", "test-unet/1", "images/b.png", "--out", str(out),
                       "--json", cwd=registered)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.asarray(Image.open(out / "b.labels.png")).max() <= 1
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed == json.loads((out / "predictions.json").read_text())
    assert printed["model"] == "models:/test-unet/1"


@pytest.mark.slow
def test_predict_bad_input_is_a_clear_error(registered: Path) -> None:
    result = segen_cli("predict", "--model", "test-kmeans@champion", "images/a.png", "--out",
                       "out", cwd=registered)
    assert result.returncode == 2
    assert "cannot load models:/test-kmeans@champion" in result.stderr
    assert "registered models here: test-kmeans, test-unet" in result.stderr

    result = segen_cli("predict", "--model", "test-kmeans/1", "images/grey.png", "--out",
                       "out", cwd=registered)
    assert result.returncode == 2
    assert "images/grey.png" in result.stderr
    assert "expected images of shape (N, H, W, 3)" in result.stderr and "RGB" in result.stderr


def test_model_spec_forms() -> None:
    assert model_uri("segen-unet@champion") == "models:/segen-unet@champion"
    assert model_uri("segen-kmeans/3") == "models:/segen-kmeans/3"
    assert model_uri("segen-dbscan") == "models:/segen-dbscan/latest"
    with pytest.raises(ValueError, match="NAME@ALIAS or NAME/VERSION"):
        model_uri("a@b/c")


def test_noise_is_255_in_label_png_and_uncoloured_in_overlay(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [NOISE, 2]])
    save_labels(labels, tmp_path / "l.png")
    assert np.asarray(Image.open(tmp_path / "l.png")).tolist() == [[0, 1], [255, 2]]
    image = np.full((2, 2, 1), 80, np.uint8)
    blended = overlay(image, labels)
    assert blended.shape == (2, 2, 3) and blended[1, 0].tolist() == [80, 80, 80]
    assert blended[0, 0].tolist() != [80, 80, 80]
    many = np.arange(600).reshape(20, 30)  # more labels than 8 bits hold
    save_labels(many, tmp_path / "m.png")
    assert np.asarray(Image.open(tmp_path / "m.png")).max() == 599
