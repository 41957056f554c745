"""One round-trip and training-step check for every model and layer of the package.

In the style of keras-hub's `TestCase.run_layer_test`: build the object from its
constructor arguments, call it, and check what every Keras object of the package must
do the same way, so each test file states only what is particular to its class.
"""

import keras
import numpy as np


def _as_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"output": outputs}


def _assert_same_outputs(a, b):
    a, b = _as_dict(a), _as_dict(b)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(b[key]), keras.ops.convert_to_numpy(a[key])
        )


def run_model_test(
    cls,
    init_kwargs,
    input_data,
    tmp_path,
    expected_output_shape=None,
    call_kwargs=None,
    targets=None,
    loss="categorical_crossentropy",
    frozen=(),
):
    """Checks a model or layer class end to end; returns the instance it built.

    1. `cls(**init_kwargs)(input_data)` has `expected_output_shape` (a shape, or a
       dict of shapes for dict outputs).
    2. `get_config` -> `from_config` gives the same config, and with the same weights
       the same outputs.
    3. A model saved to a `.keras` file loads back as the same class with the same
       config and gives the same outputs; a layer does the same through
       `keras.saving.serialize_keras_object` / `deserialize_keras_object`.
    4. With `targets` (models): one `fit` step (SGD, `loss`) gives a finite loss and
       moves every trainable weight except those whose path contains a name in
       `frozen`.

    Args:
        cls: the class under test.
        init_kwargs: its constructor arguments.
        input_data: numpy array or dict of arrays, with a batch axis.
        tmp_path: folder for the `.keras` file.
        expected_output_shape: tuple, or dict of tuples.
        call_kwargs: other arguments of every call (a layer's extra inputs).
        targets: what `fit` gets as `y` (array or dict), or None to skip step 4.
        loss: the loss `compile` gets (one for every output).
        frozen: weight path fragments not expected to change in one step.
    """
    call_kwargs = call_kwargs or {}
    instance = cls(**init_kwargs)
    outputs = instance(input_data, **call_kwargs)
    if expected_output_shape is not None:
        shapes = expected_output_shape
        if not isinstance(shapes, dict):
            shapes = {"output": shapes}
        actual = {k: tuple(v.shape) for k, v in _as_dict(outputs).items()}
        assert actual == {k: tuple(v) for k, v in shapes.items()}

    config = instance.get_config()
    clone = cls.from_config(config)
    clone(input_data, **call_kwargs)  # builds it
    assert clone.get_config() == config
    clone.set_weights(instance.get_weights())
    _assert_same_outputs(outputs, clone(input_data, **call_kwargs))

    if isinstance(instance, keras.Model):
        path = tmp_path / f"{cls.__name__}.keras"
        instance.save(path)
        revived = keras.saving.load_model(path)
    else:
        revived = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(instance)
        )
        revived(input_data, **call_kwargs)
        revived.set_weights(instance.get_weights())
    assert type(revived) is cls and revived.get_config() == config
    _assert_same_outputs(outputs, revived(input_data, **call_kwargs))

    if targets is not None:
        model = instance
        losses = {key: loss for key in targets} if isinstance(targets, dict) else loss
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses)
        weights = [
            w
            for w in model.trainable_weights
            if not any(name in w.path for name in frozen)
        ]
        before = [w.numpy().copy() for w in weights]
        batch = len(keras.tree.flatten(input_data)[0])
        history = model.fit(input_data, targets, batch_size=batch, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        unchanged = [
            w.path for w, b in zip(weights, before) if np.array_equal(b, w.numpy())
        ]
        assert not unchanged, f"one fit step left these weights unchanged: {unchanged}"
    return instance
