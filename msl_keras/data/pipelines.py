"""tf.data pipeline of feature sequences for the LSTMs.

Source -> shuffle (training only) -> batch -> map(AUTOTUNE) -> prefetch, as in the
keras-io examples, with the batch before the map: one vectorised call per batch is much
cheaper than one small call per clip, and the result is the same. Shuffling depends
only on `seed`; each epoch reshuffles, deterministically.

There is no frame pipeline: the frozen trunk, not the decoding, bounds the CNN stage
(a tf.data frame builder ran at 48x the trunk's frames/s, BENCHMARKS.md row 7).
"""

import numpy as np
import tensorflow as tf

from msl_keras.data.feature_store import positive_int
from msl_keras.errors import ConfigError, DatasetError


def _names(name, names):
    valid = names and all(isinstance(n, str) for n in names)
    if isinstance(names, str) or not valid:
        raise ConfigError(
            f"`{name}` must be a non-empty tuple of names. Received: {name}={names!r}"
        )
    return tuple(names)


def _int_table(arrays, key, clips, low, high, bounds):
    """`arrays[key]` checked to be `(clips,)` ints in [low, high] (`bounds` says it to
    the user), as an int32 tensor."""
    value = np.asarray(arrays[key])
    if value.shape != (clips,) or not np.issubdtype(value.dtype, np.integer):
        raise DatasetError(
            f"arrays['{key}'] must be ({clips},) ints. "
            f"Received: shape={value.shape}, dtype={value.dtype}"
        )
    if value.min() < low or value.max() > high:
        raise DatasetError(
            f"arrays['{key}'] must lie in {bounds}. "
            f"Received: min={value.min()}, max={value.max()}"
        )
    return tf.constant(value.astype(np.int32))


def sequence_dataset(
    arrays,
    num_classes,
    batch_size=32,
    shuffle=True,
    seed=0,
    streams=("context", "action"),
    outputs=("stage1", "stage2"),
):
    """Per-clip feature sequences and targets for the (multi-stage) LSTM.

    Args:
        arrays: dict of arrays (e.g. `FeatureStore.read()`): each of `streams`
            `(clips, T, D)`, `"labels"` `(clips,)` int in [0, N), `"lengths"`
            `(clips,)` int in [1, T] (valid steps; later steps are padding).
        num_classes: N, the width of the one-hot targets.
        outputs: the model's output names, each given the same targets; `None`
            yields the targets as one tensor.

    Returns:
        `tf.data.Dataset` of `(x, y)`: x = `{stream: float32 (batch, T, D)}` with
        padded steps zeroed; y = `{output: float32 (batch, T, N)}`,
        one-hot on valid steps and all-zero rows on padded steps.
    """
    num_classes = positive_int("num_classes", num_classes)
    batch_size = positive_int("batch_size", batch_size)
    streams = _names("streams", streams)
    outputs = None if outputs is None else _names("outputs", outputs)
    if not hasattr(arrays, "keys"):
        raise DatasetError(f"`arrays` must be a dict. Received: {type(arrays)}")
    missing = [k for k in (*streams, "labels", "lengths") if k not in arrays]
    if missing:
        raise DatasetError(
            f"`arrays` lacks {missing}. Received keys: {sorted(arrays.keys())}"
        )
    features = {name: tf.convert_to_tensor(arrays[name]) for name in streams}
    shape = tuple(features[streams[0]].shape[:2])
    for name, value in features.items():
        if len(value.shape) != 3 or tuple(value.shape[:2]) != shape:
            raise DatasetError(
                f"arrays['{name}'] must be (clips, T, features), with the (clips, T) "
                f"of arrays['{streams[0]}']. Received: shape={tuple(value.shape)}"
            )
    clips, steps = (int(d) for d in shape)
    if clips == 0:
        raise DatasetError("`arrays` holds no clip.")
    bounds = f"[0, num_classes={num_classes})"
    label_table = _int_table(arrays, "labels", clips, 0, num_classes - 1, bounds)
    length_table = _int_table(arrays, "lengths", clips, 1, steps, f"[1, T={steps}]")

    dataset = tf.data.Dataset.range(clips)
    if shuffle:
        dataset = dataset.shuffle(clips, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def load(index):
        mask = tf.sequence_mask(tf.gather(length_table, index), steps)  # (batch, T)
        x = {}
        for name, table in features.items():
            value = tf.cast(tf.gather(table, index), tf.float32)
            x[name] = tf.where(mask[..., None], value, 0.0)
        one_hot = tf.one_hot(tf.gather(label_table, index), num_classes)  # (batch, N)
        y = one_hot[:, None, :] * tf.cast(mask, tf.float32)[..., None]  # (batch, T, N)
        return x, y if outputs is None else {name: y for name in outputs}

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
