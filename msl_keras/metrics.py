"""Accuracy against the part of a clip observed (paper Tables 1-4, Figs. 5-6).

The functions are numpy; `AnticipationAccuracy` is the same score as a Keras metric, for
`fit`'s validation pass (model selection of the LSTM stage).

The LSTMs are causal, so ONE forward pass over each clip gives `probs (clips, T, N)`,
the prediction after every number of observed steps: re-running the model on each
prefix is never needed. Pooled predictions use `temporal_average_pooling` (Sec. 3.2.2).

Conventions:

- A step is one stored frame. `lengths (clips,)` counts each clip's valid steps (a clip
  shorter than T is padded at the end); "after t steps" for a clip shorter than t means
  after all of its valid steps.
- `frame_indices (clips, T)` gives the source frame of each stored step (-1 on padding)
  and `num_frames (clips,)` each clip's frame count. Observing a ratio r of a clip means
  seeing its first `ceil(r * num_frames)` frames; the prediction is read at the last
  stored step whose source frame is among them (at least the first step).
- Earliest / latest follow the paper (see `EARLIEST`); latest is the last valid stored
  step: the whole clip, capped at the T stored steps. `reported_readings` says which step
  and source frame each reported point reads, clip by clip, so a caller can check that
  two points observing different parts of a clip do not read the same step.
- top-k: a clip counts as correct when its label is among the k highest scores (ties go
  to the lower class index, as `argmax` does for k = 1).
"""

import keras
import numpy as np
from keras import ops

from msl_keras.data.video import observed_frames
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling

# Observation ratios of the accuracy-vs-ratio curves: 0.1, 0.2, ..., 1.0.
RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))

# dataset -> ("ratio", fraction of each clip) or ("frames", frame count); paper Sec. 4.
EARLIEST = {
    "jhmdb": ("ratio", 0.2),
    "ut_interaction": ("ratio", 0.5),
    "ucf101": ("frames", 2),
    # The synthetic smoke-test clips (msl_keras.data.generated): JHMDB's convention.
    "generated": ("ratio", 0.2),
    # Features made elsewhere (msl_keras.data.imported): JHMDB's convention too; every
    # ratio's accuracy is in results.json.
    "imported": ("ratio", 0.2),
}

# Datasets whose latest point is "the whole clip, but never more than its first T frames"
# (paper Sec. 4.3, UCF-101: "in the latest setting ... we only exploit the first T
# frames"). Elsewhere latest is the whole clip (UT-Interaction: "the entire sequence").
LATEST_FIRST_T = ("ucf101",)


def _check_probs(probs):
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(
            "Expected probs of shape (clips, time, classes). "
            f"Received: probs.shape={probs.shape}"
        )
    return probs


def _check_labels(labels, probs):
    labels = np.asarray(labels)
    num_clips, _, num_classes = probs.shape
    if labels.shape != (num_clips,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected integer labels of shape ({num_clips},), one per clip of probs "
            f"{probs.shape}. Received: labels.shape={labels.shape}, "
            f"dtype={labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes}) for probs with {num_classes} "
            f"classes. Received: labels from {labels.min()} to {labels.max()}"
        )
    return labels


