"""Every step of the paper's method from one config: `msl-keras run`.

prepare -> (each fold) train_cnn -> extract (or import_features) -> train_lstm ->
evaluate, then the mean over folds (the paper's: over the official splits, or over
each UT-Interaction set's 10 folds, reporting each set and their mean). Every stage
resumes: re-running the same config skips finished heads, clips and epochs.
"""

import json
import time

import numpy as np

from msl_keras.config import apply_overrides
from msl_keras.errors import ConfigError
from msl_keras.runs import PRUNED_FILENAME, RunDirectory, fold_name, training_record
from msl_keras.pipeline.evaluation import RESULTS_FILENAME, SUMMARY_KEYS, evaluate
from msl_keras.pipeline.extraction import extract
from msl_keras.pipeline.feature_import import import_features
from msl_keras.pipeline.dataset_index import describe, prepare
from msl_keras.pipeline.head_training import train_cnn
from msl_keras.pipeline.lstm_training import train_lstm

# The parts a variant may change: they name its LSTM folder, not the run's features.
VARIANT_PARTS = ("lstm", "eval")


def run_fold(config, index, fold, run, variants=None, verbose=1):
    """train_cnn -> extract (or import_features) once in `run`, then train_lstm ->
    evaluate per variant, each LSTM in its own folder (`Config.lstm_run_name`).

    Args:
        variants: `{name: dotted lstm.* / eval.* overrides of config}`, e.g.
            `{"ce": {"lstm.loss": "ce"}}`. Default `{"config": {}}`.
        verbose: 0 silent; 1 a line per step with its outcome; 2 also each fit's epochs.

    Returns:
        `{name: evaluate result}`, each with `timings_s` (seconds per step; the heads
        and features count in the first variant's; empty for a pruned fold).

    Raises:
        ConfigError: a variant sets a key outside `VARIANT_PARTS`, or the fold was
            pruned (`prune_fold`) without that variant's results.
    """
    variants = {"config": {}} if variants is None else variants
    for name, overrides in variants.items():
        outside = [key for key in overrides if key.split(".")[0] not in VARIANT_PARTS]
        if outside:
            raise ConfigError(
                f"Variant '{name}' sets {', '.join(outside)}: a variant sets only "
                f"{' and '.join(VARIANT_PARTS)} keys. Run another config for those."
            )
    fold = index.fold(fold)
    if (run.fold_dir(fold) / PRUNED_FILENAME).is_file():
        if verbose:
            print(f"== {fold.name}: scored, its models deleted: the stored results")
        paths, missing = _results_paths(config, fold, run, variants)
        if missing:
            raise ConfigError(
                f"Fold '{fold.name}' was pruned (its models deleted) and has no "
                f"results for {', '.join(missing)}. Run them in another output_dir, "
                f"or delete '{run.fold_dir(fold)}'."
            )
        return {
            v: {**json.loads(p.read_text()), "timings_s": {}} for v, p in paths.items()
        }
    start = time.perf_counter()
    timings = {}

    def step(label, call, config, **options):
        if verbose:
            print(f"== {fold.name}: {label}  [{time.perf_counter() - start:.0f} s]")
        began = time.perf_counter()
        value = call(config, index, fold, run=run, **options)
        timings[label.split()[0]] = round(time.perf_counter() - began, 2)
        return value

    fit_verbose = int(verbose > 1)
    if config.data.dataset == "imported":
        step("import_features", import_features, config, verbose=bool(verbose))
    else:
        heads = step("train_cnn", train_cnn, config, verbose=fit_verbose)
        if verbose:
            context, action, nan = heads["context"], heads["action"], float("nan")
            print(
                f"context head: best epoch {context['best_epoch']}, validation frame "
                f"accuracy {100 * context.get('val_accuracy', nan):.1f}%\n"
                f"action head:  best epoch {action['best_epoch']}, validation frame "
                f"accuracy {100 * action.get('val_action_accuracy', nan):.1f}% "
                f"(CAM branch {100 * action.get('val_cam_accuracy', nan):.1f}%)"
            )
        step("extract", extract, config, verbose=verbose)
    results = {}
    for name, overrides in variants.items():
        variant = apply_overrides(config, overrides)
        what = f"({name}: {variant.lstm.model}, {variant.lstm.loss} loss)"
        best, model = step(
            f"train_lstm {what}", train_lstm, variant, verbose=2 * fit_verbose,
            return_model=True,
        )  # fmt: skip
        if verbose:
            record = training_record(best.parent)
            best_epoch = record["best_epoch"]
            accuracy = record["val_anticipation_accuracy"] or float("nan")
            print(
                f"{record['epochs_done']} epochs; best epoch "
                f"{'-' if best_epoch is None else best_epoch} by validation "
                f"anticipation accuracy {100 * accuracy:.1f}% -> {best}"
            )
        # The model in memory when it holds best.keras's weights: no second load.
        results[name] = step(
            f"evaluate {what}", evaluate, variant, verbose=bool(verbose), model=model
        )
        del model  # one LSTM in memory at a time
        results[name]["timings_s"] = dict(timings)
        timings.clear()
    return results


