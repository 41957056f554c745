"""Is ours better than a baseline? Paired differences over the protocol's folds.

Used by `tables.py` (Tables 1-3); not a script of its own. Both rows of a table are run on the same
folds, so each fold gives one paired difference `d_f = ours_f - baseline_f` (accuracy,
in [-1, 1]). Over the F folds this module reports:

- the mean difference `d = (1 / F) sum_f d_f`;
- a percentile bootstrap interval of `d`: `n_resamples` draws of F folds with
  replacement (a fixed seed, so the interval repeats), the `(1 - confidence) / 2` and
  `(1 + confidence) / 2` quantiles of their means;
- the exact two-sided sign test over the folds with `d_f != 0`: with `w` wins, `l`
  losses and `n = w + l`, `p = min(1, 2 sum_{k <= min(w, l)} C(n, k) / 2^n)`.

"Ours beats X" is shown when the whole interval lies above 0 (`shown`); UT-Interaction's
folds hold 5-7 test clips, so one clip moves a fold by 14-20 points and F = 20 folds are
few: the interval says how much the mean can be trusted.
"""

import math

import numpy as np

N_RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0


def paired(ours, baseline):
    """Per-fold differences `ours - baseline` over the folds both have.

    Args:
        ours, baseline: `{fold name: accuracy}`.

    Returns:
        `(folds, differences (F,))`, folds in `ours`' order.

    Raises:
        ValueError: the two do not cover the same folds.
    """
    if set(ours) != set(baseline):
        raise ValueError(
            "Paired differences need the same folds on both sides. Only in ours: "
            f"{sorted(set(ours) - set(baseline))}; only in the baseline: "
            f"{sorted(set(baseline) - set(ours))}."
        )
    folds = list(ours)
    return folds, np.array([ours[f] - baseline[f] for f in folds], dtype=float)


def bootstrap_interval(differences, n_resamples=N_RESAMPLES, confidence=CONFIDENCE,
                       seed=SEED):
    """Percentile bootstrap interval `(low, high)` of the mean of `differences` (F,)."""
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"differences must be a non-empty 1-D array. Received: {d.shape}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(int(n_resamples), d.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def sign_test(differences):
    """`(wins, losses, ties, p)`: the exact two-sided sign test, ties left out (p = 1
    when every fold is a tie)."""
    d = np.asarray(differences, dtype=float)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2.0**n
    return wins, losses, int(d.size - n), float(min(1.0, 2.0 * tail))


def compare(ours, baseline, **bootstrap):
    """Everything above for `{fold: accuracy}` of ours and of one baseline.

    Returns:
        dict: `mean_difference`, `ci_low`, `ci_high`, `confidence`, `wins`, `losses`,
        `ties`, `sign_test_p`, `shown` (the interval is above 0), `folds`,
        `differences` `{fold: d_f}`.
    """
    folds, d = paired(ours, baseline)
    low, high = bootstrap_interval(d, **bootstrap)
    wins, losses, ties, p = sign_test(d)
    return {
        "mean_difference": float(d.mean()),
        "ci_low": low,
        "ci_high": high,
        "confidence": bootstrap.get("confidence", CONFIDENCE),
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "sign_test_p": p,
        "shown": bool(low > 0),
        "folds": len(folds),
        "differences": dict(zip(folds, d.tolist())),
    }


def format_comparison(name, result):
    """One line: `ours - name: +3.3 points [95% CI -2.1, +8.7], 9 wins 5 losses 6 ties,
    sign test p = 0.42`."""
    return (
        f"ours - {name}: {100 * result['mean_difference']:+.1f} points "
        f"[{100 * result['confidence']:.0f}% CI {100 * result['ci_low']:+.1f}, "
        f"{100 * result['ci_high']:+.1f}], {result['wins']} wins {result['losses']} "
        f"losses {result['ties']} ties, sign test p = {result['sign_test_p']:.3g}"
    )
