"""The paired statistics of the tables (experiments/fold_statistics.py) against values
computed by hand."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import fold_statistics as stats  # noqa: E402


def test_sign_test_matches_the_binomial_by_hand():
    # 5 wins, 1 loss: p = 2 (C(6,0) + C(6,1)) / 2^6 = 14 / 64.
    assert stats.sign_test([0.1] * 5 + [-0.2]) == (5, 1, 0, pytest.approx(14 / 64))
    # 10 wins out of 10: p = 2 / 2^10.
    assert stats.sign_test([0.05] * 10)[3] == pytest.approx(2 / 1024)
    # Ties are left out: 2 wins, 0 losses, 3 ties -> n = 2, p = 2 / 4.
    assert stats.sign_test([0.1, 0.2, 0, 0, 0]) == (2, 0, 3, pytest.approx(0.5))
    # Balanced: p capped at 1; all ties: p = 1.
    assert stats.sign_test([0.1, -0.1])[3] == 1.0
    assert stats.sign_test([0.0, 0.0]) == (0, 0, 2, 1.0)


def test_bootstrap_interval_by_hand():
    # A constant difference has a zero-width interval.
    assert stats.bootstrap_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    # Two folds {0, 1}: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles are 0 and 1 (and the 30% / 70% ones 0.5).
    assert stats.bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    assert stats.bootstrap_interval([0.0, 1.0], confidence=0.4) == (0.5, 0.5)
    # Fixed seed: the same interval each time; another seed moves it a little.
    d = np.random.default_rng(3).normal(0.05, 0.1, 20)
    assert stats.bootstrap_interval(d) == stats.bootstrap_interval(d)
    low, high = stats.bootstrap_interval(d)
    se = d.std() / np.sqrt(d.size)
    assert low < d.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)  # normal approximation
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap_interval([])


def test_compare_pairs_the_folds():
    ours = {"set1_seq1": 0.5, "set1_seq2": 0.6, "set2_seq11": 0.9}
    baseline = {"set2_seq11": 0.5, "set1_seq1": 0.4, "set1_seq2": 0.7}
    result = stats.compare(ours, baseline)
    assert result["differences"] == pytest.approx(
        {"set1_seq1": 0.1, "set1_seq2": -0.1, "set2_seq11": 0.4}
    )
    assert result["mean_difference"] == pytest.approx(0.4 / 3)
    assert (result["wins"], result["losses"], result["ties"]) == (2, 1, 0)
    assert result["sign_test_p"] == 1.0  # 2 (C(3,0) + C(3,1)) / 8 = 1
    assert result["ci_low"] <= result["mean_difference"] <= result["ci_high"]
    assert result["shown"] == (result["ci_low"] > 0)
    assert "ours - probe: +13.3 points" in stats.format_comparison("probe", result)
    with pytest.raises(ValueError, match="same folds"):
        stats.compare(ours, {"set1_seq1": 0.4})
