"""FusedSGD: the same updates as keras.optimizers.SGD, in one pass per variable."""

import keras
import numpy as np
import pytest

from msl_keras.optimizers import FusedSGD


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 3)).astype(
        "float32"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.9, "weight_decay": 0.05},
        {"momentum": 0.9},
        {"momentum": 0.0, "weight_decay": 0.05},
        {"momentum": 0.9, "nesterov": True},
    ],
)
def test_same_weights_as_keras_sgd(kwargs):
    x, y = _data()
    trained = []
    for optimizer in (keras.optimizers.SGD, FusedSGD):
        model = _model()
        opt = optimizer(learning_rate=0.1, **kwargs)
        if "weight_decay" in kwargs:
            opt.exclude_from_weight_decay(var_names=["bias"])
        model.compile(optimizer=opt, loss="mse")
        for _ in range(4):
            model.train_on_batch(x, y)
        trained.append(model.get_weights())
    for ours, theirs in zip(*trained):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_decay_step_by_hand_and_excluded_biases():
    model = _model()
    opt = FusedSGD(learning_rate=0.5, momentum=0.9, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    before = {v.path: np.array(v) for v in model.trainable_variables}
    zero = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
    opt.apply(zero, model.trainable_variables)  # zero gradient, zero momentum
    for v in model.trainable_variables:
        factor = 1.0 if "bias" in v.path else 1.0 - 0.5 * 0.1
        np.testing.assert_allclose(np.array(v), before[v.path] * factor, rtol=1e-6)


def test_round_trip():
    opt = FusedSGD(learning_rate=0.01, momentum=0.9, weight_decay=5e-4)
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(revived, FusedSGD)
    assert revived.get_config()["weight_decay"] == 5e-4
