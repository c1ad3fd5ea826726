"""The promotion gate's intervals (scipy.stats.bootstrap, percentile method) against cases
worked by hand: a constant difference, a two-point sample, one image, a normal sample's
t-interval, and the FID bootstrap's pairing of the two models' samples."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from segen.registry.promotion.bootstrap import paired_bootstrap
from segen.registry.promotion.generation import paired_fid_bootstrap


def _boot(challenger, champion, confidence=0.95, samples=2000, seed=0):
    return paired_bootstrap(np.asarray(challenger, float), np.asarray(champion, float),
                            samples=samples, confidence=confidence, seed=seed)


def test_a_constant_difference_is_a_zero_width_interval_at_it():
    champion = np.random.default_rng(0).uniform(0.2, 0.8, size=25)
    result = _boot(champion - 0.125, champion)
    assert result["difference"] == pytest.approx(-0.125)
    assert result["ci_low"] == pytest.approx(-0.125) and result["ci_high"] == pytest.approx(
        -0.125)


def test_a_two_point_sample_matches_the_resampling_distribution_by_hand():
    # differences (0, 1): a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4,
    # so the 95% interval spans [0, 1] and the central 40% (30th-70th percentile) is 0.5.
    assert (_boot([0, 1], [0, 0])["ci_low"], _boot([0, 1], [0, 0])["ci_high"]) == (0.0, 1.0)
    narrow = _boot([0.0, 1.0], [0.0, 0.0], confidence=0.4)
    assert (narrow["ci_low"], narrow["ci_high"]) == (0.5, 0.5)


def test_one_image_gives_the_point_it_is():
    result = _boot([0.7], [0.4])
    assert (result["ci_low"], result["ci_high"], result["n_images"]) == (
        pytest.approx(0.3), pytest.approx(0.3), 1)


def test_a_normal_sample_gives_about_the_t_interval():
    rng = np.random.default_rng(5)
    champion = rng.uniform(0.3, 0.9, size=400)
    difference = rng.normal(0.02, 0.05, size=400)
    result = _boot(champion + difference, champion, samples=4000)
    low, high = stats.t.interval(0.95, len(difference) - 1, loc=difference.mean(),
                                 scale=stats.sem(difference))
    half = (high - low) / 2
    assert result["difference"] == pytest.approx(difference.mean())
    assert abs(result["ci_low"] - low) < 0.1 * half and abs(result["ci_high"] - high) < 0.1 * half


def test_the_interval_is_seeded():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(size=30), rng.uniform(size=30)
    assert _boot(a, b, seed=3) == _boot(a, b, seed=3)
    assert _boot(a, b, seed=3)["ci_low"] != _boot(a, b, seed=4)["ci_low"]


def test_fid_bootstrap_resamples_both_models_with_the_same_slots():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(30, 4)), rng.normal(0.5, 1.0, size=(50, 4))
    # the same samples for both models: every replicate's difference is exactly 0 only
    # when both models get the same resampled slots (and the same resampled real images)
    same = paired_fid_bootstrap(real, fake, fake.copy(), samples=100, confidence=0.95, seed=0)
    assert (same["ci_low"], same["ci_high"], same["difference"]) == (0.0, 0.0, 0.0)
    assert (same["n_images"], same["n_samples"]) == (30, 50)
    with pytest.raises(ValueError, match="same requests"):
        paired_fid_bootstrap(real, fake, fake[:40], samples=10, confidence=0.95, seed=0)
