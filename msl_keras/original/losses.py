"""The authors' original code's losses, to compare numbers with it on the same features.

Not the paper's equations (those are `msl_keras.losses`); see `docs/original-code.md`,
defect 6. Shapes and conventions as `msl_keras.losses`:

- `OriginalScaledCrossEntropy` ("crossentropy"): Keras' categorical cross-entropy at
  every step, averaged over the clip.
- `OriginalLinearLoss` ("totally_linear"), `OriginalExponentialLoss` ("exponential"):
  that whole-clip cross-entropy times a constant (its loops never index a time step).
- `OriginalAnticipationLoss` ("partially_linear"): its Eq. 1 with fixed T, N and batch
  size.

`msl_keras.losses.get_loss` knows them as `original_ce`, `original_linear`,
`original_exponential` and `original_anticipation` (`--set lstm.loss=original_...`).
"""

import math

import keras
from keras import ops

from msl_keras.losses import DEFAULT_EPSILON, SequenceLoss, _log_terms, _prepare

ORIGINAL_T, ORIGINAL_LAST = 18, 20  # the T and the last t of its loops


def original_linear_scale(T=ORIGINAL_T, last_step=ORIGINAL_LAST):
    """The constant of the original's "totally_linear" loss: `sum_{t=1..last} t/T`.

    Its loop `for t in range(1, 21): loss += t / 18 * categorical_crossentropy(...)`
    adds the SAME whole-clip cross-entropy 20 times; t never indexes a time step.
    Default: 210 / 18 = 11.667.
    """
    return sum(t / T for t in range(1, int(last_step) + 1))


def original_exponential_scale(T=ORIGINAL_T, last_step=ORIGINAL_LAST):
    """The constant of the original's "exponential" loss: `sum_{t=0..last} exp(-(T-t))`.

    Its loop over `t in range(0, 21)` scales the same whole-clip cross-entropy by
    `exp(-(18 - t))` 21 times. Default: e^2 + e + 1 + ... + e^-18 = 11.689.
    """
    return sum(math.exp(-(T - t)) for t in range(int(last_step) + 1))


def original_scaled_cross_entropy(
    y_true, y_pred, sample_weight=None, scale=1.0, epsilon=DEFAULT_EPSILON
):
    """Whole-clip cross-entropy times a constant: the original's "crossentropy"
    (scale 1), "totally_linear" and "exponential" losses.

        L = scale * (1/T) sum_{t=1..T} -sum_k y_t(k) log p_t(k)

    Keras' categorical cross-entropy at every step, averaged over the clip's valid steps
    (Keras averaged over all stored steps; padded steps are left out here, as in every
    loss of this module). A constant factor changes no direction of the gradient: with
    SGD (also with momentum or Nesterov, without weight decay) training on
    `scale * L` at learning rate `lr` takes exactly the steps of `L` at `scale * lr`.
    So the original's "linear" and "exponential" losses are plain per-step
    cross-entropy with an 11.7x larger learning rate: no time weighting at all.

    Args and returns as `anticipation_loss`; `scale` is the constant.
    """
    y_true, y_pred, weight, valid, _, length = _prepare(y_true, y_pred, sample_weight)
    positive, _ = _log_terms(y_true, y_pred, epsilon)
    mean = ops.divide_no_nan(-ops.sum(weight * valid * positive, axis=1), length[:, 0])
    return scale * mean


def original_linear_loss(
    y_true,
    y_pred,
    sample_weight=None,
    T=ORIGINAL_T,
    last_step=ORIGINAL_LAST,
    epsilon=DEFAULT_EPSILON,
):
    """`original_scaled_cross_entropy` times `original_linear_scale(T, last_step)`."""
    scale = original_linear_scale(T, last_step)
    return original_scaled_cross_entropy(y_true, y_pred, sample_weight, scale, epsilon)


