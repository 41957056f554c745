"""The authors' original code's losses (defect 6 of docs/original-code.md), to compare
numbers with it on the same features; the paper's equations are `msl_keras.losses`,
whose shapes and conventions these follow.

`msl_keras.losses.get_loss` knows them as `original_ce`, `original_linear`,
`original_exponential` and `original_anticipation` (`--set lstm.loss=original_...`).
"""

import math

import keras
from keras import ops

from msl_keras.losses import DEFAULT_EPSILON, SequenceLoss, _log_terms, _prepare

ORIGINAL_T, ORIGINAL_LAST = 18, 20  # the T and the last t of its loops


def original_linear_scale(T=ORIGINAL_T, last_step=ORIGINAL_LAST):
    """The constant of the original's "totally_linear" loss: `sum_{t=1..last} t/T`
    (210 / 18 = 11.667): its loop `for t in range(1, 21): loss += t / 18 *
    categorical_crossentropy(...)` never indexes a time step with t."""
    return sum(t / T for t in range(1, int(last_step) + 1))


def original_exponential_scale(T=ORIGINAL_T, last_step=ORIGINAL_LAST):
    """The constant of the original's "exponential" loss: `sum_{t=0..last} exp(-(T-t))`
    (e^2 + e + 1 + ... + e^-18 = 11.689): its loop scales the same whole-clip
    cross-entropy by `exp(-(18 - t))` for `t in range(0, 21)`."""
    return sum(math.exp(-(T - t)) for t in range(int(last_step) + 1))


def original_scaled_cross_entropy(
    y_true, y_pred, sample_weight=None, scale=1.0, epsilon=DEFAULT_EPSILON
):
    """Whole-clip cross-entropy times a constant: the original's "crossentropy"
    (scale 1), "totally_linear" and "exponential" losses (else as `anticipation_loss`).

        L = scale * (1/T) sum_{t=1..T} -sum_k y_t(k) log p_t(k)

    averaged over the clip's valid steps (Keras averaged over all stored steps). With
    SGD (also with momentum, without weight decay) `scale * L` at learning rate `lr`
    takes exactly the steps of `L` at `scale * lr`: the original's "linear" and
    "exponential" losses are per-step cross-entropy at an 11.7x learning rate.
    """
    y_true, y_pred, weight, valid, _, length = _prepare(y_true, y_pred, sample_weight)
    positive, _ = _log_terms(y_true, y_pred, epsilon)
    mean = ops.divide_no_nan(-ops.sum(weight * valid * positive, axis=1), length[:, 0])
    return scale * mean


def original_linear_loss(
    y_true, y_pred, sample_weight=None, T=ORIGINAL_T, last_step=ORIGINAL_LAST,
    epsilon=DEFAULT_EPSILON,
):  # fmt: skip
    """`original_scaled_cross_entropy` times `original_linear_scale(T, last_step)`."""
    scale = original_linear_scale(T, last_step)
    return original_scaled_cross_entropy(y_true, y_pred, sample_weight, scale, epsilon)


def original_exponential_loss(
    y_true, y_pred, sample_weight=None, T=ORIGINAL_T, last_step=ORIGINAL_LAST,
    epsilon=DEFAULT_EPSILON,
):  # fmt: skip
    """`original_scaled_cross_entropy` times `original_exponential_scale(...)`."""
    scale = original_exponential_scale(T, last_step)
    return original_scaled_cross_entropy(y_true, y_pred, sample_weight, scale, epsilon)


def original_anticipation_loss(
    y_true, y_pred, sample_weight=None, T=150, N=21, batch=32, epsilon=DEFAULT_EPSILON
):
    """The original code's Eq. 1 ("partially_linear"), one value per clip.

        L = -(1 / (N * batch)) sum_{t=1..min(T', T)} sum_k [ y_t(k) log(p_t(k) + eps)
                             + ((t - 1) / T) (1 - y_t(k)) log(1 - p_t(k) + eps) ]

    where T' is the clip's number of valid steps. Unlike Eq. 1 (`anticipation_loss`,
    else followed), T, N and the batch size are constants (its 150, 21 and 32), the time
    weight `(t - 1)/T` runs 0 .. T-1, steps after the T-th are ignored, and the sum is
    divided by the batch size on top of Keras' mean over the clips. `eps` is added
    inside the logs as in the original (not a clip).
    """
    y_true, y_pred, weight, valid, t, _ = _prepare(y_true, y_pred, sample_weight)
    positive = ops.sum(y_true * ops.log(y_pred + epsilon), axis=-1)
    negative = ops.sum((1.0 - y_true) * ops.log(1.0 - y_pred + epsilon), axis=-1)
    in_range = valid * ops.cast(t <= T, y_pred.dtype)
    per_step = positive + ((t - 1.0) / T) * negative
    return -ops.sum(weight * in_range * per_step, axis=1) / (N * batch)


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalScaledCrossEntropy(SequenceLoss):
    """The original's "crossentropy" loss (scale 1): `original_scaled_cross_entropy`."""

    fn = staticmethod(original_scaled_cross_entropy)
    default_name = "original_cross_entropy"


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalLinearLoss(SequenceLoss):
    """The original's "totally_linear" loss, `original_linear_loss`: not the paper's
    LGL (Eq. 9), `OriginalScaledCrossEntropy()` at an 11.667x learning rate."""

    fn = staticmethod(original_linear_loss)

    @property
    def scale(self):
        """The constant the whole-clip cross-entropy is multiplied by."""
        return original_linear_scale(self.T, self.last_step)


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalExponentialLoss(SequenceLoss):
    """The original's "exponential" loss, `original_exponential_loss`: not the paper's
    ECE (Eq. 8), `OriginalScaledCrossEntropy()` at an 11.689x learning rate."""

    fn = staticmethod(original_exponential_loss)

    @property
    def scale(self):
        """The constant the whole-clip cross-entropy is multiplied by."""
        return original_exponential_scale(self.T, self.last_step)


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalAnticipationLoss(SequenceLoss):
    """The original's Eq. 1 ("partially_linear"), `original_anticipation_loss`; its
    constants T, N and batch are options, each >= 1."""

    fn = staticmethod(original_anticipation_loss)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for key in ("T", "N", "batch"):
            if getattr(self, key) < 1:
                raise ValueError(
                    f"`{key}` must be an int >= 1. Received: {key}={kwargs[key]!r}"
                )


ORIGINAL_LOSSES = {
    "original_ce": OriginalScaledCrossEntropy,
    "original_linear": OriginalLinearLoss,
    "original_exponential": OriginalExponentialLoss,
    "original_anticipation": OriginalAnticipationLoss,
}
