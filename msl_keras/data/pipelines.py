"""tf.data pipelines: frames for the CNN heads and extraction, sequences for the LSTMs.

Each builder reads like the keras-io examples: source -> shuffle (training only) ->
map(AUTOTUNE) -> batch -> prefetch. Where the map works on a whole batch (in-memory
frames, sequences) the batch comes before the map: one vectorised call per batch is
much cheaper than one small call per element, and the result is the same.

Labels: the frame pipelines yield sparse int32 class ids (`(batch,)`), which is what
`sparse_categorical_crossentropy` takes; pass `num_classes` for float32 one-hot
`(batch, num_classes)` instead. A model with several outputs gets a dict: with
`outputs=("cam", "action")` (the action-aware head) y is
`{"cam": labels, "action": labels}`. The sequence pipeline yields one-hot
`(batch, T, N)` targets whose padded steps are all-zero rows: the losses derive the
step mask from them (see `msl_keras.losses`).

Randomness: shuffling and augmentation depend only on `seed` (and on TensorFlow's
global seed, `keras.utils.set_random_seed`, when one is set): two datasets built with
the same seed yield the same batches; each new pass (epoch) reshuffles and redraws
the augmentation, deterministically.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from msl_keras.data.augment import AugmentationConfig, augment_frame, draw_augmentation
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import select_frames
from msl_keras.errors import ConfigError, DatasetError

AUTOTUNE = tf.data.AUTOTUNE
FRAME_SAMPLING = ("uniform", "random")
# Offsets the op seed of the augmentation stream away from the shuffle's.
_AUGMENT_SEED_OFFSET = 7919


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )
    return int(value)


def _check_names(name, names, allow_none=False):
    if names is None and allow_none:
        return None
    if (
        isinstance(names, str)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        raise ConfigError(
            f"`{name}` must be a non-empty tuple of names. Received: {name}={names!r}"
        )
    return tuple(names)


def _as_frames(frames, name):
    """uint8 RGB `(n, H, W, 3)` as a tensor (numpy and tensors accepted)."""
    x = frames if isinstance(frames, tf.Tensor) else np.asarray(frames)
    if len(x.shape) != 4 or x.shape[-1] != 3:
        raise DatasetError(
            f"`{name}` must be RGB frames shaped (n, height, width, 3). "
            f"Received: shape={tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise DatasetError(f"`{name}` holds no frame. Received: shape={tuple(x.shape)}")
    return tf.convert_to_tensor(x)


def _augmentation_config(aug_config, size):
    if aug_config is None:
        return AugmentationConfig(output_size=size)
    if not isinstance(aug_config, AugmentationConfig):
        raise ConfigError(
            f"`aug_config` must be an AugmentationConfig. Received: {aug_config!r}"
        )
    if tuple(aug_config.output_size) != tuple(size):
        raise ConfigError(
            "`aug_config.output_size` and `size` disagree; set them to the same "
            f"(height, width). Received: output_size={aug_config.output_size}, "
            f"size={size}"
        )
    return aug_config


def _check_size(size):
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"`size` must be (height, width). Received: size={size!r}")
    if height < 1 or width < 1:
        raise ConfigError(f"`size` must be two positive ints. Received: size={size!r}")
    return height, width


def _targets(labels, outputs, num_classes):
    """Int labels `(...)` -> sparse int32, or one-hot; a dict when `outputs` is set."""
    y = tf.cast(labels, tf.int32)
    if num_classes is not None:
        y = tf.one_hot(y, num_classes, dtype=tf.float32)
    if outputs is None:
        return y
    return {name: y for name in outputs}


def _check_labels(labels, n, num_classes, name="labels"):
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise DatasetError(
            f"`{name}` must hold one int per clip/frame, shape ({n},). "
            f"Received: shape={labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"`{name}` must be ints. Received: dtype={labels.dtype}")
    if labels.size and labels.min() < 0:
        raise DatasetError(f"`{name}` must be >= 0. Received: min={labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise DatasetError(
            f"`{name}` must be < num_classes={num_classes}. "
            f"Received: max={labels.max()}"
        )
    return labels.astype(np.int32)


def _with_seeds(dataset, seed):
    """Pair every element with an int64 that changes each epoch (augmentation seed)."""
    randoms = tf.data.Dataset.random(
        seed=seed + _AUGMENT_SEED_OFFSET, rerandomize_each_iteration=True
    )
    return tf.data.Dataset.zip((dataset, randoms))


def frame_dataset(
    frames_source,
    labels,
    batch_size=32,
    augment=True,
    size=(224, 224),
    aug_config=None,
    seed=0,
    shuffle=True,
    outputs=None,
    num_classes=None,
    drop_remainder=False,
):
    """Frame-level training data for the CNN heads, from frames held in memory.

    The CNN stage samples a few frames per clip into memory first (decoding video
    inside tf.data is awkward; `frame_dataset_from_records` does it with a py
    function when the frames do not fit in memory). Each batch is gathered from the
    array, augmented (`augment_frame`, one parameter set per frame, drawn stateless
    from `seed`) and preprocessed (`preprocess_frames`), all with vectorised TF ops:
    no Python in the hot path.

    Args:
        frames_source: uint8 RGB frames `(n, H, W, 3)` (numpy or tensor). A numpy
            array is copied once into a tensor; a batch is a gather from it, so
            shuffling (of indices) copies no frame.
        labels: int class ids `(n,)`.
        batch_size: frames per batch.
        augment: apply the paper's augmentation (training); `False` gives exactly the
            extraction preprocessing (`clip_frames`).
        size: `(height, width)` of the network input.
        aug_config: `AugmentationConfig`; default: the paper's ranges at `size`.
        seed: shuffling and augmentation seed.
        shuffle: shuffle the frames each epoch (training only).
        outputs: `None` (y is the labels) or output names, e.g. `("cam", "action")`
            for the action-aware head (y is a dict with the labels under each name).
        num_classes: `None` for sparse int32 labels, or N for one-hot float32.
        drop_remainder: drop the last incomplete batch.

    Returns:
        `tf.data.Dataset` of `(x, y)`: x float32 `(batch, size[0], size[1], 3)`,
        y int32 `(batch,)` (or one-hot / a dict, see above).

    Example:
    >>> ds = frame_dataset(frames, labels, batch_size=32, outputs=("cam", "action"))
    >>> head.fit(ds, epochs=10)
    """
    size = _check_size(size)
    batch_size = _check_positive_int("batch_size", batch_size)
    outputs = _check_names("outputs", outputs, allow_none=True)
    frames = _as_frames(frames_source, "frames_source")
    n = int(frames.shape[0])
    label_table = tf.constant(_check_labels(labels, n, num_classes))
    config = _augmentation_config(aug_config, size) if augment else None

    dataset = tf.data.Dataset.range(n)
    if shuffle:
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if augment:
        dataset = _with_seeds(dataset, seed)

    def load(index, random=None):
        images = tf.gather(frames, index)  # (batch, H, W, 3) uint8
        if augment:
            params = draw_augmentation(
                tf.stack([tf.constant(seed, tf.int64), random]),
                config,
                batch_size=tf.shape(index)[0],
            )
            images = augment_frame(images, params, config)
        x = preprocess_frames(images, size)
        return x, _targets(tf.gather(label_table, index), outputs, num_classes)

    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def _select(num_frames, count, sampling, rng):
    """Indices of `count` frames out of `num_frames` (all of them if fewer).

    `"uniform"` is `select_frames(..., "uniform")`, the frames the CNN stage's cache
    (`pipeline/head_training.py`) trains on.
    """
    if num_frames <= count:
        return np.arange(num_frames)
    if sampling == "uniform":
        return select_frames(num_frames, count, mode="uniform")
    return np.sort(rng.choice(num_frames, size=count, replace=False))


def frame_dataset_from_records(
    records,
    frames_per_clip,
    read_frames_fn=None,
    batch_size=32,
    augment=True,
    size=(224, 224),
    aug_config=None,
    seed=0,
    shuffle=True,
    outputs=None,
    num_classes=None,
    sampling="uniform",
    shuffle_buffer=None,
    drop_remainder=False,
):
    """Frame-level training data decoded from the clips on the fly.

    Clips (shuffled) are decoded by `read_frames_fn` in a py function (parallel,
    AUTOTUNE), `frames_per_clip` frames are kept per clip, the frames go through a
    shuffle buffer that mixes clips, then each frame is augmented and preprocessed
    exactly as in `frame_dataset`. Use it when the sampled frames do not fit in
    memory; the in-memory `frame_dataset` is faster. A clip that fails to decode
    raises (the py function's error names the file); nothing is skipped silently.

    Args:
        records: `ClipRecord`s (anything with `.path` and int `.label`).
        frames_per_clip: frames taken from each clip (all of a shorter clip).
        read_frames_fn: `path -> uint8 RGB (n, H, W, 3)`; default
            `msl_keras.data.video.read_frames`.
        sampling: `"uniform"` (evenly spaced over the clip, the same frames every
            epoch) or `"random"` (a new random subset each epoch, from `seed`).
        shuffle_buffer: frames in the mixing buffer; default
            `max(4 * batch_size, 4 * frames_per_clip)`.
        Other arguments: as in `frame_dataset`.

    Returns:
        `tf.data.Dataset` of `(x, y)` as in `frame_dataset`.
    """
    size = _check_size(size)
    batch_size = _check_positive_int("batch_size", batch_size)
    frames_per_clip = _check_positive_int("frames_per_clip", frames_per_clip)
    outputs = _check_names("outputs", outputs, allow_none=True)
    if sampling not in FRAME_SAMPLING:
        raise ConfigError(
            f"`sampling` must be one of {FRAME_SAMPLING}. "
            f"Received: sampling={sampling!r}"
        )
    records = list(records)
    if not records:
        raise DatasetError("`records` is empty: no clip to read frames from.")
    if read_frames_fn is None:
        from msl_keras.data.video import read_frames as read_frames_fn
    paths = [str(r.path) for r in records]
    labels = _check_labels([r.label for r in records], len(records), num_classes)
    config = _augmentation_config(aug_config, size) if augment else None
    if shuffle_buffer is None:
        shuffle_buffer = max(4 * batch_size, 4 * frames_per_clip)

    def read(path, random):
        path = path.decode()
        frames = np.asarray(read_frames_fn(path))
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise DatasetError(
                f"read_frames_fn('{path}') must return RGB frames (n, H, W, 3), "
                "n >= 1. "
                f"Received: shape={frames.shape}"
            )
        rng = np.random.default_rng([seed, int(random) % 2**63])
        index = _select(frames.shape[0], frames_per_clip, sampling, rng)
        return np.ascontiguousarray(frames[index], dtype=np.uint8)

    def decode(element, random):
        path, label = element
        frames = tf.numpy_function(read, [path, random], tf.uint8, stateful=False)
        frames.set_shape([None, None, None, 3])
        return frames, tf.fill(tf.shape(frames)[:1], label)

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = _with_seeds(dataset, seed + 1)
    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE).unbatch()
    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if augment:
        dataset = _with_seeds(dataset, seed)

    def prepare(frame, label):
        return preprocess_frames(frame, size), label

    def augment_and_prepare(element, random):
        frame, label = element
        seed_pair = tf.stack([tf.constant(seed, tf.int64), random])
        frame = augment_frame(frame, draw_augmentation(seed_pair, config), config)
        return prepare(frame, label)

    dataset = dataset.map(
        augment_and_prepare if augment else prepare, num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda x, y: (x, _targets(y, outputs, num_classes)), num_parallel_calls=AUTOTUNE
    )
    return dataset.prefetch(AUTOTUNE)


def clip_frames(frames, size=(224, 224), batch_size=32):
    """The frames of one clip, preprocessed for extraction (no augmentation), in order.

    Args:
        frames: uint8 RGB `(n, H, W, 3)`.
        size: `(height, width)` of the network input.
        batch_size: frames per batch.

    Returns:
        `tf.data.Dataset` of float32 `(batch, size[0], size[1], 3)`, the same values
        `frame_dataset(..., augment=False)` gives for the same frame.
    """
    size = _check_size(size)
    batch_size = _check_positive_int("batch_size", batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(_as_frames(frames, "frames"))
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda x: preprocess_frames(x, size), num_parallel_calls=AUTOTUNE
    )
    return dataset.prefetch(AUTOTUNE)


def sequence_dataset(
    arrays,
    num_classes,
    batch_size=32,
    shuffle=True,
    seed=0,
    streams=("context", "action"),
    outputs=("stage1", "stage2"),
    include_mask=False,
    drop_remainder=False,
):
    """Per-clip feature sequences and targets for the (multi-stage) LSTM.

    Args:
        arrays: dict of arrays (e.g. `FeatureStore.read()`): each name in `streams`
            `(clips, T, D)` (float16 stores are cast to float32), `"labels"`
            `(clips,)` int, `"lengths"` `(clips,)` int in [1, T] (valid steps; later
            steps are padding). Other keys are ignored.
        num_classes: N, the width of the one-hot targets.
        batch_size: clips per batch.
        shuffle: shuffle the clips each epoch (training only).
        seed: shuffling seed.
        streams: the feature streams the model takes, e.g. `("context",)` for a
            single-stage context LSTM.
        outputs: the model's output names; every output gets the same targets.
            `None` yields the targets as one tensor.
        include_mask: also put the bool step mask `(batch, T)` in x under `"mask"`.
        drop_remainder: drop the last incomplete batch.

    Returns:
        `tf.data.Dataset` of `(x, y)`: x = `{stream: float32 (batch, T, D)}` with
        padded steps zeroed (+ `"mask"`); y = `{output: float32 (batch, T, N)}`,
        one-hot on valid steps and all-zero rows on padded steps.

    Example:
    >>> ds = sequence_dataset(store.read(), num_classes=21, batch_size=32)
    >>> model.fit(ds, epochs=50)
    """
    num_classes = _check_positive_int("num_classes", num_classes)
    batch_size = _check_positive_int("batch_size", batch_size)
    streams = _check_names("streams", streams)
    outputs = _check_names("outputs", outputs, allow_none=True)
    if not hasattr(arrays, "keys"):
        raise DatasetError(
            f"`arrays` must be a dict of arrays. Received: {type(arrays)}"
        )
    missing = [k for k in (*streams, "labels", "lengths") if k not in arrays]
    if missing:
        raise DatasetError(
            f"`arrays` lacks {missing}; it needs {list(streams)} + "
            "['labels', 'lengths']. "
            f"Received keys: {sorted(arrays.keys())}"
        )
    features = {}
    for name in streams:
        value = arrays[name]
        value = value if isinstance(value, tf.Tensor) else np.asarray(value)
        if len(value.shape) != 3:
            raise DatasetError(
                f"arrays['{name}'] must be (clips, T, features). "
                f"Received: shape={tuple(value.shape)}"
            )
        features[name] = value
    clips, steps = (int(d) for d in features[streams[0]].shape[:2])
    if clips == 0:
        raise DatasetError("`arrays` holds no clip.")
    for name, value in features.items():
        if tuple(value.shape[:2]) != (clips, steps):
            raise DatasetError(
                f"arrays['{name}'] has shape {tuple(value.shape)}, but "
                f"arrays['{streams[0]}'] has (clips, T) = {(clips, steps)}."
            )
    labels = _check_labels(arrays["labels"], clips, num_classes)
    lengths = np.asarray(arrays["lengths"])
    if lengths.shape != (clips,) or not np.issubdtype(lengths.dtype, np.integer):
        raise DatasetError(
            f"arrays['lengths'] must be ({clips},) ints. "
            f"Received: shape={lengths.shape}, dtype={lengths.dtype}"
        )
    if lengths.min() < 1 or lengths.max() > steps:
        raise DatasetError(
            f"arrays['lengths'] must lie in [1, T={steps}]. "
            f"Received: min={lengths.min()}, max={lengths.max()}"
        )
    tables = {name: tf.convert_to_tensor(value) for name, value in features.items()}
    label_table = tf.constant(labels)
    length_table = tf.constant(lengths.astype(np.int32))

    dataset = tf.data.Dataset.range(clips)
    if shuffle:
        dataset = dataset.shuffle(clips, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def load(index):
        mask = tf.sequence_mask(tf.gather(length_table, index), steps)  # (batch, T)
        x = {}
        for name, table in tables.items():
            value = tf.cast(tf.gather(table, index), tf.float32)
            x[name] = tf.where(mask[..., None], value, 0.0)
        if include_mask:
            x["mask"] = mask
        one_hot = tf.one_hot(tf.gather(label_table, index), num_classes)  # (batch, N)
        y = one_hot[:, None, :] * tf.cast(mask, tf.float32)[..., None]  # (batch, T, N)
        return x, y if outputs is None else {name: y for name in outputs}

    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
