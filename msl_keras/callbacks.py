"""Training callbacks of the LSTM stage: model selection on validation, and resumable epochs.

`ValidationAnticipationAccuracy` measures, after every epoch, the mean over steps t = 1..T
of the anticipation accuracy on the VALIDATION clips (temporal average pooling, paper
Sec. 3.2.2; stage 2 of the MS-LSTM) with one causal forward pass, logs it as
`val_anticipation_accuracy` and saves the best model. Model selection never looks at the
test clips (the original code's defect #9): the callback only ever receives the arrays it
is given, and `pipeline/lstm_training.py` gives it the validation clips.

`EpochCheckpoint` saves the last model (weights + optimizer state) and a small JSON state
after every epoch, so an interrupted run continues where it stopped.

Epochs are numbered from 1 in every file and message (`best_epoch` in `state.json` and
`results.json`, the `epoch` column of the CSV histories written by `EpochCSVLogger`), as
Keras' progress lines print them: epoch 1 is the first pass over the training clips.
"""

import json
import os
from pathlib import Path

import keras
import numpy as np

from msl_keras import metrics

MONITOR = "val_anticipation_accuracy"


def _atomic_save_model(model, path):
    """`model.save(path)` through a temporary file, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _atomic_write_json(mapping, path):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(mapping, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def causal_forward(model, features, batch_size=32):
    """Runs `model` once over whole sequences, in batches, in inference mode.

    The LSTMs are causal, so the output at step t only depends on steps 1..t: one pass
    gives the prediction for every number of observed steps (re-running each prefix is
    never needed; the original code's defect #8). Padded steps after a clip's end do not
    change its valid outputs.

    Args:
        model: a `MultiStageLSTM` or `SingleStageLSTM` (any model returning a dict of
            `(batch, time, N)` probabilities).
        features: `{"context": (clips, T, Dc), "action": (clips, T, Da)}` numpy arrays.
        batch_size: clips per forward call.

    Returns:
        `{output_name: (clips, T, N) float32 numpy}`, e.g. `{"stage1": ..., "stage2": ...}`.
    """
    import tensorflow as tf

    forward = getattr(model, "_msl_causal_forward", None)
    if forward is None:

        @tf.function(reduce_retracing=True)
        def forward(x):
            return model(x, training=False)

        model._msl_causal_forward = forward
    keys = sorted(features)
    count = len(features[keys[0]])
    outputs = {}
    batch_size = max(1, min(int(batch_size), count))
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        batch = {}
        for k in keys:
            value = np.asarray(features[k][start : start + size], "float32")
            if size < batch_size:  # pad the last batch: one trace per model
                pad = np.zeros((batch_size - size,) + value.shape[1:], "float32")
                value = np.concatenate([value, pad])
            batch[k] = tf.convert_to_tensor(value)
        result = forward(batch)
        if not isinstance(result, dict):
            result = {"stage1": result}
        for name, value in result.items():
            outputs.setdefault(name, []).append(
                np.asarray(value, dtype=np.float32)[:size]
            )
    return {name: np.concatenate(parts, axis=0) for name, parts in outputs.items()}


def final_stage(outputs):
    """The name of the model's prediction: `"stage2"` for the MS-LSTM, else `"stage1"`."""
    return "stage2" if "stage2" in outputs else "stage1"


class ValidationAnticipationAccuracy(keras.callbacks.Callback):
    """Logs the validation anticipation accuracy each epoch and keeps the best model.

    The score is `mean_t accuracy_vs_steps(pooled=True)[t]`: the accuracy of the
    temporally average-pooled prediction after t observed steps, averaged over
    t = 1..T, on the clips given here (the validation clips; never test).

    Args:
        features: `{"context": (clips, T, Dc), "action": (clips, T, Da)}` validation
            features.
        labels: `(clips,)` int class indices.
        lengths: `(clips,)` valid steps of each clip.
        filepath: where the best model is saved (`best.keras`); None: do not save.
        stage: output scored; None: `"stage2"` when the model has it, else `"stage1"`.
        batch_size: clips per forward call.
        clip_ids: optional names of the clips (kept for reports and checks).
        initial_best: best score of an earlier, interrupted run (resume).
        initial_best_epoch: its epoch (1-based).
        verbose: 1 prints the score and each new best.

    Attributes:
        best: the best score so far (`-inf` before the first epoch).
        best_epoch: its epoch, counted from 1, or None.
        last: the latest score.
    """

    def __init__(
        self,
        features,
        labels,
        lengths,
        filepath=None,
        stage=None,
        batch_size=32,
        clip_ids=None,
        initial_best=None,
        initial_best_epoch=None,
        verbose=1,
    ):
        super().__init__()
        self.features = {k: np.asarray(v) for k, v in features.items()}
        self.labels = np.asarray(labels, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        count = len(self.labels)
        if count == 0:
            raise ValueError(
                "ValidationAnticipationAccuracy needs at least one validation clip. "
                "Received: 0 clips. Set data.validation_fraction > 0."
            )
        for name, value in self.features.items():
            if len(value) != count:
                raise ValueError(
                    f"features[{name!r}] has {len(value)} clips but labels has {count}."
                )
        if len(self.lengths) != count:
            raise ValueError(
                f"lengths has {len(self.lengths)} clips but labels has {count}."
            )
        self.filepath = None if filepath is None else Path(filepath)
        self.stage = stage
        self.batch_size = int(batch_size)
        self.clip_ids = None if clip_ids is None else list(clip_ids)
        self.best = -np.inf if initial_best is None else float(initial_best)
        self.best_epoch = initial_best_epoch
        self.last = None
        self.verbose = verbose

    def score(self, model=None):
        """The mean pooled anticipation accuracy of `model` (default: the trained one)."""
        outputs = causal_forward(model or self.model, self.features, self.batch_size)
        stage = self.stage or final_stage(outputs)
        if stage not in outputs:
            raise ValueError(
                f"The model has no output {stage!r}. Received outputs: {sorted(outputs)}"
            )
        curve = metrics.accuracy_vs_steps(
            outputs[stage], self.labels, self.lengths, pooled=True
        )
        return float(np.mean(curve))

    def on_epoch_end(self, epoch, logs=None):
        value = self.score()
        self.last = value
        if logs is not None:
            logs[MONITOR] = value
        improved = value > self.best
        if improved:
            self.best, self.best_epoch = value, int(epoch) + 1
            if self.filepath is not None:
                _atomic_save_model(self.model, self.filepath)
        if self.verbose:
            note = (
                f" (best; saved to {self.filepath})"
                if improved and self.filepath
                else ""
            )
            print(f"epoch {epoch + 1}: {MONITOR} = {value:.4f}{note}")


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """`keras.callbacks.CSVLogger` whose `epoch` column counts from 1 (Keras' own counts
    from 0), so a history row and `best_epoch` name an epoch the same way."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(int(epoch) + 1, logs)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` and `state.json` after every epoch, for resuming.

    `last.keras` holds the model, its weights and its optimizer state (momentum,
    iterations); `state.json` holds `{"epochs_done", "best", "best_epoch"}` (epochs
    counted from 1), the best taken from `selection` (a `ValidationAnticipationAccuracy`)
    when given, and the entries of `info`. Both files are replaced atomically,
    `state.json` last, so the state never points past the model.

    Args:
        directory: the LSTM run folder.
        selection: optional `ValidationAnticipationAccuracy` whose best is recorded.
        info: optional JSON-able mapping written into every state (what the model is
            trained on, e.g. `{"model_selection": "refit", "trained_on": {...}}`).
    """

    MODEL_FILENAME = "last.keras"
    STATE_FILENAME = "state.json"

    def __init__(self, directory, selection=None, info=None):
        super().__init__()
        self.directory = Path(directory)
        self.selection = selection
        self.info = dict(info or {})

    def on_epoch_end(self, epoch, logs=None):
        _atomic_save_model(self.model, self.directory / self.MODEL_FILENAME)
        state = {**self.info, "epochs_done": int(epoch) + 1}
        if self.selection is not None and self.selection.best_epoch is not None:
            state["best"] = float(self.selection.best)
            state["best_epoch"] = int(self.selection.best_epoch)
        _atomic_write_json(state, self.directory / self.STATE_FILENAME)

    @classmethod
    def read_state(cls, directory):
        """The saved state of `directory`, or None when there is none to resume from."""
        directory = Path(directory)
        path = directory / cls.STATE_FILENAME
        if not path.is_file() or not (directory / cls.MODEL_FILENAME).is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
