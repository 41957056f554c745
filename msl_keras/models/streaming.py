"""Per-frame anticipation as ONE traced graph: preprocessing, trunk, heads, LSTM step,
pooling. `predict` runs it frame by frame, `msl_keras.export` saves it as a SavedModel
and a TFLite file, `benchmarks/bench_streaming_predict.py` times it."""

import keras
import tensorflow as tf

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.models.ms_lstm import MultiStageLSTM, StagedLSTM

CARRY = ("state", "prob_sum", "count")  # what `step` returns for the next frame


class StreamingStep:
    """One uint8 RGB frame in, the pooled anticipation after it out, states outside.

    For every new frame `x_t` (paper Sec. 3.2.2) the graph runs

        x = preprocess_frames(x_t, (S, S))             # bilinear resize, BGR, mean
        f_t = extractor(x)                             # context / action features
        p_t, state_t = lstm_step(f_t, state_{t-1})     # final stage's probabilities
        sum_t = sum_{t-1} + p_t,   pbar_t = sum_t / t  # temporal average pooling

    Everything carried from frame to frame is an input and an output, so the graph is
    a `tf.function`, a SavedModel and a TFLite signature; traced together, the stage-1
    LSTM runs while the action head computes (BENCHMARKS.md row 6: per frame ~1.1x the
    extraction alone). `pbar_t` equals step t of a pass over the whole clip.
    `input_size`: S, default the trunk's input size.

    `step(frame, state, prob_sum, count)`: `frame` `(height, width, 3)` uint8 RGB,
    `state` `(num_states, units)` (`[h1, c1, h2, c2]` or `[h, c]` stacked), `prob_sum`
    `(N,)`, `count` `()` -> `"pooled"` `pbar_t`, `"anticipated"` `argmax_k pbar_t[k]`
    (int32), this frame's final-stage `"probs"` and `"stage1"`, and the next `CARRY`.

    >>> carry = stream.initial_carry()
    >>> for frame in frames:  # (H, W, 3) uint8
    ...     out = stream.step(frame, **carry)
    ...     carry = {k: out[k] for k in CARRY}
    """

    def __init__(self, extractor, lstm, input_size=None):
        if extractor.action_head.cam_class == "oracle":
            raise ValueError(
                "StreamingStep needs an action head without cam_class='oracle' (a new "
                "video has no label): rebuild it with cam_class='predicted' or 'top_k'."
            )
        if not isinstance(lstm, StagedLSTM):
            raise ValueError(
                "StreamingStep takes a MultiStageLSTM or a SingleStageLSTM. "
                f"Received: {type(lstm).__name__}"
            )
        shape = tuple(extractor.trunk.input_shape[1:])
        if not extractor.built:
            extractor.build((None,) + shape)
        if not lstm.built:  # variables must not be made inside the traced step
            dims = {"context": extractor.context_dim, "action": extractor.action_dim}
            lstm.build({s: (None, None, dims[s]) for s in lstm.input_streams})
        self.extractor = extractor
        self.lstm = lstm
        self.multi_stage = isinstance(lstm, MultiStageLSTM)
        size = shape[0] if input_size is None else input_size
        self.input_size = (int(size), int(size))
        self.num_classes = int(lstm.num_classes)
        self.num_states = 2 * len(lstm.stage_names)
        self.units = int(lstm.units)
        frame = tf.TensorSpec((None, None, 3), tf.uint8, name="frame")
        shapes = ((self.num_states, self.units), (self.num_classes,), ())  # CARRY's
        self.input_signature = {"frame": frame} | {
            k: tf.TensorSpec(s, tf.float32, name=k) for k, s in zip(CARRY, shapes)
        }
        # The signature converts numpy arrays and Python numbers to its dtypes.
        self.step = tf.function(
            self.graph, input_signature=list(self.input_signature.values())
        )

    def initial_carry(self):
        """What the first frame is called with: zero state, zero sum, count 0."""
        return {k: tf.zeros(self.input_signature[k].shape, tf.float32) for k in CARRY}

    def graph(self, frame, state, prob_sum, count):
        """The step as TensorFlow ops, to trace (`tf.function`, SavedModel, TFLite)."""
        x = preprocess_frames(frame[None], self.input_size)  # (1, S, S, 3)
        features = self.extractor(x, training=False)
        dtype = self.lstm.compute_dtype
        states = [tf.cast(state[i : i + 1], dtype) for i in range(self.num_states)]
        inputs = [tf.cast(features[s], dtype) for s in self.lstm.input_streams]
        # (probs1, probs2, states) of the MS-LSTM, (probs, states) of a single stage
        *stages, new_states = self.lstm._step_graph(*inputs, states)
        probs = tf.cast(stages[-1][0], tf.float32)
        prob_sum = prob_sum + probs
        count = count + 1.0
        pooled = prob_sum / count
        return {
            "pooled": pooled,
            "anticipated": tf.argmax(pooled, output_type=tf.int32),
            "probs": probs,
            "stage1": tf.cast(stages[0][0], tf.float32),
            "state": tf.cast(tf.concat(new_states, axis=0), tf.float32),
            "prob_sum": prob_sum,
            "count": count,
        }

    def run(self, frames):
        """`step` over `frames` from the zero carry: numpy outputs, a row per frame."""
        carry, rows = self.initial_carry(), []
        for frame in frames:
            rows.append(self.step(frame, **carry))
            carry = {k: rows[-1][k] for k in CARRY}
        return {
            k: keras.ops.convert_to_numpy(tf.stack([r[k] for r in rows]))
            for k in ("pooled", "anticipated", "probs", "stage1")
        }
