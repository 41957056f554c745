"""StreamingStep: a uint8 frame in, the pooled anticipation out; equal to the full-clip pass."""

import numpy as np
import pytest

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
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


def _frames(n=4, seed=0, size=(24, 40)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _sharpen(lstm):
    """Scaled-up classifiers, so the probabilities move from frame to frame."""
    for layer in (getattr(lstm, "stage2_classifier", None), lstm.stage1_classifier):
        if layer is not None:
            layer.kernel.assign(layer.kernel * 8.0)


def test_multi_stage_equals_the_full_clip_pass():
    extractor, lstm = _extractor(), MultiStageLSTM(N, units=UNITS, dropout=0.0)
    stream = StreamingStep(extractor, lstm, input_size=32)
    _sharpen(lstm)
    frames = _frames(6)
    out = stream.run(frames)

    features = extractor.extract(np.asarray(preprocess_frames(frames, (32, 32))))
    full = lstm({k: features[k][None] for k in ("context", "action")})
    stage2 = np.asarray(full["stage2"])[0]
    np.testing.assert_allclose(out["probs"], stage2, atol=1e-5)
    np.testing.assert_allclose(out["stage1"], np.asarray(full["stage1"])[0], atol=1e-5)
    pooled = temporal_average_pooling(stage2)
    assert np.ptp(pooled[:, 0]) > 1e-3
    np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)
    assert out["anticipated"].tolist() == pooled.argmax(-1).tolist()
    assert stream.step.experimental_get_tracing_count() == 1


def test_carry_and_frames_of_any_size():
    extractor, lstm = _extractor(), MultiStageLSTM(N, units=UNITS)
    stream = StreamingStep(extractor, lstm)  # input size: the trunk's
    assert stream.input_size == (32, 32)
    carry = stream.initial_carry()
    for size in ((24, 40), (50, 31), (32, 32)):  # one trace for every size
        out = stream.step(_frames(1, size=size)[0], **carry)
        carry = {k: out[k] for k in ("state", "prob_sum", "count")}
    assert tuple(out["state"].shape) == (4, UNITS) and float(out["count"]) == 3.0
    np.testing.assert_allclose(out["pooled"], out["prob_sum"] / 3.0, rtol=1e-6)
    assert stream.step.experimental_get_tracing_count() == 1


def test_single_stage_reads_its_stream():
    extractor = _extractor()
    lstm = SingleStageLSTM(N, units=UNITS, stream="action")
    stream = StreamingStep(extractor, lstm, input_size=32)
    frames = _frames(3)
    out = stream.run(frames)
    features = extractor.extract(np.asarray(preprocess_frames(frames, (32, 32))))
    expected = np.asarray(lstm({"action": features["action"][None]})["stage1"])[0]
    np.testing.assert_allclose(out["probs"], expected, atol=1e-5)
    np.testing.assert_allclose(out["stage1"], out["probs"])
    assert tuple(stream.initial_carry()["state"].shape) == (2, UNITS)


def test_refuses_an_oracle_cam_and_other_models():
    with pytest.warns(UserWarning, match="oracle"):
        oracle = _extractor(cam_class="oracle")
    with pytest.raises(ValueError, match="oracle"):
        StreamingStep(oracle, MultiStageLSTM(N, units=UNITS))
    with pytest.raises(ValueError, match="MultiStageLSTM"):
        StreamingStep(_extractor(), object())
