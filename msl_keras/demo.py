"""The demo: every stage on the generated clips, our loss against cross-entropy.

`msl-keras demo` runs the method with a randomly initialised frozen trunk (no ImageNet
weights offline), one MS-LSTM per loss on the same features, and prints earliest/latest
accuracy, whether our loss's earliest lead exceeds the noise of that many test clips
(`early_advantage`), and a plot. It repeats on any machine with the same package
versions: everything is seeded, TensorFlow's kernels are deterministic on
`DEMO_THREADS` thread, and `msl-keras demo` turns oneDNN off before TensorFlow is
imported (its kernels depend on the processor).
"""

import dataclasses
import json
import time

import numpy as np

from msl_keras.config import get_preset
from msl_keras.orchestrator import run_fold
from msl_keras.pipeline.dataset_index import describe, prepare
from msl_keras.plots import plot_accuracy_curves
from msl_keras.runs import RunDirectory
from msl_keras.seeding import onednn_enabled, pin_cpu_threads, set_seed

LOSS_LABELS = {
    "anticipation": "ours (anticipation loss, Eq. 1)",
    "ce": "cross-entropy (Eq. 7)",
    "ece": "exponential CE (Eq. 8)",
    "lgl": "linearly growing loss (Eq. 9)",
    "jain": "Jain et al.",
    "ranking_score": "Ma et al., ranking on score",
    "ranking_margin": "Ma et al., ranking on margin",
}
# One thread per pool: the order of every sum is then the same whatever the core count.
DEMO_THREADS = 1
TABLE_KEYS = ("earliest", "latest", "earliest_raw", "latest_raw")


def demo(config=None, losses=("anticipation", "ce"), verbose=True):
    """Runs the whole method on the generated clips (default: the `demo` preset) and
    compares `losses`: one `run_fold` on the first fold makes the heads and features
    once, then trains and scores one MS-LSTM per loss on them.

    Returns a dict: `table` (loss -> stage 2's pooled `TABLE_KEYS` and `first_frame`
    accuracy), `chance`, `test_clips`, `early_advantage` (ours against cross-entropy),
    `numerics` (what was pinned), `config`, `wall_time_s`, `results` (each loss's
    `evaluate` output), `plot` and `json` (the files).
    """
    config = config or get_preset("demo")
    say = print if verbose else (lambda text: None)
    start = time.perf_counter()
    numerics = _pin_numerics(config.seed)
    say(numerics)
    index = prepare(config)
    say(describe(index))
    fold, run = index.folds[0], RunDirectory.create(config)
    variants = {loss: {"lstm.loss": loss} for loss in losses}
    results = run_fold(config, index, fold, run, variants, verbose=int(verbose))
    table, curves, correct = {}, {}, {}
    for loss, result in results.items():
        stage2 = result["stages"]["stage2"]
        table[loss] = {key: result["summary"][key] for key in TABLE_KEYS}
        table[loss]["first_frame"] = stage2["accuracy_vs_steps_pooled"][0]
        curves[LOSS_LABELS.get(loss, loss)] = stage2["accuracy_vs_steps_pooled"]
        correct[loss] = stage2["earliest_correct"]
    out_dir, chance = run.fold_dir(fold), 1.0 / index.num_classes
    plot = plot_accuracy_curves(
        curves, out_dir / "demo_accuracy_vs_frames.png", chance=chance,
        title="MS-LSTM on the generated clips: accuracy vs frames observed (pooled)",
    )  # fmt: skip
    wall = time.perf_counter() - start
    advantage = None
    if {"anticipation", "ce"} <= set(correct):
        advantage = early_advantage(correct["anticipation"], correct["ce"])
    report = {
        "table": table, "chance": chance, "test_clips": len(fold.by_role("test")),
        "early_advantage": advantage, "numerics": numerics,
        "config": dataclasses.asdict(config), "wall_time_s": round(wall, 1),
    }  # fmt: skip
    path = out_dir / "demo_results.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    say("\n" + format_table(report, index.num_classes))
    say(f"\nplot: {plot}\nresults: {path}\nwall time: {wall:.0f} s")
    return {**report, "results": results, "plot": str(plot), "json": str(path)}


def _pin_numerics(seed):
    """Pins what moves the demo's numbers between machines; returns a line saying so."""
    threads = f"{DEMO_THREADS} CPU thread"
    if not pin_cpu_threads(DEMO_THREADS):
        threads = "thread pools already set by an earlier TensorFlow call (not pinned)"
    set_seed(seed, deterministic_ops=True)
    onednn = "oneDNN off"
    if onednn_enabled():
        onednn = (
            "oneDNN ON: numbers can differ on another processor (set "
            "TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is imported)"
        )
    return f"numerics: seed {seed}, deterministic ops, {threads}, {onednn}"


def early_advantage(ours, baseline, resamples=10000, seed=0):
    """Is our loss ahead of the baseline at the earliest point by more than chance?

    A paired bootstrap over `ours` and `baseline`, `(clips,)` 0/1 each (`evaluate`'s
    `earliest_correct`, same clip order): the clips are resampled `resamples` times and
    `d = mean(ours_i) - mean(baseline_i)` recomputed. Returns `difference` and
    `interval` (95% of `d`) in points, `clips` (test clips it amounts to) and `verdict`
    (the interval above 0: "ahead beyond noise", below: "behind ...", else "within").
    """
    ours, baseline = np.asarray(ours, float), np.asarray(baseline, float)
    if ours.shape != baseline.shape or ours.ndim != 1 or not len(ours):
        raise ValueError(
            "Expected one 0/1 per test clip for both models, in the same order. "
            f"Received: shapes {ours.shape} and {baseline.shape}"
        )
    paired, clips = ours - baseline, len(ours)
    rows = np.random.default_rng(seed).integers(0, clips, (resamples, clips))
    low, high = np.percentile(paired[rows].mean(axis=1), [2.5, 97.5])
    verdict = "within noise"
    if low > 0 or high < 0:
        verdict = "ahead beyond noise" if low > 0 else "behind beyond noise"
    return {
        "difference": round(100 * float(paired.mean()), 1),
        "clips": int(paired.sum()),
        "interval": [round(100 * float(low), 1), round(100 * float(high), 1)],
        "verdict": verdict,
    }


def format_table(report, num_classes):
    """The demo's table: earliest/latest accuracy of stage 2 per loss."""
    lines = [
        f"MS-LSTM stage 2 on {report['test_clips']} test clips, {num_classes} classes "
        f"(chance {100 * report['chance']:.0f}%); earliest = first 20% of each clip",
        f"{'loss':<36} {'1st frame':>9} {'earliest':>9} {'latest':>9}",
    ]
    for loss, row in report["table"].items():
        cells = [f"{100 * row[k]:8.1f}%" for k in ("first_frame", "earliest", "latest")]
        lines.append(f"{LOSS_LABELS.get(loss, loss):<36} " + " ".join(cells))
    lines.append("(accuracies with temporal average pooling, the paper's inference)")
    if lead := report.get("early_advantage"):
        low, high = lead["interval"]
        lines += [
            f"ours - cross-entropy at the earliest point: {lead['difference']:+.1f} "
            f"points ({lead['clips']:+d} of {report['test_clips']} test clips)",
            "95% paired bootstrap interval over the test clips "
            f"[{low:+.1f}, {high:+.1f}] points: {lead['verdict']} at this size",
        ]
    return "\n".join(lines)
