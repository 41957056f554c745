"""Compute dtypes: Keras policies on the layers, float32 variables and softmax."""

import keras
import numpy as np
import pytest

from msl_keras.models import ActionAwareHead, ContextAwareHead
from msl_keras.models.ms_lstm import MultiStageLSTM, SingleStageLSTM
from msl_keras.models.precision import COMPUTE_DTYPES, set_compute_dtype

N = 3
MAPS = (None, 2, 2, 32)  # conv5_2 maps of a width-1/16 trunk on 32x32 frames


def _layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)]


def _check(model, dtype):
    softmax = [
        layer
        for layer in _layers(model)
        if getattr(layer, "activation", None) is keras.activations.softmax
    ]
    assert softmax  # the classifiers
    for layer in _layers(model):
        want = "float32" if layer in softmax else dtype
        assert layer.compute_dtype == want, layer.name
    assert {w.dtype for w in model.weights} == {"float32"}


@pytest.mark.parametrize("dtype", COMPUTE_DTYPES)
def test_heads_compute_in_the_dtype_with_float32_variables(dtype):
    context = set_compute_dtype(ContextAwareHead(N, fc_units=16, width=1 / 16), dtype)
    action = set_compute_dtype(
        ActionAwareHead(N, fc_units=16, cam_filters=8, width=1 / 16), dtype
    )
    maps = np.random.default_rng(0).uniform(0, 1, (2,) + MAPS[1:]).astype("float32")
    for head in (context, action):
        head.build(MAPS)
        _check(head, dtype)
    assert context.fc6.compute_dtype == action.cam_conv.compute_dtype == dtype
    assert context.compute_dtype == dtype  # float16 compiles with loss scaling
    assert keras.ops.convert_to_numpy(context(maps)).dtype == np.float32  # softmax


@pytest.mark.parametrize("dtype", COMPUTE_DTYPES)
def test_lstms_compute_in_the_dtype_and_keep_it_when_saved(dtype, tmp_path):
    model = MultiStageLSTM(N, units=8, dropout=0.0, compute_dtype=dtype)
    model.build({"context": (None, None, 5), "action": (None, None, 4)})
    _check(model, dtype)
    assert model.stage2_lstm.cell.compute_dtype == dtype
    rng = np.random.default_rng(0)
    inputs = {
        "context": rng.normal(size=(2, 6, 5)).astype("float32"),
        "action": rng.normal(size=(2, 6, 4)).astype("float32"),
    }
    out = model(inputs)
    assert keras.ops.convert_to_numpy(out["stage2"]).dtype == np.float32
    model.save(tmp_path / "lstm.keras")
    revived = keras.models.load_model(tmp_path / "lstm.keras")
    _check(revived, dtype)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(revived(inputs)["stage2"]),
        keras.ops.convert_to_numpy(out["stage2"]),
    )
    single = SingleStageLSTM(N, units=8, stream="action", compute_dtype=dtype)
    single.build((None, None, 4))
    _check(single, dtype)


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute_dtype.*float32.*int8"):
        MultiStageLSTM(N, units=4, compute_dtype="int8")
