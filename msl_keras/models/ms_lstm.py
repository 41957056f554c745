"""The multi-stage LSTM (paper Sec. 3.2.2, Fig. 2) and the single-stage baselines."""

import keras
import tensorflow as tf
from keras import ops

from msl_keras.models.fast_ops import lstm_layer
from msl_keras.models.precision import set_compute_dtype

STREAMS = ("context", "action")


def _check_mask(mask, sequence):
    if isinstance(mask, dict):
        # Keras passes the masks attached to each input (None when there are none).
        masks = [m for m in mask.values() if m is not None]
        mask = masks[0] if masks else None
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if len(mask.shape) != 2:
        raise ValueError(
            "`mask` must be (batch, time) booleans. Received: "
            f"mask.shape={mask.shape}, inputs.shape={sequence.shape}"
        )
    return ops.cast(mask, "bool")


def _kernel_rows(model, lstm):
    """Input size of `lstm` (rows of its kernel); the model must be built."""
    if not model.built:
        raise ValueError(
            f"{model.name} is not built: its input sizes are not known yet. Call "
            "`build` (or the model) first."
        )
    return int(lstm.cell.kernel.shape[0])


def _get_stream(inputs, key, model_name):
    if not isinstance(inputs, dict) or key not in inputs:
        received = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise ValueError(
            f"{model_name} expects a dict with the key '{key}' "
            f"((batch, time, features)). Received: {received}"
        )
    return inputs[key]


class StagedLSTM(keras.Model):
    """What both LSTMs share: stage 1 (`LSTM(units)` -> dropout -> softmax over the
    first input stream), the states of `step`, the config (see `MultiStageLSTM`)."""

    def __init__(self, num_classes, units, dropout, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.units = int(units)
        self.dropout = float(dropout)
        self.stage1_lstm, self.stage1_dropout, self.stage1_classifier = self._stage(1)

    def _stage(self, n):
        """`(LSTM, Dropout, softmax Dense)` of stage `n`, made in this order."""
        return (
            lstm_layer(self.units, name=f"stage{n}_lstm"),
            keras.layers.Dropout(self.dropout, name=f"stage{n}_dropout"),
            keras.layers.Dense(
                self.num_classes, activation="softmax", name=f"stage{n}_classifier"
            ),
        )

    def _select(self, inputs):
        """The entry of the first input stream; a single stream may be passed bare."""
        if isinstance(inputs, dict) or len(self.input_streams) > 1:
            return _get_stream(inputs, self.input_streams[0], self.name)
        return inputs

    def build(self, input_shape):
        shape = tuple(self._select(input_shape))
        self.stage1_lstm.build(shape)
        self.stage1_classifier.build(shape[:-1] + (self.units,))
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(self._select(input_shape))[:-1] + (self.num_classes,)
        return {stage: shape for stage in self.stage_names}

    def compute_mask(self, inputs, mask=None):
        mask = _check_mask(mask, self._select(inputs))
        return None if mask is None else {stage: mask for stage in self.stage_names}

    def initial_state(self, batch_size):
        """Zero states `[h1, c1, ...]` (two per stage), each `(batch_size, units)`."""
        zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
        return [zeros] * (2 * len(self.stage_names))

    def _run_step(self, inputs, states):
        """`step` on tensors of `compute_dtype`, built on first use, as one graph.

        A streaming step is a few small ops: run eagerly, their dispatch costs more
        than the matmuls at small sizes (1.7 ms vs 0.1 ms per step at 16 units), so
        it runs them as one traced `tf.function`, reused for every frame (any batch).
        """
        inputs = [ops.convert_to_tensor(x, dtype=self.compute_dtype) for x in inputs]
        if not self.built:
            streams = zip(self.input_streams, inputs)
            self.build({s: (None, None, x.shape[-1]) for s, x in streams})
        if "_msl_step" not in self.__dict__:
            self.__dict__["_msl_step"] = tf.function(
                self._step_graph, reduce_retracing=True
            )
        states = [ops.convert_to_tensor(s, dtype=self.compute_dtype) for s in states]
        *probs, new_states = self.__dict__["_msl_step"](*inputs, states)
        return (*probs, list(new_states))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "units": self.units,
            "dropout": self.dropout,
            "compute_dtype": self.compute_dtype,
        }


