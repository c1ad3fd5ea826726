"""Paired bootstrap intervals for the promotion gate, through scipy.stats.bootstrap
(percentile intervals: Efron & Tibshirani 1993, ch. 13). Both models are scored on the same
test images, so each resample draws image indices once and applies them to both: what
varies between images (an easy image, a hard one) cancels out of the difference. Seeded.

The percentile method rather than scipy's default BCa: BCa is undefined when every
resample gives the same value (identical models, a constant difference: scipy returns NaN),
and its jackknife costs one more statistic per image, which for FID (generation.py) is one
more pair of matrix square roots each.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

_BATCH = 256  # resamples drawn at once: bounds memory to _BATCH x n values per sample


def percentile_interval(data: tuple[np.ndarray, ...], statistic: Callable[..., Any], *,
                        paired: bool, vectorized: bool, samples: int, confidence: float,
                        seed: int) -> tuple[float, float]:
    """The two-sided percentile interval of `statistic` over `samples` bootstrap resamples of
    `data` (paired: the same indices for every array; else each array on its own)."""
    from scipy import stats  # ~1 s to import: only when a gate runs

    result = stats.bootstrap(data, statistic, paired=paired, vectorized=vectorized,
                             n_resamples=samples, batch=_BATCH, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


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
    defined = ~(np.isnan(challenger) | np.isnan(champion))
    challenger, champion = challenger[defined], champion[defined]
    if len(challenger) == 0:
        raise ValueError("no test image has a defined score for both models: the gate cannot "
                         "compare them (use --force with a reason to promote anyway)")
    difference = float(np.mean(challenger - champion))
    if len(challenger) == 1:  # every resample of one image is that image (scipy needs two)
        low = high = difference
    else:
        low, high = percentile_interval((challenger, champion), _mean_difference,
                                        paired=True, vectorized=True, samples=samples,
                                        confidence=confidence, seed=seed)
    return {"difference": difference, "ci_low": low, "ci_high": high,
            "n_images": int(len(challenger))}


def _mean_difference(challenger: np.ndarray, champion: np.ndarray, axis: int = -1
                     ) -> np.ndarray:
    """(..., n) resampled scores of both models -> (...) mean paired differences."""
    return np.mean(challenger - champion, axis=axis)


def clears_margin(ci_low: float, ci_high: float, margin: float, higher_is_better: bool
                  ) -> bool:
    """True when the whole interval lies beyond the margin in the better direction."""
    return ci_low > margin if higher_is_better else ci_high < -margin
