"""Sequence losses for action anticipation: the paper's Eq. 1 and its baselines.

Each loss is a pure function on tensors (`keras.ops`) plus a registered subclass of
`SequenceLoss`; `shared/paper/baseline-losses.md` restates the equations. Arguments:

- `y_true (batch, time, classes)`: one-hot labels; a PADDED step is an all-zero row.
- `y_pred (batch, time, classes)`: probabilities, clipped to `[epsilon, 1 - epsilon]`
  inside every log.
- `sample_weight (batch, time)`, optional: per-step weights (default: the mask
  `sum(y_true, -1) > 0`); a step is VALID when its weight is > 0. Valid steps are
  numbered `t = 1..T`, `T` the clip's own number of valid steps, so `t/T`,
  `exp(-(T - t))` and "the last step" are per clip.

The functions return `(batch,)`, one value per clip (0 for a clip with no valid step);
the `Loss` classes average them over the batch, so Eq. 4's `mean_i (L_c,i + L_a,i)` is
`model.compile(loss={"stage1": AnticipationLoss(), "stage2": AnticipationLoss()})`.
Keras reads `compile(loss="ce")` as its own cross-entropy: pass `get_loss("ce")`.
"""

import inspect

import keras
from keras import ops

# Keras 3 has no public accessor for the mask on a model's output, nor for the
# reduction its `Loss.__call__` applies (which `SequenceLoss.__call__` replaces).
from keras.src.backend import get_keras_mask
from keras.src.losses.loss import reduce_weighted_values

from msl_keras.errors import ConfigError

DEFAULT_EPSILON = 1e-7


