"""Generative-model scores on a fixed-seed feature extractor: FID/KID near 0 for a set against
itself and clearly above for a shifted set, precision/recall against hand-worked 2-D points,
class accuracy by hand, and the seeded, deterministic training of the extractor."""
from __future__ import annotations

import pytest
import torch

from models.feature_extractor import FeatureClassifier
from models.gen_metrics import class_accuracy, generative_scores, precision_recall
from segen.engines.feature_extractor import fit_feature_extractor
from segen.serving.images import to_unit_range


def _extractor(channels: int = 3, size: int = 16) -> FeatureClassifier:
    """Untrained but fixed-seed."""
    torch.manual_seed(0)
    return FeatureClassifier(channels, size, n_classes=3, width=4, feature_dim=8).eval()


def _images(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """(n, 3, size, size) in [-1, 1]: smooth random blobs, so features vary between images."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear")


def _scores(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    return generative_scores(real, fake, _extractor(), kid_subset_size=32, k=3, generator_seed=0)


def test_model_shapes_and_input_check() -> None:
    model = _extractor(channels=1, size=32)
    x = torch.zeros(5, 1, 32, 32)
    assert model.features(x).shape == (5, 8) and model(x).shape == (5, 3)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 32, 32\).*got \(5, 3, 32, 32\)"):
        model(torch.zeros(5, 3, 32, 32))


def test_a_set_against_itself_scores_perfectly() -> None:
    real = _images(64, seed=1)
    scores = _scores(real, real.clone())
    assert set(scores) == {"fid", "kid_mean", "kid_std", "precision", "recall"}
    assert abs(scores["fid"]) < 1e-6
    assert scores["precision"] == scores["recall"] == 1.0
    shifted = _scores(real, (real * 0.5 + 0.5).clamp(-1, 1))
    assert shifted["fid"] > 1e-2 and shifted["fid"] > 1e4 * abs(scores["fid"])
    assert shifted["kid_mean"] > 10 * abs(scores["kid_mean"]) and shifted["kid_mean"] > 1e-4


def test_two_samples_of_one_distribution_score_closer_than_a_shifted_one() -> None:
    real, other = _images(64, seed=1), _images(64, seed=2)
    same, shifted = _scores(real, other), _scores(real, (other * 0.5 + 0.5).clamp(-1, 1))
    assert same["fid"] < shifted["fid"] and same["kid_mean"] < shifted["kid_mean"]


def test_kid_is_seeded_and_leaves_the_global_rng_alone() -> None:
    real, fake, extractor = _images(40, seed=3), _images(40, seed=4), _extractor()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = generative_scores(real, fake, extractor, kid_subset_size=16, k=3, generator_seed=5)
    assert torch.equal(torch.rand(1), before)
    again = generative_scores(real, fake, extractor, kid_subset_size=16, k=3, generator_seed=5)
    other = generative_scores(real, fake, extractor, kid_subset_size=16, k=3, generator_seed=6)
    assert again == first and other["kid_mean"] != first["kid_mean"]


def test_precision_recall_hand_worked_2d() -> None:
    # k=1 radii. real (0,0),(1.2,0),(3,0): 1.2, 1.2, 1.8. fake (0,0),(0.5,0),(10,0),(10.5,0):
    # 0.5 each. Precision: (0,0), (0.5,0) lie in real balls; (10,0), (10.5,0) are 7+ from (3,0):
    # 2/4. Recall: (0,0) lies in a fake ball; (1.2,0) is 0.7 > 0.5 from (0.5,0); (3,0) is far: 1/3.
    real = torch.tensor([[0.0, 0.0], [1.2, 0.0], [3.0, 0.0]])
    fake = torch.tensor([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0], [10.5, 0.0]])
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == pytest.approx(0.5) and recall == pytest.approx(1 / 3)
    assert precision_recall(real, real, k=2) == (1.0, 1.0)
    with pytest.raises(ValueError, match="k=3 needs"):
        precision_recall(real, fake, k=3)


class _ByBrightness(FeatureClassifier):
    """Class 1 when the image's mean is above 0, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def test_class_accuracy_hand_example() -> None:
    model = _ByBrightness(1, 8, n_classes=2, width=2, feature_dim=2)
    images = torch.cat([torch.full((2, 1, 8, 8), 0.5), torch.full((2, 1, 8, 8), -0.5)])
    scores = class_accuracy(model, images, torch.tensor([1, 0, 0, 0]))  # predicted 1, 1, 0, 0
    assert scores == pytest.approx({"accuracy": 0.75, "accuracy_class_0": 2 / 3,
                                    "accuracy_class_1": 1.0})


def test_to_unit_range() -> None:
    images = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    images[1] = 255
    x = to_unit_range(images, 8)
    assert x.shape == (2, 1, 8, 8) and x[0].eq(-1).all() and x[1].eq(1).all()
    resized = to_unit_range(torch.full((1, 32, 32, 3), 128, dtype=torch.uint8), 16)
    assert resized.shape == (1, 3, 16, 16) and resized.sub(128 / 127.5 - 1).abs().max() < 1e-5
    with pytest.raises(ValueError, match="uint8"):
        to_unit_range(torch.zeros(1, 8, 8, 1), 8)


def _bright_dark(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 12, 12, 1) uint8 noisy images, label 1 = bright, 0 = dark."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = (60 + 120 * labels).view(-1, 1, 1, 1).float()
    noise = torch.randint(-40, 40, (n, 12, 12, 1), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8), labels


def test_fit_feature_extractor_learns_and_is_deterministic() -> None:
    images, labels = _bright_dark(32, seed=0)
    val_images, val_labels = _bright_dark(16, seed=1)
    kwargs = dict(image_size=16, width=4, feature_dim=8, epochs=3, batch_size=8, lr=3e-3,
                  seed=7, n_classes=2)
    model, info = fit_feature_extractor(images, labels, val_images, val_labels, **kwargs)
    assert not model.training and info["val_accuracy"] == 1.0 and info["train_seconds"] > 0
    again, _ = fit_feature_extractor(images, labels, val_images, val_labels, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    with pytest.raises(ValueError, match=r"labels must be class ids in 0..1"):
        fit_feature_extractor(images, labels + 1, val_images, val_labels, **kwargs)