def _check_lengths(lengths, probs):
    num_clips, num_steps, _ = probs.shape
    if lengths is None:
        return np.full(num_clips, num_steps, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (num_clips,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(
            f"Expected integer lengths of shape ({num_clips},), one per clip of probs "
            f"{probs.shape}. Received: lengths.shape={lengths.shape}, "
            f"dtype={lengths.dtype}"
        )
    if lengths.size and (lengths.min() < 1 or lengths.max() > num_steps):
        raise ValueError(
            f"Every clip needs between 1 and {num_steps} valid steps. "
            f"Received: lengths from {lengths.min()} to {lengths.max()}"
        )
    return lengths


def _check_frames(frame_indices, num_frames, probs):
    frame_indices = np.asarray(frame_indices)
    if frame_indices.shape != probs.shape[:2] or not np.issubdtype(
        frame_indices.dtype, np.integer
    ):
        raise ValueError(
            f"Expected integer frame_indices of shape {probs.shape[:2]} (clips, time), "
            f"-1 on padded steps. Received: frame_indices.shape={frame_indices.shape}, "
            f"dtype={frame_indices.dtype}"
        )
    lengths = (frame_indices >= 0).sum(axis=1)
    if lengths.size and lengths.min() < 1:
        raise ValueError(
            "Every clip needs at least one stored step (frame index >= 0). "
            f"Received: clips {np.flatnonzero(lengths < 1).tolist()} with none"
        )
    if num_frames is not None:
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


def prediction_at_step(probs, steps, lengths=None, pooled=True):
    """Class scores after `steps` observed steps, one row per clip.

    Args:
        probs: `(clips, T, N)` per-step probabilities from one causal pass.
        steps: number of observed steps, 1-based: an int or `(clips,)` ints. A clip with
            fewer valid steps uses its last valid step.
        lengths: optional `(clips,)` valid steps per clip (default: all T).
        pooled: average the probabilities over the observed steps (Sec. 3.2.2).

    Returns:
        `(clips, N)` scores; the predicted class is their argmax.
    """
    probs = _check_probs(probs)
    lengths = _check_lengths(lengths, probs)
    steps = np.broadcast_to(np.asarray(steps), lengths.shape)
    if not np.issubdtype(steps.dtype, np.integer) or (steps.size and steps.min() < 1):
        raise ValueError(
            "steps counts observed steps from 1 (an int or one int per clip). "
            f"Received: steps={steps}"
        )
    scores = temporal_average_pooling(probs, lengths) if pooled else probs
    return _scores_at(scores, steps, lengths)


def _scores_at(scores, steps, lengths):
    """(clips, N): row min(steps, lengths) - 1 of each clip's (T, N) scores."""
    index = np.minimum(steps, lengths) - 1
    return scores[np.arange(len(index)), index]


def accuracy_vs_steps(probs, labels, lengths=None, pooled=True, top_k=1):
    """Accuracy after t observed steps, for t = 1..T (paper Figs. 5-6).

    Args:
        probs: `(clips, T, N)` per-step probabilities from one causal pass.
        labels: `(clips,)` true classes.
        lengths: optional `(clips,)` valid steps per clip; a clip shorter than t is
            scored at its last valid step.
        pooled: temporal average pooling of the probabilities first.
        top_k: count a clip correct when its label is among the k best classes.

    Returns:
        `(T,)` accuracies in [0, 1].
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs)
    lengths = _check_lengths(lengths, probs)
    scores = temporal_average_pooling(probs, lengths) if pooled else probs
    return np.array(
        [
            _top_k_correct(_scores_at(scores, t, lengths), labels, top_k).mean()
            for t in range(1, probs.shape[1] + 1)
        ]
    )


@keras.saving.register_keras_serializable(package="msl_keras")
class AnticipationAccuracy(keras.metrics.Metric):
    """The mean over t = 1..T of the pooled accuracy after t observed steps.

    `mean(accuracy_vs_steps(probs, labels, lengths, pooled=True))` over every clip seen
    since the last reset: the LSTM stage's model-selection score (paper Sec. 3.2.2,
    temporal average pooling; read on the validation clips, never test). Every clip is
    stored at the same T steps, so the mean over steps of the mean over clips is one
    ratio of counts, accumulated batch by batch:

        mean_t (1/C) sum_c hit[c, t] = (sum_c sum_t hit[c, t]) / (C * T),
        hit[c, t] = [argmax_k pbar_{min(t, length_c)}[c, k] == label_c]

    Args:
        name: the logged name (`fit` logs `val_<name>`, prefixed with the output's name
            when the model has several outputs, e.g. `val_stage2_anticipation_accuracy`).

    `update_state(y_true, y_pred)`: `y_true (batch, T, N)` one-hot on the valid steps
    and all-zero on padding (`sequence_dataset`'s targets), which give each clip's label
    and length; `y_pred (batch, T, N)` per-step probabilities.
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
    """`(clips,)` the 1-based step read after observing the first `limits` frames.

    The last stored step whose source frame is `< limit`, or the first step when none is.

    Args:
        frame_indices: `(clips, T)` source frame of each stored step, -1 on padding.
        limits: `(clips,)` frames observed of each clip.
    """
    frame_indices = np.asarray(frame_indices)
    observed = (frame_indices >= 0) & (frame_indices < np.asarray(limits)[:, None])
    positions = np.arange(1, frame_indices.shape[1] + 1)
    return np.maximum(np.where(observed, positions, 0).max(axis=1), 1)


def _accuracy_at_frame_limits(probs, labels, frame_indices, limits, pooled, top_k):
    """Accuracy reading each clip at its last stored step with frame < limit (>= 1)."""
    steps = steps_observing(frame_indices, limits)
    lengths = (frame_indices >= 0).sum(axis=1)
    scores = prediction_at_step(probs, steps, lengths, pooled)
    return float(_top_k_correct(scores, labels, top_k).mean())


def _frame_limits(ratio, num_frames):
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1]. Received: ratio={ratio}")
    return np.asarray(observed_frames(np.asarray(num_frames), float(ratio)))


def accuracy_at_ratio(
    probs, labels, frame_indices, num_frames, ratio, pooled=True, top_k=1
):
    """Accuracy after observing the first `ceil(ratio * num_frames)` frames of clips.

    Args:
        probs: `(clips, T, N)` per-step probabilities from one causal pass.
        labels: `(clips,)` true classes.
        frame_indices: `(clips, T)` source frame of each stored step, -1 on padding.
        num_frames: `(clips,)` frames in each source clip.
        ratio: observed fraction of each clip, in (0, 1].
        pooled, top_k: as `accuracy_vs_steps`.

    Returns:
        accuracy (float). Each clip is read at its last stored step whose source frame
        index is < ceil(ratio * num_frames), or at its first step if there is none.
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs)
    frame_indices, _, num_frames = _check_frames(frame_indices, num_frames, probs)
    limits = _frame_limits(ratio, num_frames)
    return _accuracy_at_frame_limits(
        probs, labels, frame_indices, limits, pooled, top_k
    )


def accuracy_at_ratios(
    probs,
    labels,
    frame_indices,
    num_frames,
    ratios=RATIOS,
    pooled=True,
    top_k=1,
):
    """`accuracy_at_ratio` for each ratio (default `RATIOS`); `(len(ratios),)` array."""
    return np.array(
        [
            accuracy_at_ratio(
                probs, labels, frame_indices, num_frames, r, pooled=pooled, top_k=top_k
            )
            for r in ratios
        ]
    )


def accuracy_at_frames(probs, labels, frame_indices, count, pooled=True, top_k=1):
    """Accuracy after observing the first `count` frames of each clip.

    Args:
        probs, labels, frame_indices, pooled, top_k: as `accuracy_at_ratio`.
        count: frames observed (>= 1), e.g. 2 for UCF-101's earliest point.

    Returns:
        accuracy (float). Each clip is read at its last stored step whose source frame
        index is < count, or at its first step if there is none.
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs)
    frame_indices, _, _ = _check_frames(frame_indices, None, probs)
    if int(count) != count or count < 1:
        raise ValueError(f"count must be a whole number >= 1. Received: count={count}")
    limits = np.full(probs.shape[0], int(count))
    return _accuracy_at_frame_limits(
        probs, labels, frame_indices, limits, pooled, top_k
    )


