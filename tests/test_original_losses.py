"""The original code's losses (msl_keras/original/losses.py, names `original_*`) against literal
numpy transcriptions of its loops, hand values, and the learning-rate equivalence."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras import losses
from msl_keras.original import losses as original_losses

ORIGINAL_NAMES = [
    "original_ce",
    "original_linear",
    "original_exponential",
    "original_anticipation",
]


def random_batch(rng, lengths=(5, 3, 4), steps=5, classes=4):
    """One-hot labels with all-zero padded rows and softmax predictions."""
    y_true = np.zeros((len(lengths), steps, classes), np.float32)
    for i, n in enumerate(lengths):
        y_true[i, :n, rng.integers(classes)] = 1.0
    logits = rng.normal(size=(len(lengths), steps, classes))
    y_pred = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y_true, y_pred.astype(np.float32)


def keras_categorical_crossentropy(y, p, eps=1e-7):
    """Keras' categorical_crossentropy of one step (probabilities, clipped)."""
    p = np.clip(p, eps, 1 - eps)
    return -float(np.sum(y * np.log(p)))


def reference_scaled(y_true, y_pred, loop):
    """The original's losses as its loops wrote them: a loop over a counter that is
    NOT the time step, adding a weighted copy of the clip's mean cross-entropy."""
    out = []
    for i in range(len(y_true)):
        valid = [s for s in range(y_true.shape[1]) if y_true[i, s].sum() > 0]
        ce = np.mean(
            [keras_categorical_crossentropy(y_true[i, s], y_pred[i, s]) for s in valid]
        )
        total = 0.0
        if loop == "crossentropy":
            total = ce
        elif loop == "totally_linear":
            T = 18
            for t in range(1, 21):
                total += (t / T) * ce
        elif loop == "exponential":
            T = 18
            for t in range(21):
                total += np.exp(-(T - t)) * ce
        out.append(total)
    return np.array(out)


def reference_partially_linear(y_true, y_pred, TIME=150, N_C=21, batch=32, eps=1e-7):
    """The original's `partially_linear` per clip: for t in range(TIME), over the
    stored (valid) steps only."""
    out = []
    for i in range(len(y_true)):
        loss = 0.0
        for t in range(min(TIME, y_true.shape[1])):
            y, p = y_true[i, t], y_pred[i, t]
            if y.sum() == 0:  # padded step: left out here (see the docstring)
                continue
            term1 = y * np.log(p + eps)
            term2 = (1 - y) * np.log(1 - p + eps)
            loss += 1.0 / N_C * np.sum(term1 + term2 * t / TIME)
        out.append(-loss / batch)
    return np.array(out)


def test_constants_are_the_loops_sums():
    assert original_losses.original_linear_scale() == pytest.approx(210 / 18)
    closed = (math.e**3 - math.exp(-18)) / (math.e - 1)  # sum_{j=-2..18} e^-j
    assert original_losses.original_exponential_scale() == pytest.approx(closed)
    assert original_losses.original_exponential_scale() == pytest.approx(11.6893, abs=1e-4)
    assert original_losses.original_linear_scale(T=10, last_step=4) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "name,loop",
    [
        ("original_ce", "crossentropy"),
        ("original_linear", "totally_linear"),
        ("original_exponential", "exponential"),
    ],
)
def test_scaled_losses_match_the_original_loops(name, loop):
    rng = np.random.default_rng(0)
    y_true, y_pred = random_batch(rng)
    loss = losses.get_loss(name, reduction="none")
    np.testing.assert_allclose(
        loss(y_true, y_pred).numpy(), reference_scaled(y_true, y_pred, loop), rtol=1e-5
    )
    # Time plays no part: the order of the steps does not change the value.
    reversed_pred = y_pred.copy()
    for i, n in enumerate((5, 3, 4)):
        reversed_pred[i, :n] = y_pred[i, :n][::-1]
    np.testing.assert_allclose(
        loss(y_true, reversed_pred).numpy(), loss(y_true, y_pred).numpy(), rtol=1e-6
    )


