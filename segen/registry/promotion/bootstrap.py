"""Paired bootstrap of a mean per-image difference (Efron & Tibshirani 1993, ch. 13: the
percentile interval). Both models are scored on the same test images, so resampling image
indices once and applying them to both keeps the pairing: what varies between images
(an easy image, a hard one) cancels out of the difference. Pure numpy, seeded."""
from __future__ import annotations

import numpy as np

_CHUNK = 256  # bootstrap replicates drawn at once: bounds memory to _CHUNK x n indices


def paired_bootstrap(challenger: np.ndarray, champion: np.ndarray, *, samples: int,
                     confidence: float, seed: int) -> dict[str, float | int]:
    """(N,) per-image scores of both models on the same images -> the mean difference
    (challenger - champion), its percentile interval at `confidence`, and the images used.

    Images where either score is NaN (a metric undefined there, e.g. a silhouette with one
    cluster) are left out of both sides.
    """
    challenger, champion = np.asarray(challenger, float), np.asarray(champion, float)
    if challenger.shape != champion.shape or challenger.ndim != 1:
        raise ValueError(f"paired_bootstrap needs two (N,) score arrays over the same images, "
                         f"got {challenger.shape} and {champion.shape}")
    diff = (challenger - champion)[~(np.isnan(challenger) | np.isnan(champion))]
    if len(diff) == 0:
        raise ValueError("no test image has a defined score for both models: the gate cannot "
                         "compare them (use --force with a reason to promote anyway)")
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, _CHUNK):
        count = min(_CHUNK, samples - start)
        index = rng.integers(0, len(diff), size=(count, len(diff)))  # (count, n) resamples
        means[start:start + count] = diff[index].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return {"difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "n_images": int(len(diff))}


def clears_margin(ci_low: float, ci_high: float, margin: float, higher_is_better: bool
                  ) -> bool:
    """True when the whole interval lies beyond the margin in the better direction."""
    return ci_low > margin if higher_is_better else ci_high < -margin
