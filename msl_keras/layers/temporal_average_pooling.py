"""Temporal average pooling of per-step class probabilities (paper Sec. 3.2.2, Fig. 6).

    pbar_t = (1/t) sum_{t' <= t} p_t',   label after t steps = argmax_k pbar_t(k)

The one place the pooling equation lives: evaluation (`metrics.py`) and the Keras
layer use it (`models.StreamingStep` keeps the same mean as a running sum and count).
"""

import keras
import numpy as np
from keras import ops


def temporal_average_pooling(probs, lengths=None, mask=None):
    """Running mean of `(..., time, classes)` probabilities over the valid steps.

    With `lengths` (`(...,)` ints), the first `lengths[i]` steps of clip `i` are valid
    and every later step repeats the value at its last valid step. With a `(..., time)`
    boolean `mask` (Keras masks) the mean at step t runs over the valid steps up to t
    (0 before the first one). Numpy in, numpy out; tensor in, tensor out.

    >>> temporal_average_pooling(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    [[1, 0], [0.5, 0.5], [1/3, 2/3]]
    """
    as_numpy = not ops.is_tensor(probs)
    if as_numpy:
        probs = np.asarray(probs)
        if not np.issubdtype(probs.dtype, np.floating):
            probs = probs.astype(keras.backend.floatx())
    if len(probs.shape) < 2:
        raise ValueError(
            "temporal_average_pooling expects probabilities of shape "
            f"(..., time, classes). Received: probs.shape={tuple(probs.shape)}"
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
    """`temporal_average_pooling` as a causal layer: `(batch, time, classes)` in and
    out, over the valid steps of the Keras mask, which passes through unchanged."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return temporal_average_pooling(inputs, mask=mask)

    def compute_output_shape(self, input_shape):
        return input_shape