def _results_paths(config, fold, run, variants):
    """`({variant: its results.json in the fold}, [variants without one])`."""
    paths = {}
    for name, overrides in variants.items():
        variant = RunDirectory(apply_overrides(config, overrides), root=run.root)
        paths[name] = variant.results_dir(fold) / RESULTS_FILENAME
    return paths, [name for name, path in paths.items() if not path.is_file()]


def prune_fold(config, fold, run, variants=None):
    """Deletes a scored fold's `.keras` files (3.7 GB a fold at paper size), keeping its
    records, features and results; returns their paths. `variants` as `run_fold`'s.
    Writes `<fold>/pruned.json` first, so an interrupted prune is one too. Raises
    `ConfigError` when a variant has not been scored on the fold."""
    variants = {"config": {}} if variants is None else variants
    run = run if isinstance(run, RunDirectory) else RunDirectory.open(run)
    paths, missing = _results_paths(config, fold, run, variants)
    if missing:
        raise ConfigError(
            f"Fold '{fold_name(fold)}' is not pruned: {', '.join(missing)} has no "
            f"results ('{paths[missing[0]]}'). Run the fold first (run_fold)."
        )
    listing = json.dumps({v: str(p) for v, p in paths.items()}, indent=2)
    (run.fold_dir(fold) / PRUNED_FILENAME).write_text(listing + "\n")
    files = sorted(run.cnn_dir(fold).glob("*.keras"))
    for path in paths.values():
        files += sorted(path.parent.parent.rglob("*.keras"))  # <lstm dir>/results/..
    for path in files:
        path.unlink()
    return files


def _means(results):
    """The `folds` and `{key: mean, key_std: std}` over them of `SUMMARY_KEYS`."""
    means = {"folds": [r["fold"] for r in results]}
    for key in SUMMARY_KEYS:
        values = np.array([r["summary"][key] for r in results], dtype=float)
        means.update({key: float(values.mean()), f"{key}_std": float(values.std())})
    return means


def summarize(results):
    """Mean and spread over folds (`evaluate` results): `folds`, `SUMMARY_KEYS` and
    their `_std`, `per_set` (`{subset: {"folds", means}}`; with 10 folds a set, the mean
    over folds is that of the sets, as Table 2), `per_fold` and the flagged folds."""
    summary = _means(results)
    summary["per_set"] = {
        subset: _means([r for r in results if r.get("subset") == subset])
        for subset in sorted({r["subset"] for r in results if r.get("subset")})
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

    `index` defaults to `prepare(config)`. Returns `summary` (`summarize`), `results`
    (each fold's `evaluate`) and the `path` of the `.summary.json` holding both.
    """
    index = index or prepare(config)
    if verbose:
        print(describe(index))
    run = RunDirectory.create(config)
    start = time.perf_counter()
    results = [
        result
        for fold in list(folds or index.folds)
        for result in run_fold(config, index, fold, run, verbose=verbose).values()
    ]
    summary = summarize(results)
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    path = run.root / f"{config.lstm_run_name()}.summary.json"
    path.write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    if verbose:
        print(format_summary(config, summary))
        print(f"summary written to {path}")
    return {"summary": summary, "results": results, "path": str(path)}


def format_summary(config, summary):
    """A short text table of the mean earliest/latest accuracy over folds (and sets)."""

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
        f"{folds(len(summary['folds']))} (with temporal average pooling)"
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
