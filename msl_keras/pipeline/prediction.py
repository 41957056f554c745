"""Stage 6: anticipate the action of a video as its frames arrive (paper Sec. 3.2.2).

`predict_video` feeds a video, one decoded frame at a time, to `models.StreamingStep`
and prints the anticipated class per frame, then the anticipation moment (README
"Predict, frame by frame"). The LSTM is causal: the pooled probabilities equal those of
one pass over the clip (what `evaluate` scores).
"""

import csv
from pathlib import Path

import cv2
import numpy as np

from msl_keras.data.video import (
    count_frames, iter_frames, list_videos, select_frames, video_fps,
)  # fmt: skip
from msl_keras.errors import ConfigError
from msl_keras.metrics import anticipation_step
from msl_keras.models.streaming import StreamingStep
from msl_keras.plots import plot_stream_probabilities
from msl_keras.runs import (
    fold_name, load_extractor, load_lstm, open_trained_lstm, resolve_run,
)  # fmt: skip


def _class_names(run, fold, num_classes):
    """The class names saved by `train_cnn` (cnn_info.json), else `class <k>`."""
    names = (run.read_cnn_info(fold) or {}).get("class_names")
    if names and len(names) == num_classes:
        return list(names)
    return [f"class {k}" for k in range(num_classes)]


def load_stream(config, run, fold, lstm_path):
    """The `StreamingStep` of the fold's heads and the LSTM at `lstm_path`, checked."""
    model, extractor = load_lstm(lstm_path), load_extractor(config, run, fold)
    if extractor.action_head.cam_class == "oracle":
        raise ConfigError(
            "predict cannot use cam_class='oracle': the true label of a new video is "
            "unknown. Use cnn.cam_class='predicted' (or 'top_k')."
        )
    makes = {"context": extractor.context_dim, "action": extractor.action_dim}
    for stream, want in model.input_dims.items():
        if want != makes[stream]:
            raise ConfigError(
                f"The LSTM expects {stream} features of size {want}, the extractor "
                f"makes {makes[stream]}: use the heads and LSTM of one run and fold."
            )
    return StreamingStep(extractor, model, config.cnn.input_size)