def _prepare(y_true, y_pred, sample_weight):
    """Checks shapes; returns y_true, y_pred, weight, valid, t (each (b,T)), T (b,1)."""
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if "float" not in dtype:
        dtype = keras.backend.floatx()
    y_true, y_pred = ops.cast(y_true, dtype), ops.cast(y_pred, dtype)
    shapes = zip(y_true.shape, y_pred.shape)
    if len(y_true.shape) != 3 or len(y_pred.shape) != 3 or any(
        a is not None and b is not None and a != b for a, b in shapes
    ):
        raise ValueError(
            "Expected y_true and y_pred of the same shape (batch, time, classes). "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if sample_weight is None:
        weight = ops.cast(ops.sum(y_true, axis=-1) > 0, dtype)
    else:
        weight = ops.cast(sample_weight, dtype)
        if len(weight.shape) != 2:
            raise ValueError(
                "Expected sample_weight of shape (batch, time), one weight per step. "
                f"Received: sample_weight.shape={weight.shape}"
            )
    valid = ops.cast(weight > 0, dtype)
    t = ops.cumsum(valid, axis=1) * valid  # 1..T on valid steps, 0 on padded ones
    length = ops.sum(valid, axis=1, keepdims=True)  # (b, 1): each clip's own T
    return y_true, y_pred, weight, valid, t, length


def _log_terms(y_true, y_pred, epsilon):
    """Per step: sum_k y log p (b,T) and sum_k (1 - y) log(1 - p) (b,T)."""
    p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
    positive = ops.sum(y_true * ops.log(p), axis=-1)
    negative = ops.sum((1.0 - y_true) * ops.log(1.0 - p), axis=-1)
    return positive, negative


def anticipation_loss(y_true, y_pred, sample_weight=None, epsilon=DEFAULT_EPSILON):
    """The paper's anticipation loss (Eq. 1), one value per clip `(batch,)`.

        L = -(1/N) sum_k sum_{t=1..T} [ y_t(k) log p_t(k)
                                        + (t/T) (1 - y_t(k)) log(1 - p_t(k)) ]

    False negatives cost the same at every step; false positives are weighed by t/T:
    a wrong guess early in the clip costs little, so the model may commit early.

    >>> y = keras.ops.one_hot([[1, 1]], 2)  # one clip, T=2, N=2, class 1
    >>> anticipation_loss(y, keras.ops.full((1, 2, 2), 0.5))  # [1.75 * ln 2]
    """
    y_true, y_pred, weight, valid, t, length = _prepare(y_true, y_pred, sample_weight)
    positive, negative = _log_terms(y_true, y_pred, epsilon)
    num_classes = ops.cast(ops.shape(y_pred)[-1], y_pred.dtype)
    per_step = positive + ops.divide_no_nan(t, length) * negative
    return -ops.sum(weight * valid * per_step, axis=1) / num_classes


def cross_entropy_last_step(
    y_true, y_pred, sample_weight=None, epsilon=DEFAULT_EPSILON
):
    """Cross-entropy on each clip's last valid step only (paper Eq. 7, "CE").

        L = - sum_k [ y_T(k) log p_T(k) + (1 - y_T(k)) log(1 - p_T(k)) ]
    """
    y_true, y_pred, weight, valid, t, length = _prepare(y_true, y_pred, sample_weight)
    positive, negative = _log_terms(y_true, y_pred, epsilon)
    last = valid * ops.cast(ops.equal(t, length), y_pred.dtype)
    return -ops.sum(weight * last * (positive + negative), axis=1)


def exponential_cross_entropy(
    y_true, y_pred, sample_weight=None, epsilon=DEFAULT_EPSILON
):
    """Exponentially weighted cross-entropy (paper Eq. 8, "ECE").

        L = - sum_{t=1..T} exp(-(T - t)) sum_k [ y_t(k) log p_t(k)
                                                + (1 - y_t(k)) log(1 - p_t(k)) ]
    """
    y_true, y_pred, weight, valid, t, length = _prepare(y_true, y_pred, sample_weight)
    positive, negative = _log_terms(y_true, y_pred, epsilon)
    time_weight = ops.exp(-(length - t)) * valid
    return -ops.sum(weight * time_weight * (positive + negative), axis=1)


def linearly_growing_loss(y_true, y_pred, sample_weight=None, epsilon=DEFAULT_EPSILON):
    """Linearly growing cross-entropy (paper Eq. 9, "LGL").

    The printed first term `y_t(k) log y_t(k)` is a typo for `y_t(k) log p_t(k)`:

        L = - sum_{t=1..T} (t/T) sum_k [ y_t(k) log p_t(k)
                                        + (1 - y_t(k)) log(1 - p_t(k)) ]
    """
    y_true, y_pred, weight, valid, t, length = _prepare(y_true, y_pred, sample_weight)
    positive, negative = _log_terms(y_true, y_pred, epsilon)
    time_weight = ops.divide_no_nan(t, length)
    return -ops.sum(weight * time_weight * (positive + negative), axis=1)


def jain_exponential_loss(y_true, y_pred, sample_weight=None, epsilon=DEFAULT_EPSILON):
    """Exponentially weighted softmax loss of Jain et al., ICRA 2016 (paper ref. [11]).

        L = - sum_{t=1..T} exp(-(T - t)) log p_t(y)
    """
    y_true, y_pred, weight, valid, t, length = _prepare(y_true, y_pred, sample_weight)
    positive, _ = _log_terms(y_true, y_pred, epsilon)
    time_weight = ops.exp(-(length - t)) * valid
    return -ops.sum(weight * time_weight * positive, axis=1)


def _running_max_before(values, valid, fill):
    """max_{t' < t, t' valid} values_t' at every step (b, T), `fill` where none exists:
    a (b, T, T) comparison, no loop, for a dynamic T too."""
    steps = ops.arange(ops.shape(values)[1])
    before = steps[None, :] < steps[:, None]  # [t, t'] = t' < t
    candidates = ops.logical_and(before[None], (valid > 0)[:, None])  # (b, T, T)
    fill = ops.cast(fill, values.dtype)
    return ops.max(ops.where(candidates, values[:, None], fill), axis=-1)


def _ranking_loss(y_true, y_pred, sample_weight, lambda_r, epsilon, on_margin):
    """Both ranking losses: `s_t` is p_t(y), or with `on_margin` the margin m_t. The
    running maximum s*_t over earlier VALID steps is a constant (`stop_gradient`), as
    in Ma et al.; at t = 1 there is no ranking penalty."""
    y_true, y_pred, weight, valid, t, _ = _prepare(y_true, y_pred, sample_weight)
    positive, _ = _log_terms(y_true, y_pred, epsilon)
    score = ops.sum(y_true * y_pred, axis=-1)  # p_t(y), (b, T)
    if on_margin:  # the true class drops below -1 in the max over the others
        score = score - ops.max(y_pred - 2.0 * y_true, axis=-1)
    fill = -1.0 if on_margin else 0.0
    best_before = ops.stop_gradient(_running_max_before(score, valid, fill))
    rank = ops.cast(t > 1, y_pred.dtype) * ops.relu(best_before - score)
    return ops.sum(weight * valid * (-positive + lambda_r * rank), axis=1)


def ranking_detection_loss(
    y_true, y_pred, sample_weight=None, lambda_r=1.0, epsilon=DEFAULT_EPSILON
):
    """Cross-entropy plus Ma et al.'s ranking loss on the detection score (ref. [21]).

        L = sum_{t=1..T} [ -log p_t(y) + lambda_r * max(0, p*_t(y) - p_t(y)) ],
        p*_t(y) = max_{t' < t} p_t'(y),  p*_1(y) = 0

    Ma, Sigal, Sclaroff, CVPR 2016: the score of the true class must not fall as more
    of the clip is seen. `lambda_r`: weight of the ranking term.
    """
    return _ranking_loss(y_true, y_pred, sample_weight, lambda_r, epsilon, False)


def ranking_margin_loss(
    y_true, y_pred, sample_weight=None, lambda_r=1.0, epsilon=DEFAULT_EPSILON
):
    """Cross-entropy plus Ma et al.'s ranking loss on the discriminative margin ([21]).

        L = sum_{t=1..T} [ -log p_t(y) + lambda_r * max(0, m*_t - m_t) ],
        m_t = p_t(y) - max_{k != y} p_t(k),  m*_t = max_{t' < t} m_t'

    The margin of the true class over the best other class must not fall.
    """
    return _ranking_loss(y_true, y_pred, sample_weight, lambda_r, epsilon, True)


class SequenceLoss(keras.losses.Loss):
    """A loss function `fn` as a `keras.losses.Loss`, as `LossFunctionWrapper` does.

    A subclass sets `fn(y_true, y_pred, sample_weight, **options) -> (batch,)`; its
    options (keyword arguments after `sample_weight`: `epsilon`, `lambda_r`...) are
    constructor arguments (default: `fn`'s), attributes and `get_config` entries. A
    `TypeError` names an unknown option, a `ValueError` a fraction for an int one.
    `name` defaults to `default_name` or `fn`'s name.

    Call arguments: `y_true, y_pred (batch, time, classes)`; `sample_weight`, optional:
    `(batch, time)` step weights or `(batch,)` clip weights. The step weights and the
    Keras mask of `y_pred` enter `fn` (Keras' `Loss.__call__` would apply them to the
    `(batch,)` values, and broadcast the mask wrongly).
    """

    fn = None
    default_name = None

    def __init__(
        self, reduction="sum_over_batch_size", name=None, dtype=None, **options
    ):
        parameters = list(inspect.signature(self.fn).parameters.values())
        defaults = {p.name: p.default for p in parameters[3:]}  # after sample_weight
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {unknown}. "
                f"Its options: {sorted(defaults)} (and reduction, name, dtype)."
            )
        name = name or self.default_name or self.fn.__name__
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        for key, default in defaults.items():
            value = options.get(key, default)
            if isinstance(default, int) and int(value) != value:
                raise ValueError(
                    f"`{key}` must be a whole number. Received: {key}={value!r}"
                )
            setattr(self, key, type(default)(value))  # as fn's default: int or float
        self._option_names = tuple(defaults)

    def call(self, y_true, y_pred, sample_weight=None):
        """Per-clip values `(batch,)`, unreduced."""
        options = {key: getattr(self, key) for key in self._option_names}
        return type(self).fn(y_true, y_pred, sample_weight, **options)

    def __call__(self, y_true, y_pred, sample_weight=None):
        keras_mask = get_keras_mask(y_pred)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
            step_weight = clip_weight = None
            if sample_weight is not None:
                sample_weight = ops.convert_to_tensor(sample_weight, dtype=self.dtype)
                if len(sample_weight.shape) == 1:
                    clip_weight = sample_weight
                elif len(sample_weight.shape) == 3 and sample_weight.shape[-1] == 1:
                    step_weight = ops.squeeze(sample_weight, -1)
                else:
                    step_weight = sample_weight
            if keras_mask is not None:
                if step_weight is None:
                    step_weight = ops.cast(ops.sum(y_true, axis=-1) > 0, self.dtype)
                step_weight = step_weight * ops.cast(keras_mask, self.dtype)
            values = self.call(y_true, y_pred, step_weight)
            return reduce_weighted_values(
                values, clip_weight, reduction=self.reduction, dtype=self.dtype
            )

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._option_names})
        return config