def original_exponential_loss(
    y_true,
    y_pred,
    sample_weight=None,
    T=ORIGINAL_T,
    last_step=ORIGINAL_LAST,
    epsilon=DEFAULT_EPSILON,
):
    """`original_scaled_cross_entropy` times `original_exponential_scale(...)`."""
    scale = original_exponential_scale(T, last_step)
    return original_scaled_cross_entropy(y_true, y_pred, sample_weight, scale, epsilon)


def original_anticipation_loss(
    y_true, y_pred, sample_weight=None, T=150, N=21, batch=32, epsilon=DEFAULT_EPSILON
):
    """The original code's Eq. 1 ("partially_linear"), one value per clip.

        L = -(1 / (N * batch)) sum_{t=1..min(T', T)} sum_k [ y_t(k) log(p_t(k) + eps)
                                       + ((t - 1) / T) (1 - y_t(k)) log(1 - p_t(k) + eps) ]

    where T' is the clip's number of valid steps. It differs from Eq. 1
    (`anticipation_loss`) in four ways: T, N and the batch size are constants
    (hard-coded 150, 21 and 32 in the original, whatever the data), the time weight is
    `(t - 1)/T`, running 0 .. T-1 (the first step's false positives cost nothing),
    steps after the T-th are ignored, and the result is divided by the batch size on
    top of Keras' own mean over the clips (a constant factor: a learning-rate change).
    With T = 150 and 50 stored steps the false-positive weight never passes 49/150.
    `eps` is added inside the logs as in the original (not a clip).

    Args (others and returns as `anticipation_loss`):
        T: the fixed "clip length" of the time weight (150 in the original).
        N: the fixed number of classes dividing the sum (21, JHMDB's, in the original).
        batch: the constant the sum is divided by (32 in the original).
    """
    y_true, y_pred, weight, valid, t, _ = _prepare(y_true, y_pred, sample_weight)
    positive = ops.sum(y_true * ops.log(y_pred + epsilon), axis=-1)
    negative = ops.sum((1.0 - y_true) * ops.log(1.0 - y_pred + epsilon), axis=-1)
    in_range = valid * ops.cast(t <= T, y_pred.dtype)
    per_step = positive + ((t - 1.0) / T) * negative
    return -ops.sum(weight * in_range * per_step, axis=1) / (N * batch)


# Each class takes its function's options (after `sample_weight`) as keywords, and
# `reduction`, `name`, `dtype` and its call arguments as `AnticipationLoss`.


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalScaledCrossEntropy(SequenceLoss):
    """The original's "crossentropy" loss (scale 1): `original_scaled_cross_entropy`."""

    fn = staticmethod(original_scaled_cross_entropy)
    default_name = "original_cross_entropy"


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalLinearLoss(SequenceLoss):
    """The original's "totally_linear" loss: the whole-clip cross-entropy times
    `sum_{t=1..last_step} t/T` (11.667 with its T = 18, last_step = 20).

    Not the paper's LGL (Eq. 9, `LinearlyGrowingLoss`): no step is weighted by its
    time. Equivalent to `OriginalScaledCrossEntropy()` at an 11.667x learning rate.
    """

    fn = staticmethod(original_linear_loss)

    @property
    def scale(self):
        """The constant the whole-clip cross-entropy is multiplied by."""
        return original_linear_scale(self.T, self.last_step)


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalExponentialLoss(SequenceLoss):
    """The original's "exponential" loss: the whole-clip cross-entropy times
    `sum_{t=0..last_step} exp(-(T - t))` (11.689 with its T = 18, last_step = 20).

    Not the paper's ECE (Eq. 8, `ExponentialCrossEntropy`): no step is weighted by
    its time. Equivalent to `OriginalScaledCrossEntropy()` at an 11.689x learning rate.
    """

    fn = staticmethod(original_exponential_loss)

    @property
    def scale(self):
        """The constant the whole-clip cross-entropy is multiplied by."""
        return original_exponential_scale(self.T, self.last_step)


@keras.saving.register_keras_serializable(package="msl_keras")
class OriginalAnticipationLoss(SequenceLoss):
    """The original's version of Eq. 1 ("partially_linear"): see
    `original_anticipation_loss`; its constants T, N and batch are options, each >= 1."""

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
