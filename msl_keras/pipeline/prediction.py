"""Stage 6: anticipate the action of a video as its frames arrive (paper Sec. 3.2.2).

`predict_video(path, config, run, fold)` feeds a video, one decoded frame at a time, to
`models.StreamingStep` (ONE graph: `preprocess_frames` as in training, the trunk and
both heads, one LSTM step with its state kept, the temporal average pooling) and prints
the anticipated class per frame, then the anticipation moment
(`metrics.anticipation_step`); README "Predict, frame by frame" shows the output. The
LSTM is causal, so the pooled probabilities equal those of one pass over the clip (what
`evaluate` scores). With `data.frame_selection="first"` every frame is fed and those
past the trained T are marked (the LSTM never saw a longer sequence); with "uniform"
the T frames `select_frames` spreads over the video, the rate training used.
"""

import csv
from pathlib import Path

import numpy as np

from msl_keras.data.video import (
    count_frames,
    iter_frames,
    list_videos,
    select_frames,
    video_fps,
)
from msl_keras.errors import ConfigError
from msl_keras.metrics import anticipation_step
from msl_keras.models.streaming import StreamingStep
from msl_keras.plots import plot_stream_probabilities
from msl_keras.runs import (
    fold_name,
    load_extractor,
    load_lstm,
    open_trained_lstm,
    resolve_run,
)

# Height of the thumbnails kept for the plot's frame strip (display only).
THUMBNAIL_HEIGHT = 64


def _class_names(run, fold, num_classes):
    """The class names saved by `train_cnn` (cnn_info.json), else `class <k>`."""
    names = (run.read_cnn_info(fold) or {}).get("class_names")
    if names and len(names) == num_classes:
        return list(names)
    return [f"class {k}" for k in range(num_classes)]


def load_stream(config, run, fold, lstm_path):
    """The `StreamingStep` of the fold's heads and the LSTM at `lstm_path`, checked."""
    model = load_lstm(lstm_path)
    extractor = load_extractor(config, run, fold)
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
                f"makes {makes[stream]}. Use the heads and the LSTM of the same run "
                "and fold."
            )
    return StreamingStep(extractor, model, config.cnn.input_size)


