"""Scores for generated images in the feature space of the pinned FeatureClassifier: FID
(Heusel et al. 2017) and KID (Binkowski et al. 2018) through torchmetrics, and improved precision
and recall (Kynkaanniemi et al. 2019); the classifier's accuracy per class."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from models.feature_extractor import FeatureClassifier, extract_features, predict_classes

KID_SUBSETS = 100  # subsets averaged for KID, as in Binkowski et al. 2018 and torchmetrics
BATCH = 256  # images per forward pass when extracting features (memory only, not results)
CHUNK = 1024  # rows of a distance matrix held at once in precision_recall


class _Precomputed(nn.Module):
    """Pass-through "feature extractor" for torchmetrics: features are extracted once (eval mode,
    no grad) and shared by FID, KID and precision/recall instead of three forward passes."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # torchmetrics sizes its state from this

    def forward(self, features: Tensor) -> Tensor:
        return features


def generative_scores(real: Tensor, fake: Tensor, extractor: FeatureClassifier, *,
                      kid_subset_size: int, k: int, generator_seed: int) -> dict[str, float]:
    """real, fake: (N, C, H, W) in [-1, 1] -> fid, kid_mean, kid_std, precision, recall.
    KID subsets hold min(kid_subset_size, N_real, N_fake) samples, drawn with generator_seed."""
    if real.shape[1:] != fake.shape[1:] or len(real) < 2 or len(fake) < 2:
        raise ValueError(f"generative_scores: expected two sets of at least 2 images of one "
                         f"shape, got real {tuple(real.shape)} and fake {tuple(fake.shape)}")
    real_f = extract_features(extractor, real, BATCH).double()  # (N_real, D)
    fake_f = extract_features(extractor, fake, BATCH).double()  # (N_fake, D)
    kid_mean, kid_std = kid(real_f, fake_f, subset_size=min(kid_subset_size, len(real_f),
                                                            len(fake_f)), seed=generator_seed)
    precision, recall = precision_recall(real_f, fake_f, k)
    return {"fid": fid(real_f, fake_f), "kid_mean": kid_mean, "kid_std": kid_std,
            "precision": precision, "recall": recall}


def fid(real_feats: Tensor, fake_feats: Tensor) -> float:
    """Frechet distance between Gaussians fitted to (N, D) feature sets."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real_feats.shape[1]))
    metric.update(real_feats, real=True)
    metric.update(fake_feats, real=False)
    return float(metric.compute())


def kid(real_feats: Tensor, fake_feats: Tensor, *, subset_size: int, seed: int
        ) -> tuple[float, float]:
    """Mean and std over KID_SUBSETS subsets of the cubic-kernel MMD^2 (unbiased)."""
    with warnings.catch_warnings():  # "KID will save all extracted features": we know
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(real_feats.shape[1]),
                                         subsets=KID_SUBSETS, subset_size=subset_size)
    metric.update(real_feats, real=True)
    metric.update(fake_feats, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets from the global RNG
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, Sec. 2): each set's manifold is
    the union of balls around its points, radius = distance to the k-th nearest other point.
    Precision: share of fake points inside the real manifold; recall: real inside the fake."""
    if not 1 <= k < min(len(real_feats), len(fake_feats)):
        raise ValueError(f"precision_recall: k={k} needs 1 <= k < the size of each set "
                         f"({len(real_feats)} real, {len(fake_feats)} fake); lower k")
    real_r, fake_r = _knn_radii(real_feats, k), _knn_radii(fake_feats, k)
    precision = _inside(fake_feats, real_feats, real_r).double().mean()
    recall = _inside(real_feats, fake_feats, fake_r).double().mean()
    return float(precision), float(recall)


def _knn_radii(feats: Tensor, k: int) -> Tensor:
    """(N, D) -> (N,) distance of each point to its k-th nearest neighbour, itself excluded
    (the k+1-th smallest distance, as its distance to itself is 0)."""
    return torch.cat([torch.cdist(rows, feats).kthvalue(k + 1, dim=1).values
                      for rows in feats.split(CHUNK)])


def _inside(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """(P,) bool: does any ball (centres[j], radii[j]) hold points[i]?"""
    return torch.cat([(torch.cdist(rows, centres) <= radii[None]).any(dim=1)
                      for rows in points.split(CHUNK)])


def class_accuracy(extractor: FeatureClassifier, images: Tensor, labels: Tensor
                   ) -> dict[str, float]:
    """images (N, C, H, W) in [-1, 1], labels (N,) -> {"accuracy": overall,
    "accuracy_class_<i>": per class i present in labels}."""
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"class_accuracy: expected as many labels as images (at least one), "
                         f"got {len(images)} images and {len(labels)} labels")
    labels = labels.long().cpu()
    correct = (predict_classes(extractor, images, BATCH) == labels).double()
    scores = {"accuracy": float(correct.mean())}
    for cls in labels.unique().tolist():
        scores[f"accuracy_class_{cls}"] = float(correct[labels == cls].mean())
    return scores
