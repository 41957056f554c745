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
            f"`mask` must be (batch, time) booleans. Received: mask.shape={mask.shape}, "
            f"inputs.shape={sequence.shape}"
        )
    return ops.cast(mask, "bool")


def _compiled(model, method):
    """`model.<method>` traced once into a graph (`tf.function`).

    A streaming step is a few small ops: run eagerly, their dispatch costs more than
    the matmuls at small sizes (1.7 ms vs 0.1 ms per step at 16 units), so `step`
    runs them as one traced function, reused for every frame (any batch size).
    """
    cache = model.__dict__.setdefault("_msl_compiled", {})
    if method not in cache:
        cache[method] = tf.function(getattr(model, method), reduce_retracing=True)
    return cache[method]


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
            f"{model_name} expects a dict with the key '{key}' ((batch, time, features)). "
            f"Received: {received}"
        )
    return inputs[key]


@keras.saving.register_keras_serializable(package="msl_keras")
class MultiStageLSTM(keras.Model):
    """Multi-stage LSTM: context first, then context + action (Fig. 2).

    Stage 1: `LSTM(units)` over the context-aware features -> dropout -> softmax,
    output `"stage1"`. Stage 2: `LSTM(units)` over the concatenation of the (dropped
    out) stage-1 hidden sequence and the action-aware features -> dropout -> softmax,
    output `"stage2"`, the model's prediction. Both outputs are supervised at every
    step with the anticipation loss (Eq. 1) or a baseline (`msl_keras.losses`).

    The recurrence is causal, so steps padded at the end of a clip never change the
    outputs of valid steps; `mask` also stops the states on padded steps.

    Args:
        num_classes: int, number of actions `N`.
        units: int, hidden units of each LSTM (2048 in the paper).
        dropout: float, dropout rate after each LSTM (0.5, the authors' code).
        compute_dtype: `"float32"`, `"bfloat16"` or `"float16"`: the Keras policy of
            every layer (`msl_keras.models.precision`; weights and the softmax outputs
            stay float32; float16 compiles with loss scaling).
        name: model name.

    Call arguments:
        inputs: `{"context": (batch, time, Dc), "action": (batch, time, Da)}`.
        mask: optional `(batch, time)` bool, True on valid steps.
        training: bool, enables dropout.

    Returns:
        `{"stage1": (batch, time, N), "stage2": (batch, time, N)}` probabilities.

    Streaming (one frame at a time, states kept between calls; same numbers as `call`
    on the whole sequence):

    >>> model = MultiStageLSTM(num_classes=101)
    >>> states = model.initial_state(batch_size=1)
    >>> for context_t, action_t in frames:  # (1, Dc), (1, Da)
    ...     probs1, probs2, states = model.step(context_t, action_t, states)
    """

    def __init__(
        self,
        num_classes,
        units=2048,
        dropout=0.5,
        compute_dtype="float32",
        name="ms_lstm",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.units = int(units)
        self.dropout = float(dropout)
        self.stage1_lstm = lstm_layer(self.units, name="stage1_lstm")
        self.stage1_dropout = keras.layers.Dropout(self.dropout, name="stage1_dropout")
        self.stage1_classifier = keras.layers.Dense(
            self.num_classes, activation="softmax", name="stage1_classifier"
        )
        self.stage2_lstm = lstm_layer(self.units, name="stage2_lstm")
        self.stage2_dropout = keras.layers.Dropout(self.dropout, name="stage2_dropout")
        self.stage2_classifier = keras.layers.Dense(
            self.num_classes, activation="softmax", name="stage2_classifier"
        )
        set_compute_dtype(self, compute_dtype)

    def build(self, input_shape):
        context = tuple(_get_stream(input_shape, "context", self.name))
        action = tuple(_get_stream(input_shape, "action", self.name))
        self.stage1_lstm.build(context)
        self.stage1_classifier.build(context[:-1] + (self.units,))
        self.stage2_lstm.build(action[:-1] + (self.units + action[-1],))
        self.stage2_classifier.build(action[:-1] + (self.units,))
        self.built = True

    def call(self, inputs, mask=None, training=None):
        context = _get_stream(inputs, "context", self.name)
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

    def compute_output_shape(self, input_shape):
        context = tuple(_get_stream(input_shape, "context", self.name))
        shape = context[:-1] + (self.num_classes,)
        return {"stage1": shape, "stage2": shape}

    def compute_mask(self, inputs, mask=None):
        mask = _check_mask(mask, _get_stream(inputs, "context", self.name))
        return None if mask is None else {"stage1": mask, "stage2": mask}

    @property
    def input_streams(self):
        """The keys of the input dict it reads: `("context", "action")`."""
        return STREAMS

    @property
    def stage_names(self):
        """The keys of the output dict, one per stage: `("stage1", "stage2")`."""
        return ("stage1", "stage2")

    @property
    def input_dims(self):
        """`{stream: feature size}` of a built model, for each of `input_streams`."""
        return {
            "context": _kernel_rows(self, self.stage1_lstm),
            # stage 2 reads [stage-1 hidden (units), action]
            "action": _kernel_rows(self, self.stage2_lstm) - self.units,
        }

    def initial_state(self, batch_size):
        """Zero states `[h1, c1, h2, c2]`, each `(batch_size, units)`."""
        zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
        return [zeros, zeros, zeros, zeros]

    def step(self, context_t, action_t, states):
        """One LSTM step of both stages (inference: no dropout).

        Args:
            context_t: `(batch, Dc)` context-aware features of the new frame.
            action_t: `(batch, Da)` action-aware features of the new frame.
            states: `[h1, c1, h2, c2]` from `initial_state` or the previous step.

        Returns:
            `(probs1 (batch, N), probs2 (batch, N), new_states)`.
        """
        context_t = ops.convert_to_tensor(context_t, dtype=self.compute_dtype)
        action_t = ops.convert_to_tensor(action_t, dtype=self.compute_dtype)
        if not self.built:
            self.build(
                {
                    "context": (None, None, context_t.shape[-1]),
                    "action": (None, None, action_t.shape[-1]),
                }
            )
        states = [ops.convert_to_tensor(s, dtype=self.compute_dtype) for s in states]
        probs1, probs2, new_states = _compiled(self, "_step_graph")(
            context_t, action_t, states
        )
        return probs1, probs2, list(new_states)

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

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "units": self.units,
                "dropout": self.dropout,
                "compute_dtype": self.compute_dtype,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="msl_keras")
