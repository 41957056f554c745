"""MultiStageLSTM and SingleStageLSTM: shapes, masks, streaming, save/load, fit."""

import keras
import numpy as np
import pytest

from msl_keras.models import MultiStageLSTM, SingleStageLSTM

N, UNITS, DC, DA, T = 4, 8, 6, 5, 7
LOSS = "categorical_crossentropy"


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "context": rng.normal(size=(batch, T, DC)).astype("float32"),
        "action": rng.normal(size=(batch, T, DA)).astype("float32"),
    }


def _targets(batch=2, seed=0):
    labels = np.random.default_rng(seed).integers(0, N, batch)
    return np.repeat(np.eye(N, dtype="float32")[labels][:, None], T, axis=1)


def _assert_fit_one_step(model, x, y):
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(
        not np.array_equal(a, w.numpy())
        for a, w in zip(before, model.trainable_weights)
    )


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


def test_multi_stage_keras_round_trip(tmp_path):
    model = MultiStageLSTM(N, units=UNITS, dropout=0.25)
    x = _inputs(seed=2)
    before = model(x)
    model.save(tmp_path / "ms.keras")
    revived = keras.models.load_model(tmp_path / "ms.keras")
    assert isinstance(revived, MultiStageLSTM)
    assert (revived.units, revived.dropout, revived.num_classes) == (UNITS, 0.25, N)
    for stage in ("stage1", "stage2"):
        np.testing.assert_array_equal(revived(x)[stage], before[stage])


def test_multi_stage_fit_one_step():
    model = MultiStageLSTM(N, units=UNITS)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss={"stage1": LOSS, "stage2": LOSS}
    )
    y = _targets()
    _assert_fit_one_step(model, _inputs(), {"stage1": y, "stage2": y})


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


def test_single_stage_mask_round_trip_and_fit(tmp_path):
    model = SingleStageLSTM(N, units=UNITS, stream="context")
    x = _inputs(seed=4)
    mask = np.ones((2, T), bool)
    mask[0, 3:] = False
    masked = model(x, mask=mask)["stage1"]
    np.testing.assert_allclose(
        masked[0, 3:], np.repeat(masked[0, 2:3], T - 3, 0), atol=1e-6
    )
    model.save(tmp_path / "single.keras")
    revived = keras.models.load_model(tmp_path / "single.keras")
    assert revived.stream == "context"
    np.testing.assert_array_equal(revived(x)["stage1"], model(x)["stage1"])
    revived.compile(optimizer=keras.optimizers.SGD(0.1), loss={"stage1": LOSS})
    _assert_fit_one_step(revived, x, {"stage1": _targets()})
