"""Losses (msl_keras/losses.py) against loop-by-loop numpy references, hand values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras import losses
from msl_keras.errors import ConfigError

EPS = 1e-7
NAMES = ["anticipation", "ce", "ece", "lgl", "jain", "ranking_score", "ranking_margin"]
FUNCTIONS = {
    "anticipation": losses.anticipation_loss,
    "ce": losses.cross_entropy_last_step,
    "ece": losses.exponential_cross_entropy,
    "lgl": losses.linearly_growing_loss,
    "jain": losses.jain_exponential_loss,
    "ranking_score": losses.ranking_detection_loss,
    "ranking_margin": losses.ranking_margin_loss,
}


# --------------------------------------------------------------------------------------
# Independent reference: explicit python loops over clips, steps and classes.


def reference_loss(name, y_true, y_pred, sample_weight=None, lambda_r=1.0, eps=EPS):
    batch, steps, classes = y_true.shape
    out = []
    for i in range(batch):
        if sample_weight is None:
            valid = [s for s in range(steps) if y_true[i, s].sum() > 0]
            weights = {s: 1.0 for s in valid}
        else:
            valid = [s for s in range(steps) if sample_weight[i, s] > 0]
            weights = {s: float(sample_weight[i, s]) for s in valid}
        length = len(valid)
        total = 0.0
        scores, margins = [], []
        for t, s in enumerate(valid, start=1):
            y, p, w = y_true[i, s], y_pred[i, s], weights[s]
            pc = [min(max(float(p[k]), eps), 1 - eps) for k in range(classes)]
            pos = sum(y[k] * math.log(pc[k]) for k in range(classes))
            neg = sum((1 - y[k]) * math.log(1 - pc[k]) for k in range(classes))
            if name == "anticipation":
                term = 0.0
                for k in range(classes):
                    term += y[k] * math.log(pc[k])
                    term += (t / length) * (1 - y[k]) * math.log(1 - pc[k])
                total += -w * term / classes
            elif name == "ce":
                if t == length:
                    total += -w * (pos + neg)
            elif name == "ece":
                total += -w * math.exp(-(length - t)) * (pos + neg)
            elif name == "lgl":
                total += -w * (t / length) * (pos + neg)
            elif name == "jain":
                total += -w * math.exp(-(length - t)) * pos
            else:
                label = int(np.argmax(y))
                score = float(p[label])
                margin = score - max(float(p[k]) for k in range(classes) if k != label)
                if name == "ranking_score":
                    best = max(scores) if scores else 0.0
                    rank = max(0.0, best - score)
                else:
                    rank = max(0.0, max(margins) - margin) if margins else 0.0
                scores.append(score)
                margins.append(margin)
                total += w * (-math.log(pc[label]) + lambda_r * rank)
        out.append(total)
    return np.array(out)


def random_batch(rng, batch=3, steps=5, classes=4, lengths=None):
    labels = rng.integers(0, classes, size=batch)
    y_true = np.zeros((batch, steps, classes))
    y_true[np.arange(batch), :, labels] = 1.0
    if lengths is not None:
        for i, n in enumerate(lengths):
            y_true[i, n:] = 0.0
    y_pred = rng.dirichlet(np.ones(classes), size=(batch, steps))
    return y_true, y_pred


# --------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lengths", [None, (5, 3, 1)], ids=["full", "padded"])
def test_function_matches_reference(name, lengths):
    rng = np.random.default_rng(1)
    y_true, y_pred = random_batch(rng, lengths=lengths)
    kwargs = {"lambda_r": 0.7} if name.startswith("ranking") else {}
    got = keras.ops.convert_to_numpy(FUNCTIONS[name](y_true, y_pred, **kwargs))
    want = reference_loss(name, y_true, y_pred, **kwargs)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # The Loss class averages the clips.
    value = losses.get_loss(name, **kwargs)(y_true, y_pred)
    np.testing.assert_allclose(float(value), want.mean(), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_step_weights_match_reference(name):
    rng = np.random.default_rng(2)
    y_true, y_pred = random_batch(rng, lengths=(5, 4, 2))
    weights = rng.uniform(0.5, 2.0, size=(3, 5)) * (y_true.sum(-1) > 0)
    got = keras.ops.convert_to_numpy(FUNCTIONS[name](y_true, y_pred, weights))
    np.testing.assert_allclose(got, reference_loss(name, y_true, y_pred, weights), 1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_padding_and_padded_predictions_do_not_count(name):
    """A clip of 7 steps padded to 10 has the value of the same 7 steps unpadded."""
    rng = np.random.default_rng(3)
    y_true, y_pred = random_batch(rng, batch=1, steps=10, lengths=(7,))
    padded = FUNCTIONS[name](y_true, y_pred)
    y_pred_changed = y_pred.copy()
    y_pred_changed[:, 7:] = rng.dirichlet(np.ones(4), size=(1, 3))
    unpadded = FUNCTIONS[name](y_true[:, :7], y_pred[:, :7])
    np.testing.assert_allclose(padded, unpadded, rtol=1e-6)
    np.testing.assert_allclose(FUNCTIONS[name](y_true, y_pred_changed), padded, 1e-6)


def test_ce_uses_the_last_valid_step():
    y_true = np.zeros((1, 10, 2))
    y_true[0, :7, 1] = 1.0
    y_pred = np.full((1, 10, 2), 0.5)
    y_pred[0, 6] = [0.2, 0.8]  # step 7
    want = -(math.log(0.8) + math.log(1 - 0.2))
    np.testing.assert_allclose(losses.cross_entropy_last_step(y_true, y_pred), [want])


def test_anticipation_loss_hand_value():
    """Eq. 1 with T=2, N=2, class 0: -(1/2)[log .8 + (1/2) log .8 + log .6 + log .6]."""
    y_true = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    y_pred = np.array([[[0.8, 0.2], [0.6, 0.4]]])
    value = losses.anticipation_loss(y_true, y_pred)
    np.testing.assert_allclose(value, [0.6781832913], rtol=1e-8)
    value = float(losses.AnticipationLoss()(y_true, y_pred))  # float32
    np.testing.assert_allclose(value, 0.6781833, rtol=1e-6)


def test_epsilon_keeps_logs_finite():
    y_true = np.array([[[1.0, 0.0]]])
    y_pred = np.array([[[0.0, 1.0]]])
    for name in NAMES:
        value = keras.ops.convert_to_numpy(FUNCTIONS[name](y_true, y_pred))
        assert np.isfinite(value).all(), name
    np.testing.assert_allclose(
        losses.jain_exponential_loss(y_true, y_pred, epsilon=1e-3), [-math.log(1e-3)]
    )


# --------------------------------------------------------------------------------------
# The paper's claims about Eq. 1


def _eq1(y_pred, y_true):
    return float(keras.ops.sum(losses.anticipation_loss(y_true, y_pred)))


def test_false_positive_costs_grow_with_t_and_false_negatives_do_not():
    steps, classes = 4, 3
    y_true = np.zeros((1, steps, classes))
    y_true[..., 0] = 1.0
    base = np.tile([0.9, 0.05, 0.05], (1, steps, 1))
    base_value = _eq1(base, y_true)
    fp_cost, fn_cost = [], []
    for s in range(steps):
        fp = base.copy()
        fp[0, s, 1] = 0.6  # a wrong class gets confident at step s + 1
        fp_cost.append(_eq1(fp, y_true) - base_value)
        fn = base.copy()
        fn[0, s, 0] = 0.3  # the true class loses confidence at step s + 1
        fn_cost.append(_eq1(fn, y_true) - base_value)
    t_over_T = np.arange(1, steps + 1) / steps
    assert all(a < b for a, b in zip(fp_cost[:-1], fp_cost[1:], strict=True))
    np.testing.assert_allclose(np.array(fp_cost) / fp_cost[-1], t_over_T, rtol=1e-6)
    np.testing.assert_allclose(fp_cost[-1], -math.log(0.4 / 0.95) / classes, 1e-6)
    np.testing.assert_allclose(fn_cost, np.full(steps, -math.log(0.3 / 0.9) / classes))


def test_gradient_weights_are_t_over_T_for_false_positives():
    steps, classes = 5, 4
    y_true = np.zeros((1, steps, classes), np.float32)
    y_true[..., 2] = 1.0
    y_pred = tf.Variable(np.full((1, steps, classes), 0.25, np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(losses.anticipation_loss(y_true, y_pred))
    grad = tape.gradient(value, y_pred).numpy()[0]
    t_over_T = np.arange(1, steps + 1) / steps
    # d/dp of -(1/N)(t/T) log(1 - p) = (t/T) / (N (1 - p)); of -(1/N) log p = -1/(N p).
    np.testing.assert_allclose(grad[:, 0], t_over_T / (classes * 0.75), rtol=1e-5)
    np.testing.assert_allclose(grad[:, 2], np.full(steps, -1 / (classes * 0.25)), 1e-5)


# --------------------------------------------------------------------------------------
# Ma et al.: the running maxima are constants


def test_ranking_gradients_do_not_flow_through_running_max():
    lam = 0.5
    y_true = np.zeros((1, 3, 2), np.float32)
    y_true[..., 0] = 1.0
    probs = np.array([[[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]]], np.float32)
    y_pred = tf.Variable(probs)
    with tf.GradientTape(persistent=True) as tape:
        score = tf.reduce_sum(
            losses.ranking_detection_loss(y_true, y_pred, lambda_r=lam)
        )
        margin = tf.reduce_sum(losses.ranking_margin_loss(y_true, y_pred, lambda_r=lam))
    g_score = tape.gradient(score, y_pred).numpy()[0]
    g_margin = tape.gradient(margin, y_pred).numpy()[0]
    p = probs[0, :, 0]
    # Step 1 holds both running maxima (0.9; margin 0.8): only -log p_1 acts on it.
    np.testing.assert_allclose(
        g_score[:, 0], [-1 / p[0], -1 / p[1] - lam, -1 / p[2] - lam]
    )
    np.testing.assert_allclose(g_score[:, 1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g_margin[:, 0], g_score[:, 0], rtol=1e-6)
    np.testing.assert_allclose(g_margin[:, 1], [0.0, lam, lam])
    # Values: penalties 0.4 and 0.2 (score), 0.8 and 0.4 (margin).
    ce = -np.log(p).sum()
    np.testing.assert_allclose(float(score), ce + lam * (0.4 + 0.2), rtol=1e-6)
    np.testing.assert_allclose(float(margin), ce + lam * (0.8 + 0.4), rtol=1e-6)


def test_ranking_no_penalty_at_the_first_step():
    y_true = np.array([[[0.0, 1.0]]])
    y_pred = np.array([[[0.9, 0.1]]])  # margin -0.8 at t = 1: no earlier step to beat
    for fn in (losses.ranking_detection_loss, losses.ranking_margin_loss):
        np.testing.assert_allclose(fn(y_true, y_pred, lambda_r=5.0), [-math.log(0.1)])


# --------------------------------------------------------------------------------------
# Graph mode, config, registry, errors


@pytest.mark.parametrize("name", ["anticipation", "ranking_margin"])
def test_graph_mode_with_unknown_time(name):
    rng = np.random.default_rng(4)
    y_true, y_pred = random_batch(rng, lengths=(5, 2, 4))
    spec = tf.TensorSpec((None, None, 4), tf.float32)
    graph_fn = tf.function(FUNCTIONS[name], input_signature=[spec, spec])
    got = graph_fn(y_true.astype(np.float32), y_pred.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, reference_loss(name, y_true, y_pred), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_get_config_round_trip(name):
    kwargs = {"epsilon": 1e-4}
    if name.startswith("ranking"):
        kwargs["lambda_r"] = 0.3
    loss = losses.get_loss(name, **kwargs)
    config = loss.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(loss)
    )
    assert type(restored) is type(loss) and restored.get_config() == config
    rng = np.random.default_rng(5)
    y_true, y_pred = random_batch(rng, lengths=(5, 3, 4))
    np.testing.assert_allclose(
        float(restored(y_true, y_pred)), float(loss(y_true, y_pred))
    )


def test_registry_and_get_loss_errors():
    # The original code's losses are tested in tests/test_original_losses.py.
    assert set(losses.LOSSES) == set(NAMES)
    assert isinstance(losses.get_loss("anticipation"), losses.AnticipationLoss)
    assert losses.get_loss("ranking_score", lambda_r=2.0).lambda_r == 2.0
    with pytest.raises(ConfigError) as info:
        losses.get_loss("anticipaton")
    for name in NAMES:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match="lambda_r"):
        losses.get_loss("ce", lambda_r=1.0)


def test_shape_errors_say_what_was_received():
    with pytest.raises(ValueError, match=r"Received: y_true.shape=\(2, 3, 4\)"):
        losses.anticipation_loss(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="sample_weight.shape"):
        losses.anticipation_loss(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.ones(2))


def test_clip_weights_and_reductions():
    rng = np.random.default_rng(6)
    y_true, y_pred = random_batch(rng, lengths=(5, 3, 4))
    per_clip = reference_loss("lgl", y_true, y_pred)
    clip_weight = np.array([1.0, 0.0, 2.0])
    loss = losses.LinearlyGrowingLoss()
    np.testing.assert_allclose(
        float(loss(y_true, y_pred, clip_weight)), (per_clip * clip_weight).mean(), 1e-6
    )
    none = losses.LinearlyGrowingLoss(reduction=None)(y_true, y_pred)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(none), per_clip, rtol=1e-6)
    total = losses.LinearlyGrowingLoss(reduction="sum")(y_true, y_pred)
    np.testing.assert_allclose(float(total), per_clip.sum(), rtol=1e-6)


# --------------------------------------------------------------------------------------
# Inside Keras: compile / fit and Keras masks


def test_keras_mask_on_y_pred_is_used_as_step_mask():
    rng = np.random.default_rng(7)
    y_true, y_pred = random_batch(rng, lengths=(5, 3, 2))
    y_pred = y_pred.astype(np.float32)
    from keras.src.backend import set_keras_mask

    masked = tf.identity(y_pred)
    set_keras_mask(masked, tf.constant(y_true.sum(-1) > 0))
    loss = losses.AnticipationLoss()
    want = reference_loss("anticipation", y_true, y_pred).mean()
    np.testing.assert_allclose(float(loss(y_true, masked)), want, rtol=1e-5)
    # A mask that hides more steps than the labels do: those steps are padding too.
    narrower = tf.identity(y_pred)
    keep = np.ones((3, 5), bool)
    keep[0, 3:] = False
    set_keras_mask(narrower, tf.constant(keep))
    weights = (y_true.sum(-1) > 0) & keep
    want = reference_loss("anticipation", y_true, y_pred, weights.astype(float)).mean()
    np.testing.assert_allclose(float(loss(y_true, narrower)), want, rtol=1e-5)


def _two_stage_model(steps, features, classes, masking):
    inputs = keras.Input((steps, features))
    x = keras.layers.Masking(0.0)(inputs) if masking else inputs
    h1 = keras.layers.LSTM(4, return_sequences=True)(x)
    h2 = keras.layers.LSTM(4, return_sequences=True)(h1)
    outputs = {
        "stage1": keras.layers.Dense(classes, activation="softmax", name="stage1")(h1),
        "stage2": keras.layers.Dense(classes, activation="softmax", name="stage2")(h2),
    }
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("masking", [False, True], ids=["no_mask", "keras_mask"])
def test_fit_reports_the_mean_of_the_function(masking):
    """Eq. 4: the loss fit reports = sum over the two stages of the batch means."""
    rng = np.random.default_rng(8)
    steps, features, classes, lengths = 6, 3, 3, (6, 4, 2, 5)
    x = rng.normal(size=(4, steps, features)).astype(np.float32)
    y_true, _ = random_batch(
        rng, batch=4, steps=steps, classes=classes, lengths=lengths
    )
    x[y_true.sum(-1) == 0] = 0.0  # padded inputs are zero, as the store writes them
    y = {"stage1": y_true.astype(np.float32), "stage2": y_true.astype(np.float32)}
    model = _two_stage_model(steps, features, classes, masking)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss={
            "stage1": losses.AnticipationLoss(),
            "stage2": losses.RankingMarginLoss(),
        },
    )
    probs = model.predict(x, verbose=0)
    want1 = reference_loss("anticipation", y_true, probs["stage1"]).mean()
    want2 = reference_loss("ranking_margin", y_true, probs["stage2"]).mean()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    np.testing.assert_allclose(history["loss"][0], want1 + want2, rtol=1e-4)
    np.testing.assert_allclose(history["stage1_loss"][0], want1, rtol=1e-4)
    np.testing.assert_allclose(history["stage2_loss"][0], want2, rtol=1e-4)