@keras.saving.register_keras_serializable(package="msl_keras")
class MultiStageLSTM(StagedLSTM):
    """Multi-stage LSTM: context first, then context + action (Fig. 2).

    Stage 1: `LSTM(units)` over the context-aware features -> dropout -> softmax,
    output `"stage1"`. Stage 2: `LSTM(units)` over the (dropped out) stage-1 hidden
    sequence concatenated with the action-aware features -> dropout -> softmax, output
    `"stage2"`, the prediction. Both are supervised at every step with the
    anticipation loss (Eq. 1) or a baseline (`msl_keras.losses`). The recurrence is
    causal: padded steps at the end of a clip never change valid steps' outputs.

    `units`: hidden units of each LSTM (2048 in the paper); `dropout` after each (0.5,
    the authors' code); `compute_dtype`: `"float32"`, `"bfloat16"` or `"float16"`
    (`msl_keras.models.precision`).

    Call: `{"context": (batch, time, Dc), "action": (batch, time, Da)}`, an optional
    `(batch, time)` bool `mask` (True on valid steps) -> `{"stage1": (batch, time, N),
    "stage2": (batch, time, N)}` probabilities. Streaming gives the same numbers:

    >>> states = model.initial_state(batch_size=1)
    >>> for context_t, action_t in frames:  # (1, Dc), (1, Da)
    ...     probs1, probs2, states = model.step(context_t, action_t, states)
    """

    input_streams = STREAMS  # the keys of the input dict it reads
    stage_names = ("stage1", "stage2")  # the keys of the output dict, one per stage

    def __init__(
        self,
        num_classes,
        units=2048,
        dropout=0.5,
        compute_dtype="float32",
        name="ms_lstm",
        **kwargs,
    ):
        super().__init__(num_classes, units, dropout, name, **kwargs)
        self.stage2_lstm, self.stage2_dropout, self.stage2_classifier = self._stage(2)
        set_compute_dtype(self, compute_dtype)

    def build(self, input_shape):
        super().build(input_shape)
        action = tuple(_get_stream(input_shape, "action", self.name))
        self.stage2_lstm.build(action[:-1] + (self.units + action[-1],))
        self.stage2_classifier.build(action[:-1] + (self.units,))

    def call(self, inputs, mask=None, training=None):
        context = self._select(inputs)
        action = _get_stream(inputs, "action", self.name)
        mask = _check_mask(mask, context)
        hidden1 = self.stage1_lstm(context, mask=mask, training=training)
        hidden1 = self.stage1_dropout(hidden1, training=training)  # (b, T, units)
        hidden2 = self.stage2_lstm(
            ops.concatenate([hidden1, ops.cast(action, hidden1.dtype)], axis=-1),
            mask=mask,
            training=training,
        )
        hidden2 = self.stage2_dropout(hidden2, training=training)
        return {
            "stage1": self.stage1_classifier(hidden1),
            "stage2": self.stage2_classifier(hidden2),
        }

    @property
    def input_dims(self):
        """`{stream: feature size}` of a built model."""
        return {
            "context": _kernel_rows(self, self.stage1_lstm),
            # stage 2 reads [stage-1 hidden (units), action]
            "action": _kernel_rows(self, self.stage2_lstm) - self.units,
        }

    def step(self, context_t, action_t, states):
        """One step of both stages, no dropout: `(batch, Dc)`, `(batch, Da)` features
        and `[h1, c1, h2, c2]` -> `(probs1 (batch, N), probs2 (batch, N), states)`."""
        return self._run_step([context_t, action_t], states)

    def _step_graph(self, context_t, action_t, states):
        hidden1, (h1, c1) = self.stage1_lstm.cell(
            context_t, list(states[:2]), training=False
        )
        hidden2, (h2, c2) = self.stage2_lstm.cell(
            ops.concatenate([hidden1, action_t], axis=-1),
            list(states[2:]),
            training=False,
        )
        probs1 = self.stage1_classifier(hidden1)
        probs2 = self.stage2_classifier(hidden2)
        return probs1, probs2, [h1, c1, h2, c2]


@keras.saving.register_keras_serializable(package="msl_keras")
class SingleStageLSTM(StagedLSTM):
    """One LSTM over one feature stream, the context-aware or action-aware LSTM
    baselines of Table 4: `LSTM(units)` -> dropout -> softmax, output `"stage1"`.

    Arguments as `MultiStageLSTM`, and `stream`, `"context"` or `"action"`: the key of
    the input dict it reads (other keys are ignored, so one dataset feeds both models).

    Call: `{stream: (batch, time, D)}` or the tensor itself, an optional `mask` ->
    `{"stage1": (batch, time, N)}`. `step(features_t, [h, c])` -> `(probs, states)`.
    """

    stage_names = ("stage1",)

    def __init__(
        self,
        num_classes,
        units=2048,
        dropout=0.5,
        stream="context",
        compute_dtype="float32",
        name=None,
        **kwargs,
    ):
        if stream not in STREAMS:
            raise ValueError(
                f"`stream` must be one of {STREAMS}. Received: stream={stream!r}"
            )
        name = name or f"{stream}_lstm"
        super().__init__(num_classes, units, dropout, name, **kwargs)
        self.stream = stream
        set_compute_dtype(self, compute_dtype)

    @property
    def input_streams(self):
        return (self.stream,)

    def call(self, inputs, mask=None, training=None):
        features = self._select(inputs)
        hidden = self.stage1_lstm(
            features, mask=_check_mask(mask, features), training=training
        )
        hidden = self.stage1_dropout(hidden, training=training)
        return {"stage1": self.stage1_classifier(hidden)}

    @property
    def input_dims(self):
        return {self.stream: _kernel_rows(self, self.stage1_lstm)}

    def step(self, features_t, states):
        """One step, no dropout: `(batch, D)` features (or a dict holding them under
        `stream`) and `[h, c]` -> `(probs (batch, N), states)`."""
        return self._run_step([self._select(features_t)], states)

    def _step_graph(self, features_t, states):
        hidden, (h, c) = self.stage1_lstm.cell(features_t, list(states), training=False)
        return self.stage1_classifier(hidden), [h, c]

    def get_config(self):
        return {**super().get_config(), "stream": self.stream}


def lstm_from_config(lstm, num_classes):
    """The unbuilt LSTM a `config.LSTMConfig` names: a `MultiStageLSTM` for
    `model="ms_lstm"`, else a `SingleStageLSTM` reading the stream `lstm.model`."""
    options = dict(
        units=lstm.units, dropout=lstm.dropout, compute_dtype=lstm.compute_dtype
    )
    if lstm.model == "ms_lstm":
        return MultiStageLSTM(num_classes, **options)
    return SingleStageLSTM(num_classes, stream=lstm.model, **options)