def _thumbnail(frame):
    import cv2

    height, width = frame.shape[:2]
    size = (max(1, round(width * THUMBNAIL_HEIGHT / height)), THUMBNAIL_HEIGHT)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def predict_video(
    video_path,
    config,
    run=None,
    fold=None,
    plot_path=None,
    print_fn=print,
    max_frames=None,
    threshold=0.5,
    true_label=None,
    class_names=None,
    stream=None,
):
    """Streams a video through a run's models; returns what was anticipated per frame.

    Args:
        video_path: a video file or a folder of numbered frame images.
        run: a `RunDirectory` or run folder (None: `RunDirectory.create(config)`).
        fold: default the only fold with a trained LSTM.
        plot_path: optional image: pooled probabilities against frames, over thumbnails.
        print_fn: gets each line printed (None: silent).
        threshold: the pooled probability the prediction must keep to the end to
            count as the anticipation moment (`metrics.anticipation_step`).
        true_label: optional true class index, marked in the plot.
        class_names, stream: default the run's (cnn_info.json) and its fold's models.

    Returns:
        dict: `video`, `fold`, `stage`, `frame_indices (n,)` 0-based frames fed,
        `times (n,)` seconds (NaN when the video declares no frame rate), `fps`,
        `trained_steps` T, `past_training (n,)` bool (step beyond T), `probs (n, N)`
        the final stage's per-frame probabilities, `pooled (n, N)` their running mean
        (the prediction), `stage1_probs (n, N)` (MS-LSTM only, else None),
        `predicted (n,)` pooled argmax, `predicted_names`, `confidence (n,)`,
        `class_names`, `threshold`, `anticipation` (None, or a dict with `step`,
        `frame` 0-based index, `time`, `class`, `name`, `probability`), `plot`.
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
            listed = f" ({', '.join(folds)})." if folds else "."
            raise ConfigError(
                f"Pass fold=...: run '{run.root}' has {len(folds)} folds with a "
                f"trained LSTM{listed}"
            )
        fold = folds[0]
    name = fold_name(fold)
    if stream is None:
        stream = load_stream(config, run, name, run.best_path(name))
    class_names = class_names or _class_names(run, name, stream.num_classes)

    T = int(config.data.num_steps)
    indices = None
    if config.data.frame_selection == "uniform":
        num_frames = count_frames(video_path)
        indices = select_frames(
            num_frames, T, mode="uniform", observed_ratio=config.data.observed_ratio
        )
        header = (
            f"streaming the {len(indices)} of {num_frames} frames spread over the video "
            "as training selected them (data.frame_selection='uniform')"
        )
    else:
        header = (
            "streaming every frame; the LSTM was trained on the first "
            f"T={T} (data.frame_selection='first'), later frames are marked"
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
        row = {k: np.asarray(out[k]) for k in ("probs", "pooled", "stage1")}
        rows.append(row)
        frame_indices.append(index)
        if plot_path is not None:
            thumbnails.append(_thumbnail(frame))
        k = int(out["anticipated"])
        past = f"  [past training T={T}]" if step >= T else ""
        say(
            f"frame {index + 1:3d}  anticipated: {class_names[k]} "
            f"(p={row['pooled'][k]:.2f}){past}"
        )
    probs, pooled, stage1 = (
        np.stack([r[k] for r in rows]).astype(np.float64)
        for k in ("probs", "pooled", "stage1")
    )
    predicted = pooled.argmax(axis=-1)
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    times = frame_indices / fps if fps else np.full(len(frame_indices), np.nan)
    step = anticipation_step(pooled, threshold)
    result = {
        "video": str(video_path),
        "fold": name,
        "stage": stream.lstm.stage_names[-1],
        "frame_indices": frame_indices,
        "times": times,
        "fps": fps,
        "trained_steps": T,
        "past_training": np.arange(len(frame_indices)) >= T,
        "probs": probs,
        "pooled": pooled,
        "stage1_probs": stage1 if stream.multi_stage else None,
        "predicted": predicted,
        "predicted_names": [class_names[k] for k in predicted],
        "confidence": pooled[np.arange(len(pooled)), predicted],
        "class_names": list(class_names),
        "threshold": float(threshold),
        "anticipation": None,
        "plot": None,
    }
    if step is not None:
        k = int(predicted[step])
        result["anticipation"] = {
            "step": step,
            "frame": int(frame_indices[step]),
            "time": float(times[step]),
            "class": k,
            "name": class_names[k],
            "probability": float(pooled[step, k]),
        }
    say(describe_anticipation(result))
    if plot_path is not None:
        result["plot"] = str(
            plot_stream_probabilities(
                pooled,
                class_names,
                plot_path,
                true_label=true_label,
                title=f"{Path(video_path).name}: pooled probabilities",
                frame_numbers=frame_indices + 1,
                thumbnails=thumbnails,
                trained_steps=T,
                committed_step=step,
            )
        )
    return result


def describe_anticipation(result):
    """One line: when a `predict_video` result's prediction committed, or not."""
    last = int(result["frame_indices"][-1]) + 1
    threshold = result["threshold"]
    moment = result["anticipation"]
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
    """One row per streamed frame of every video: video, frame, time, pooled top-k.

    Columns: `video`, `frame` (1-based), `time_s` (empty when the video declares no
    frame rate), `past_training` (1 on steps beyond the training T), `anticipation` (1
    from the anticipation moment on), then `top1`, `p1`, ... `top<k>`, `p<k>` (class
    names and pooled probabilities, best first). Returns the `Path` written.
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
            names = result["class_names"]
            moment = result["anticipation"]
            committed_from = np.inf if moment is None else moment["step"]
            for step, index in enumerate(result["frame_indices"]):
                time = result["times"][step]
                pooled = result["pooled"][step]
                row = [
                    result["video"],
                    int(index) + 1,
                    "" if not np.isfinite(time) else f"{time:.3f}",
                    int(result["past_training"][step]),
                    int(step >= committed_from),
                ]
                for c in np.argsort(-pooled, kind="stable")[:k]:
                    row += [names[c], f"{pooled[c]:.4f}"]
                writer.writerow(row)
    return path


def load_trained_run(run_dir, fold=None, lstm=None, print_fn=print):
    """The config, fold and models of a trained run folder (predict and export use it).

    `run_dir`, `fold`, `lstm`: which LSTM (`open_trained_lstm`). Returns `config` (the
    LSTM folder's), `run`, `fold`, `lstm` (the subfolder name), `stream` (a
    `StreamingStep`) and `class_names`.
    """
    run, fold, lstm_dir = open_trained_lstm(run_dir, fold, lstm, print_fn)
    stream = load_stream(run.config, run, fold, lstm_dir)
    return {
        "config": run.config,
        "run": run,
        "fold": fold,
        "lstm": lstm_dir.name,
        "stream": stream,
        "class_names": _class_names(run, fold, stream.num_classes),
    }


def predict_from_run_dir(
    videos, run_dir, fold=None, lstm=None, csv_path=None, top_k=3, **options
):
    """`predict_video` on one or more videos with a run folder's models (the CLI's).

    Args:
        videos: a video file, a frame folder, a folder of video files, or a list of
            them (`data.video.list_videos`).
        run_dir, fold, lstm: the trained models (`load_trained_run`).
        csv_path: optional CSV, `write_predictions_csv` with `top_k` classes a row.
        **options: `predict_video`'s `plot_path`, `print_fn`, `max_frames` and
            `threshold`; several videos get a plot each, `<stem>_<video><suffix>`.

    Returns:
        list of `predict_video` results, one per video, in order.
    """
    print_fn = options.get("print_fn", print)
    plot_path = options.pop("plot_path", None)
    loaded = load_trained_run(run_dir, fold, lstm, print_fn)
    say = print_fn or (lambda line: None)
    paths = list_videos(videos)
    results = []
    for path in paths:
        plot = plot_path
        if plot_path is not None and len(paths) > 1:
            plot = Path(plot_path)
            plot = plot.with_name(f"{plot.stem}_{path.stem}{plot.suffix or '.png'}")
        if len(paths) > 1:
            say(f"== {path}")
        results.append(
            predict_video(
                path,
                loaded["config"],
                loaded["run"],
                loaded["fold"],
                plot_path=plot,
                class_names=loaded["class_names"],
                stream=loaded["stream"],
                **options,
            )
        )
    if csv_path is not None:
        say(f"wrote {write_predictions_csv(results, csv_path, top_k=top_k)}")
    return results

