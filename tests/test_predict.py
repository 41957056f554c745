"""predict_video: frame-by-frame streaming equals one causal pass over the clip."""

import importlib
import json
import re

import cv2
import numpy as np
import pytest

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import read_frames
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.ms_lstm import MultiStageLSTM
from msl_keras.runs import RunDirectory
from msl_keras.stages.predict import iter_frames, predict_from_run_dir, predict_video
from tests.lstm_fixtures import FOLD, tiny_config

NUM_CLASSES = 3
CLASS_NAMES = ["wave", "jump", "clap"]
# msl_keras.stages exports functions named like their modules: fetch the module itself.
train_cnn = importlib.import_module("msl_keras.stages.train_cnn")


def _save_heads_like_train_cnn(config, run):
    """Random heads saved where train_cnn saves trained ones (and its random trunk)."""
    trunk = train_cnn.build_trunk(config)
    trunk.save_weights(run.root / train_cnn.TRUNK_WEIGHTS_FILENAME)
    maps = (None,) + tuple(trunk.output_shape[1:])
    cnn = config.cnn
    context = ContextAwareHead(
        NUM_CLASSES, fc_units=cnn.fc_units, width=cnn.width, dropout=0.0
    )
    action = ActionAwareHead(
        NUM_CLASSES,
        fc_units=cnn.fc_units,
        cam_filters=cnn.cam_filters,
        width=cnn.width,
        dropout=0.0,
    )
    context.build(maps)
    action.build(maps)
    cnn_dir = run.cnn_dir(FOLD)
    cnn_dir.mkdir(parents=True)
    context.save(cnn_dir / train_cnn.CONTEXT_HEAD_FILENAME)
    action.save(cnn_dir / train_cnn.ACTION_HEAD_FILENAME)
    (cnn_dir / train_cnn.INFO_FILENAME).write_text(
        json.dumps(
            {
                "class_names": CLASS_NAMES,
                "trunk_fingerprint": train_cnn.trunk_fingerprint(trunk),
            }
        )
    )


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("predict")
    config = tiny_config(
        tmp_path,
        **{
            "data.num_steps": 5,
            "cnn.input_size": 32,
            "cnn.width": 1 / 32,
            "cnn.cam_filters": 4,
            "cnn.weights": None,
        },
    )
    run = RunDirectory.create(config)
    _save_heads_like_train_cnn(config, run)
    lstm = MultiStageLSTM(NUM_CLASSES, units=8, dropout=0.0)
    lstm.build({"context": (None, None, 8), "action": (None, None, 8)})
    run.lstm_dir(FOLD).mkdir(parents=True)
    lstm.save(run.lstm_dir(FOLD) / "best.keras")
    frames_dir = tmp_path / "clip"
    frames_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):  # 7 frames; T = 5 are streamed
        frame = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(frames_dir / f"{i + 1:05d}.png"), frame)
    return config, run, frames_dir


def test_streaming_equals_one_pass_and_prints_each_frame(streaming_run, tmp_path):
    config, run, clip = streaming_run
    lines = []
    result = predict_video(
        clip,
        config,
        run,
        FOLD,
        plot_path=tmp_path / "stream.png",
        print_fn=lines.append,
    )
    T = config.data.num_steps
    assert result["frame_indices"].tolist() == list(range(T))  # capped at T of 7 frames
    assert result["pooled"].shape == (T, NUM_CLASSES)

    # One pass: every frame through the extractor, the LSTM over the whole sequence.
    extractor = train_cnn.load_extractor(config, run, FOLD)
    from msl_keras.stages.train_lstm import load_lstm

    model = load_lstm(run.lstm_dir(FOLD))
    frames = read_frames(clip, np.arange(T))
    features = extractor.extract(np.asarray(preprocess_frames(frames, (32, 32))))
    out = model(
        {"context": features["context"][None], "action": features["action"][None]},
        training=False,
    )
    probs2 = np.asarray(out["stage2"])[0]
    np.testing.assert_allclose(result["probs"], probs2, atol=1e-5)
    np.testing.assert_allclose(
        result["stage1_probs"], np.asarray(out["stage1"])[0], atol=1e-5
    )
    np.testing.assert_allclose(
        result["pooled"], temporal_average_pooling(probs2), atol=1e-5
    )
    assert result["predicted"].tolist() == result["pooled"].argmax(-1).tolist()

    assert len(lines) == T
    for t, line in enumerate(lines):
        match = re.fullmatch(r"frame +(\d+)  anticipated: (\w+) \(p=(\d\.\d\d)\)", line)
        assert match, line
        assert int(match.group(1)) == t + 1
        assert match.group(2) == CLASS_NAMES[result["predicted"][t]]
        assert float(match.group(3)) == pytest.approx(
            result["confidence"][t], abs=0.006
        )
    assert (tmp_path / "stream.png").stat().st_size > 1000


def test_max_frames_and_silent_run(streaming_run):
    config, run, clip = streaming_run
    result = predict_video(clip, config, run, FOLD, print_fn=None, max_frames=7)
    assert result["frame_indices"].tolist() == list(range(7))
    assert result["predicted_names"][0] in CLASS_NAMES


def test_predict_from_run_dir_finds_the_fold_and_lstm(streaming_run):
    config, run, clip = streaming_run
    lines = []
    result = predict_from_run_dir(clip, run.root, print_fn=lines.append, max_frames=3)
    expected = predict_video(clip, config, run, FOLD, print_fn=None, max_frames=3)
    np.testing.assert_allclose(result["pooled"], expected["pooled"], atol=1e-6)
    assert result["fold"] == FOLD and len(lines) == 3
    with pytest.raises(ConfigError, match="No trained LSTM 'nope'"):
        predict_from_run_dir(clip, run.root, lstm="nope", print_fn=None)


def test_oracle_cam_is_refused(streaming_run):
    import dataclasses

    config, run, clip = streaming_run
    oracle = dataclasses.replace(
        config, cnn=dataclasses.replace(config.cnn, cam_class="oracle")
    )
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="oracle"):
        predict_video(clip, oracle, run, FOLD, print_fn=None)


def test_iter_frames_decodes_a_video_file_like_read_frames(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), 40 * i, dtype=np.uint8))
    writer.release()
    streamed = list(iter_frames(path, max_frames=4))
    assert [i for i, _ in streamed] == [0, 1, 2, 3]
    np.testing.assert_array_equal(
        np.stack([f for _, f in streamed]), read_frames(path, range(4))
    )
    picked = list(iter_frames(path, indices=[1, 4]))
    assert [i for i, _ in picked] == [1, 4]
    np.testing.assert_array_equal(picked[1][1], read_frames(path, [4])[0])
