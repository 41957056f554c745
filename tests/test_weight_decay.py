"""SGD weight decay: the L2 reading equals Caffe's update, the decoupled one is Keras'."""

import keras
import numpy as np
import pytest

from msl_keras import weight_decay

LR, MOMENTUM, WD = 0.1, 0.9, 0.05  # a large decay, so the two readings differ visibly


def _model_and_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.layers[0].set_weights(
        [rng.normal(size=(3, 2)).astype("float32"), np.full(2, 0.5, "float32")]
    )
    return model, x, y


def _fit(mode, steps=3):
    model, x, y = _model_and_data()
    model.compile(
        optimizer=weight_decay.sgd(model, LR, MOMENTUM, WD, mode=mode), loss="mse"
    )
    model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    return model.layers[0].get_weights()


def _numpy(x, y, kernel, bias, mode, steps=3):
    """Caffe's SGD (`v = m v + lr (g + wd w)`, `w -= v`) or Keras' decoupled decay."""
    v_kernel, v_bias = np.zeros_like(kernel), np.zeros_like(bias)
    for _ in range(steps):
        error = 2 * (x @ kernel + bias - y) / y.size  # d mean((xW + b - y)^2)
        g_kernel, g_bias = x.T @ error, error.sum(0)
        if mode == "l2":
            g_kernel = g_kernel + WD * kernel  # biases: decay_mult 0
        v_kernel = MOMENTUM * v_kernel + LR * g_kernel
        v_bias = MOMENTUM * v_bias + LR * g_bias
        if mode == "decoupled":
            kernel = kernel - LR * WD * kernel  # before the step, as Keras applies it
        kernel, bias = kernel - v_kernel, bias - v_bias
    return kernel, bias


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_sgd_steps_match_numpy(mode):
    model, x, y = _model_and_data()
    kernel, bias = model.layers[0].get_weights()
    expected = _numpy(x, y, kernel, bias, mode)
    found = _fit(mode)
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found[1], expected[1], rtol=1e-5, atol=1e-6)


def test_l2_and_decoupled_differ_and_spare_biases():
    l2, decoupled = _fit("l2"), _fit("decoupled")
    assert np.abs(l2[0] - decoupled[0]).max() > 1e-3
    # (the numpy reference decays no bias, so the test above checks biases too)
    model, _, _ = _model_and_data()
    weight_decay.sgd(model, LR, MOMENTUM, WD, mode="l2")
    assert [v.name for v in model.trainable_variables if v.regularizer] == ["kernel"]


def test_zero_decay_and_bad_mode():
    model, _, _ = _model_and_data()
    optimizer = weight_decay.sgd(model, LR, MOMENTUM, 0.0, mode="l2")
    assert optimizer.weight_decay is None
    assert all(v.regularizer is None for v in model.trainable_variables)
    with pytest.raises(ValueError, match="mode='caffe'"):
        weight_decay.sgd(model, LR, MOMENTUM, WD, mode="caffe")
