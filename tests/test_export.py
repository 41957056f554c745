"""export: the SavedModel and the TFLite files give the Keras full-clip probabilities.

Frame by frame on real clips (UT-Interaction, UCF-101; skipped without ../shared/data),
for clips shorter and longer than the training T, with a tiny random run folder.
"""

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from msl_keras import cli
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import read_frames
from msl_keras.errors import ConfigError
from msl_keras.export import export_from_run_dir
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.runs import load_extractor, load_lstm
from tests.lstm_fixtures import FOLD
from tests.stage_helpers import make_random_trained_run

T = 5
CLIPS = {
    "ut": "ut_interaction/segmented_set1/0_1_4.avi",
    "ucf": "ucf101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("export")
    config, run = make_random_trained_run(tmp_path, ("a", "b", "c", "d"), num_steps=T)
    saved = tmp_path / "saved_model"
    tflite = tmp_path / "tflite"
    export_from_run_dir(run.root, saved, print_fn=None)
    export_from_run_dir(run.root, tflite, "tflite", print_fn=None)
    return config, run, saved, tflite


def _keras_full_clip(config, run, frames):
    """The Keras models on the whole clip at once: extractor, then the LSTM's call."""
    extractor = load_extractor(config, run, FOLD)
    model = load_lstm(run.lstm_dir(FOLD))
    x = np.asarray(preprocess_frames(frames, (32, 32)))
    features = extractor.extract(x)
    out = model({k: features[k][None] for k in ("context", "action")}, training=False)
    return temporal_average_pooling(np.asarray(out["stage2"])[0])


def _stream(run_frame, frames, units=8, classes=4):
    carry = {
        "state": np.zeros((4, units), np.float32),
        "prob_sum": np.zeros(classes, np.float32),
        "count": np.float32(0),
    }
    pooled, anticipated = [], []
    for frame in frames:
        out = {k: np.asarray(v) for k, v in run_frame(frame=frame, **carry).items()}
        carry = {k: out[k] for k in carry}
        pooled.append(out["pooled"])
        anticipated.append(int(out["anticipated"]))
    return np.stack(pooled), anticipated


def _tflite_runner(path):
    with warnings.catch_warnings():  # tf.lite.Interpreter's move to ai_edge_litert
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    return interpreter.get_signature_runner("serve")


@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("count", [3, 40])  # shorter and longer than T = 5
def test_exported_models_equal_the_keras_full_clip_pass(
    shared_data, exported, clip, count
):
    config, run, saved, tflite = exported
    frames = read_frames(shared_data / CLIPS[clip], np.arange(count))
    expected = _keras_full_clip(config, run, frames)
    assert np.ptp(expected[:, 0]) > 1e-4  # the probabilities move (10x the tolerance)

    serve = tf.saved_model.load(str(saved)).signatures["serve"]
    pooled, anticipated = _stream(
        lambda **kw: serve(**{k: tf.constant(v) for k, v in kw.items()}), frames
    )
    np.testing.assert_allclose(pooled, expected, atol=1e-5)
    assert anticipated == expected.argmax(-1).tolist()

    pooled, anticipated = _stream(
        _tflite_runner(tflite / "streaming_float32.tflite"), frames
    )
    np.testing.assert_allclose(pooled, expected, atol=1e-5)
    assert anticipated == expected.argmax(-1).tolist()

    # float16 weights: the same graph with rounded weights, close but not equal.
    pooled, _ = _stream(_tflite_runner(tflite / "streaming_float16.tflite"), frames)
    np.testing.assert_allclose(pooled, expected, atol=1e-3)


def test_export_writes_metadata_and_refuses_a_used_folder(exported, capsys):
    config, run, saved, tflite = exported
    info = json.loads((tflite / "streaming.json").read_text())
    assert info["class_names"] == ["a", "b", "c", "d"] and info["trained_steps"] == T
    assert info["inputs"]["frame"] == {"shape": [None, None, 3], "dtype": "uint8"}
    assert info["inputs"]["state"]["shape"] == [4, 8]
    assert info["compute_dtype"] == {"cnn": "float32", "lstm": "float32"}
    assert info["files"] == {
        "tflite_float32": "streaming_float32.tflite",
        "tflite_float16": "streaming_float16.tflite",
    }
    size32 = (tflite / "streaming_float32.tflite").stat().st_size
    size16 = (tflite / "streaming_float16.tflite").stat().st_size
    assert size16 < 0.75 * size32
    assert (saved / "saved_model.pb").is_file() and (saved / "streaming.json").is_file()
    with pytest.raises(ConfigError, match="not empty"):
        export_from_run_dir(run.root, saved, print_fn=None)
    # The CLI parses and calls the same function; a used folder is a clear error.
    assert cli.main(["export", "--run-dir", str(run.root), "--out", str(saved)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_bfloat16_run_exports_saved_model_in_bfloat16_and_tflite_in_float32(tmp_path):
    from msl_keras.export import export_streaming
    from msl_keras.models import build_feature_extractor
    from msl_keras.models.ms_lstm import MultiStageLSTM
    from msl_keras.models.streaming import StreamingStep

    extractor = build_feature_extractor(
        3, input_shape=(32, 32, 3), width=1 / 16, fc_units=16, cam_filters=8,
        compute_dtype="bfloat16",
    )  # fmt: skip
    stream = StreamingStep(extractor, MultiStageLSTM(3, units=8, compute_dtype="bfloat16"))
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3)).astype("uint8")
    expected = stream.run(frames)["pooled"]
    saved = export_streaming(stream, tmp_path / "saved")
    tflite = export_streaming(stream, tmp_path / "tflite", "tflite")
    assert json.loads(saved["metadata"].read_text())["compute_dtype"] == {
        "cnn": "bfloat16", "lstm": "bfloat16"
    }  # fmt: skip
    assert json.loads(tflite["metadata"].read_text())["compute_dtype"] == {
        "cnn": "float32", "lstm": "float32"
    }  # fmt: skip
    assert stream.lstm.compute_dtype == extractor.compute_dtype_name == "bfloat16"
    serve = tf.saved_model.load(str(saved["saved_model"])).signatures["serve"]
    pooled, _ = _stream(
        lambda **kw: serve(**{k: tf.constant(v) for k, v in kw.items()}),
        frames, classes=3,
    )  # fmt: skip
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    pooled, _ = _stream(_tflite_runner(tflite["tflite_float32"]), frames, classes=3)
    np.testing.assert_allclose(pooled, expected, atol=1e-2)  # float32 vs bfloat16
