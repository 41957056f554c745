"""Stage 5: score the selected LSTM on a fold's TEST clips, after every observed step.

`best.keras` runs ONCE over the test clips: the LSTM is causal, so one pass predicts
after every number of observed frames (the original re-ran each prefix; defect #8).
Per stage: top-1 / top-k accuracy after each step, each ratio of `eval.ratios`, and
earliest / latest (Tables 1-3, `metrics.EARLIEST`), raw and pooled (Sec. 3.2.2).
"""

import csv
import json
import logging
import warnings

import numpy as np

from msl_keras import metrics
from msl_keras.callbacks import causal_forward
from msl_keras.data.feature_store import check_model_inputs
from msl_keras.data.records import ROLES
from msl_keras.errors import ConfigError, FeatureStoreError
from msl_keras.plots import plot_accuracy_curves
from msl_keras.runs import (  # fmt: skip
    fold_name, load_lstm, read_fold_features, resolve_run, training_record,
)

logger = logging.getLogger(__name__)

RESULTS_FILENAME = "results.json"
STAGE_LABELS = {"stage1": "stage 1 (context)", "stage2": "stage 2 (MS-LSTM)"}
# The final stage's scores in `results["summary"]` (averaged over folds by `run_all`).
SUMMARY_KEYS = (
    "earliest", "latest", "earliest_raw", "latest_raw", "mean_accuracy_pooled"
)


def score_stage(
    probs, labels, lengths, frame_indices, num_frames, dataset, ratios, top_k
):
    """Every number `evaluate` reports for one stage's `(clips, T, N)` probabilities:
    the `(T,)` curves and `mean_accuracy_pooled`, `ratios` `{ratio: {"raw", "pooled",
    "top_k_pooled"}}`, earliest / latest (pooled, `_raw`, `top_k_`, 0/1 `_correct`)."""
    clips = (probs, labels, frame_indices, num_frames)
    result = {}
    for suffix, pooled in (("", False), ("_pooled", True)):
        for name, k in (("accuracy", 1), ("top_k", top_k)):
            result[f"{name}_vs_steps{suffix}"] = metrics.accuracy_vs_steps(
                probs, labels, lengths, pooled=pooled, top_k=k
            ).tolist()
    result["mean_accuracy_pooled"] = float(np.mean(result["accuracy_vs_steps_pooled"]))
    kinds = (("raw", False, 1), ("pooled", True, 1), ("top_k_pooled", True, top_k))
    result["ratios"] = {
        _ratio_key(r): {
            key: metrics.accuracy_at_ratio(*clips, r, pooled=pooled, top_k=k)
            for key, pooled, k in kinds
        }
        for r in ratios
    }
    correct = metrics.earliest_latest_correct(dataset, *clips)
    raw = metrics.earliest_latest(dataset, *clips, pooled=False)
    top = metrics.earliest_latest(dataset, *clips, top_k=top_k)
    points = ("earliest", "latest")
    result.update({p: float(correct[p].mean()) for p in points})
    result.update({f"{p}_raw": raw[p] for p in points})
    result.update({f"top_k_{p}": top[p] for p in points})
    result.update({f"{p}_correct": correct[p].astype(int).tolist() for p in points})
    return result


def _ratio_key(ratio):
    return f"{float(ratio):g}"


