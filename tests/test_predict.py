"""predict_video: frame-by-frame streaming equals one causal pass over the whole clip."""

import csv
import dataclasses
import re

import cv2
import numpy as np
import pytest

from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import read_frames
from msl_keras.errors import ConfigError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.metrics import anticipation_step
from msl_keras.pipeline.prediction import iter_frames, predict_from_run_dir, predict_video
from msl_keras.runs import load_extractor, load_lstm
from tests.lstm_fixtures import FOLD
from tests.stage_helpers import make_random_trained_run

CLASS_NAMES = ["wave", "jump", "clap"]
T = 5

LINE = re.compile(
    r"frame +(\d+)  anticipated: (\w+) \(p=(\d\.\d\d)\)(  \[past training T=5\])?"
)


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("predict")
    config, run = make_random_trained_run(tmp_path, CLASS_NAMES, num_steps=T)
    frames_dir = tmp_path / "clip"
    frames_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):  # 9 frames, T = 5: the stream runs past T
        frame = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(frames_dir / f"{i + 1:05d}.png"), frame)
    return config, run, frames_dir


def _one_pass(config, run, clip, count):
    """Every frame through the extractor, the LSTM once over the whole sequence."""
    extractor = load_extractor(config, run, FOLD)
    model = load_lstm(run.lstm_dir(FOLD))
    frames = read_frames(clip, np.arange(count))
    features = extractor.extract(np.asarray(preprocess_frames(frames, (32, 32))))
    out = model(
        {"context": features["context"][None], "action": features["action"][None]},
        training=False,
    )
    return {k: np.asarray(v)[0] for k, v in out.items()}


def test_streaming_runs_the_whole_video_equal_to_one_pass(streaming_run, tmp_path):
    config, run, clip = streaming_run
    lines = []
    result = predict_video(
        clip,
        config,
        run,
        FOLD,
        plot_path=tmp_path / "stream.png",
        print_fn=lines.append,
        threshold=0.0,
    )
    n = 9
    assert result["frame_indices"].tolist() == list(range(n))  # all 9, past T = 5
    assert result["past_training"].tolist() == [False] * T + [True] * (n - T)
    assert result["trained_steps"] == T and np.isnan(result["times"]).all()
    out = _one_pass(config, run, clip, n)
    np.testing.assert_allclose(result["probs"], out["stage2"], atol=1e-5)
    np.testing.assert_allclose(result["stage1_probs"], out["stage1"], atol=1e-5)
    pooled = temporal_average_pooling(out["stage2"])
    np.testing.assert_allclose(result["pooled"], pooled, atol=1e-5)
    assert np.ptp(result["pooled"][:, 0]) > 1e-3  # the probabilities do move
    assert result["predicted"].tolist() == pooled.argmax(-1).tolist()

    assert len(lines) == n + 2
    header = "streaming every frame; the LSTM was trained on the first T=5 "
    assert lines[0].startswith(header)
    for t, line in enumerate(lines[1 : n + 1]):
        match = LINE.fullmatch(line)
        assert match, line
        assert int(match.group(1)) == t + 1
        assert match.group(2) == CLASS_NAMES[result["predicted"][t]]
        assert float(match.group(3)) == pytest.approx(
            result["confidence"][t], abs=0.006
        )
        assert bool(match.group(4)) == (t >= T)
    # Threshold 0: the moment is the first step of the last run of the final class.
    step = anticipation_step(result["pooled"], 0.0)
    moment = result["anticipation"]
    assert moment["step"] == step and moment["name"] == result["predicted_names"][-1]
    assert lines[-1].startswith(f"anticipation: {moment['name']} at frame {step + 1}, ")
    assert (tmp_path / "stream.png").stat().st_size > 1000


def test_max_frames_threshold_and_silent_run(streaming_run):
    config, run, clip = streaming_run
    result = predict_video(
        clip, config, run, FOLD, print_fn=None, max_frames=3, threshold=1.0
    )
    assert result["frame_indices"].tolist() == [0, 1, 2]
    assert not result["past_training"].any()
    assert result["anticipation"] is None  # no pooled probability reaches 1.0
    assert result["predicted_names"][0] in CLASS_NAMES
    for bad in ({"max_frames": 0}, {"threshold": 1.5}):
        with pytest.raises(ConfigError, match="--max-frames|--threshold"):
            predict_video(clip, config, run, FOLD, print_fn=None, **bad)


