"""Per-frame anticipation as ONE traced graph: trunk, both heads and one LSTM step."""

import tensorflow as tf

from msl_keras.models.ms_lstm import MultiStageLSTM, SingleStageLSTM


class StreamingStep:
    """Features of new frames and one LSTM step with kept states, in one graph.

    Streaming prediction (paper Sec. 3.2.2, `stages/predict.py`) runs, for every new
    frame, the two-stream extractor and then one step of the LSTM. Called as two
    functions (`extractor.extract`, then `lstm.step`) the features go to the host and
    back, and the LSTM step starts only once the whole extractor is done. Traced
    together, the stage-1 LSTM (which needs only the context feature) runs while the
    action head is still computing: at batch 1 the step is memory-bound (each of its
    ~117M weights at 2048 units is read once per frame) and the convolutions are
    compute-bound, so the two overlap. Measured on a 2-core CPU at the paper's size:
    per frame 1.04x the extraction alone, against 1.32x for the two calls
    (`benchmarks/bench_streaming_predict.py`).

    Args:
        extractor: a `TwoStreamFeatureExtractor` (its action head must not use
            `cam_class="oracle"`: a new video has no label).
        lstm: a `MultiStageLSTM`, or a `SingleStageLSTM` (reading its own stream).

    Call (`step(frames, states)`):
        frames: `(batch, H, W, 3)` float32 frames, preprocessed
            (`msl_keras.data.preprocessing.preprocess_frames`).
        states: from `initial_state(batch)` or the previous call.

    Returns:
        `(outputs, new_states)`: `outputs["probs"]` `(batch, N)` the final stage's
        probabilities (stage 2 of the MS-LSTM), `outputs["stage1"]` (MS-LSTM only),
        and the frame's features `"context"` `(batch, Dc)`, `"action"` `(batch, Da)`,
        `"cam_scores"` `(batch, N)`. The same numbers as
        `lstm.step(**extractor.extract(frames))`.

    Example:

    >>> stream = StreamingStep(extractor, ms_lstm)
    >>> states = stream.initial_state(1)
    >>> for frame in frames:  # (H, W, 3) uint8
    ...     x = preprocess_frames(frame[None], (224, 224))
    ...     outputs, states = stream.step(x, states)
    """

    def __init__(self, extractor, lstm):
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
        self.extractor = extractor
        self.lstm = lstm
        self.multi_stage = isinstance(lstm, MultiStageLSTM)
        shape = tuple(extractor.trunk.input_shape[1:])
        if not extractor.built:
            extractor.build((None,) + shape)
        if not lstm.built:  # variables must not be made inside the traced step
            dims = {
                "context": (None, None, extractor.context_dim),
                "action": (None, None, extractor.action_dim),
            }
            lstm.build(dims if self.multi_stage else {lstm.stream: dims[lstm.stream]})
        self._step = tf.function(
            self._graph,
            input_signature=[
                tf.TensorSpec((None,) + shape, tf.float32),
                [tf.TensorSpec((None, lstm.units), lstm.compute_dtype)]
                * (4 if self.multi_stage else 2),
            ],
        )

    def initial_state(self, batch_size=1):
        """Zero LSTM states for `batch_size` streams."""
        return self.lstm.initial_state(batch_size)

    def _graph(self, frames, states):
        features = self.extractor(frames, training=False)
        outputs = {k: features[k] for k in ("context", "action", "cam_scores")}
        if self.multi_stage:
            probs1, probs2, new_states = self.lstm._step_graph(
                features["context"], features["action"], states
            )
            outputs.update(stage1=probs1, probs=probs2)
        else:
            probs, new_states = self.lstm._step_graph(
                features[self.lstm.stream], states
            )
            outputs["probs"] = probs
        return outputs, new_states

    def step(self, frames, states):
        """One new frame per stream: see the class docstring."""
        frames = tf.convert_to_tensor(frames, tf.float32)
        states = [tf.convert_to_tensor(s, self.lstm.compute_dtype) for s in states]
        outputs, new_states = self._step(frames, states)
        return outputs, list(new_states)