def check_readings(config, frame_indices, num_frames, fold="the fold"):
    """Which stored step each reported point (`metrics.reported_readings`) reads on
    each test clip of `(clips, T)` `frame_indices` (-1 on padding) and `(clips,)`
    `num_frames`. Refused (ConfigError naming the setting), as a number would not be
    what its label says: `data.observed_ratio < 1`, and earliest and latest reading one
    step (e.g. "first", T = 50, a 100+ frame clip). Warned and counted: latest not
    reaching the clip's end, neighbouring ratios reading one step.

    Returns `results["readings"]`: per point `[min, max]` over clips of the frames
    observed, step and share of the clip read; the clip counts; the warnings; the
    settings read.
    """
    data = config.data
    if data.observed_ratio < 1.0:
        raise ConfigError(
            f"evaluate, fold '{fold}': data.observed_ratio={data.observed_ratio:g} "
            "stores part of each clip only: 'latest' would not be the whole clip. Set "
            "data.observed_ratio=1 and extract again."
        )
    frame_indices, num_frames = np.asarray(frame_indices), np.asarray(num_frames)
    T = frame_indices.shape[1]
    first = data.frame_selection == "first"
    ratios = sorted(float(r) for r in config.eval.ratios)
    readings = metrics.reported_readings(
        data.dataset, frame_indices, num_frames, ratios
    )

    def coincide(a, b):
        return (a["step"] == b["step"]) & (a["frames"] != b["frames"])

    earliest, latest = readings["earliest"], readings["latest"]
    same = coincide(earliest, latest)
    if same.any():
        kind, amount = metrics.EARLIEST[data.dataset]
        part = f"{100 * amount:g}%" if kind == "ratio" else f"{amount} frames"
        fix = "Set data.frame_selection=uniform" if first else "Raise data.num_steps"
        raise ConfigError(
            f"evaluate, fold '{fold}': the earliest point (first {part} of each clip) "
            f"and the latest read the same stored step for {int(same.sum())} of "
            f"{len(same)} test clips (data.frame_selection={data.frame_selection!r}, "
            f"T={T}). {fix} and extract again."
        )
    short = latest["frame"] < latest["frames"] - 1
    pairs = {}
    coinciding = np.zeros(len(num_frames), dtype=bool)
    for low, high in zip(ratios, ratios[1:]):
        hit = coincide(readings[_ratio_key(low)], readings[_ratio_key(high)])
        if hit.any():
            pairs[f"{_ratio_key(low)}/{_ratio_key(high)}"] = int(hit.sum())
            coinciding |= hit
    messages = []
    if short.any():
        messages.append(
            f"evaluate, fold '{fold}': 'latest' does not reach the last frame of "
            f"{int(short.sum())} of {len(short)} test clips, so it is not the whole "
            f"clip (data.frame_selection={data.frame_selection!r}, T={T}); "
            "data.frame_selection=uniform spreads the T frames over the whole clip."
        )
    if coinciding.any():
        shown = ", ".join(f"{k}: {v}" for k, v in pairs.items())
        messages.append(
            f"evaluate, fold '{fold}': neighbouring ratios of eval.ratios read the "
            "same stored step although they observe different frames, on "
            f"{int(coinciding.sum())} of {len(coinciding)} test clips (clips per pair: "
            f"{shown}): the accuracy-vs-ratio curve is flat there by construction. "
            + ("data.frame_selection=uniform or a larger" if first else "A larger")
            + " data.num_steps separates them."
        )
    for message in messages:
        warnings.warn(message, stacklevel=3)

    def span(values):
        return [round(float(np.min(values)), 4), round(float(np.max(values)), 4)]

    return {
        "frame_selection": data.frame_selection,
        "observed_ratio": float(data.observed_ratio),
        "num_steps": int(T),
        "clips": int(len(num_frames)),
        "points": {
            point: {
                "frames_observed": span(reading["frames"]),
                "step": span(reading["step"]),
                "share_of_clip_read": span((reading["frame"] + 1) / num_frames),
            }
            for point, reading in readings.items()
        },
        "latest_is_whole_clip": not bool(short.any()),
        "latest_not_whole_clip": int(short.sum()),
        "coinciding_readings": {"clips": int(coinciding.sum()), "pairs": pairs},
        "warnings": messages,
    }