@keras.saving.register_keras_serializable(package="msl_keras")
class AnticipationLoss(SequenceLoss):
    """`anticipation_loss` (Eq. 1) as a Keras loss (Eq. 4: one per stage)."""

    fn = staticmethod(anticipation_loss)


@keras.saving.register_keras_serializable(package="msl_keras")
class CrossEntropyLastStep(SequenceLoss):
    """`cross_entropy_last_step` (Eq. 7, "CE") as a Keras loss."""

    fn = staticmethod(cross_entropy_last_step)


@keras.saving.register_keras_serializable(package="msl_keras")
class ExponentialCrossEntropy(SequenceLoss):
    """`exponential_cross_entropy` (Eq. 8, "ECE") as a Keras loss."""

    fn = staticmethod(exponential_cross_entropy)


@keras.saving.register_keras_serializable(package="msl_keras")
class LinearlyGrowingLoss(SequenceLoss):
    """`linearly_growing_loss` (Eq. 9, "LGL") as a Keras loss."""

    fn = staticmethod(linearly_growing_loss)


@keras.saving.register_keras_serializable(package="msl_keras")
class JainExponentialLoss(SequenceLoss):
    """`jain_exponential_loss` (Jain et al. [11]) as a Keras loss."""

    fn = staticmethod(jain_exponential_loss)


