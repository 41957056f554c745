"""Stage 6: anticipate the action of a video as its frames arrive (paper Sec. 3.2.2).

`predict_video(path, config, run, fold)` decodes a video one frame at a time and feeds
each frame to `models.StreamingStep`, ONE graph that preprocesses the frame
(`preprocess_frames`, the function training and extraction use), runs the trunk and
both heads (batch 1), advances the trained LSTM by one step with its state kept, and
updates the temporal average pooling. The anticipated class is printed as each frame is
seen, then the anticipation moment (`metrics.anticipation_step`):

```
streaming every frame; the LSTM was trained on the first T=32 (...), later frames are marked
frame   1  anticipated: punch (p=0.41)
...
frame  33  anticipated: punch (p=0.74)  [past training T=32]
anticipation: punch at frame 12 (0.40 s), p=0.61 >= 0.50 and fixed to frame 280
```

Because the LSTM is causal, the per-frame pooled probabilities equal those of one pass
over the whole clip (what `evaluate` scores); nothing is recomputed per prefix, and the
stream runs past the training T (the frames beyond T are marked: the LSTM never saw a
sequence that long while training).

The frames fed: with `data.frame_selection="first"` every frame of the video (the
training clips were its first T frames at the video's rate); with `"uniform"` the T
frames `select_frames` picks, spread over the whole video (the rate training used).
`max_frames` caps either. The first line printed says which.
"""

import csv
import json
from pathlib import Path

import numpy as np

