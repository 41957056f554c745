"""The fast-gradient layers compute what Keras' layers compute, and save as them."""

import json
import zipfile

import h5py
import keras
import numpy as np
import tensorflow as tf

from msl_keras.models import ContextAwareHead, MultiStageLSTM, fast_ops


def _forward_and_gradients(layer, x, **call_kwargs):
    """`(output, d sum(output * r) / d [x, *weights])` for a fixed random `r`."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, **call_kwargs)
        r = tf.constant(np.random.default_rng(9).normal(size=y.shape), y.dtype)
        total = tf.reduce_sum(y * r)
    grads = tape.gradient(total, [x] + [w.value for w in layer.trainable_weights])
    return [y.numpy()] + [g.numpy() for g in grads]


def _assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dense_forward_and_gradients_equal_keras():
    x = np.random.default_rng(0).normal(size=(4, 7)).astype("float32")
    ours = fast_ops.Dense(5, activation="relu")
    keras_dense = keras.layers.Dense(5, activation="relu")
    ours.build(x.shape)
    keras_dense.build(x.shape)
    keras_dense.set_weights(ours.get_weights())
    _assert_close(
        _forward_and_gradients(ours, x), _forward_and_gradients(keras_dense, x)
    )


def test_lstm_layer_forward_and_gradients_equal_keras():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 5)).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[1, 4:] = False  # a clip padded at its end
    ours = fast_ops.lstm_layer(4, name="ours")
    keras_lstm = keras.layers.LSTM(4, return_sequences=True, name="keras")
    ours.build(x.shape)
    keras_lstm.build(x.shape)
    # non-zero biases, so a swapped gate would show
    weights = [w + rng.normal(0, 0.3, w.shape) for w in ours.get_weights()]
    ours.set_weights(weights)
    keras_lstm.set_weights(weights)
    assert isinstance(ours, keras.layers.LSTM)
    assert isinstance(ours.cell, fast_ops.FastLSTMCell)
    assert [w.path for w in ours.weights] == [
        f"ours/lstm_cell/{name}" for name in ("kernel", "recurrent_kernel", "bias")
    ]
    assert ours.get_config() == {**keras_lstm.get_config(), "name": "ours"}
    _assert_close(
        _forward_and_gradients(ours, x, mask=tf.constant(mask)),
        _forward_and_gradients(keras_lstm, x, mask=tf.constant(mask)),
    )


def _saved_layer_names(path):
    """The config and the weight groups of a `.keras` file, as text."""
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
        archive.extract("model.weights.h5", path.parent)
    groups = []
    with h5py.File(path.parent / "model.weights.h5", "r") as f:
        f.visit(groups.append)
    return config, groups


def test_saved_files_name_only_standard_keras_layers(tmp_path):
    lstm = MultiStageLSTM(num_classes=3, units=4)
    lstm.build({"context": (None, None, 5), "action": (None, None, 6)})
    head = ContextAwareHead(num_classes=3, fc_units=8, width=1 / 16)
    head.build((None, 2, 2, 32))
    for model in (lstm, head):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        config, groups = _saved_layer_names(path)
        assert json.loads(config)["class_name"] == type(model).__name__
        for text in [config] + groups:
            assert "fast" not in text.lower() and "rnn" not in text.lower(), text
    # Keras files the MS-LSTM's layers under their class names: LSTM, as on a GPU
    _, groups = _saved_layer_names(tmp_path / "ms_lstm.keras")
    layers = sorted(g for g in groups if g.count("/") == 1 and g.startswith("layers/"))
    assert layers == [
        f"layers/{name}"
        for name in ("dense", "dense_1", "dropout", "dropout_1", "lstm", "lstm_1")
    ]
    assert "layers/lstm/cell/vars/0" in groups
    loaded = keras.saving.load_model(tmp_path / "ms_lstm.keras")
    assert isinstance(loaded.stage1_lstm.cell, fast_ops.FastLSTMCell)
    for a, b in zip(loaded.get_weights(), lstm.get_weights()):
        np.testing.assert_array_equal(a, b)
