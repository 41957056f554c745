"""Stage 5: score the selected LSTM on a fold's TEST clips, after every observed step.

`evaluate(config, index, fold)` loads `best.keras` (chosen on validation by `train_lstm`) and
runs it ONCE, causally, over the fold's test clips: the output at step t only depends on
steps 1..t, so one pass gives the prediction after every number of observed frames (the
original code re-ran the model per prefix and scored stage 1 only; defect #8). For every
stage it reports:

- accuracy after t steps, t = 1..T, with and without temporal average pooling
  (Sec. 3.2.2, Figs. 5-6), top-1 and top-k;
- accuracy after observing each ratio of `config.eval.ratios` of the clips;
- earliest and latest accuracy by the dataset's convention (Tables 1-3: JHMDB first 20%,
  UT-Interaction first 50%, UCF-101 first 2 frames; latest = the whole clip, capped at T).

Before scoring, `check_readings` works out which stored step (and source frame) every
reported point reads on every test clip. Where earliest and latest would read the same step
of a clip, or `data.observed_ratio < 1` keeps "latest" from being the whole clip, it
refuses with a `ConfigError` naming the setting to change; where "latest" stops at the
first T frames of long clips, or two ratios of `eval.ratios` read the same step, it warns
and records the number of clips in `results["readings"]`.

It writes `results.json`, `accuracy.csv` (one row per t) and `accuracy.png` into
`<lstm dir>/results/` and returns the results dict. The headline (`results["summary"]`) is
the final stage (stage 2 of the MS-LSTM) with pooling.

Example:

>>> results = evaluate(config, index, "split1")
>>> results["summary"]
{'stage': 'stage2', 'earliest': 0.55, 'latest': 0.58, ...}
"""

import csv
import json
import logging
import warnings

import numpy as np

from msl_keras import metrics
from msl_keras.callbacks import causal_forward, final_stage
from msl_keras.data.feature_store import check_model_inputs
from msl_keras.errors import ConfigError, FeatureStoreError
from msl_keras.plots import plot_accuracy_curves
from msl_keras.runs import (
    fold_name,
    load_lstm,
    read_fold_features,
    resolve_run,
    training_record,
)

logger = logging.getLogger(__name__)

RESULTS_FILENAME = "results.json"
CSV_FILENAME = "accuracy.csv"
PLOT_FILENAME = "accuracy.png"
STAGE_LABELS = {"stage1": "stage 1 (context)", "stage2": "stage 2 (MS-LSTM)"}


def score_stage(
    probs, labels, lengths, frame_indices, num_frames, dataset, ratios, top_k
):
    """Every number `evaluate` reports for one stage's `(clips, T, N)` probabilities.

    Returns:
        dict with `accuracy_vs_steps` and `accuracy_vs_steps_pooled` `(T,)` lists,
        `top_k_vs_steps` / `top_k_vs_steps_pooled` (`top_k`), `ratios`:
        `{ratio: {"raw", "pooled", "top_k_pooled"}}`, `earliest` / `latest` (pooled),
        `earliest_raw` / `latest_raw`, `top_k_earliest` / `top_k_latest` (pooled),
        `earliest_correct` / `latest_correct` (pooled, one 0/1 per clip in the order
        of `labels`: for paired comparisons of two models),
        `mean_accuracy_pooled` (the validation selection score, here on test).
    """
    result = {}
    for pooled, suffix in ((False, ""), (True, "_pooled")):
        result[f"accuracy_vs_steps{suffix}"] = metrics.accuracy_vs_steps(
            probs, labels, lengths, pooled=pooled
        ).tolist()
        result[f"top_k_vs_steps{suffix}"] = metrics.accuracy_vs_steps(
            probs, labels, lengths, pooled=pooled, top_k=top_k
        ).tolist()
    result["mean_accuracy_pooled"] = float(np.mean(result["accuracy_vs_steps_pooled"]))
    result["ratios"] = {
        _ratio_key(r): {
            "raw": metrics.accuracy_at_ratio(
                probs, labels, frame_indices, num_frames, r, pooled=False
            ),
            "pooled": metrics.accuracy_at_ratio(
                probs, labels, frame_indices, num_frames, r, pooled=True
            ),
            "top_k_pooled": metrics.accuracy_at_ratio(
                probs, labels, frame_indices, num_frames, r, pooled=True, top_k=top_k
            ),
        }
        for r in ratios
    }
    correct = metrics.earliest_latest_correct(
        dataset, probs, labels, frame_indices, num_frames
    )
    pooled = {point: float(hits.mean()) for point, hits in correct.items()}
    raw = metrics.earliest_latest(
        dataset, probs, labels, frame_indices, num_frames, pooled=False
    )
    top = metrics.earliest_latest(
        dataset, probs, labels, frame_indices, num_frames, pooled=True, top_k=top_k
    )
    result.update(
        earliest=pooled["earliest"],
        latest=pooled["latest"],
        earliest_raw=raw["earliest"],
        latest_raw=raw["latest"],
        top_k_earliest=top["earliest"],
        top_k_latest=top["latest"],
        earliest_correct=correct["earliest"].astype(int).tolist(),
        latest_correct=correct["latest"].astype(int).tolist(),
    )
    return result


