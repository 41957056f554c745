"""Every step of the paper's method from one config: `msl-keras run`.

prepare -> (for each fold) train_cnn -> extract (features made elsewhere,
`data.dataset="imported"`: import_features) -> train_lstm -> evaluate, then the mean over
folds of the earliest/latest accuracy (the paper averages over the official splits of
UCF-101 and JHMDB-21, and over the 10 leave-one-sequence-out folds of each
UT-Interaction set, reporting each set and their mean). `run_fold` makes a fold's heads
and features once and trains and scores any number of LSTM variants on them (the demo's
losses, the experiments' table rows). Every stage resumes: re-running the same config
skips finished heads, clips and epochs.
"""

import json
import time

import numpy as np

from msl_keras.config import apply_overrides
from msl_keras.errors import ConfigError
from msl_keras.runs import RunDirectory, fold_name, training_record
from msl_keras.pipeline.evaluation import evaluate
from msl_keras.pipeline.extraction import extract
from msl_keras.pipeline.feature_import import import_features
from msl_keras.pipeline.dataset_index import describe, prepare
from msl_keras.pipeline.head_training import train_cnn
from msl_keras.pipeline.lstm_training import train_lstm

SUMMARY_FILENAME = "summary.json"
# The parts a variant may change: they name its LSTM folder, not the run's features.
VARIANT_PARTS = ("lstm", "eval")


def run_fold(config, index, fold, run, variants=None, verbose=1):
    """Makes one fold's heads and features once, then trains and scores each LSTM variant.

    train_cnn -> extract (features made elsewhere, `data.dataset="imported"`:
    import_features), then for each variant train_lstm -> evaluate, all in `run`: the
    variants share the heads and the feature store, and each LSTM has its own folder
    (`Config.lstm_run_name`).

    Args:
        config: the `Config` that makes the heads and features.
        index: the `DatasetIndex`.
        fold: a fold name or `Fold` of `index`.
        run: the `RunDirectory` of `config`.
        variants: `{name: overrides}` of the LSTMs, in order: each is `config` with its
            dotted-key `overrides` of the `lstm` and `eval` parts (model, loss, learning
            rate, ...), e.g. `{"ours": {"lstm.loss": "anticipation"}, "ce": {"lstm.loss":
            "ce"}}`. Default `{"config": {}}`: `config`'s own LSTM.
        verbose: 0 silent; 1 a line per step with its outcome; 2 also every fit's epochs.

    Returns:
        `{name: evaluate result}` in the order of `variants`, each with `timings_s`
        (seconds per step); the heads and features are made once, in the first
        variant's timings.

    Raises:
        ConfigError: a variant overrides a setting outside `VARIANT_PARTS` (it would
            need other features).
    """
    variants = {"config": {}} if variants is None else variants
    for name, overrides in variants.items():
        outside = [key for key in overrides if key.split(".")[0] not in VARIANT_PARTS]
        if outside:
            raise ConfigError(
                f"Variant '{name}' sets {', '.join(outside)}: a variant sets only "
                f"{' and '.join(VARIANT_PARTS)} keys (the features are shared). Run "
                "another config for other features."
            )
    fold = index.fold(fold)
    start = time.perf_counter()
    timings = {}

    def step(label, call):
        if verbose:
            print(f"== {fold_name(fold)}: {label}  [{time.perf_counter() - start:.0f} s]")
        began = time.perf_counter()
        value = call()
        timings[label.split()[0]] = round(time.perf_counter() - began, 2)
        return value

    fit_verbose = int(verbose > 1)
    if config.data.dataset == "imported":
        step(
            "import_features",
            lambda: import_features(config, index, fold, run=run, verbose=bool(verbose)),
        )
    else:
        heads = step(
            "train_cnn",
            lambda: train_cnn(config, index, fold, run=run, verbose=fit_verbose),
        )
        if verbose:
            _print_heads(heads)
        step(
            "extract",
            lambda: extract(config, index, fold, run=run, verbose=verbose),
        )
    results = {}
    for name, overrides in variants.items():
        variant = apply_overrides(config, overrides)
        what = f"({name}: {variant.lstm.model}, {variant.lstm.loss} loss)"
        best = step(
            f"train_lstm {what}",
            lambda: train_lstm(variant, index, fold, run=run, verbose=2 * fit_verbose),
        )
        if verbose:
            _print_lstm(best)
        result = step(
            f"evaluate {what}",
            lambda: evaluate(variant, index, fold, run=run, verbose=bool(verbose)),
        )
        result["timings_s"] = dict(timings)
        timings.clear()
        results[name] = result
    return results


def _print_heads(heads):
    """The heads' chosen epochs and validation frame accuracies (`train_cnn`'s record)."""
    context, action = heads["context"], heads["action"]
    print(
        f"context head: best epoch {context['best_epoch']}, validation frame "
        f"accuracy {100 * context.get('val_accuracy', float('nan')):.1f}%\n"
        f"action head:  best epoch {action['best_epoch']}, validation frame "
        f"accuracy {100 * action.get('val_action_accuracy', float('nan')):.1f}% "
        f"(CAM branch {100 * action.get('val_cam_accuracy', float('nan')):.1f}%)"
    )


def _print_lstm(best):
    """The LSTM's epochs and chosen epoch (`training_record` of its folder)."""
    record = training_record(best.parent)
    best_epoch = record["best_epoch"]
    print(
        f"{record['epochs_done']} epochs; best epoch "
        f"{'-' if best_epoch is None else best_epoch} by validation anticipation "
        f"accuracy {100 * (record['val_anticipation_accuracy'] or float('nan')):.1f}% "
        f"-> {best}"
    )


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


def run_all(config, index=None, folds=None, verbose=2):
    """Runs every stage on every fold of `config` (or on `folds`) and summarises.

    Args:
        config: a `Config`.
        index: the `DatasetIndex` (default: `prepare(config)`).
        folds: the folds to run (default: all folds of the index).
        verbose: print the summary table, and `run_fold`'s progress at this level.

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
    results = [
        result
        for fold in folds
        for result in run_fold(config, index, fold, run, verbose=verbose).values()
    ]
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
