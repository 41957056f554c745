"""All stages of the paper's method from one config: `msl-keras run`.

prepare -> (for each fold) train_cnn -> extract -> train_lstm -> evaluate, then the mean
over folds of the earliest/latest accuracy (the paper averages over the official splits
of UCF-101 and JHMDB-21, and over the 10 leave-one-sequence-out folds of each
UT-Interaction set). Every stage resumes: re-running the same config skips finished
heads, clips and epochs.
"""

import json
import time

import numpy as np

from msl_keras.runs import RunDirectory
from msl_keras.stages.evaluate import evaluate
from msl_keras.stages.extract import extract
from msl_keras.stages.prepare import describe, prepare
from msl_keras.stages.train_cnn import train_cnn
from msl_keras.stages.train_lstm import train_lstm

SUMMARY_FILENAME = "summary.json"


def run_fold(config, index, fold, run, verbose=True):
    """Runs train_cnn, extract, train_lstm and evaluate on one fold; returns its results."""
    name = getattr(fold, "name", fold)
    timings = {}
    for stage, call in (
        ("train_cnn", lambda: train_cnn(config, index, fold, run=run, verbose=int(verbose))),
        ("extract", lambda: extract(config, index, fold, run=run, progress=verbose)),
        ("train_lstm", lambda: train_lstm(config, index, fold, run=run, verbose=2 * verbose)),
        ("evaluate", lambda: evaluate(config, index, fold, run=run, verbose=verbose)),
    ):
        if verbose:
            print(f"== {name}: {stage}")
        start = time.perf_counter()
        result = call()
        timings[stage] = round(time.perf_counter() - start, 2)
    result["timings_s"] = timings
    return result


def summarize(results):
    """Mean and spread over folds of the final stage's pooled earliest/latest accuracy."""
    summary = {"folds": [r["fold"] for r in results]}
    for key in ("earliest", "latest", "earliest_raw", "latest_raw", "mean_accuracy_pooled"):
        values = np.array([r["summary"][key] for r in results], dtype=float)
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    summary["per_fold"] = {
        r["fold"]: {"earliest": r["summary"]["earliest"], "latest": r["summary"]["latest"]}
        for r in results
    }
    return summary


def run_all(config, index=None, folds=None, verbose=True):
    """Runs every stage on every fold of `config` (or on `folds`) and summarises.

    Args:
        config: a `Config`.
        index: the `DatasetIndex` (default: `prepare(config)`).
        folds: the folds to run (default: all folds of the index).
        verbose: print progress and the summary table.

    Returns:
        dict with `summary` (means over folds) and `results` (each fold's
        `evaluate` output); also written to `<run>/<lstm run name>.summary.json`.
    """
    index = index or prepare(config)
    if verbose:
        print(describe(index))
    run = RunDirectory.create(config)
    folds = list(folds or index.folds)
    start = time.perf_counter()
    results = [run_fold(config, index, fold, run, verbose=verbose) for fold in folds]
    summary = summarize(results)
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    path = run.root / f"{config.lstm_run_name()}.{SUMMARY_FILENAME}"
    path.write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    if verbose:
        print(format_summary(config, summary))
        print(f"summary written to {path}")
    return {"summary": summary, "results": results, "path": str(path)}


def format_summary(config, summary):
    """A short text table of the mean earliest/latest accuracy over folds."""
    n = len(summary["folds"])
    return "\n".join(
        [
            f"{config.data.dataset}: {config.lstm.model}, {config.lstm.loss} loss, "
            f"{n} fold{'s' * (n != 1)} (with temporal average pooling)",
            f"  earliest {100 * summary['earliest']:5.1f}% (+-{100 * summary['earliest_std']:.1f})"
            f"   latest {100 * summary['latest']:5.1f}% (+-{100 * summary['latest_std']:.1f})",
        ]
    )
