"""The multi-stage LSTM (paper Sec. 3.2.2, Fig. 2) and the single-stage baselines."""

import keras
import tensorflow as tf
from keras import ops

from msl_keras.errors import check_choice
from msl_keras.models.fast_ops import lstm_layer
from msl_keras.models.precision import set_compute_dtype

STREAMS = ("context", "action")


def _check_mask(mask, sequence):
    if isinstance(mask, dict):
        # Keras passes the masks attached to each input (None when there are none).
        mask = next((m for m in mask.values() if m is not None), None)
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if len(mask.shape) != 2:
        raise ValueError(
            "`mask` must be (batch, time) booleans. Received: "
            f"mask.shape={mask.shape}, inputs.shape={sequence.shape}"
        )
    return ops.cast(mask, "bool")


class StagedLSTM(keras.Model):
    """What both LSTMs share: stage n is `LSTM(units)` -> dropout -> softmax over the
    stream `input_streams[n - 1]`, for n > 1 concatenated after stage n - 1's hidden
    sequence; shapes, masks, states, `step` and config (see `MultiStageLSTM`)."""

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

    def _stages(self):
        parts = ("lstm", "dropout", "classifier")
        return [[getattr(self, f"{s}_{p}") for p in parts] for s in self.stage_names]

    def _streams(self, inputs):
        """The entries of `input_streams` in order; a single stream may come bare."""
        if not isinstance(inputs, dict) and len(self.input_streams) == 1:
            return [inputs]
        keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        for key in self.input_streams:
            if not isinstance(inputs, dict) or key not in inputs:
                raise ValueError(
                    f"{self.name} expects a dict with the key '{key}' "
                    f"((batch, time, features)). Received: {keys}"
                )
        return [inputs[key] for key in self.input_streams]

    def build(self, input_shape):
        shapes, width = self._streams(input_shape), 0  # width: previous stage's hidden
        for (lstm, _, classifier), shape in zip(self._stages(), shapes):
            shape = tuple(shape)
            lstm.build(shape[:-1] + (width + shape[-1],))
            classifier.build(shape[:-1] + (self.units,))
            width = self.units
        self.built = True

    def call(self, inputs, mask=None, training=None):
        streams = self._streams(inputs)
        mask = _check_mask(mask, streams[0])
        probs, hidden = [], None
        for (lstm, dropout, classifier), x in zip(self._stages(), streams):
            if hidden is not None:  # stage n > 1 also reads stage n - 1's hidden
                x = ops.concatenate([hidden, ops.cast(x, hidden.dtype)], axis=-1)
            hidden = dropout(lstm(x, mask=mask, training=training), training=training)
            probs.append(classifier(hidden))  # (b, T, N)
        return dict(zip(self.stage_names, probs))

    def compute_output_shape(self, input_shape):
        shape = tuple(self._streams(input_shape)[0])[:-1] + (self.num_classes,)
        return {stage: shape for stage in self.stage_names}

    def compute_mask(self, inputs, mask=None):
        mask = _check_mask(mask, self._streams(inputs)[0])
        return None if mask is None else {stage: mask for stage in self.stage_names}

    @property
    def input_dims(self):
        """`{stream: feature size}` of a built model (rows of its LSTM kernels)."""
        if not self.built:
            raise ValueError(
                f"{self.name} is not built: its input sizes are not known yet. Call "
                "`build` (or the model) first."
            )
        rows = [int(lstm.cell.kernel.shape[0]) for lstm, _, _ in self._stages()]
        # stage n > 1 reads [stage n - 1's hidden sequence (units), its stream]
        rows = rows[:1] + [r - self.units for r in rows[1:]]
        return dict(zip(self.input_streams, rows))

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

    def _step_graph(self, *inputs):
        """One step of every stage, no dropout: `(*features_t, states)` ->
        `(*probs, new states)`, states `[h1, c1, h2, c2, ...]`."""
        *features, states = inputs
        probs, new_states, hidden = [], [], None
        for n, ((lstm, _, classifier), x) in enumerate(zip(self._stages(), features)):
            if hidden is not None:
                x = ops.concatenate([hidden, x], axis=-1)
            hidden, (h, c) = lstm.cell(x, states[2 * n : 2 * n + 2])
            probs.append(classifier(hidden))
            new_states += [h, c]
        return (*probs, new_states)

    def get_config(self):
        keys = ("num_classes", "units", "dropout", "compute_dtype")
        return {**super().get_config(), **{k: getattr(self, k) for k in keys}}


@keras.saving.register_keras_serializable(package="msl_keras")
class MultiStageLSTM(StagedLSTM):
    """Multi-stage LSTM: context first, then context + action (Fig. 2).

    Stage 1: `LSTM(units)` over the context-aware features -> dropout -> softmax,
    output `"stage1"`. Stage 2: `LSTM(units)` over the (dropped out) stage-1 hidden
    sequence concatenated with the action-aware features -> dropout -> softmax, output
    `"stage2"`, the prediction. Both are supervised at every step (`msl_keras.losses`).
    The recurrence is causal: padding at the end of a clip never changes valid steps.
    `units`: 2048 in the paper; `dropout` after each LSTM: 0.5 as the authors' code;
    `compute_dtype`: see `msl_keras.models.precision`.

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
        self, num_classes, units=2048, dropout=0.5, compute_dtype="float32",
        name="ms_lstm", **kwargs,
    ):  # fmt: skip
        super().__init__(num_classes, units, dropout, name, **kwargs)
        self.stage2_lstm, self.stage2_dropout, self.stage2_classifier = self._stage(2)
        set_compute_dtype(self, compute_dtype)

    def step(self, context_t, action_t, states):
        """One step of both stages, no dropout: `(batch, Dc)`, `(batch, Da)` features
        and `[h1, c1, h2, c2]` -> `(probs1 (batch, N), probs2 (batch, N), states)`."""
        return self._run_step([context_t, action_t], states)


@keras.saving.register_keras_serializable(package="msl_keras")
class SingleStageLSTM(StagedLSTM):
    """One LSTM over one feature stream, the context-aware or action-aware LSTM
    baselines of Table 4: `LSTM(units)` -> dropout -> softmax, output `"stage1"`.
    Arguments as `MultiStageLSTM`, and `stream`: the key of the input dict it reads
    (`"context"` or `"action"`; other keys are ignored, so one dataset feeds both).

    Call: `{stream: (batch, time, D)}` or the tensor itself, an optional `mask` ->
    `{"stage1": (batch, time, N)}`. `step(features_t, [h, c])` -> `(probs, states)`.
    """

    stage_names = ("stage1",)

    def __init__(
        self, num_classes, units=2048, dropout=0.5, stream="context",
        compute_dtype="float32", name=None, **kwargs,
    ):  # fmt: skip
        check_choice("stream", stream, STREAMS)
        name = name or f"{stream}_lstm"
        super().__init__(num_classes, units, dropout, name, **kwargs)
        self.stream = stream
        set_compute_dtype(self, compute_dtype)

    @property
    def input_streams(self):
        return (self.stream,)

    def step(self, features_t, states):
        """One step, no dropout: `(batch, D)` features (or a dict holding them under
        `stream`) and `[h, c]` -> `(probs (batch, N), states)`."""
        return self._run_step(self._streams(features_t), states)

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
