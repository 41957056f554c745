"""Stage 6: anticipate the action of a video as its frames arrive (paper Sec. 3.2.2).

`predict_video(path, config, run, fold)` decodes the video one frame at a time, and for each
new frame: preprocesses it (`preprocess_frames`, the ONE function training and extraction
use), runs the trunk and both heads once (batch 1), advances the trained LSTM by ONE step
with its state kept from the previous frame (`MultiStageLSTM.step`), and updates the
temporal average pooling (`StreamingAveragePooling`, Sec. 3.2.2). The anticipated class is
printed as soon as each frame is seen:

```
frame   1  anticipated: punch (p=0.41)
frame   2  anticipated: punch (p=0.52)
```

Because the LSTM is causal, the per-frame pooled probabilities equal those of one pass over
the whole clip (what `evaluate` scores); nothing is recomputed per prefix.

The frames fed are the ones extraction used: with `data.frame_selection="first"` the first
T = `data.num_steps` frames (`max_frames` overrides the cap; the LSTM runs on past T), with
`"uniform"` the T frames `select_frames` picks (the video is counted first).
"""

import json
from pathlib import Path

import numpy as np

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import count_frames, iter_frames, select_frames
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import StreamingAveragePooling
from msl_keras.models.ms_lstm import MultiStageLSTM
from msl_keras.plots import plot_stream_probabilities
from msl_keras.runs import fold_name, resolve_run
from msl_keras.stages.train_lstm import BEST_FILENAME, input_dims, load_lstm


def _class_names(run, fold, num_classes):
    """The class names saved by `train_cnn` (cnn_info.json), else `class <k>`."""
    info = run.cnn_dir(fold) / "cnn_info.json"
    if info.is_file():
        names = json.loads(info.read_text()).get("class_names")
        if names and len(names) == num_classes:
            return list(names)
    return [f"class {k}" for k in range(num_classes)]


class StreamingAnticipator:
    """Frame-by-frame anticipation with a feature extractor and a trained LSTM.

    Args:
        extractor: a `TwoStreamFeatureExtractor` (trunk + both trained heads).
        model: a trained `MultiStageLSTM` or `SingleStageLSTM`.
        input_size: network input size (`config.cnn.input_size`).

    `update(frame)` takes one uint8 RGB frame `(H, W, 3)` and returns
    `(probs (N,), pooled (N,), stage1_probs (N,) or None)` for the final stage.
    `reset()` starts a new video.
    """

    def __init__(self, extractor, model, input_size):
        if extractor.action_head.cam_class == "oracle":
            raise ConfigError(
                "predict cannot use cam_class='oracle': the true label of a new video is "
                "unknown. Use cnn.cam_class='predicted' (or 'top_k')."
            )
        context_dim, action_dim = input_dims(model)
        for stream, want, have in (
            ("context", context_dim, extractor.context_dim),
            ("action", action_dim, extractor.action_dim),
        ):
            if want is not None and want != have:
                raise ConfigError(
                    f"The LSTM expects {stream} features of size {want}, the extractor "
                    f"makes {have}. Use the heads and the LSTM of the same run and fold."
                )
        self.extractor = extractor
        self.model = model
        self.size = (int(input_size), int(input_size))
        self.multi_stage = isinstance(model, MultiStageLSTM)
        self.reset()

    def reset(self):
        self.states = self.model.initial_state(1)
        self.pooling = StreamingAveragePooling()

    def update(self, frame):
        x = preprocess_frames(np.asarray(frame)[None], self.size)  # (1, s, s, 3)
        features = self.extractor.extract(np.asarray(x), batch_size=1)
        if self.multi_stage:
            probs1, probs, self.states = self.model.step(
                features["context"], features["action"], self.states
            )
            probs1 = np.asarray(probs1)[0]
        else:
            probs, self.states = self.model.step(
                features[self.model.stream], self.states
            )
            probs1 = None
        probs = np.asarray(probs, dtype=np.float64)[0]
        return probs, self.pooling.update(probs), probs1


