"""Per-frame anticipation as ONE traced graph: preprocessing, trunk, heads, LSTM step,
pooling. `predict` runs it frame by frame, `msl_keras.export` saves it as a SavedModel
and a TFLite file, `benchmarks/bench_streaming_predict.py` times it."""

import keras
import tensorflow as tf

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.models.ms_lstm import MultiStageLSTM, SingleStageLSTM


class StreamingStep:
    """One uint8 RGB frame in, the pooled anticipation after it out, states outside.

    For every new frame `x_t` (paper Sec. 3.2.2) the graph runs

        x = preprocess_frames(x_t, (S, S))             # bilinear resize, BGR, mean
        f_t = extractor(x)                             # context / action features
        p_t, state_t = lstm_step(f_t, state_{t-1})     # final stage's probabilities
        sum_t = sum_{t-1} + p_t,   pbar_t = sum_t / t  # temporal average pooling

    Everything carried from frame to frame is an input and an output, so the same
    graph is a `tf.function`, a SavedModel and a TFLite signature. Traced together,
    the stage-1 LSTM runs while the action head is still computing (BENCHMARKS.md row
    6: per frame ~1.1x the extraction alone). The LSTM is causal: `pbar_t` equals step
    t of one pass over the whole clip, for any number of frames.

    `extractor`: a `TwoStreamFeatureExtractor` not using `cam_class="oracle"` (a new
    video has no label); `lstm`: a `MultiStageLSTM` or `SingleStageLSTM`;
    `input_size`: S (`config.cnn.input_size`), default the trunk's input size.

    `step(frame, state, prob_sum, count)`: `frame` `(height, width, 3)` uint8 RGB of
    any size, `state` `(num_states, units)` float32 (`[h1, c1, h2, c2]` or `[h, c]`
    stacked), `prob_sum` `(N,)` and `count` `()` float32 -> `"pooled"` `(N,)`
    `pbar_t`, `"anticipated"` `()` int32 `argmax_k pbar_t[k]`, `"probs"` `(N,)` this
    frame's final-stage probabilities, `"stage1"` `(N,)`, and the next `"state"`,
    `"prob_sum"`, `"count"`.

    >>> carry = stream.initial_carry()
    >>> for frame in frames:  # (H, W, 3) uint8
    ...     out = stream.step(frame, **carry)
    ...     carry = {k: out[k] for k in ("state", "prob_sum", "count")}
    """

    def __init__(self, extractor, lstm, input_size=None):
        if extractor.action_head.cam_class == "oracle":
            raise ValueError(
                "StreamingStep needs an extractor whose CAM does not use the true "
                "label (cam_class='oracle'); rebuild the action head with "
                "cam_class='predicted' or 'top_k'."
            )
        if not isinstance(lstm, (MultiStageLSTM, SingleStageLSTM)):
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
        self.num_states = 4 if self.multi_stage else 2
        self.units = int(lstm.units)
        self.input_signature = {
            "frame": tf.TensorSpec((None, None, 3), tf.uint8, name="frame"),
            "state": tf.TensorSpec(
                (self.num_states, self.units), tf.float32, name="state"
            ),
            "prob_sum": tf.TensorSpec((self.num_classes,), tf.float32, name="prob_sum"),
            "count": tf.TensorSpec((), tf.float32, name="count"),
        }
        self._step = tf.function(
            self.graph, input_signature=list(self.input_signature.values())
        )

    def initial_carry(self):
        """What the first frame is called with: zero state, zero sum, count 0."""
        return {
            "state": tf.zeros((self.num_states, self.units), tf.float32),
            "prob_sum": tf.zeros((self.num_classes,), tf.float32),
            "count": tf.constant(0.0),
        }

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

    def step(self, frame, state, prob_sum, count):
        """One new frame: see the class docstring."""
        return self._step(
            tf.convert_to_tensor(frame, tf.uint8),
            tf.convert_to_tensor(state, tf.float32),
            tf.convert_to_tensor(prob_sum, tf.float32),
            tf.convert_to_tensor(count, tf.float32),
        )

    def run(self, frames):
        """`step` over `frames` from the zero carry: numpy outputs, a row per frame."""
        carry, rows = self.initial_carry(), []
        for frame in frames:
            rows.append(self.step(frame, **carry))
            carry = {k: rows[-1][k] for k in ("state", "prob_sum", "count")}
        return {
            k: keras.ops.convert_to_numpy(tf.stack([r[k] for r in rows]))
            for k in ("pooled", "anticipated", "probs", "stage1")
        }
