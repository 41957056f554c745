"""StreamingStep: trunk, heads and one LSTM step in one graph, equal to the two calls."""

import numpy as np
import pytest

from msl_keras.models import (
    MultiStageLSTM,
    SingleStageLSTM,
    StreamingStep,
    build_feature_extractor,
)

N, FC, UNITS = 3, 16, 8


def _extractor(**kwargs):
    return build_feature_extractor(
        N, input_shape=(32, 32, 3), width=1 / 16, fc_units=FC, cam_filters=8, **kwargs
    )


def _frames(n=4, seed=0):
    return np.random.default_rng(seed).normal(0, 50, (n, 32, 32, 3)).astype("float32")


def test_multi_stage_equals_extract_then_step_and_the_full_sequence():
    extractor, lstm = _extractor(), MultiStageLSTM(N, units=UNITS)
    stream = StreamingStep(extractor, lstm)
    frames = _frames()
    features = extractor.extract(frames)
    full = lstm({k: features[k][None] for k in ("context", "action")})
    states, reference = stream.initial_state(1), lstm.initial_state(1)
    for t in range(len(frames)):
        out, states = stream.step(frames[t : t + 1], states)
        p1, p2, reference = lstm.step(
            features["context"][t : t + 1], features["action"][t : t + 1], reference
        )
        np.testing.assert_allclose(out["probs"], p2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["stage1"], p1, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["probs"][0], full["stage2"][0, t], atol=1e-5)
        np.testing.assert_allclose(
            out["context"], features["context"][t : t + 1], rtol=1e-5, atol=1e-6
        )
        assert len(states) == 4 and tuple(states[0].shape) == (1, UNITS)
    assert stream._step.experimental_get_tracing_count() == 1


def test_single_stage_reads_its_stream_and_batches():
    extractor = _extractor()
    lstm = SingleStageLSTM(N, units=UNITS, stream="action")
    stream = StreamingStep(extractor, lstm)
    frames = _frames(2)
    out, states = stream.step(frames, stream.initial_state(2))
    expected, _ = lstm.step(extractor.extract(frames)["action"], lstm.initial_state(2))
    assert "stage1" not in out and out["probs"].shape == (2, N)
    np.testing.assert_allclose(out["probs"], expected, rtol=1e-5, atol=1e-6)
    assert len(states) == 2


def test_refuses_an_oracle_cam_and_other_models():
    with pytest.warns(UserWarning, match="oracle"):
        oracle = _extractor(cam_class="oracle")
    with pytest.raises(ValueError, match="oracle"):
        StreamingStep(oracle, MultiStageLSTM(N, units=UNITS))
    with pytest.raises(ValueError, match="MultiStageLSTM"):
        StreamingStep(_extractor(), object())
