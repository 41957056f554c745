"""The small pieces `fit` and `predict` need beyond Keras' own, for both stages.

Resume and model selection are Keras' callbacks (`pipeline/lstm_training.py`). Epochs
are numbered from 1 in every file and message, as Keras' progress lines print them.
"""

import keras
import numpy as np


def causal_forward(model, features, batch_size=32):
    """Every step's output of `model` (an LSTM) run once over whole sequences.

    The LSTMs are causal, so one pass gives the prediction for every number of observed
    steps (the original code re-ran each prefix, its defect #8); padded steps after a
    clip's end do not change its valid outputs.

    Args:
        model: a model returning a dict of `(batch, time, N)` probabilities, or one.
        features: `{"context": (clips, T, Dc), "action": (clips, T, Da)}` numpy arrays.

    Returns:
        `{output_name: (clips, T, N) float32}`, e.g. `{"stage1": ..., "stage2": ...}`.
    """
    inputs = {k: np.asarray(v, "float32") for k, v in features.items()}
    if len(next(iter(inputs.values()))) <= int(batch_size):
        # One batch: `predict_on_batch` skips `predict`'s per-call setup of an iterator
        # (310 ms against 7 ms for one 50-step clip of a 64-unit MS-LSTM, measured on
        # the 2-core machine), which the per-clip timings of the benchmarks would count.
        outputs = model.predict_on_batch(inputs)
    else:
        outputs = model.predict(inputs, batch_size=int(batch_size), verbose=0)
    if not isinstance(outputs, dict):
        outputs = {"stage1": outputs}
    return {name: np.asarray(value, np.float32) for name, value in outputs.items()}


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """`keras.callbacks.CSVLogger` counting epochs from 1, as `best_epoch` does."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(int(epoch) + 1, logs)