def _ratio_key(ratio):
    return f"{float(ratio):g}"


def check_readings(config, frame_indices, num_frames, fold="the fold"):
    """Which stored step each reported point reads on each test clip; refuse or flag.

    The points are earliest and latest (`metrics.EARLIEST`, `metrics.LATEST_FIRST_T`) and
    every ratio of `config.eval.ratios` (`metrics.reported_readings`).

    Refused (`ConfigError`: the number would not be what its label says):

    - `data.observed_ratio < 1`: the store holds frames of the first part of each clip
      only, so "latest" is not the whole clip and every ratio above it reads one step.
    - earliest and latest read the same step of a clip although they observe different
      parts of it (e.g. `frame_selection="first"`, T = 50 and a UT-Interaction clip of
      100 frames or more: all 50 steps lie in its first half). The tables' two columns
      would be one measurement.

    Flagged (a warning, and the number of clips in the report):

    - `latest_not_whole_clip`: latest stops before the end of the part it observes
      (`"first"` and clips longer than T, where latest is the whole clip). The paper's
      text says as much ("we only exploit the first T frames"); the report says how
      many clips.
    - `coinciding_readings`: two neighbouring ratios of `eval.ratios` read the same step
      of a clip although they observe different frames; the accuracy-vs-ratio curve is
      flat there by construction.

    Args:
        config: the run's `Config` (`data.dataset`, `data.frame_selection`,
            `data.observed_ratio`, `eval.ratios`).
        frame_indices: `(clips, T)` source frame of each stored step, -1 on padding.
        num_frames: `(clips,)` frames in each source clip.
        fold: the fold's name, for the messages.

    Returns:
        dict for `results["readings"]`: `frame_selection`, `observed_ratio`,
        `num_steps`, `clips`, `points` (`{point: {"frames_observed", "step",
        "share_of_clip_read"}}`, each `[min, max]` over clips), `latest_is_whole_clip`,
        `latest_not_whole_clip` (clips), `coinciding_readings` (`{"clips": n, "pairs":
        {"0.3/0.4": n}}`) and `warnings`.

    Raises:
        ConfigError: a refused case above; the message names the setting to change.
    """
    data = config.data
    if data.observed_ratio < 1.0:
        raise ConfigError(
            f"evaluate, fold '{fold}': data.observed_ratio={data.observed_ratio:g} stores "
            f"frames of the first {100 * data.observed_ratio:g}% of each clip only, so the "
            "reported 'latest' would not be the whole clip and every ratio above "
            f"{data.observed_ratio:g} would read the same step. Set data.observed_ratio=1 "
            "and extract again: one causal pass over the whole clip reads every ratio."
        )
    frame_indices = np.asarray(frame_indices)
    num_frames = np.asarray(num_frames)
    ratios = sorted(float(r) for r in config.eval.ratios)
    readings = metrics.reported_readings(
        data.dataset, frame_indices, num_frames, ratios
    )
    earliest, latest = readings["earliest"], readings["latest"]
    same = (earliest["step"] == latest["step"]) & (
        earliest["frames"] != latest["frames"]
    )
    if same.any():
        kind, amount = metrics.EARLIEST[data.dataset]
        part = f"first {100 * amount:g}%" if kind == "ratio" else f"first {amount} frames"
        fix = (
            "Set data.frame_selection=uniform (T frames spread over the whole clip, so "
            "the earliest point reads an early step; the paper_ut_interaction and "
            "paper_jhmdb presets' default)"
            if data.frame_selection == "first"
            else "Raise data.num_steps"
        )
        raise ConfigError(
            f"evaluate, fold '{fold}': the earliest point ({part} of each clip) and the "
            f"latest read the same stored step for {int(same.sum())} of "
            f"{len(same)} test clips (data.frame_selection={data.frame_selection!r}, "
            f"T={frame_indices.shape[1]}), so earliest and latest would be one number. "
            f"{fix} and extract again."
        )
    short = latest["frame"] < latest["frames"] - 1
    pairs = {}
    coinciding = np.zeros(len(num_frames), dtype=bool)
    for low, high in zip(ratios, ratios[1:]):
        a, b = readings[_ratio_key(low)], readings[_ratio_key(high)]
        hit = (a["step"] == b["step"]) & (a["frames"] != b["frames"])
        if hit.any():
            pairs[f"{_ratio_key(low)}/{_ratio_key(high)}"] = int(hit.sum())
            coinciding |= hit
    messages = []
    if short.any():
        messages.append(
            f"evaluate, fold '{fold}': 'latest' does not reach the last frame of "
            f"{int(short.sum())} of {len(short)} test clips, so it is not the whole clip "
            f"(data.frame_selection={data.frame_selection!r}, T="
            f"{frame_indices.shape[1]}); data.frame_selection=uniform spreads the T "
            "frames over the whole clip."
        )
    if coinciding.any():
        messages.append(
            f"evaluate, fold '{fold}': neighbouring ratios of eval.ratios read the same "
            f"stored step although they observe different frames, on {int(coinciding.sum())} "
            f"of {len(coinciding)} test clips (clips per pair: "
            f"{', '.join(f'{k}: {v}' for k, v in pairs.items())}): the accuracy-vs-ratio "
            "curve is flat there by construction. "
            + (
                "data.frame_selection=uniform or a larger data.num_steps separates them."
                if data.frame_selection == "first"
                else "A larger data.num_steps separates them."
            )
        )
    for message in messages:
        warnings.warn(message, stacklevel=3)

    def span(values):
        return [round(float(np.min(values)), 4), round(float(np.max(values)), 4)]

    return {
        "frame_selection": data.frame_selection,
        "observed_ratio": float(data.observed_ratio),
        "num_steps": int(frame_indices.shape[1]),
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


def evaluate(
    config, index, fold, run=None, checkpoint=None, batch_size=None, verbose="auto"
):
    """Scores the trained LSTM on the fold's test clips; writes and returns the results.

    Args:
        config: the run's `Config` (uses `eval.ratios`, `eval.top_k`, `data.dataset`).
        index: the `DatasetIndex` (roles and class names).
        fold: a fold name or `Fold`.
        run: a `RunDirectory`, a run folder, or None (`RunDirectory.create(config)`).
        checkpoint: the model file to score; default the LSTM folder's `best.keras`.
        batch_size: clips per forward call (default `config.lstm.batch_size`).
        verbose: Keras' convention (0 silent; 1, 2 or "auto" log the summary).

    Returns:
        dict, as written to `results.json`: `dataset`, `fold`, `config`, `clips`
        (counts per role, `test_evaluated`, `test_missing` ids), `num_steps`,
        `num_classes`, `class_names`, `top_k`, `subset` (the fold's set, e.g. "set1",
        or None), `readings` (`check_readings`), `checkpoint` (path and
        `runs.training_record`: model selection scheme, best epoch counted from 1,
        its validation score, the refit's epochs and clips), `heads` (`heads_record`:
        the CNN heads' scheme and epochs, None when the run has no `cnn_info.json`),
        `stages` (`{stage: score_stage(...)}`), `summary` (final stage, pooled, with
        `latest_is_whole_clip` and the `coinciding_readings` clip count), `files`.

    Raises:
        ConfigError: earliest and latest read the same step of a test clip, or
            `data.observed_ratio < 1` (see `check_readings`).
        FeatureStoreError: no store, or no test clip in it.
        FeatureStoreMismatchError: the store's settings or feature sizes differ from the
            config's or the model's.
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
            f"Fold '{name}' has no test clip in '{run.store_path(name)}'. Extract the "
            "fold's features first."
        )
    if missing["test"]:
        warnings.warn(
            f"{len(missing['test'])} test clips of fold '{name}' are not in the feature "
            f"store (failed or not extracted) and are not scored: "
            f"{', '.join(missing['test'][:10])}",
            stacklevel=2,
        )
    readings = check_readings(
        config, test["frame_indices"], test["num_frames"], fold=name
    )
    lstm_dir = run.lstm_dir(name)
    checkpoint = checkpoint or run.best_path(name)
    model = load_lstm(checkpoint)
    dims = model.input_dims
    check_model_inputs(
        settings, context_dim=dims.get("context"), action_dim=dims.get("action")
    )
    outputs = causal_forward(
        model,
        {s: test[s] for s in model.input_streams},
        batch_size or config.lstm.batch_size,
    )
    num_classes = len(class_names)
    top_k = max(1, min(int(config.eval.top_k), num_classes))
    labels, lengths = test["labels"], test["lengths"]
    stages = {
        stage: score_stage(
            probs,
            labels,
            lengths,
            test["frame_indices"],
            test["num_frames"],
            config.data.dataset,
            config.eval.ratios,
            top_k,
        )
        for stage, probs in sorted(outputs.items())
    }
    final = final_stage(outputs)
    results_dir = run.results_dir(name)
    results_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "dataset": config.data.dataset,
        "fold": name,
        "subset": fold.subset,
        "model": config.lstm.model,
        "loss": config.lstm.loss,
        "config": config.to_dict(),
        "clips": {
            **{
                role: len(fold.by_role(role))
                for role in ("train", "validation", "test")
            },
            "test_evaluated": len(labels),
            "test_missing": missing["test"],
        },
        "num_steps": int(settings.T),
        "num_classes": num_classes,
        "class_names": class_names,
        "top_k": top_k,
        "earliest_convention": list(metrics.EARLIEST.get(config.data.dataset, ())),
        "readings": readings,
        "checkpoint": {"path": str(checkpoint), **training_record(lstm_dir)},
        "heads": heads_record(run, name),
        "stages": stages,
        "summary": {
            "stage": final,
            "earliest": stages[final]["earliest"],
            "latest": stages[final]["latest"],
            "earliest_raw": stages[final]["earliest_raw"],
            "latest_raw": stages[final]["latest_raw"],
            "mean_accuracy_pooled": stages[final]["mean_accuracy_pooled"],
            "latest_is_whole_clip": readings["latest_is_whole_clip"],
            "coinciding_readings": readings["coinciding_readings"]["clips"],
        },
        "files": {
            "results": str(results_dir / RESULTS_FILENAME),
            "csv": str(results_dir / CSV_FILENAME),
            "plot": str(results_dir / PLOT_FILENAME),
        },
    }
    (results_dir / RESULTS_FILENAME).write_text(json.dumps(results, indent=2) + "\n")
    write_accuracy_csv(stages, top_k, results_dir / CSV_FILENAME)
    curves, styles = {}, {}
    for number, (stage, scores) in enumerate(stages.items()):
        label = STAGE_LABELS.get(stage, stage) if len(stages) > 1 else config.lstm.model
        color = f"C{number}"
        curves[label] = scores["accuracy_vs_steps"]
        styles[label] = {"color": color, "ls": "--", "lw": 1.2}
        curves[f"{label}, pooled"] = scores["accuracy_vs_steps_pooled"]
        styles[f"{label}, pooled"] = {"color": color}
    plot_accuracy_curves(
        curves,
        results_dir / PLOT_FILENAME,
        styles=styles,
        title=(
            f"{config.data.dataset} {name}: {config.lstm.model}, {config.lstm.loss} loss "
            f"({len(labels)} test clips)"
        ),
        chance=1.0 / num_classes,
    )
    if verbose:
        summary = results["summary"]
        logger.info(
            f"evaluate: fold '{name}', {len(labels)} test clips, {final} with pooling: "
            f"earliest {100 * summary['earliest']:.1f}%, latest "
            f"{100 * summary['latest']:.1f}% -> {results_dir}"
        )
    return results


def heads_record(run, fold):
    """How the fold's CNN heads were chosen and trained (from `cnn_info.json`), or None.

    Returns:
        dict: `model_selection`, `fit_frames` (frames the saved heads were trained on)
        and per head `{"best_epoch", "refit_epochs"}` (1-based; None without refit).
    """
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


def write_accuracy_csv(stages, top_k, path):
    """One row per step t: each stage's accuracy without and with pooling, top-1 and top-k."""
    columns = ["t"]
    for stage in stages:
        columns += [
            f"{stage}_raw",
            f"{stage}_pooled",
            f"{stage}_top{top_k}_raw",
            f"{stage}_top{top_k}_pooled",
        ]
    steps = len(next(iter(stages.values()))["accuracy_vs_steps"])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for t in range(steps):
            row = [t + 1]
            for scores in stages.values():
                row += [
                    scores["accuracy_vs_steps"][t],
                    scores["accuracy_vs_steps_pooled"][t],
                    scores["top_k_vs_steps"][t],
                    scores["top_k_vs_steps_pooled"][t],
                ]
            writer.writerow(row)
    return path