def test_uniform_selection_streams_the_selected_frames(streaming_run):
    config, run, clip = streaming_run
    uniform = dataclasses.replace(
        config, data=dataclasses.replace(config.data, frame_selection="uniform")
    )
    lines = []
    result = predict_video(clip, uniform, run, FOLD, print_fn=lines.append)
    assert result["frame_indices"].tolist() == [0, 2, 4, 6, 8]  # T = 5 of 9
    assert lines[0].startswith("streaming the 5 of 9 frames spread over the video")
    assert not any("past training" in line for line in lines)


def test_predict_from_run_dir_many_videos_and_csv(streaming_run, tmp_path):
    config, run, clip = streaming_run
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.avi", "a.avi"):
        writer = cv2.VideoWriter(
            str(videos / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 24)
        )
        for i in range(7):
            writer.write(np.full((24, 40, 3), 30 * i, dtype=np.uint8))
        writer.release()
    lines = []
    results = predict_from_run_dir(
        [clip, videos],
        run.root,
        print_fn=lines.append,
        max_frames=6,
        csv_path=tmp_path / "frames.csv",
        top_k=2,
        plot_path=tmp_path / "p.png",
    )
    names = [str(clip), str(videos / "a.avi"), str(videos / "b.avi")]
    assert [r["video"] for r in results] == names  # a folder of videos: sorted
    expected = predict_video(clip, config, run, FOLD, print_fn=None, max_frames=6)
    np.testing.assert_allclose(results[0]["pooled"], expected["pooled"], atol=1e-6)
    assert (tmp_path / "p_clip.png").is_file() and (tmp_path / "p_a.png").is_file()
    np.testing.assert_allclose(results[1]["times"], np.arange(6) / 10)

    with open(tmp_path / "frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "video", "frame", "time_s", "past_training", "anticipation",
        "top1", "p1", "top2", "p2",
    ]  # fmt: skip
    assert len(rows) == 18  # 6 frames of each of the 3 videos
    first = rows[6]  # a.avi, frame 1
    assert first["video"].endswith("a.avi") and first["frame"] == "1"
    assert first["time_s"] == "0.000" and rows[7]["time_s"] == "0.100"
    assert rows[5]["past_training"] == "1" and rows[4]["past_training"] == "0"
    assert rows[0]["time_s"] == ""  # a frame folder has no frame rate
    pooled = results[1]["pooled"][0]
    assert first["top1"] == CLASS_NAMES[int(pooled.argmax())]
    assert float(first["p1"]) == pytest.approx(pooled.max(), abs=1e-4)
    assert float(first["p1"]) >= float(first["p2"])

    with pytest.raises(ConfigError, match="No trained LSTM 'nope'"):
        predict_from_run_dir(clip, run.root, lstm="nope", print_fn=None)


def test_several_lstms_name_the_cli_flag(streaming_run, tmp_path):
    import shutil

    config, run, clip = streaming_run
    other = run.lstm_dir(FOLD).parent / "zz_other"
    shutil.copytree(run.lstm_dir(FOLD), other)
    try:
        lines = []
        predict_from_run_dir(clip, run.root, print_fn=lines.append, max_frames=1)
    finally:
        shutil.rmtree(other)
    assert "pick one with --lstm NAME" in lines[0] and "zz_other" in lines[0]


def test_oracle_cam_is_refused(streaming_run):
    config, run, clip = streaming_run
    oracle = dataclasses.replace(
        config, cnn=dataclasses.replace(config.cnn, cam_class="oracle")
    )
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="oracle"):
        predict_video(clip, oracle, run, FOLD, print_fn=None)


def test_anticipation_step():
    pooled = [[0.6, 0.4], [0.45, 0.55], [0.3, 0.7], [0.35, 0.65]]
    assert anticipation_step(pooled, 0.6) == 2
    assert anticipation_step(pooled, 0.5) == 1
    assert anticipation_step(pooled, 0.66) is None  # the last step is below
    assert anticipation_step([[0.2, 0.8]] * 3, 0.5) == 0
    with pytest.raises(ValueError, match="threshold"):
        anticipation_step(pooled, 1.5)


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