def _earliest_limits(dataset, num_frames, num_clips):
    """(clips,) frames the earliest point observes (`num_frames` may be None for a
    frame-count convention)."""
    if dataset not in EARLIEST:
        raise ConfigError(
            f"No earliest-observation convention for dataset '{dataset}'. "
            f"Valid datasets: {', '.join(sorted(EARLIEST))}."
        )
    kind, amount = EARLIEST[dataset]
    if kind == "ratio":
        return _frame_limits(amount, num_frames)
    limits = np.full(num_clips, int(amount))
    return limits if num_frames is None else np.minimum(limits, num_frames)


def reported_readings(dataset, frame_indices, num_frames, ratios=RATIOS):
    """Which stored step, and which source frame, each reported point reads, per clip.

    The reported points are the dataset's "earliest" (`EARLIEST`), "latest" and each
    ratio of `ratios` (keyed `f"{ratio:g}"`). A point observes the first `frames` frames
    of a clip and is read at `steps_observing(frame_indices, frames)`; latest is read at
    the last valid step and observes the whole clip (`LATEST_FIRST_T`: at most its first
    T frames, T the stored steps).

    Args:
        dataset: a key of `EARLIEST`.
        frame_indices: `(clips, T)` source frame of each stored step, -1 on padding.
        num_frames: `(clips,)` frames in each source clip.
        ratios: observed fractions in (0, 1].

    Returns:
        `{point: {"frames": (clips,) frames observed, "step": (clips,) 1-based step read,
        "frame": (clips,) source frame of that step}}`. Latest reaches the end of the
        part it observes where `frame == frames - 1`.

    Example:

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
            f"frame_indices.shape={frame_indices.shape}, num_frames.shape={num_frames.shape}"
        )
    lengths = (frame_indices >= 0).sum(axis=1)
    rows = np.arange(len(lengths))

    def reading(frames, steps):
        return {"frames": frames, "step": steps, "frame": frame_indices[rows, steps - 1]}

    whole = num_frames
    if dataset in LATEST_FIRST_T:
        whole = np.minimum(num_frames, frame_indices.shape[1])
    earliest = _earliest_limits(dataset, num_frames, len(lengths))
    readings = {
        "earliest": reading(earliest, steps_observing(frame_indices, earliest)),
        "latest": reading(whole, np.maximum(lengths, 1)),
    }
    for ratio in ratios:
        frames = _frame_limits(ratio, num_frames)
        readings[f"{float(ratio):g}"] = reading(
            frames, steps_observing(frame_indices, frames)
        )
    return readings


def earliest_latest(
    dataset, probs, labels, frame_indices, num_frames, pooled=True, top_k=1
):
    """The paper's earliest and latest accuracies (Tables 1-3) for one dataset.

    Args:
        dataset: a key of `EARLIEST` ("jhmdb": first 20% of each clip,
            "ut_interaction": first 50%, "ucf101": first 2 frames, "generated": 20%).
        probs, labels, frame_indices, num_frames, pooled, top_k: as `accuracy_at_ratio`.

    Returns:
        `{"earliest": float, "latest": float}`; latest reads each clip at its last valid
        stored step (the whole clip, capped at the T stored steps).
    """
    correct = earliest_latest_correct(
        dataset, probs, labels, frame_indices, num_frames, pooled, top_k
    )
    return {point: float(hits.mean()) for point, hits in correct.items()}


def earliest_latest_correct(
    dataset, probs, labels, frame_indices, num_frames, pooled=True, top_k=1
):
    """Which clips are right at the earliest and latest points (`earliest_latest`).

    Returns:
        `{"earliest": (clips,) bool, "latest": (clips,) bool}`: per clip, for paired
        comparisons of two models on the same clips.
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs)
    frame_indices, lengths, num_frames = _check_frames(frame_indices, num_frames, probs)
    limits = _earliest_limits(dataset, num_frames, probs.shape[0])
    earliest_steps = steps_observing(frame_indices, limits)
    return {
        "earliest": _top_k_correct(
            prediction_at_step(probs, earliest_steps, lengths, pooled), labels, top_k
        ),
        "latest": _top_k_correct(
            prediction_at_step(probs, lengths, lengths, pooled), labels, top_k
        ),
    }


