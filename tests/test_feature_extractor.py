"""TwoStreamFeatureExtractor: one trunk pass feeding both heads, batched extraction."""

import keras
import numpy as np
import pytest

from msl_keras.models import (
    TwoStreamFeatureExtractor,
    VGG16Trunk,
    build_feature_extractor,
)
from tests.vgg16_files import random_vgg16_arrays, write_legacy_vgg16_h5

N, WIDTH = 3, 1 / 16
KEYS = ["action", "action_probs", "cam_scores", "context", "context_probs"]


def _build(**kwargs):
    return build_feature_extractor(
        N, input_shape=(32, 32, 3), width=WIDTH, fc_units=16, cam_filters=8, **kwargs
    )


def _frames(n=5, seed=0):
    return np.random.default_rng(seed).normal(0, 50, (n, 32, 32, 3)).astype("float32")


def test_outputs_equal_heads_on_one_trunk_pass():
    extractor = _build()
    frames = _frames()
    out = extractor.extract(frames)
    assert sorted(out) == KEYS
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert out["context"].shape == (5, extractor.context_dim) == (5, 16)
    assert out["action"].shape == (5, extractor.action_dim) == (5, 16)
    assert out["cam_scores"].shape == out["context_probs"].shape == (5, N)
    maps = extractor.trunk(frames)
    action = extractor.action_head.features(maps)
    expected = {
        "context": extractor.context_head.features(maps),
        "context_probs": extractor.context_head(maps),
        "action": action["fc7"],
        "cam_scores": action["cam_scores"],
        "action_probs": extractor.action_head(maps)["action"],
    }
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_trunk_runs_once_per_batch(monkeypatch):
    extractor = _build()
    calls = []
    original = VGG16Trunk.call

    def counting_call(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VGG16Trunk, "call", counting_call)
    extractor(_frames(2))
    assert calls == ["vgg16_trunk"]


def test_batches_and_single_trace():
    extractor = _build()
    frames = _frames(5)
    whole = extractor.extract(frames, batch_size=5)
    chunked = extractor.extract(frames, batch_size=2)  # batches of 2, 2, 1
    for key in KEYS:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-5, atol=1e-6)
    assert extractor._extract_fn(False).experimental_get_tracing_count() == 1
    empty = extractor.extract(frames[:0])
    assert empty["context"].shape == (0, 16) and empty["cam_scores"].shape == (0, N)


def test_oracle_extraction_uses_labels():
    with pytest.warns(UserWarning, match="TRUE label"):
        extractor = _build(cam_class="oracle")
    frames, labels = _frames(4), np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="labels"):
        extractor.extract(frames)
    out = extractor.extract(frames, labels=labels)
    maps = extractor.trunk(frames)
    expected = extractor.action_head.features(maps, labels=labels)["fc7"]
    np.testing.assert_allclose(out["action"], expected, rtol=1e-5, atol=1e-6)


def test_weights_file_initialises_trunk_and_both_conv5_3(tmp_path):
    arrays = random_vgg16_arrays(WIDTH)
    path = write_legacy_vgg16_h5(tmp_path / "w.h5", arrays)
    extractor = _build(weights=str(path))
    np.testing.assert_array_equal(
        extractor.trunk.get_layer("block5_conv2").kernel, arrays["block5_conv2"][0]
    )
    for head in (extractor.context_head, extractor.action_head):
        np.testing.assert_array_equal(
            head.get_layer("block5_conv3").kernel, arrays["block5_conv3"][0]
        )


def test_keras_round_trip(tmp_path):
    extractor = _build(cam_class="top_k", top_k=2)
    frames = _frames(3)
    before = extractor.extract(frames)
    extractor.save(tmp_path / "extractor.keras")
    revived = keras.models.load_model(tmp_path / "extractor.keras")
    assert isinstance(revived, TwoStreamFeatureExtractor)
    assert revived.action_head.cam_class == "top_k"
    after = revived.extract(frames)
    for key in KEYS:
        np.testing.assert_array_equal(after[key], before[key])


def test_lower_precision_keeps_float32_weights_and_outputs(tmp_path):
    extractor = _build()
    frames = _frames(4)
    exact = extractor.extract(frames)
    extractor.set_compute_dtype("bfloat16")
    assert extractor.trunk.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert extractor.action_head.cam_conv.compute_dtype == "bfloat16"
    assert {w.dtype for w in extractor.weights} == {"float32"}
    fast = extractor.extract(frames)
    assert all(v.dtype == np.float32 for v in fast.values())
    # bfloat16 keeps 8 bits of mantissa: about 1% relative error (2% allowed). (The
    # action stream of this random tiny model is near zero after the CAM mask, where
    # the same absolute errors are larger relative ones.)
    scale = np.max(np.abs(exact["context"]))
    assert np.max(np.abs(fast["context"] - exact["context"])) < 0.02 * scale
    assert not np.array_equal(fast["context"], exact["context"])
    extractor.save(tmp_path / "bf16.keras")
    revived = keras.models.load_model(tmp_path / "bf16.keras")
    assert revived.compute_dtype_name == "bfloat16"
    np.testing.assert_array_equal(revived.extract(frames)["context"], fast["context"])
    extractor.set_compute_dtype("float32")  # reversible: the weights never changed
    np.testing.assert_array_equal(extractor.extract(frames)["context"], exact["context"])
    # float16 keeps 11 bits: about 0.1% (0.5% allowed).
    extractor.set_compute_dtype("float16")
    assert extractor.context_head.fc6.compute_dtype == "float16"
    assert extractor.context_head.fc8.compute_dtype == "float32"  # the softmax
    half = extractor.extract(frames)
    assert np.max(np.abs(half["context"] - exact["context"])) < 0.005 * scale
    with pytest.raises(ValueError, match="compute_dtype"):
        extractor.set_compute_dtype("int8")
