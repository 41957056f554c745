"""Accuracy against the part of a clip observed (paper Tables 1-4, Figs. 5-6).

The functions are numpy; `AnticipationAccuracy` is the pooled score as a Keras metric,
for `fit`'s validation pass. The LSTMs are causal, so ONE forward pass over each clip
gives the prediction after every number of observed steps. Arguments, everywhere:

- `probs (clips, T, N)`: per-step probabilities from that pass; `labels (clips,)`.
- `lengths (clips,)`, optional: each clip's valid steps (default T; padding is at the
  end); "after t steps" for a clip shorter than t means after all of them.
- `frame_indices (clips, T)`: the source frame of each stored step (-1 on padding);
  `num_frames (clips,)`: each clip's frame count. Observing a ratio r of a clip means
  seeing its first `ceil(r * num_frames)` frames (`observed_frames`); the prediction is
  read at the last stored step whose source frame is among them (at least the first).
- `pooled`: temporal average pooling of the probabilities first (Sec. 3.2.2).
- `top_k`: a clip is correct when its label is among its k highest scores (ties go to
  the lower class index, as `argmax` does for k = 1).
"""

import keras
import numpy as np
from keras import ops

from msl_keras.data.video import observed_frames
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling

# Observation ratios of the accuracy-vs-ratio curves: 0.1, 0.2, ..., 1.0.
RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))

# Earliest: dataset -> ("ratio", part of each clip) or ("frames", count); paper Sec. 4.
# The generated clips and imported features follow JHMDB's convention.
EARLIEST = {
    "jhmdb": ("ratio", 0.2),
    "ut_interaction": ("ratio", 0.5),
    "ucf101": ("frames", 2),
    "generated": ("ratio", 0.2),
    "imported": ("ratio", 0.2),
}

# Latest is the last valid stored step, observing the whole clip (UT-Interaction: "the
# entire sequence"), or in these datasets at most its first T frames (Sec. 4.3, UCF-101:
# "in the latest setting ... we only exploit the first T frames").
LATEST_FIRST_T = ("ucf101",)


def _integers(name, values, shape, low, high):
    """`values` as an array; a ValueError unless integers of `shape` in [low, high]."""
    values = np.asarray(values)
    if values.shape != shape or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(
            f"Expected integer {name} of shape {shape}. "
            f"Received: {name}.shape={values.shape}, dtype={values.dtype}"
        )
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(
            f"{name} must lie in [{low}, {high}]. "
            f"Received: {name} from {values.min()} to {values.max()}"
        )
    return values


def _check(probs, labels=None, lengths=None):
    """probs `(clips, T, N)`, labels in [0, N) and lengths in [1, T] (default T)."""
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(
            "Expected probs of shape (clips, time, classes). "
            f"Received: probs.shape={probs.shape}"
        )
    clips, steps, classes = probs.shape
    if labels is not None:
        labels = _integers("labels", labels, (clips,), 0, classes - 1)
    if lengths is None:
        return probs, labels, np.full(clips, steps, dtype=np.int64)
    return probs, labels, _integers("lengths", lengths, (clips,), 1, steps)


def _check_frames(frame_indices, num_frames, probs):
    """frame_indices `(clips, T)` with a stored step per clip, num_frames `(clips,)`."""
    shape = probs.shape[:2]  # (clips, T), -1 on padding
    frame_indices = _integers("frame_indices", frame_indices, shape, -1, np.inf)
    lengths = (frame_indices >= 0).sum(axis=1)
    if lengths.size and lengths.min() < 1:
        raise ValueError(
            "Every clip needs at least one stored step (frame index >= 0). "
            f"Received: clips {np.flatnonzero(lengths < 1).tolist()} with none"
        )
    num_frames = np.asarray(num_frames)
    if num_frames.shape != (probs.shape[0],):
        raise ValueError(
            f"Expected num_frames of shape ({probs.shape[0]},), one per clip. "
            f"Received: num_frames.shape={num_frames.shape}"
        )
    return frame_indices, lengths, num_frames


def _top_k_correct(scores, labels, top_k):
    """(clips,) bool: the label is among the top_k scores of its clip."""
    if not 1 <= int(top_k) <= scores.shape[-1]:
        raise ValueError(
            f"top_k must lie in [1, {scores.shape[-1]}] (the number of classes). "
            f"Received: top_k={top_k}"
        )
    ranked = np.argsort(-scores, axis=-1, kind="stable")[:, : int(top_k)]
    return (ranked == labels[:, None]).any(axis=-1)