from msl_keras.data.video import (
    count_frames,
    iter_frames,
    list_videos,
    select_frames,
    video_fps,
)
from msl_keras.config import config_from_dict
from msl_keras.errors import ConfigError
from msl_keras.metrics import anticipation_step
from msl_keras.models.streaming import StreamingStep
from msl_keras.plots import plot_stream_probabilities
from msl_keras.runs import (
    BEST_FILENAME,
    RunDirectory,
    fold_name,
    load_extractor,
    load_lstm,
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


def streaming_step(extractor, model, input_size):
    """The `StreamingStep` of a run's extractor and LSTM, checked to fit together."""
    if extractor.action_head.cam_class == "oracle":
        raise ConfigError(
            "predict cannot use cam_class='oracle': the true label of a new video is "
            "unknown. Use cnn.cam_class='predicted' (or 'top_k')."
        )
    makes = {"context": extractor.context_dim, "action": extractor.action_dim}
    for stream, want in model.input_dims.items():
        have = makes[stream]
        if want != have:
            raise ConfigError(
                f"The LSTM expects {stream} features of size {want}, the extractor "
                f"makes {have}. Use the heads and the LSTM of the same run and fold."
            )
    return StreamingStep(extractor, model, input_size)


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
    extractor=None,
    model=None,
    class_names=None,
    stream=None,
):
    """Streams a video through the trained models; returns what was anticipated per frame.

    Args:
        video_path: a video file or a folder of numbered frame images.
        config: the run's `Config` (`data.num_steps`, `data.frame_selection`,
            `data.observed_ratio`, `cnn.input_size`).
        run: a `RunDirectory` or run folder (None: `RunDirectory.create(config)`).
        fold: the fold whose heads and LSTM are used (default: the only fold folder).
        plot_path: optional image file: pooled probabilities against frames, with a
            strip of frame thumbnails under the time axis.
        print_fn: called with one line per frame and the anticipation line (None:
            silent).
        max_frames: stop after this many frames (default: the whole video with
            "first" selection, the T selected frames with "uniform").
        threshold: the pooled probability the prediction must keep, fixed to the
            end, to count as the anticipation moment (`metrics.anticipation_step`).
        true_label: optional true class index, marked in the plot.
        extractor, model: already loaded models to use instead of the run's
            (`load_extractor`, the LSTM folder's `best.keras`).
        class_names: names to print (default: the run's, from train_cnn's cnn_info.json).
        stream: an already built `StreamingStep` (then `extractor`, `model` unused).

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
    run = resolve_run(config, run)
    if fold is None:
        fold = _only_fold(run)
    name = fold_name(fold)
    if stream is None:
        if model is None:
            model = load_lstm(run.best_path(name))
        if extractor is None:
            extractor = load_extractor(config, run, name)
        stream = streaming_step(extractor, model, config.cnn.input_size)
    if class_names is None:
        class_names = _class_names(run, name, stream.num_classes)

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
    if print_fn is not None:
        print_fn(header)
    fps = video_fps(video_path)

    rows, frame_indices, thumbnails = [], [], []
    carry = stream.initial_carry()
    for step, (index, frame) in enumerate(
        iter_frames(video_path, indices, max_frames=max_frames)
    ):
        out = stream.step(frame, **carry)
        carry = {k: out[k] for k in ("state", "prob_sum", "count")}
        row = {k: np.asarray(out[k]) for k in ("probs", "pooled", "stage1")}
        rows.append(row)
        frame_indices.append(index)
        if plot_path is not None:
            thumbnails.append(_thumbnail(frame))
        if print_fn is not None:
            k = int(out["anticipated"])
            past = f"  [past training T={T}]" if step >= T else ""
            print_fn(
                f"frame {index + 1:3d}  anticipated: {class_names[k]} "
                f"(p={row['pooled'][k]:.2f}){past}"
            )
    pooled = np.stack([r["pooled"] for r in rows]).astype(np.float64)
    predicted = pooled.argmax(axis=-1)
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    times = frame_indices / fps if fps else np.full(len(frame_indices), np.nan)
    result = {
        "video": str(video_path),
        "fold": name,
        "stage": stream.lstm.stage_names[-1],
        "frame_indices": frame_indices,
        "times": times,
        "fps": fps,
        "trained_steps": T,
        "past_training": np.arange(len(frame_indices)) >= T,
        "probs": np.stack([r["probs"] for r in rows]).astype(np.float64),
        "pooled": pooled,
        "stage1_probs": (
            np.stack([r["stage1"] for r in rows]).astype(np.float64)
            if stream.multi_stage
            else None
        ),
        "predicted": predicted,
        "predicted_names": [class_names[k] for k in predicted],
        "confidence": pooled[np.arange(len(pooled)), predicted],
        "class_names": list(class_names),
        "threshold": float(threshold),
        "anticipation": None,
        "plot": None,
    }
    step = anticipation_step(pooled, threshold)
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
    if print_fn is not None:
        print_fn(describe_anticipation(result))
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
    """One line: when a `predict_video` result's prediction committed, or that it did not."""
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

    Columns: `video`, `frame` (1-based frame number), `time_s` (empty when the video
    declares no frame rate), `past_training` (1 on steps beyond the training T),
    `anticipation` (1 from the anticipation moment on), then `top1`, `p1`, ... `top<k>`,
    `p<k>` (class names and pooled probabilities, best first).

    Returns:
        `Path` of the written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        k = min(int(top_k), len(results[0]["class_names"])) if results else int(top_k)
        header = ["video", "frame", "time_s", "past_training", "anticipation"]
        for rank in range(1, k + 1):
            header += [f"top{rank}", f"p{rank}"]
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

    Args:
        run_dir: a run folder made by the pipeline (`<output_dir>/<config.run_name()>`).
        fold: which fold's models (default: the first fold, by name, with a trained LSTM).
        lstm: which LSTM subfolder of `<fold>/lstm/` (default: the only one; the first by
            name, with a note, when there are several).
        print_fn: where the note goes (None: silent).

    Returns:
        dict: `config` (the LSTM folder's `config.json`), `run`, `fold`, `lstm` (the
        subfolder name), `stream` (a `StreamingStep`), `class_names`.
    """
    run = RunDirectory.open(run_dir)
    trained = run.trained_folds()
    if fold is None:
        if not trained:
            raise ConfigError(
                f"Run '{run.root}' has no trained LSTM. Run the train-lstm stage first."
            )
        fold = trained[0]
    lstm_root = run.fold_dir(fold) / "lstm"
    choices = []
    if lstm_root.is_dir():
        choices = sorted(
            p.name for p in lstm_root.iterdir() if (p / BEST_FILENAME).is_file()
        )
    if lstm is None:
        if not choices:
            raise ConfigError(
                f"Fold '{fold}' of run '{run.root}' has no trained LSTM (no "
                f"{lstm_root}/*/{BEST_FILENAME}). Run the train-lstm stage first."
            )
        lstm = choices[0]
        if len(choices) > 1 and print_fn is not None:
            others = ", ".join(choices[1:])
            print_fn(
                f"using LSTM '{lstm}' (also here: {others}; pick one with --lstm NAME)"
            )
    elif lstm not in choices:
        raise ConfigError(
            f"No trained LSTM '{lstm}' in '{lstm_root}'. "
            f"Trained: {', '.join(choices) or 'none'}."
        )
    lstm_dir = lstm_root / lstm
    config = run.config
    if (lstm_dir / "config.json").is_file():
        config = config_from_dict(json.loads((lstm_dir / "config.json").read_text()))
    run = RunDirectory(config, root=run.root)
    model = load_lstm(lstm_dir / BEST_FILENAME)
    extractor = load_extractor(config, run, fold)
    return {
        "config": config,
        "run": run,
        "fold": fold,
        "lstm": lstm,
        "stream": streaming_step(extractor, model, config.cnn.input_size),
        "class_names": _class_names(run, fold, int(model.num_classes)),
    }


def predict_from_run_dir(
    videos,
    run_dir,
    fold=None,
    lstm=None,
    max_frames=None,
    threshold=0.5,
    plot_path=None,
    csv_path=None,
    top_k=3,
    print_fn=print,
):
    """`predict_video` on one or more videos with the models of a run folder (the CLI's).

    Args:
        videos: a video file, a frame folder, a folder of video files, or a list of
            them (`data.video.list_videos`).
        run_dir, fold, lstm: the trained models (`load_trained_run`).
        max_frames, threshold, print_fn: as `predict_video`.
        plot_path: optional image file; with several videos, one file per video named
            `<stem>_<video name><suffix>`.
        csv_path: optional CSV file, one row per frame of every video
            (`write_predictions_csv`).
        top_k: classes per CSV row.

    Returns:
        list of `predict_video` results, one per video, in order.
    """
    loaded = load_trained_run(run_dir, fold, lstm, print_fn)
    paths = list_videos(videos)
    results = []
    for path in paths:
        plot = plot_path
        if plot_path is not None and len(paths) > 1:
            plot = Path(plot_path)
            plot = plot.with_name(f"{plot.stem}_{path.stem}{plot.suffix or '.png'}")
        if print_fn is not None and len(paths) > 1:
            print_fn(f"== {path}")
        results.append(
            predict_video(
                path,
                loaded["config"],
                loaded["run"],
                loaded["fold"],
                plot_path=plot,
                print_fn=print_fn,
                max_frames=max_frames,
                threshold=threshold,
                class_names=loaded["class_names"],
                stream=loaded["stream"],
            )
        )
    if csv_path is not None:
        written = write_predictions_csv(results, csv_path, top_k=top_k)
        if print_fn is not None:
            print_fn(f"wrote {written}")
    return results


def _only_fold(run):
    folds = run.trained_folds()
    if len(folds) != 1:
        raise ConfigError(
            f"Pass fold=...: run '{run.root}' has {len(folds)} folds with a trained LSTM"
            + (f" ({', '.join(folds)})." if folds else ".")
        )
    return folds[0]