def anticipation_step(pooled, threshold=0.5):
    """The step at which a streamed prediction commits: fixed from there on, confident.

    The anticipation moment of one video: the first step `t` such that for every later
    step `t' >= t` (to the last one seen) the pooled prediction `argmax_k pbar_t'[k]` is
    the class of the last step and its probability `max_k pbar_t'[k] >= threshold`.

    Args:
        pooled: `(steps, N)` pooled probabilities of one video, step by step.
        threshold: the probability the committed class must keep, in [0, 1].

    Returns:
        The 0-based step, or None when the last step itself is below `threshold`.

    Example:

    >>> anticipation_step([[0.6, 0.4], [0.45, 0.55], [0.3, 0.7], [0.35, 0.65]], 0.6)
    2
    """
    pooled = np.asarray(pooled, dtype=np.float64)
    if pooled.ndim != 2 or len(pooled) == 0:
        raise ValueError(
            "anticipation_step needs pooled probabilities (steps, N) of at least one "
            f"step. Received: shape={pooled.shape}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1]. Received: threshold={threshold}")
    predicted = pooled.argmax(axis=-1)
    confident = (predicted == predicted[-1]) & (pooled.max(axis=-1) >= threshold)
    if not confident[-1]:
        return None
    # The last step that breaks the commitment; the moment is the step after it.
    broken = np.flatnonzero(~confident)
    return int(broken[-1]) + 1 if len(broken) else 0