def _scores_at(scores, steps, lengths):
    """(clips, N): row min(steps, lengths) - 1 of each clip's (T, N) scores."""
    index = np.minimum(steps, lengths) - 1
    return scores[np.arange(len(index)), index]


def prediction_at_step(probs, steps, lengths=None, pooled=True):
    """Class scores `(clips, N)` after `steps` observed steps (an int or `(clips,)`
    ints, from 1); the class is the argmax."""
    probs, _, lengths = _check(probs, lengths=lengths)
    steps = np.broadcast_to(steps, lengths.shape)
    steps = _integers("steps", steps, lengths.shape, 1, np.inf)
    scores = temporal_average_pooling(probs, lengths) if pooled else probs
    return _scores_at(scores, steps, lengths)


def accuracy_vs_steps(probs, labels, lengths=None, pooled=True, top_k=1):
    """Accuracy `(T,)` after t observed steps, for t = 1..T (paper Figs. 5-6)."""
    probs, labels, lengths = _check(probs, labels, lengths)
    scores = temporal_average_pooling(probs, lengths) if pooled else probs
    after = (_scores_at(scores, t, lengths) for t in range(1, probs.shape[1] + 1))
    return np.array([_top_k_correct(at_t, labels, top_k).mean() for at_t in after])


@keras.saving.register_keras_serializable(package="msl_keras")
class AnticipationAccuracy(keras.metrics.Metric):
    """`mean(accuracy_vs_steps(probs, labels, lengths))` as a Keras metric: the LSTM
    stage's model-selection score. Every clip has T steps, so it is a ratio of counts:

        mean_t (1/C) sum_c hit[c, t] = (sum_c sum_t hit[c, t]) / (C * T),
        hit[c, t] = [argmax_k pbar_{min(t, length_c)}[c, k] == label_c]

    `update_state(y_true, y_pred)`: `y_true (batch, T, N)` one-hot on the valid steps,
    all-zero on padding (`sequence_dataset`'s targets); `y_pred (batch, T, N)`.
    """

    def __init__(self, name="anticipation_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        # Counts of (clip, step) pairs, exact in float32 up to 2**24 of them.
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.steps = self.add_variable(shape=(), initializer="zeros", name="steps")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        lengths = ops.sum(ops.cast(ops.sum(y_true, axis=-1) > 0, "int32"), axis=-1)
        labels = ops.argmax(y_true[:, 0], axis=-1)
        pooled = temporal_average_pooling(y_pred, lengths)
        hits = ops.argmax(pooled, axis=-1) == ops.expand_dims(labels, -1)
        self.hits.assign_add(ops.sum(ops.cast(hits, self.dtype)))
        self.steps.assign_add(ops.cast(ops.size(hits), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.hits, self.steps)


def steps_observing(frame_indices, limits):
    """`(clips,)` the 1-based step read after observing the first `limits (clips,)`
    frames: the last stored step whose source frame is `< limit`, else the first."""
    frame_indices = np.asarray(frame_indices)
    observed = (frame_indices >= 0) & (frame_indices < np.asarray(limits)[:, None])
    positions = np.arange(1, frame_indices.shape[1] + 1)
    return np.maximum(np.where(observed, positions, 0).max(axis=1), 1)


def accuracy_at_ratio(
    probs, labels, frame_indices, num_frames, ratio, pooled=True, top_k=1
):
    """Accuracy (float) after observing a `ratio` in (0, 1] of each clip."""
    probs, labels, _ = _check(probs, labels)
    frame_indices, lengths, num_frames = _check_frames(frame_indices, num_frames, probs)
    steps = steps_observing(frame_indices, observed_frames(num_frames, float(ratio)))
    scores = prediction_at_step(probs, steps, lengths, pooled)
    return float(_top_k_correct(scores, labels, top_k).mean())


def accuracy_at_ratios(
    probs, labels, frame_indices, num_frames, ratios=RATIOS, pooled=True, top_k=1
):
    """`accuracy_at_ratio` for each ratio (default `RATIOS`); `(len(ratios),)` array."""
    args = (probs, labels, frame_indices, num_frames)
    return np.array([accuracy_at_ratio(*args, r, pooled, top_k) for r in ratios])


def reported_readings(dataset, frame_indices, num_frames, ratios=RATIOS):
    """Which stored step, and which source frame, each reported point reads, per clip.

    The points: "earliest" (`EARLIEST[dataset]`; a `ConfigError` for another dataset),
    "latest" and each of `ratios` (keyed `f"{ratio:g}"`). Returns `{point: {"frames":
    frames observed, "step": 1-based step read, "frame": its source frame}}`, each
    `(clips,)`, so that a caller can check that different points read different steps.

    >>> first = np.arange(50)[None]  # the first T = 50 frames of a 120-frame clip
    >>> readings = reported_readings("ut_interaction", first, [120])
    >>> int(readings["earliest"]["step"][0]), int(readings["latest"]["step"][0])
    (50, 50)
    """
    frame_indices = np.asarray(frame_indices)
    num_frames = np.asarray(num_frames).astype(np.int64)
    if frame_indices.ndim != 2 or num_frames.shape != frame_indices.shape[:1]:
        raise ValueError(
            "Expected frame_indices (clips, T) and num_frames (clips,). Received: "
            f"frame_indices.shape={frame_indices.shape}, "
            f"num_frames.shape={num_frames.shape}"
        )
    if dataset not in EARLIEST:
        raise ConfigError(
            f"No earliest-observation convention for dataset '{dataset}'. "
            f"Valid datasets: {', '.join(sorted(EARLIEST))}."
        )
    kind, amount = EARLIEST[dataset]
    if kind == "ratio":
        earliest = observed_frames(num_frames, amount)
    else:
        earliest = np.minimum(int(amount), num_frames)
    latest = num_frames
    if dataset in LATEST_FIRST_T:
        latest = np.minimum(num_frames, frame_indices.shape[1])
    lengths = (frame_indices >= 0).sum(axis=1)
    points = {
        "earliest": (earliest, steps_observing(frame_indices, earliest)),
        "latest": (latest, np.maximum(lengths, 1)),
    }
    for ratio in ratios:
        frames = observed_frames(num_frames, ratio)
        points[f"{float(ratio):g}"] = (frames, steps_observing(frame_indices, frames))
    rows = np.arange(len(lengths))
    return {
        point: {"frames": seen, "step": steps, "frame": frame_indices[rows, steps - 1]}
        for point, (seen, steps) in points.items()
    }


def earliest_latest_correct(
    dataset, probs, labels, frame_indices, num_frames, pooled=True, top_k=1
):
    """`{"earliest": (clips,) bool, "latest": (clips,) bool}`: which clips are right at
    the points of `earliest_latest`, for paired comparisons of two models."""
    probs, labels, _ = _check(probs, labels)
    frame_indices, lengths, num_frames = _check_frames(frame_indices, num_frames, probs)
    readings = reported_readings(dataset, frame_indices, num_frames, ratios=())
    return {
        point: _top_k_correct(
            prediction_at_step(probs, reading["step"], lengths, pooled), labels, top_k
        )
        for point, reading in readings.items()
    }


def earliest_latest(
    dataset, probs, labels, frame_indices, num_frames, pooled=True, top_k=1
):
    """`{"earliest": float, "latest": float}`: the paper's accuracies (Tables 1-3),
    earliest by the convention of `dataset` (a key of `EARLIEST`)."""
    args = (dataset, probs, labels, frame_indices, num_frames, pooled, top_k)
    return {p: float(hits.mean()) for p, hits in earliest_latest_correct(*args).items()}


def anticipation_step(pooled, threshold=0.5):
    """The 0-based step at which a streamed prediction commits (None: it does not).

    Of one video's pooled probabilities `(steps, N)`: the first step `t` such that at
    every step `t' >= t` the prediction `argmax_k pbar_t'[k]` is the class of the last
    step, with probability `max_k pbar_t'[k] >= threshold`.

    >>> anticipation_step([[0.6, 0.4], [0.45, 0.55], [0.3, 0.7], [0.35, 0.65]], 0.6)
    2
    """
    pooled = np.asarray(pooled, dtype=np.float64)
    if pooled.ndim != 2 or len(pooled) == 0 or not 0.0 <= threshold <= 1.0:
        raise ValueError(
            "anticipation_step needs pooled probabilities (steps, N) of at least one "
            f"step and a threshold in [0, 1]. Received: shape={pooled.shape}, "
            f"threshold={threshold}"
        )
    predicted = pooled.argmax(axis=-1)
    confident = (predicted == predicted[-1]) & (pooled.max(axis=-1) >= threshold)
    if not confident[-1]:
        return None
    # The last step that breaks the commitment; the moment is the step after it.
    broken = np.flatnonzero(~confident)
    return int(broken[-1]) + 1 if len(broken) else 0