def evaluate(config, index, fold, run=None, verbose="auto", model=None):
    """Scores the trained LSTM on the fold's test clips; writes and returns the results.

    Writes `results.json` (the dict returned: `readings` from `check_readings`,
    `stages` `{stage: score_stage(...)}`, `summary` the final stage's, pooled),
    `accuracy.csv` and `accuracy.png` into `<lstm dir>/results/`. `run`: as
    `train_lstm`'s. `model`: the LSTM holding `best.keras`'s weights, else loaded.

    Raises:
        ConfigError: a refused reading (`check_readings`).
        FeatureStoreError: no store, or no test clip in it.
        FeatureStoreMismatchError: the store's settings or sizes are not the model's.
        WeightsError: no trained model (run `train_lstm` first).
    """
    run = resolve_run(config, run)
    fold = index.fold(fold)
    name = fold_name(fold)
    settings, class_names, arrays, missing = read_fold_features(
        config, index, fold, run, ("test",)
    )
    test = arrays["test"]
    if test is None:
        raise FeatureStoreError(
            f"Fold '{name}' has no test clip in '{run.store_path(name)}'. Extract its "
            "features."
        )
    if missing["test"]:
        warnings.warn(
            f"{len(missing['test'])} test clips of fold '{name}' are not in the "
            "feature store (failed or not extracted) and are not scored: "
            f"{', '.join(missing['test'][:10])}", stacklevel=2
        )
    readings = check_readings(config, test["frame_indices"], test["num_frames"], name)
    checkpoint = run.best_path(name)
    model = load_lstm(checkpoint) if model is None else model
    check_model_inputs(settings, **{f"{s}_dim": d for s, d in model.input_dims.items()})
    outputs = causal_forward(
        model, {s: test[s] for s in model.input_streams}, config.lstm.batch_size
    )
    num_classes = len(class_names)
    top_k = max(1, min(int(config.eval.top_k), num_classes))
    labels = test["labels"]
    clips = [test[key] for key in ("labels", "lengths", "frame_indices", "num_frames")]
    protocol = (config.data.dataset, config.eval.ratios, top_k)
    stages = {
        stage: score_stage(probs, *clips, *protocol)
        for stage, probs in sorted(outputs.items())
    }
    final = model.stage_names[-1]  # the MS-LSTM's stage 2, or the only one
    results_dir = run.results_dir(name)
    results_dir.mkdir(parents=True, exist_ok=True)
    files = {"results": RESULTS_FILENAME, "csv": "accuracy.csv", "plot": "accuracy.png"}
    files = {key: results_dir / filename for key, filename in files.items()}
    results = {
        "dataset": config.data.dataset,
        "fold": name,
        "subset": fold.subset,
        "model": config.lstm.model,
        "loss": config.lstm.loss,
        "config": config.to_dict(),
        "clips": {
            **{role: len(fold.by_role(role)) for role in ROLES},
            "test_evaluated": len(labels),
            "test_missing": missing["test"],
        },
        "num_steps": int(settings.T),
        "num_classes": num_classes,
        "class_names": class_names,
        "top_k": top_k,
        "earliest_convention": list(metrics.EARLIEST.get(config.data.dataset, ())),
        "readings": readings,
        "checkpoint": {"path": str(checkpoint), **training_record(run.lstm_dir(name))},
        "heads": heads_record(run, name),
        "stages": stages,
        "summary": {
            "stage": final,
            **{key: stages[final][key] for key in SUMMARY_KEYS},
            "latest_is_whole_clip": readings["latest_is_whole_clip"],
            "coinciding_readings": readings["coinciding_readings"]["clips"],
        },
        "files": {key: str(path) for key, path in files.items()},
    }
    files["results"].write_text(json.dumps(results, indent=2) + "\n")
    # accuracy.csv: one row per step t, each stage's top-1 / top-k, raw and pooled
    keys = [f"{n}_vs_steps{s}" for n in ("accuracy", "top_k") for s in ("", "_pooled")]
    kinds = [f"{n}{s}" for n in ("", f"top{top_k}_") for s in ("raw", "pooled")]
    columns = ["t"] + [f"{stage}_{kind}" for stage in stages for kind in kinds]
    series = [scores[key] for scores in stages.values() for key in keys]
    rows = ([t + 1, *values] for t, values in enumerate(zip(*series)))
    with open(files["csv"], "w", newline="") as handle:
        csv.writer(handle).writerows([columns, *rows])
    curves, styles = {}, {}
    for number, (stage, scores) in enumerate(stages.items()):
        label = STAGE_LABELS.get(stage, stage) if len(stages) > 1 else config.lstm.model
        curves[label] = scores["accuracy_vs_steps"]
        styles[label] = {"color": f"C{number}", "ls": "--", "lw": 1.2}
        curves[f"{label}, pooled"] = scores["accuracy_vs_steps_pooled"]
        styles[f"{label}, pooled"] = {"color": f"C{number}"}
    plot_accuracy_curves(
        curves, files["plot"], styles=styles, chance=1.0 / num_classes, title=(
            f"{config.data.dataset} {name}: {config.lstm.model}, {config.lstm.loss} "
            f"loss ({len(labels)} test clips)"
        ),
    )  # fmt: skip
    if verbose:
        logger.info(
            f"evaluate: fold '{name}', {len(labels)} test clips, {final} with pooling: "
            f"earliest {100 * stages[final]['earliest']:.1f}%, latest "
            f"{100 * stages[final]['latest']:.1f}% -> {results_dir}"
        )
    return results


def heads_record(run, fold):
    """`model_selection`, `fit_frames` (frames the heads were trained on) and per head
    `{"best_epoch", "refit_epochs"}` (1-based) of `cnn_info.json`, or None."""
    info = run.read_cnn_info(fold)
    if info is None:
        return None
    record = {key: info.get(key) for key in ("model_selection", "fit_frames")}
    for head in ("context", "action"):
        if head in info:
            record[head] = {
                "best_epoch": info[head].get("best_epoch"),
                "refit_epochs": info[head].get("refit", {}).get("epochs"),
            }
    return record