class SingleStageLSTM(keras.Model):
    """One LSTM over one feature stream: the context-aware or action-aware LSTM
    baselines of Table 4. `LSTM(units)` -> dropout -> softmax, output `"stage1"`.

    Args:
        num_classes: int, number of actions `N`.
        units: int, hidden units (2048 in the paper).
        dropout: float, dropout rate after the LSTM.
        compute_dtype: as `MultiStageLSTM`.
        stream: `"context"` or `"action"`: which key of the input dict is read (the
            other key, if present, is ignored, so the same dataset feeds both models).
        name: model name.

    Call arguments:
        inputs: `{stream: (batch, time, D)}` (other keys ignored) or the tensor itself.
        mask: optional `(batch, time)` bool, True on valid steps.
        training: bool, enables dropout.

    Returns:
        `{"stage1": (batch, time, N)}` probabilities.

    Example:

    >>> model = SingleStageLSTM(num_classes=101, stream="action")
    >>> states = model.initial_state(1)
    >>> probs, states = model.step(action_t, states)  # (1, N)
    """

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
        super().__init__(name=name or f"{stream}_lstm", **kwargs)
        self.num_classes = int(num_classes)
        self.units = int(units)
        self.dropout = float(dropout)
        self.stream = stream
        self.stage1_lstm = lstm_layer(self.units, name="stage1_lstm")
        self.stage1_dropout = keras.layers.Dropout(self.dropout, name="stage1_dropout")
        self.stage1_classifier = keras.layers.Dense(
            self.num_classes, activation="softmax", name="stage1_classifier"
        )
        set_compute_dtype(self, compute_dtype)

    def _select(self, inputs):
        if isinstance(inputs, dict):
            return _get_stream(inputs, self.stream, self.name)
        return inputs

    def build(self, input_shape):
        shape = tuple(self._select(input_shape))
        self.stage1_lstm.build(shape)
        self.stage1_classifier.build(shape[:-1] + (self.units,))
        self.built = True

    def call(self, inputs, mask=None, training=None):
        features = self._select(inputs)
        hidden = self.stage1_lstm(
            features, mask=_check_mask(mask, features), training=training
        )
        hidden = self.stage1_dropout(hidden, training=training)
        return {"stage1": self.stage1_classifier(hidden)}

    def compute_output_shape(self, input_shape):
        shape = tuple(self._select(input_shape))
        return {"stage1": shape[:-1] + (self.num_classes,)}

    def compute_mask(self, inputs, mask=None):
        mask = _check_mask(mask, self._select(inputs))
        return None if mask is None else {"stage1": mask}

    @property
    def input_streams(self):
        """The keys of the input dict it reads: `(stream,)`."""
        return (self.stream,)

    @property
    def stage_names(self):
        """The keys of the output dict: `("stage1",)`."""
        return ("stage1",)

    @property
    def input_dims(self):
        """`{stream: feature size}` of a built model."""
        return {self.stream: _kernel_rows(self, self.stage1_lstm)}

    def initial_state(self, batch_size):
        """Zero states `[h, c]`, each `(batch_size, units)`."""
        zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
        return [zeros, zeros]

    def step(self, features_t, states):
        """One LSTM step (inference: no dropout).

        Args:
            features_t: `(batch, D)` features of the new frame, or a dict holding them
                under the model's `stream` key.
            states: `[h, c]` from `initial_state` or the previous step.

        Returns:
            `(probs (batch, N), new_states)`.
        """
        features_t = ops.convert_to_tensor(
            self._select(features_t), dtype=self.compute_dtype
        )
        if not self.built:
            self.build((None, None, features_t.shape[-1]))
        states = [ops.convert_to_tensor(s, dtype=self.compute_dtype) for s in states]
        probs, new_states = _compiled(self, "_step_graph")(features_t, states)
        return probs, list(new_states)

    def _step_graph(self, features_t, states):
        hidden, (h, c) = self.stage1_lstm.cell(features_t, list(states), training=False)
        return self.stage1_classifier(hidden), [h, c]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "units": self.units,
                "dropout": self.dropout,
                "stream": self.stream,
                "compute_dtype": self.compute_dtype,
            }
        )
        return config


def lstm_from_config(lstm, num_classes):
    """The LSTM that `lstm.model` names, not built (its `input_streams` are known).

    Args:
        lstm: a `config.LSTMConfig` (`model`: "ms_lstm", "context" or "action";
            `units`, `dropout`, `compute_dtype`).
        num_classes: N.

    Returns:
        A `MultiStageLSTM`, or a `SingleStageLSTM` reading the stream `lstm.model`.
    """
    options = dict(
        units=lstm.units, dropout=lstm.dropout, compute_dtype=lstm.compute_dtype
    )
    if lstm.model == "ms_lstm":
        return MultiStageLSTM(num_classes, **options)
    return SingleStageLSTM(num_classes, stream=lstm.model, **options)
