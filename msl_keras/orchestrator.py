"""Every step of the paper's method from one config: `msl-keras run`.

prepare -> (for each fold) train_cnn -> extract -> train_lstm -> evaluate (features made
elsewhere, `data.dataset="imported"`: import_features -> train_lstm -> evaluate), then the mean
over folds of the earliest/latest accuracy (the paper averages over the official splits
of UCF-101 and JHMDB-21, and over the 10 leave-one-sequence-out folds of each
UT-Interaction set, reporting each set and their mean). Every stage resumes: re-running
the same config skips finished heads, clips and epochs.
"""

import json
import time

import numpy as np

from msl_keras.runs import RunDirectory
from msl_keras.pipeline.evaluation import evaluate
from msl_keras.pipeline.extraction import extract
from msl_keras.pipeline.feature_import import import_features
from msl_keras.pipeline.dataset_index import describe, prepare
from msl_keras.pipeline.head_training import train_cnn
from msl_keras.pipeline.lstm_training import train_lstm

SUMMARY_FILENAME = "summary.json"


def run_fold(config, index, fold, run, verbose=True):
    """Runs train_cnn, extract, train_lstm and evaluate on one fold; returns its results.

    Features made elsewhere (`data.dataset="imported"`) are imported in place of the
    CNN steps."""
    name = getattr(fold, "name", fold)
    timings = {}
    if config.data.dataset == "imported":
        features = (
            ("import_features", lambda: import_features(config, index, fold, run=run)),
        )
    else:
        features = (
            ("train_cnn", lambda: train_cnn(config, index, fold, run=run, verbose=int(verbose))),
            ("extract", lambda: extract(config, index, fold, run=run, progress=verbose)),
        )
    for stage, call in (
        *features,
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


SUMMARY_KEYS = ("earliest", "latest", "earliest_raw", "latest_raw", "mean_accuracy_pooled")


def _means(results):
    """`{key: mean, key_std: std}` over folds of the final stage's `SUMMARY_KEYS`."""
    means = {}
    for key in SUMMARY_KEYS:
        values = np.array([r["summary"][key] for r in results], dtype=float)
        means[key] = float(values.mean())
        means[f"{key}_std"] = float(values.std())
    return means


def summarize(results):
    """Mean and spread over folds of the final stage's pooled earliest/latest accuracy.

    Args:
        results: `evaluate` results, one per fold.

    Returns:
        dict: `folds`; the means over all folds (`earliest`, `latest`, ... and their
        `_std`); `per_set`, `{subset: {"folds": [...], means}}` for folds that belong to
        a subset (UT-Interaction's "set1", "set2"; empty otherwise): with 10 folds in
        each set, the means over all folds are the mean of the two sets, as the paper's
        Table 2; `per_fold`; and `latest_not_whole_clip` / `coinciding_readings`, the
        folds whose `evaluate` flagged its readings.
    """
    summary = {"folds": [r["fold"] for r in results], **_means(results)}
    subsets = sorted({r["subset"] for r in results if r.get("subset")})
    summary["per_set"] = {
        subset: {
            "folds": [r["fold"] for r in results if r.get("subset") == subset],
            **_means([r for r in results if r.get("subset") == subset]),
        }
        for subset in subsets
    }
    summary["per_fold"] = {
        r["fold"]: {"earliest": r["summary"]["earliest"], "latest": r["summary"]["latest"]}
        for r in results
    }
    summary["latest_not_whole_clip"] = [
        r["fold"] for r in results if not r["summary"].get("latest_is_whole_clip", True)
    ]
    summary["coinciding_readings"] = [
        r["fold"] for r in results if r["summary"].get("coinciding_readings", 0)
    ]
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
    """A short text table of the mean earliest/latest accuracy over folds (and sets)."""
    n = len(summary["folds"])

    def line(label, means):
        return (
            f"  {label}earliest {100 * means['earliest']:5.1f}% "
            f"(+-{100 * means['earliest_std']:.1f})   latest "
            f"{100 * means['latest']:5.1f}% (+-{100 * means['latest_std']:.1f})"
        )

    def folds(count):
        return f"{count} fold{'s' * (count != 1)}"

    lines = [
        f"{config.data.dataset}: {config.lstm.model}, {config.lstm.loss} loss, "
        f"{folds(n)} (with temporal average pooling)"
    ]
    sets = summary.get("per_set", {})
    for subset, means in sets.items():
        lines.append(line(f"{subset:<6}", means) + f"   ({folds(len(means['folds']))})")
    lines.append(line(f"{'mean':<6}" if sets else "", summary))
    for key, what in (
        ("latest_not_whole_clip", "'latest' is not the whole clip"),
        ("coinciding_readings", "two eval.ratios read the same step"),
    ):
        if summary.get(key):
            lines.append(f"  warning: {what} in {folds(len(summary[key]))} (results.json)")
    return "\n".join(lines)
