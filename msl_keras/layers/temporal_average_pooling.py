"""Temporal average pooling of per-step class probabilities (paper Sec. 3.2.2, Fig. 6).

    pbar_t = (1/t) sum_{t' <= t} p_t',   label after t steps = argmax_k pbar_t(k)

This module is the one place the pooling equation lives: evaluation (`metrics.py`), the
Keras graph (`TemporalAveragePooling`) and frame-by-frame prediction
(`StreamingAveragePooling`) all use it.
"""

import keras
import numpy as np
from keras import ops


def temporal_average_pooling(probs, lengths=None, mask=None):
    """Running mean of the probabilities over time, per clip.

    Only valid steps enter the mean. With `lengths`, the first `lengths[i]` steps of
    clip `i` are valid, and every later step repeats the value at its last valid step.
    With a general `mask` the mean at step t runs over the valid steps up to t (a
    padded step repeats the previous value; steps before the first valid one are 0).

    Args:
        probs: `(..., time, classes)` probabilities, numpy array or tensor.
        lengths: optional `(...,)` ints, the valid steps of each clip (default: all).
        mask: optional `(..., time)` booleans instead of `lengths` (Keras masks).

    Returns:
        `(..., time, classes)`: numpy in, numpy out; tensor in, tensor out.

    Example:
    ```python
    temporal_average_pooling(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    # [[1, 0], [0.5, 0.5], [1/3, 2/3]]
    ```
    """
    as_numpy = not ops.is_tensor(probs)
    if as_numpy:
        probs = np.asarray(probs)
        if not np.issubdtype(probs.dtype, np.floating):
            probs = probs.astype(keras.backend.floatx())
    if len(probs.shape) < 2:
        raise ValueError(
            "temporal_average_pooling expects probabilities of shape "
            "(..., time, classes). "
            f"Received: probs.shape={tuple(probs.shape)}"
        )
    if lengths is not None and mask is not None:
        raise ValueError(
            "Pass `lengths` or `mask`, not both. "
            f"Received: lengths={lengths}, mask={mask}"
        )
    probs = ops.convert_to_tensor(probs)
    if lengths is not None:
        lengths = ops.convert_to_tensor(lengths)
        if tuple(lengths.shape) != tuple(probs.shape[:-2]) and None not in probs.shape:
            raise ValueError(
                f"lengths must have shape {tuple(probs.shape[:-2])} (one per clip). "
                f"Received: lengths.shape={tuple(lengths.shape)}, "
                f"probs.shape={tuple(probs.shape)}"
            )
        steps = ops.arange(ops.shape(probs)[-2])
        mask = steps < ops.expand_dims(ops.cast(lengths, steps.dtype), -1)
    if mask is None:
        valid = ops.ones(ops.shape(probs)[:-1], dtype=probs.dtype)
    else:
        valid = ops.cast(ops.convert_to_tensor(mask), probs.dtype)
        if len(valid.shape) != len(probs.shape) - 1:
            raise ValueError(
                f"mask must have shape {tuple(probs.shape[:-1])} (one entry per step). "
                f"Received: mask.shape={tuple(valid.shape)}"
            )
    running_sum = ops.cumsum(probs * ops.expand_dims(valid, -1), axis=-2)
    count = ops.expand_dims(ops.cumsum(valid, axis=-1), -1)
    pooled = ops.divide_no_nan(running_sum, count)
    return ops.convert_to_numpy(pooled) if as_numpy else pooled


@keras.saving.register_keras_serializable(package="msl_keras")
class TemporalAveragePooling(keras.layers.Layer):
    """Temporal average pooling as a layer (paper Sec. 3.2.2).

    `pbar_t = (1/t) sum_{t' <= t} p_t'` over the valid steps; see
    `temporal_average_pooling`. Causal: step t only sees steps 1..t. The Keras mask, if
    any, passes through unchanged.

    Call arguments:
        inputs: `(batch, time, classes)` probabilities.
        mask: optional `(batch, time)` booleans (the Keras mask of `inputs`).

    Returns:
        `(batch, time, classes)` pooled probabilities.

    Example:
    ```python
    probs = MultiStageLSTM(num_classes=21)(features)["stage2"]
    pooled = TemporalAveragePooling()(probs)
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return temporal_average_pooling(inputs, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape


class StreamingAveragePooling:
    """Temporal average pooling one step at a time, for frame-by-frame prediction.

    Keeps the running sum and the number of steps seen; `update(p_t)` returns
    `pbar_t = (1/t) sum_{t' <= t} p_t'`, the same value `temporal_average_pooling` gives
    at step t of the whole sequence.

    Args:
        p_t (to `update`): `(classes,)` or `(batch, classes)` probabilities of one step.

    Example:
    ```python
    pooling = StreamingAveragePooling()
    for frame in stream:
        probs1, probs2, states = model.step(context, action, states)
        label = np.argmax(pooling.update(probs2), -1)
    ```
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forgets every step seen (start of a new clip)."""
        self.running_sum = None
        self.count = 0

    def update(self, p_t):
        """Adds one step's probabilities; returns the pooled probabilities so far."""
        p_t = np.asarray(p_t, dtype=np.float64)
        if self.running_sum is not None and p_t.shape != self.running_sum.shape:
            raise ValueError(
                f"Expected probabilities of shape {self.running_sum.shape} as at the "
                f"previous steps (call reset() for a new clip). Received: {p_t.shape}"
            )
        self.running_sum = p_t if self.running_sum is None else self.running_sum + p_t
        self.count += 1
        return self.value

    @property
    def value(self):
        """The pooled probabilities after the steps seen so far."""
        if self.count == 0:
            raise ValueError("No step seen yet: call update(p_t) first.")
        return self.running_sum / self.count
