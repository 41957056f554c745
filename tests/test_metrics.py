"""Temporal average pooling and accuracy against frames observed (metrics.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras import metrics
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import (
    TemporalAveragePooling,
    temporal_average_pooling,
)
from tests.model_testing import run_model_test

# --------------------------------------------------------------------------------------
# Pooling


def reference_pooling(probs, lengths):
    """Loop version: pbar_t = mean of the valid steps up to min(t, length)."""
    out = np.zeros_like(probs)
    for i in range(probs.shape[0]):
        for t in range(probs.shape[1]):
            last = min(t + 1, lengths[i])
            out[i, t] = probs[i, :last].sum(axis=0) / last
    return out


def test_pooling_hand_value():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    want = [[1.0, 0.0], [0.5, 0.5], [1 / 3, 2 / 3]]
    np.testing.assert_allclose(temporal_average_pooling(probs), want)


def test_pooling_numpy_tensor_layer_and_streaming_agree():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 5)).astype(np.float32)
    lengths = np.array([5, 3, 1])
    want = reference_pooling(probs, lengths)

    from_numpy = temporal_average_pooling(probs, lengths)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.shape == (3, 5, 4)
    np.testing.assert_allclose(from_numpy, want, rtol=1e-6)

    from_tensor = temporal_average_pooling(tf.constant(probs), tf.constant(lengths))
    assert keras.ops.is_tensor(from_tensor)
    np.testing.assert_allclose(from_tensor.numpy(), want, rtol=1e-6)

    mask = np.arange(5)[None, :] < lengths[:, None]
    from_layer = TemporalAveragePooling()(probs, mask=mask)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(from_layer), want, rtol=1e-6)


def test_pooling_layer_in_a_graph_keeps_the_mask(tmp_path):
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    pooled = TemporalAveragePooling()(masked)
    assert tuple(pooled.shape) == (None, None, 4)
    model = keras.Model(inputs, pooled)
    probs = (
        np.random.default_rng(1).dirichlet(np.ones(4), size=(2, 6)).astype("float32")
    )
    probs[1, 4:] = 0.0  # padding
    got = keras.ops.convert_to_numpy(model(probs))
    np.testing.assert_allclose(got, reference_pooling(probs, [6, 4]), rtol=1e-6)
    layer = run_model_test(
        TemporalAveragePooling, {"name": "tap"}, probs, tmp_path, (2, 6, 4)
    )
    assert layer.name == "tap"


def test_pooling_errors():
    with pytest.raises(ValueError, match="lengths.shape"):
        temporal_average_pooling(np.ones((3, 5, 4)), lengths=[1, 2])
    with pytest.raises(ValueError, match="probs.shape"):
        temporal_average_pooling(np.ones(4))


# --------------------------------------------------------------------------------------
# One causal pass == re-running the model on every prefix


def test_one_causal_pass_equals_rerunning_each_prefix():
    rng = np.random.default_rng(2)
    clips, steps, features, classes = 6, 6, 3, 3
    lengths = np.array([6, 4, 2, 6, 5, 3])
    inputs = keras.Input((None, features))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.LSTM(4, return_sequences=True)(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))

    data = rng.normal(size=(clips, steps, features)).astype(np.float32)
    data[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    full = keras.ops.convert_to_numpy(model(data))  # ONE pass, (clips, T, N)
    labels = full[np.arange(clips), lengths - 1].argmax(-1)  # mixes right and wrong
    labels[::2] = (labels[::2] + 1) % classes

    for pooled in (True, False):
        curve = metrics.accuracy_vs_steps(full, labels, lengths, pooled=pooled)
        rerun_truncated, rerun_padded = [], []
        for t in range(1, steps + 1):
            seen = np.minimum(t, lengths)
            # Truncated prefixes: the model sees only the first t steps.
            out = keras.ops.convert_to_numpy(model(data[:, :t]))
            # Zero-padded prefixes: full length, steps after t zeroed (masked).
            padded = data * (np.arange(steps)[None, :, None] < t)
            out_padded = keras.ops.convert_to_numpy(model(padded))
            for outputs, store in ((out, rerun_truncated), (out_padded, rerun_padded)):
                if pooled:
                    scores = np.stack(
                        [outputs[i, : seen[i]].mean(axis=0) for i in range(clips)]
                    )
                else:
                    scores = outputs[np.arange(clips), seen - 1]
                np.testing.assert_allclose(
                    metrics.prediction_at_step(full, t, lengths, pooled=pooled),
                    scores,
                    rtol=1e-5,
                    atol=1e-6,
                )
                store.append((scores.argmax(-1) == labels).mean())
        np.testing.assert_allclose(curve, rerun_truncated)
        np.testing.assert_allclose(curve, rerun_padded)
    assert 0.0 < curve.mean() < 1.0


# --------------------------------------------------------------------------------------
# Hand-made arrays with known answers


def test_accuracy_vs_steps_hand_values():
    # Clip B (label 1) has 2 valid steps; its padded row [0, 1] would be "correct".
    probs = np.array(
        [
            [[0.4, 0.6], [0.9, 0.1], [0.9, 0.1]],  # A, label 0
            [[0.3, 0.7], [0.8, 0.2], [0.0, 1.0]],  # B, label 1, length 2
            [[0.9, 0.1], [0.2, 0.8], [0.2, 0.8]],  # D, label 0
        ]
    )
    labels = np.array([0, 1, 0])
    lengths = np.array([3, 2, 3])
    raw = metrics.accuracy_vs_steps(probs, labels, lengths, pooled=False)
    pooled = metrics.accuracy_vs_steps(probs, labels, lengths, pooled=True)
    np.testing.assert_allclose(raw, [2 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(pooled, [2 / 3, 2 / 3, 1 / 3])
    # Without lengths the padded row counts, and clip B is right at t = 3.
    np.testing.assert_allclose(
        metrics.accuracy_vs_steps(probs, labels, pooled=False), [2 / 3, 1 / 3, 2 / 3]
    )


def test_top_k_and_ties():
    probs = np.array(
        [
            [[0.1, 0.4, 0.3, 0.2]],
            [[0.1, 0.4, 0.3, 0.2]],
            [[0.25, 0.25, 0.25, 0.25]],
            [[0.25, 0.25, 0.25, 0.25]],
        ]
    )
    labels = np.array([2, 0, 0, 3])
    # Per clip: top-1 F F T F; top-2 T F T F; top-3 T F T F; top-4 all.
    for k, want in [(1, 0.25), (2, 0.5), (3, 0.5), (4, 1.0)]:
        assert metrics.accuracy_vs_steps(probs, labels, top_k=k)[0] == want
    with pytest.raises(ValueError, match="top_k=5"):
        metrics.accuracy_vs_steps(probs, labels, top_k=5)


# Step s (1-based) of every clip predicts class s - 1 with weight 2^s, so the raw and
# the pooled argmax at step s are both s - 1: a clip is right iff it is read at step
# label + 1.
FRAME_INDICES = np.array(
    [
        [0, 2, 4, 6, 8],  # 10 frames, every other one
        [0, 1, 2, -1, -1],  # 3 frames, 2 padded steps
        [0, 1, 2, 3, 4],  # first 5 of 100 frames
        [5, 10, 15, 20, 25],  # 30 frames, the first stored one is frame 5
    ]
)
NUM_FRAMES = np.array([10, 3, 100, 30])


def _staircase_probs():
    probs = np.zeros((4, 5, 5))
    for s in range(5):
        probs[:, s, s] = 2.0**s
    probs[1, 3:] = 0.0
    probs[1, 3:, 0] = 100.0  # padded steps: never to be read
    return probs


@pytest.mark.parametrize("pooled", [True, False])
def test_accuracy_at_ratio_reads_the_last_observed_step(pooled):
    probs = _staircase_probs()
    steps = {  # expected step (1-based) per clip
        0.1: [1, 1, 5, 1],  # clip 3: no stored frame < 3, so its first step
        0.2: [1, 1, 5, 1],  # limits ceil(2, 0.6, 20, 6) = 2, 1, 20, 6
        0.5: [3, 2, 5, 2],  # limits 5, 2, 50, 15
        1.0: [5, 3, 5, 5],
    }
    for ratio, expected in steps.items():
        labels = np.array(expected) - 1
        accuracy = metrics.accuracy_at_ratio(
            probs, labels, FRAME_INDICES, NUM_FRAMES, ratio, pooled=pooled
        )
        assert accuracy == 1.0, ratio
    labels = np.array(steps[0.2]) - 1
    curve = metrics.accuracy_at_ratios(
        probs, labels, FRAME_INDICES, NUM_FRAMES, ratios=list(steps), pooled=pooled
    )
    np.testing.assert_allclose(curve, [1.0, 1.0, 0.25, 0.25])
    assert (
        len(metrics.accuracy_at_ratios(probs, labels, FRAME_INDICES, NUM_FRAMES)) == 10
    )


def test_ratio_rounding_keeps_whole_frame_counts():
    """0.1 * 30 is 3.0000000000000004 in floats: still 3 frames observed, not 4."""
    probs = _staircase_probs()[2:3]
    frame_indices = np.array([[0, 1, 2, 3, 4]])
    accuracy = metrics.accuracy_at_ratio(probs, np.array([2]), frame_indices, [30], 0.1)
    assert accuracy == 1.0


def test_earliest_latest():
    probs = _staircase_probs()
    latest_labels = np.array([5, 3, 5, 5]) - 1
    cases = {
        "jhmdb": [1, 1, 5, 1],  # 20%
        "ut_interaction": [3, 2, 5, 2],  # 50%
        "ucf101": [1, 2, 2, 1],  # 2 frames
    }
    for dataset, earliest_steps in cases.items():
        labels = np.array(earliest_steps) - 1
        result = metrics.earliest_latest(
            dataset, probs, labels, FRAME_INDICES, NUM_FRAMES, pooled=False
        )
        agree = (labels == latest_labels).mean()
        assert result == {"earliest": 1.0, "latest": agree}, dataset
        result = metrics.earliest_latest(
            dataset, probs, latest_labels, FRAME_INDICES, NUM_FRAMES
        )
        assert result == {"earliest": agree, "latest": 1.0}, dataset
    with pytest.raises(ConfigError) as info:
        metrics.earliest_latest(
            "hmdb51", probs, latest_labels, FRAME_INDICES, NUM_FRAMES
        )
    for name in ("jhmdb", "ucf101", "ut_interaction"):
        assert name in str(info.value)


def test_shape_errors_say_what_was_received():
    probs = _staircase_probs()
    labels = np.zeros(4, int)
    with pytest.raises(ValueError, match=r"Received: labels.shape=\(3,\)"):
        metrics.accuracy_vs_steps(probs, labels[:3])
    with pytest.raises(ValueError, match=r"Received: probs.shape=\(4, 5\)"):
        metrics.accuracy_vs_steps(probs[..., 0], labels)
    with pytest.raises(ValueError, match=r"frame_indices.shape=\(4, 4\)"):
        metrics.accuracy_at_ratio(probs, labels, FRAME_INDICES[:, :4], NUM_FRAMES, 0.5)
    with pytest.raises(ValueError, match=r"num_frames.shape=\(3,\)"):
        metrics.accuracy_at_ratio(probs, labels, FRAME_INDICES, NUM_FRAMES[:3], 0.5)
    with pytest.raises(ValueError, match="lengths"):
        metrics.accuracy_vs_steps(probs, labels, lengths=np.array([5, 0, 5, 5]))
    with pytest.raises(ValueError, match="ratio=1.5"):
        metrics.accuracy_at_ratio(probs, labels, FRAME_INDICES, NUM_FRAMES, 1.5)


# --------------------------------------------------------------------------------------
# Which step each reported point reads


def test_reported_readings_hand_values():
    readings = metrics.reported_readings(
        "ut_interaction", FRAME_INDICES, NUM_FRAMES, ratios=(0.2, 1.0)
    )
    assert set(readings) == {"earliest", "latest", "0.2", "1"}
    earliest = readings["earliest"]  # the first 50%: 5, 2, 50, 15 frames
    np.testing.assert_array_equal(earliest["frames"], [5, 2, 50, 15])
    np.testing.assert_array_equal(earliest["step"], [3, 2, 5, 2])
    np.testing.assert_array_equal(earliest["frame"], [4, 1, 4, 10])
    latest = readings["latest"]  # the last valid step, observing the whole clip
    np.testing.assert_array_equal(latest["frames"], NUM_FRAMES)
    np.testing.assert_array_equal(latest["step"], [5, 3, 5, 5])
    np.testing.assert_array_equal(latest["frame"], [8, 2, 4, 25])
    np.testing.assert_array_equal(readings["0.2"]["step"], [1, 1, 5, 1])
    # UCF-101's latest is the whole clip but at most its first T = 5 frames.
    ucf = metrics.reported_readings("ucf101", FRAME_INDICES, NUM_FRAMES, ratios=())
    np.testing.assert_array_equal(ucf["latest"]["frames"], [5, 3, 5, 5])
    np.testing.assert_array_equal(ucf["earliest"]["frames"], [2, 2, 2, 2])
    np.testing.assert_array_equal(ucf["earliest"]["step"], [1, 2, 2, 1])
    with pytest.raises(ConfigError, match="hmdb51"):
        metrics.reported_readings("hmdb51", FRAME_INDICES, NUM_FRAMES)


def _steps_read(lengths, T, mode, ratios=(0.5,)):
    """(earliest step, latest step, {ratio: step}) per clip of UT-Interaction lengths."""
    from msl_keras.data.video import select_frames

    frame_indices = np.full((len(lengths), T), -1)
    for row, n in enumerate(lengths):
        chosen = select_frames(int(n), T, mode)
        frame_indices[row, : len(chosen)] = chosen
    readings = metrics.reported_readings(
        "ut_interaction", frame_indices, np.asarray(lengths), ratios
    )
    return readings


def _check_faithful_ut_reading(lengths, T=50):
    """T frames spread over the whole clip: ratio r of a clip reads step round(r * T)
    (or one more), earliest (50%) reads step T / 2 and latest the clip's last frame."""
    ratios = metrics.RATIOS
    readings = _steps_read(lengths, T, "uniform", ratios)
    long = np.asarray(lengths) >= T
    np.testing.assert_array_equal(readings["earliest"]["step"][long], T // 2)
    np.testing.assert_array_equal(readings["latest"]["frame"], np.asarray(lengths) - 1)
    assert np.all(readings["earliest"]["step"] < readings["latest"]["step"])
    for ratio in ratios:
        steps = readings[f"{ratio:g}"]["step"][long]
        assert np.all((steps >= round(ratio * T)) & (steps <= round(ratio * T) + 1))
    steps = np.stack([readings[f"{r:g}"]["step"] for r in ratios])
    assert np.all(np.diff(steps, axis=0) > 0)  # every ratio reads its own step


def test_first_frames_read_earliest_and_latest_at_one_step_synthetic_lengths():
    lengths = [52, 60, 98, 99, 100, 120, 183]
    first = _steps_read(lengths, 50, "first")
    same = first["earliest"]["step"] == first["latest"]["step"]
    # Clips of 99 frames or more: all 50 first frames lie in their first half.
    np.testing.assert_array_equal(same, np.asarray(lengths) >= 99)
    _check_faithful_ut_reading(lengths)


def test_first_frames_read_earliest_and_latest_at_one_step_real_ut_lengths(shared_data):
    from pathlib import Path

    from msl_keras.data.video import count_frames

    clips = sorted(Path(shared_data, "ut_interaction").glob("segmented_set*/*.avi"))
    assert len(clips) == 120
    lengths = [count_frames(clip) for clip in clips]
    first = _steps_read(lengths, 50, "first")
    same = first["earliest"]["step"] == first["latest"]["step"]
    assert int(same.sum()) == 76  # the old reading: 76 of the 120 clips
    _check_faithful_ut_reading(lengths)


def test_anticipation_accuracy_metric_equals_the_numpy_score_batch_by_batch():
    """The Keras metric `fit` selects the LSTM epoch by is the numpy score of
    `accuracy_vs_steps(pooled=True)`, averaged over steps, accumulated over batches."""
    rng = np.random.default_rng(3)
    clips, steps, classes = 11, 6, 4
    probs = rng.dirichlet(np.ones(classes), size=(clips, steps)).astype("float32")
    labels = rng.integers(0, classes, clips)
    lengths = rng.integers(1, steps + 1, clips)
    lengths[0] = steps
    targets = np.zeros_like(probs)
    for c in range(clips):
        targets[c, : lengths[c], labels[c]] = 1.0
    probs[np.arange(steps)[None] >= lengths[:, None]] = 0.0  # padded outputs
    want = float(np.mean(metrics.accuracy_vs_steps(probs, labels, lengths, pooled=True)))
    assert 0.0 < want < 1.0

    metric = metrics.AnticipationAccuracy()
    for start in range(0, clips, 4):  # batches of 4, 4 and 3 clips
        metric.update_state(targets[start : start + 4], probs[start : start + 4])
    assert float(metric.result()) == pytest.approx(want, rel=1e-6)
    metric.reset_state()
    metric.update_state(targets[:1], probs[:1])
    assert float(metric.result()) == pytest.approx(
        float(np.mean(metrics.accuracy_vs_steps(probs[:1], labels[:1], lengths[:1])))
    )
