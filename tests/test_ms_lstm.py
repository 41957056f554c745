"""MultiStageLSTM and SingleStageLSTM: values, shapes, masks, streaming, round trip."""

import numpy as np
import pytest

from msl_keras.models import MultiStageLSTM, SingleStageLSTM
from tests.model_testing import run_model_test

N, UNITS, DC, DA, T = 4, 8, 6, 5, 7


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "context": rng.normal(size=(batch, T, DC)).astype("float32"),
        "action": rng.normal(size=(batch, T, DA)).astype("float32"),
    }


def _targets(batch=2, seed=0):
    labels = np.random.default_rng(seed).integers(0, N, batch)
    return np.repeat(np.eye(N, dtype="float32")[labels][:, None], T, axis=1)


def _fixed(shape, phase):
    """Fixed, distinct weight values (no random generator)."""
    size = int(np.prod(shape))
    values = 0.5 * np.sin(np.arange(size) * 0.37 + phase)
    return values.reshape(shape).astype("float32")


def _numpy_lstm(x, kernel, recurrent, bias):
    """Keras' LSTM in numpy: gates i, f, c, o; sigmoid and tanh; zero initial state."""
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    hidden = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hidden.append(h)
    return np.stack(hidden, 1)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def test_multi_stage_values_with_fixed_weights():
    """Fig. 2 in numpy: stage 2 reads `[stage-1 hidden, action]`, in that order."""
    model = MultiStageLSTM(N, units=UNITS)
    x = _inputs(seed=5)
    model(x)
    weights = {}
    for k, layer in enumerate(
        (model.stage1_lstm, model.stage1_classifier, model.stage2_lstm,
         model.stage2_classifier)
    ):  # fmt: skip
        values = [_fixed(w.shape, phase=k + j) for j, w in enumerate(layer.weights)]
        layer.set_weights(values)
        weights[layer.name] = values
    hidden1 = _numpy_lstm(x["context"], *weights["stage1_lstm"])
    hidden2 = _numpy_lstm(
        np.concatenate([hidden1, x["action"]], -1), *weights["stage2_lstm"]
    )
    kernel1, bias1 = weights["stage1_classifier"]
    kernel2, bias2 = weights["stage2_classifier"]
    out = model(x, training=False)
    np.testing.assert_allclose(
        out["stage1"], _softmax(hidden1 @ kernel1 + bias1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        out["stage2"], _softmax(hidden2 @ kernel2 + bias2), rtol=1e-5, atol=1e-6
    )
    # The other order gives other numbers: the test sees the order.
    swapped = _numpy_lstm(
        np.concatenate([x["action"], hidden1], -1), *weights["stage2_lstm"]
    )
    wrong = _softmax(swapped @ kernel2 + bias2)
    assert not np.allclose(wrong, out["stage2"], atol=1e-3)


def test_multi_stage_shapes():
    model = MultiStageLSTM(N, units=UNITS)
    out = model(_inputs())
    assert sorted(out) == ["stage1", "stage2"]
    for value in out.values():
        assert tuple(value.shape) == (2, T, N)
        np.testing.assert_allclose(np.sum(value, -1), 1.0, rtol=1e-5)
    assert tuple(model.stage2_lstm.cell.kernel.shape) == (UNITS + DA, 4 * UNITS)
    with pytest.raises(ValueError, match="'action'"):
        model({"context": _inputs()["context"]})


def test_padded_steps_do_not_change_valid_outputs():
    model = MultiStageLSTM(N, units=UNITS)
    x = _inputs()
    valid = 4
    noisy = {k: v.copy() for k, v in x.items()}
    for v in noisy.values():
        v[1, valid:] = 100.0  # garbage on the padded steps of clip 1
    mask = np.ones((2, T), bool)
    mask[1, valid:] = False
    clean = model(x, mask=mask)
    dirty = model(noisy, mask=mask)
    unmasked = model(noisy)
    for stage in ("stage1", "stage2"):
        np.testing.assert_allclose(dirty[stage], clean[stage], rtol=1e-6, atol=1e-6)
        # causal: even without the mask the valid steps are untouched
        np.testing.assert_allclose(
            unmasked[stage][1, :valid], clean[stage][1, :valid], rtol=1e-6, atol=1e-6
        )
        # the mask reaches the LSTMs: states are carried over the padded steps
        for t in range(valid, T):
            np.testing.assert_allclose(
                dirty[stage][1, t], dirty[stage][1, valid - 1], atol=1e-6
            )
        assert not np.allclose(unmasked[stage][1, valid:], clean[stage][1, valid:])
    with pytest.raises(ValueError, match="mask"):
        model(x, mask=np.ones((2, T, 1), bool))


def test_streaming_step_equals_full_call():
    model = MultiStageLSTM(N, units=UNITS)
    x = _inputs(seed=1)
    full = model(x)
    states = model.initial_state(2)
    assert len(states) == 4 and tuple(states[0].shape) == (2, UNITS)
    for t in range(T):
        probs1, probs2, states = model.step(
            x["context"][:, t], x["action"][:, t], states
        )
        np.testing.assert_allclose(probs1, full["stage1"][:, t], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(probs2, full["stage2"][:, t], rtol=1e-5, atol=1e-6)


def test_step_on_unbuilt_model_builds_it():
    model = MultiStageLSTM(N, units=UNITS)
    x = _inputs(batch=1)
    _, probs2, _ = model.step(
        x["context"][:, 0], x["action"][:, 0], model.initial_state(1)
    )
    np.testing.assert_allclose(probs2, model(x)["stage2"][:, 0], rtol=1e-5, atol=1e-6)


def test_multi_stage_round_trip_and_fit_step(tmp_path):
    y = _targets()
    model = run_model_test(
        MultiStageLSTM,
        {"num_classes": N, "units": UNITS, "dropout": 0.25},
        _inputs(seed=2),
        tmp_path,
        expected_output_shape={"stage1": (2, T, N), "stage2": (2, T, N)},
        targets={"stage1": y, "stage2": y},
    )
    assert (model.units, model.dropout, model.num_classes) == (UNITS, 0.25, N)


def test_single_stage_reads_its_stream_and_streams():
    x = _inputs(seed=3)
    model = SingleStageLSTM(N, units=UNITS, stream="action")
    assert model.name == "action_lstm"
    out = model(x)  # the "context" key is ignored
    assert sorted(out) == ["stage1"] and tuple(out["stage1"].shape) == (2, T, N)
    np.testing.assert_array_equal(model(x["action"])["stage1"], out["stage1"])
    states = model.initial_state(2)
    for t in range(T):
        probs, states = model.step({"action": x["action"][:, t]}, states)
        np.testing.assert_allclose(probs, out["stage1"][:, t], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="stream="):
        SingleStageLSTM(N, stream="both")
    with pytest.raises(ValueError, match="'action'"):
        model({"context": x["context"]})


def test_single_stage_mask():
    model = SingleStageLSTM(N, units=UNITS, stream="context")
    x = _inputs(seed=4)
    mask = np.ones((2, T), bool)
    mask[0, 3:] = False
    masked = model(x, mask=mask)["stage1"]
    np.testing.assert_allclose(
        masked[0, 3:], np.repeat(masked[0, 2:3], T - 3, 0), atol=1e-6
    )


@pytest.mark.parametrize("stream", ["context", "action"])
def test_single_stage_round_trip_and_fit_step(tmp_path, stream):
    model = run_model_test(
        SingleStageLSTM,
        {"num_classes": N, "units": UNITS, "stream": stream},
        _inputs(seed=4),
        tmp_path,
        expected_output_shape={"stage1": (2, T, N)},
        targets={"stage1": _targets()},
    )
    assert model.stream == stream


def test_models_say_which_streams_they_read_their_sizes_and_outputs():
    x = {
        "context": np.zeros((1, T, 5), "float32"),
        "action": np.zeros((1, T, 7), "float32"),
    }
    multi = MultiStageLSTM(N, units=UNITS)
    context = SingleStageLSTM(N, units=UNITS, stream="context")
    action = SingleStageLSTM(N, units=UNITS, stream="action")
    assert multi.input_streams == ("context", "action")
    assert context.input_streams == ("context",) and action.input_streams == ("action",)
    with pytest.raises(ValueError, match="not built"):
        multi.input_dims
    for model in (multi, context, action):
        assert tuple(model(x)) == model.stage_names
    assert multi.stage_names == ("stage1", "stage2")
    assert context.stage_names == action.stage_names == ("stage1",)
    assert multi.input_dims == {"context": 5, "action": 7}
    assert context.input_dims == {"context": 5} and action.input_dims == {"action": 7}