def predict_video(
    video_path, config, run=None, fold=None, plot_path=None, print_fn=print,
    max_frames=None, threshold=0.5, true_label=None, class_names=None, stream=None,
):  # fmt: skip
    """Streams a video (a file or a folder of numbered frame images) through a run's
    models; returns what was anticipated per frame. With `data.frame_selection="first"`
    every frame is fed (those past the trained T are marked), with "uniform" the T
    frames `select_frames` spreads over the video.

    Args:
        fold: default the only fold with a trained LSTM.
        plot_path: optional image of the pooled probabilities over the frames
            (`true_label`, an optional class index, is marked in it).
        print_fn: gets each line printed (None: silent).
        threshold: the pooled probability the prediction must keep to the end from
            the anticipation moment on (`metrics.anticipation_step`).
        class_names, stream: default the run's (cnn_info.json) and its fold's models.

    Returns:
        dict: `video`, `fold`, `stage`, `fps`, `trained_steps` T, `class_names`,
        `threshold`, `plot`; over the n steps fed: `frame_indices (n,)` (0-based),
        `times (n,)` (s; NaN without a frame rate), `past_training (n,)` (step >= T),
        `probs (n, N)` (final stage), `pooled (n, N)` (their running mean: the
        prediction), `stage1_probs` (MS-LSTM, else None), `predicted (n,)`,
        `predicted_names`, `confidence (n,)`; `anticipation`: None, or `step`,
        `frame` (0-based), `time`, `class`, `name` and `probability`.
    """
    if max_frames is not None and int(max_frames) < 1:
        raise ConfigError(f"--max-frames must be at least 1. Received: {max_frames}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1]. Received: {threshold}")
    say = print_fn or (lambda line: None)
    run = resolve_run(config, run)
    if fold is None:
        folds = run.trained_folds()
        if len(folds) != 1:
            raise ConfigError(
                f"Pass fold=...: run '{run.root}' has {len(folds)} folds with a "
                "trained LSTM" + (f" ({', '.join(folds)})." if folds else ".")
            )
        fold = folds[0]
    name = fold_name(fold)
    if stream is None:
        stream = load_stream(config, run, name, run.best_path(name))
    class_names = class_names or _class_names(run, name, stream.num_classes)

    T, indices = int(config.data.num_steps), None
    header = (
        "streaming every frame; the LSTM was trained on the first "
        f"T={T} (data.frame_selection='first'), later frames are marked"
    )
    if config.data.frame_selection == "uniform":
        num_frames = count_frames(video_path)
        indices = select_frames(num_frames, T, "uniform", config.data.observed_ratio)
        header = (
            f"streaming the {len(indices)} of {num_frames} frames spread over the "
            "video as training selected them (data.frame_selection='uniform')"
        )
    if max_frames is not None:
        header += f"; stopping after {int(max_frames)}"
    say(header)
    fps = video_fps(video_path)

    rows, frame_indices, thumbnails = [], [], []
    carry = stream.initial_carry()
    frames = iter_frames(video_path, indices, max_frames=max_frames)
    for step, (index, frame) in enumerate(frames):
        out = stream.step(frame, **carry)
        carry = {k: out[k] for k in ("state", "prob_sum", "count")}
        rows.append({k: np.asarray(out[k]) for k in ("probs", "pooled", "stage1")})
        frame_indices.append(index)
        if plot_path is not None:  # 64 rows high, for the plot's frame strip
            size = (max(1, round(frame.shape[1] * 64 / frame.shape[0])), 64)
            thumbnails.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
        k = int(out["anticipated"])
        past = f"  [past training T={T}]" if step >= T else ""
        say(
            f"frame {index + 1:3d}  anticipated: {class_names[k]} "
            f"(p={rows[-1]['pooled'][k]:.2f}){past}"
        )
    probs, pooled, stage1 = (
        np.stack([r[k] for r in rows]).astype(np.float64)
        for k in ("probs", "pooled", "stage1")
    )
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    predicted = pooled.argmax(axis=-1)
    times = frame_indices / fps if fps else np.full(len(frame_indices), np.nan)
    step = anticipation_step(pooled, threshold)
    result = {
        "video": str(video_path), "fold": name, "stage": stream.lstm.stage_names[-1],
        "frame_indices": frame_indices, "times": times, "fps": fps, "trained_steps": T,
        "past_training": np.arange(len(frame_indices)) >= T,
        "probs": probs, "pooled": pooled,
        "stage1_probs": stage1 if stream.multi_stage else None,
        "predicted": predicted, "predicted_names": [class_names[k] for k in predicted],
        "confidence": pooled.max(axis=-1), "class_names": list(class_names),
        "threshold": float(threshold), "anticipation": None, "plot": None,
    }  # fmt: skip
    if step is not None:
        k = int(predicted[step])
        result["anticipation"] = {
            "step": step, "frame": int(frame_indices[step]), "time": float(times[step]),
            "class": k, "name": class_names[k], "probability": float(pooled[step, k]),
        }  # fmt: skip
    say(describe_anticipation(result))
    if plot_path is not None:
        result["plot"] = str(
            plot_stream_probabilities(
                pooled, class_names, plot_path, true_label=true_label,
                title=f"{Path(video_path).name}: pooled probabilities",
                frame_numbers=frame_indices + 1, thumbnails=thumbnails,
                trained_steps=T, committed_step=step,
            )
        )  # fmt: skip
    return result