def predict_video(
    video_path,
    config,
    run=None,
    fold=None,
    plot_path=None,
    print_fn=print,
    max_frames=None,
    true_label=None,
    extractor=None,
    model=None,
    class_names=None,
):
    """Streams a video through the trained models; returns what was anticipated per frame.

    Args:
        video_path: a video file or a folder of numbered frame images.
        config: the run's `Config` (`data.num_steps`, `data.frame_selection`,
            `data.observed_ratio`, `cnn.input_size`).
        run: a `RunDirectory` or run folder (None: `RunDirectory.create(config)`).
        fold: the fold whose heads and LSTM are used (default: the only fold folder).
        plot_path: optional image file: pooled probabilities against frames.
        print_fn: called with one line per frame (None: silent).
        max_frames: frames to stream with "first" selection; default T
            (`data.num_steps`), the frames the LSTM was trained on.
        true_label: optional true class index, marked in the plot.
        extractor, model: already loaded models to use instead of the run's
            (`load_extractor`, the LSTM folder's `best.keras`).
        class_names: names to print (default: the run's, from train_cnn's cnn_info.json).

    Returns:
        dict: `frame_indices (n,)` 0-based frames fed, `probs (n, N)` the final stage's
        per-frame probabilities, `pooled (n, N)` their running mean (the prediction),
        `stage1_probs (n, N)` (MS-LSTM only, else None), `predicted (n,)` pooled argmax,
        `predicted_names`, `confidence (n,)` pooled probability of the predicted class,
        `class_names`, `stage`, `plot` (path or None).
    """
    run = resolve_run(config, run)
    if fold is None:
        fold = _only_fold(run)
    name = fold_name(fold)
    if model is None:
        model = load_lstm(run.lstm_dir(name) / BEST_FILENAME)
    if extractor is None:
        from msl_keras.stages.train_cnn import load_extractor

        extractor = load_extractor(config, run, name)
    num_classes = int(model.num_classes)
    if class_names is None:
        class_names = _class_names(run, name, num_classes)
    anticipator = StreamingAnticipator(extractor, model, config.cnn.input_size)

    T = int(config.data.num_steps)
    indices = None
    if config.data.frame_selection == "uniform":
        indices = select_frames(
            count_frames(video_path),
            T,
            mode="uniform",
            observed_ratio=config.data.observed_ratio,
        )
    limit = T if max_frames is None else int(max_frames)

    frame_indices, probs, pooled, stage1 = [], [], [], []
    for index, frame in iter_frames(video_path, indices, max_frames=limit):
        p, p_pooled, p1 = anticipator.update(frame)
        frame_indices.append(index)
        probs.append(p)
        pooled.append(p_pooled)
        stage1.append(p1)
        if print_fn is not None:
            k = int(np.argmax(p_pooled))
            print_fn(
                f"frame {index + 1:3d}  anticipated: {class_names[k]} (p={p_pooled[k]:.2f})"
            )
    pooled = np.stack(pooled)
    predicted = pooled.argmax(axis=-1)
    result = {
        "video": str(video_path),
        "fold": name,
        "stage": "stage2" if anticipator.multi_stage else "stage1",
        "frame_indices": np.asarray(frame_indices, dtype=np.int64),
        "probs": np.stack(probs),
        "pooled": pooled,
        "stage1_probs": np.stack(stage1) if anticipator.multi_stage else None,
        "predicted": predicted,
        "predicted_names": [class_names[k] for k in predicted],
        "confidence": pooled[np.arange(len(pooled)), predicted],
        "class_names": list(class_names),
        "plot": None,
    }
    if plot_path is not None:
        result["plot"] = str(
            plot_stream_probabilities(
                pooled,
                class_names,
                plot_path,
                true_label=true_label,
                title=f"{Path(video_path).name}: pooled probabilities",
            )
        )
    return result


def predict_from_run_dir(
    video_path,
    run_dir,
    fold=None,
    lstm=None,
    max_frames=None,
    plot_path=None,
    print_fn=print,
):
    """`predict_video` with the models of an existing run folder (what the CLI calls).

    Args:
        video_path: a video file or a folder of frames.
        run_dir: a run folder made by the pipeline (`<output_dir>/<config.run_name()>`).
        fold: which fold's models (default: the first fold, by name, with a trained LSTM).
        lstm: which LSTM subfolder of `<fold>/lstm/` (default: the only one; the first by
            name, with a note, when there are several).
        max_frames, plot_path, print_fn: as `predict_video`.

    Returns:
        The `predict_video` result; its config is the LSTM folder's `config.json`.
    """
    from msl_keras.config import config_from_dict
    from msl_keras.runs import RunDirectory

    run = RunDirectory.open(run_dir)
    trained = sorted(p.name for p in run.root.iterdir() if (p / "lstm").is_dir())
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
            print_fn(f"using LSTM '{lstm}' (also here: {others}; pass lstm=...)")
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
    return predict_video(
        video_path,
        config,
        run,
        fold,
        plot_path=plot_path,
        print_fn=print_fn,
        max_frames=max_frames,
        model=load_lstm(lstm_dir / BEST_FILENAME),
    )


def _only_fold(run):
    folds = sorted(p.name for p in run.root.iterdir() if (p / "lstm").is_dir())
    if len(folds) != 1:
        raise ConfigError(
            f"Pass fold=...: run '{run.root}' has {len(folds)} folds with a trained LSTM"
            + (f" ({', '.join(folds)})." if folds else ".")
        )
    return folds[0]