@keras.saving.register_keras_serializable(package="msl_keras")
class RankingDetectionLoss(SequenceLoss):
    """`ranking_detection_loss` (Ma et al. [21]) as a Keras loss; option `lambda_r`."""

    fn = staticmethod(ranking_detection_loss)


@keras.saving.register_keras_serializable(package="msl_keras")
class RankingMarginLoss(SequenceLoss):
    """`ranking_margin_loss` (Ma et al. [21]) as a Keras loss; option `lambda_r`."""

    fn = staticmethod(ranking_margin_loss)


LOSSES = {
    "anticipation": AnticipationLoss,
    "ce": CrossEntropyLastStep,
    "ece": ExponentialCrossEntropy,
    "lgl": LinearlyGrowingLoss,
    "jain": JainExponentialLoss,
    "ranking_score": RankingDetectionLoss,
    "ranking_margin": RankingMarginLoss,
}


def get_loss(name, **kwargs):
    """A loss instance by its name in `LOSSES` or `original.losses.ORIGINAL_LOSSES`,
    e.g. `get_loss("ranking_score", lambda_r=0.5)`. A `ConfigError` for an unknown name
    or an option the loss does not take."""
    # Imported here: the original's losses are built on this module's base class.
    from msl_keras.original.losses import ORIGINAL_LOSSES

    known = {**LOSSES, **ORIGINAL_LOSSES}
    if name not in known:
        raise ConfigError(
            f"Unknown loss '{name}'. Valid names: {', '.join(sorted(known))}."
        )
    try:
        return known[name](**kwargs)
    except TypeError as error:  # an option the loss does not take
        raise ConfigError(f"Loss '{name}' {kwargs}: {error}") from error