def describe_anticipation(result):
    """One line: when a `predict_video` result's prediction committed, or not."""
    last = int(result["frame_indices"][-1]) + 1
    threshold, moment = result["threshold"], result["anticipation"]
    if moment is None:
        return (
            f"anticipation: none; by frame {last} the prediction is not fixed at "
            f"p >= {threshold:.2f} ({result['predicted_names'][-1]}, "
            f"p={result['confidence'][-1]:.2f})"
        )
    when = f"frame {moment['frame'] + 1}"
    if np.isfinite(moment["time"]):
        when += f" ({moment['time']:.2f} s)"
    return (
        f"anticipation: {moment['name']} at {when}, p={moment['probability']:.2f} >= "
        f"{threshold:.2f} and fixed to frame {last}"
    )


def write_predictions_csv(results, path, top_k=3):
    """Writes one row per streamed frame of every video; returns the `Path` written.

    Columns: `video`, `frame` (1-based), `time_s` (empty without a frame rate),
    `past_training` (1 on steps beyond the training T), `anticipation` (1 from the
    anticipation moment on), then the pooled top-k, best first: `top1`, `p1`, ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k = min(int(top_k), len(results[0]["class_names"])) if results else int(top_k)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["video", "frame", "time_s", "past_training", "anticipation"]
        header += [f"{c}{r}" for r in range(1, k + 1) for c in ("top", "p")]
        writer.writerow(header)
        for result in results:
            moment = result["anticipation"]
            committed_from = np.inf if moment is None else moment["step"]
            for step, index in enumerate(result["frame_indices"]):
                time, pooled = result["times"][step], result["pooled"][step]
                row = [
                    result["video"], int(index) + 1,
                    f"{time:.3f}" if np.isfinite(time) else "",
                    int(result["past_training"][step]), int(step >= committed_from),
                ]  # fmt: skip
                for c in np.argsort(-pooled, kind="stable")[:k]:
                    row += [result["class_names"][c], f"{pooled[c]:.4f}"]
                writer.writerow(row)
    return path


def load_trained_run(run_dir, fold=None, lstm=None, print_fn=print):
    """The LSTM of `run_dir` that `fold` and `lstm` pick (`open_trained_lstm`), for
    predict and export: `config` (the LSTM folder's), `run`, `fold`, `lstm` (the
    subfolder name), `stream` (a `StreamingStep`) and `class_names`."""
    run, fold, lstm_dir = open_trained_lstm(run_dir, fold, lstm, print_fn)
    stream = load_stream(run.config, run, fold, lstm_dir)
    return {
        "config": run.config, "run": run, "fold": fold, "lstm": lstm_dir.name,
        "stream": stream, "class_names": _class_names(run, fold, stream.num_classes),
    }  # fmt: skip


def predict_from_run_dir(
    videos, run_dir, fold=None, lstm=None, csv_path=None, top_k=3, **options
):
    """`predict_video` on each of `videos` (a video file, a frame folder, a folder of
    video files, or a list of them) with the LSTM of `run_dir` that `fold` and `lstm`
    pick (`load_trained_run`): the CLI's `predict`. Returns the results in order.
    `options` go to `predict_video` (with several videos each plot is named
    `<stem>_<video><suffix>`); `csv_path`: `write_predictions_csv`, `top_k` a row."""
    plot_path = options.pop("plot_path", None)
    print_fn = options.get("print_fn", print)
    loaded = load_trained_run(run_dir, fold, lstm, print_fn)
    models = {k: loaded[k] for k in ("config", "run", "fold", "class_names", "stream")}
    say = print_fn or (lambda line: None)
    paths = list_videos(videos)
    results = []
    for path in paths:
        plot = plot_path
        if len(paths) > 1:
            say(f"== {path}")
            if plot_path is not None:
                plot = Path(plot_path)
                plot = plot.with_name(f"{plot.stem}_{path.stem}{plot.suffix or '.png'}")
        results.append(predict_video(path, plot_path=plot, **models, **options))
    if csv_path is not None:
        say(f"wrote {write_predictions_csv(results, csv_path, top_k=top_k)}")
    return results