def test_original_anticipation_matches_its_loop_and_hand_value():
    rng = np.random.default_rng(1)
    y_true, y_pred = random_batch(rng)
    loss = losses.get_loss("original_anticipation", reduction="none")
    np.testing.assert_allclose(
        loss(y_true, y_pred).numpy(),
        reference_partially_linear(y_true, y_pred),
        rtol=1e-5,
    )
    # One clip, 2 steps, 2 classes, p = 0.5, class 1: the first step's false positive
    # weighs 0/T, the second's 1/T: L = -(2 + 1/T) ln(0.5 + eps) / (N * batch).
    y = np.zeros((1, 2, 2), np.float32)
    y[0, :, 1] = 1
    p = np.full((1, 2, 2), 0.5, np.float32)
    value = original_losses.original_anticipation_loss(y, p, T=150, N=2, batch=1)
    expected = -(2 + 1 / 150) * math.log(0.5 + 1e-7) / 2
    np.testing.assert_allclose(value.numpy(), [expected], rtol=1e-6)
    # Steps after the T-th are ignored; the paper's Eq. 1 weighs them all.
    short = original_losses.original_anticipation_loss(y_true, y_pred, T=2, N=4, batch=1)
    np.testing.assert_allclose(
        short.numpy(),
        reference_partially_linear(
            y_true[:, :2], y_pred[:, :2], TIME=2, N_C=4, batch=1
        ),
        rtol=1e-5,
    )


def test_original_anticipation_differs_from_eq1_only_by_its_constants():
    """With T = the clip length, N = the real class count and batch 1, the only
    difference left is the time weight (t - 1)/T instead of t/T."""
    y = np.zeros((1, 4, 3), np.float32)
    y[0, :, 2] = 1
    p = np.tile(np.array([0.2, 0.3, 0.5], np.float32), (1, 4, 1))
    ours = float(losses.anticipation_loss(y, p)[0])
    theirs = float(
        original_losses.original_anticipation_loss(y, p, T=4, N=3, batch=1, epsilon=0.0)[0]
    )
    negative = math.log(0.8) + math.log(0.7)  # sum_k (1 - y) log(1 - p) per step
    # Eq. 1 weighs false positives (1 + 2 + 3 + 4)/4, the original (0 + 1 + 2 + 3)/4.
    assert ours - theirs == pytest.approx(-(10 / 4 - 6 / 4) * negative / 3, rel=1e-5)


def test_padded_steps_do_not_count():
    rng = np.random.default_rng(2)
    y_true, y_pred = random_batch(rng, lengths=(3, 3), steps=5)
    other = y_pred.copy()
    other[:, 3:] = rng.permutation(other[:, 3:], axis=2)  # change only padded steps
    for name in ORIGINAL_NAMES:
        loss = losses.get_loss(name)
        np.testing.assert_allclose(
            float(loss(y_true, y_pred)), float(loss(y_true, other))
        )


def _fit_weights(loss, learning_rate, steps=3):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True),
        loss=loss,
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 4, 3)).astype(np.float32)
    y_true, _ = random_batch(rng, lengths=(4, 2, 3, 4, 1, 4, 4, 3), steps=4, classes=3)
    model.fit(x, y_true, batch_size=8, epochs=steps, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("name", ["original_linear", "original_exponential"])
def test_constant_scale_is_a_learning_rate_change(name):
    """SGD with momentum on `scale * CE` at lr takes the steps of CE at `scale * lr`."""
    scale = losses.get_loss(name).scale
    scaled = _fit_weights(losses.get_loss(name), 0.01)
    plain = _fit_weights(losses.get_loss("original_ce"), 0.01 * scale)
    for a, b in zip(scaled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    not_scaled = _fit_weights(losses.get_loss("original_ce"), 0.01)
    assert not np.allclose(scaled[0], not_scaled[0], atol=1e-4)


@pytest.mark.parametrize("name", ORIGINAL_NAMES)
def test_config_round_trip_and_graph_mode(name):
    kwargs = {"original_anticipation": {"T": 40, "N": 5, "batch": 8}}.get(name, {})
    if name in ("original_linear", "original_exponential"):
        kwargs = {"T": 10, "last_step": 12}
    loss = losses.get_loss(name, **kwargs)
    config = loss.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    rng = np.random.default_rng(4)
    y_true, y_pred = random_batch(rng)
    spec = tf.TensorSpec((None, None, 4), tf.float32)
    graph = tf.function(loss.__call__, input_signature=[spec, spec])
    np.testing.assert_allclose(
        float(graph(y_true, y_pred)), float(restored(y_true, y_pred)), rtol=1e-6
    )


def test_registered_names_and_bad_constants():
    assert set(ORIGINAL_NAMES) == set(original_losses.ORIGINAL_LOSSES)
    assert not set(ORIGINAL_NAMES) & set(losses.LOSSES)  # losses.py: the paper's only
    linear = losses.get_loss("original_linear")
    assert isinstance(linear, original_losses.OriginalLinearLoss)
    with pytest.raises(ValueError, match="T"):
        original_losses.OriginalAnticipationLoss(T=0)
