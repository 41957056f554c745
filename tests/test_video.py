"""Video decoding on the real clips, frame selection, and every failure mode.

Failures are checked with small files made in tmp_path: random bytes, an empty file, a
truncated copy of the real UCF-101 clip, frame folders with gaps or a damaged image.
"""

import os
import time

import cv2
import numpy as np
import pytest

from msl_keras.data.video import (
    count_frames,
    frame_files,
    iter_frames,
    observed_frames,
    read_clip,
    read_frames,
    select_frames,
)
from msl_keras.errors import VideoDecodeError

UCF_CLIP = "ucf101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
JHMDB_CLIP = "jhmdb/frames/catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
UT_CLIPS = (
    "ut_interaction/segmented_set1/0_1_4.avi",
    "ut_interaction/segmented_set1/43_8_4.avi",
    "ut_interaction/segmented_set2/59_20_2.avi",
)


def _cv2_bgr_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


def _write_avi(path, colors_bgr, size=(32, 24)):
    """A small MJPG .avi, one solid frame per colour."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for color in colors_bgr:
        writer.write(np.full((size[1], size[0], 3), color, np.uint8))
    writer.release()
    return path


def _write_frames(folder, numbers, size=(16, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        image = np.full((size[1], size[0], 3), (n * 10 % 256, 0, 255 - n), np.uint8)
        assert cv2.imwrite(str(folder / f"{n:05d}.png"), image)
    return folder


# ---------------------------------------------------------------- real clips


def test_ucf_clip_decodes_to_164_rgb_frames(shared_data):
    path = shared_data / UCF_CLIP
    frames = read_frames(path)
    assert frames.dtype == np.uint8
    assert frames.shape == (164, 240, 320, 3)
    bgr = _cv2_bgr_frames(path)
    np.testing.assert_array_equal(frames, bgr[..., ::-1])
    assert not np.array_equal(frames, bgr)  # the order really changed
    assert count_frames(path) == 164


def test_read_frames_returns_requested_indices_in_order(shared_data):
    path = shared_data / UCF_CLIP
    full = read_frames(path)
    picked = read_frames(path, [5, 0, 5, 163])
    np.testing.assert_array_equal(picked, full[[5, 0, 5, 163]])
    np.testing.assert_array_equal(read_frames(path, np.arange(3)), full[:3])


def test_jhmdb_frame_folder_decodes_to_40_frames(shared_data):
    folder = shared_data / JHMDB_CLIP
    frames = read_frames(folder)
    assert frames.shape == (40, 240, 320, 3)
    assert count_frames(folder) == 40
    assert [f.name for f in frame_files(folder)][:2] == ["00001.png", "00002.png"]
    first = cv2.imread(str(folder / "00001.png"))
    np.testing.assert_array_equal(frames[0], first[..., ::-1])
    np.testing.assert_array_equal(read_frames(folder, [39, 0]), frames[[39, 0]])


def test_count_frames_counts_decoded_frames_not_the_header(shared_data):
    for name in UT_CLIPS:
        path = shared_data / name
        cap = cv2.VideoCapture(str(path))
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        n = count_frames(path)
        assert n < claimed, name
        assert len(_cv2_bgr_frames(path)) == n
        # the last frame that decodes is readable; one past it is a truncation error
        assert read_frames(path, [n - 1]).shape[0] == 1
        with pytest.raises(VideoDecodeError, match=os.path.basename(name)):
            read_frames(path, [claimed - 1])


def test_read_clip_uniform_half(shared_data):
    path = shared_data / UCF_CLIP
    frames, indices, num_frames = read_clip(
        path, T=10, mode="uniform", observed_ratio=0.5
    )
    assert num_frames == 164
    # observed = 82 frames; i * 81 / 9 rounded half up
    assert indices.tolist() == [0, 9, 18, 27, 36, 45, 54, 63, 72, 81]
    assert frames.shape == (10, 240, 320, 3)
    np.testing.assert_array_equal(frames, read_frames(path)[indices])


# ---------------------------------------------------------------- select_frames


def test_select_frames_first():
    assert select_frames(120, 50).tolist() == list(range(50))
    assert select_frames(30, 50).tolist() == list(range(30))
    # UT earliest: 50% of 120 frames observed, at most T = 50 of them
    assert select_frames(120, 50, "first", 0.5).tolist() == list(range(50))
    # JHMDB earliest: 20% of 40 frames = 8
    assert select_frames(40, 50, "first", 0.2).tolist() == list(range(8))
    assert select_frames(40, 50).dtype.kind == "i"


def test_select_frames_uniform():
    assert select_frames(120, 5, "uniform", 0.5).tolist() == [0, 15, 30, 44, 59]
    assert select_frames(11, 3, "uniform").tolist() == [0, 5, 10]
    assert select_frames(10, 4, "uniform").tolist() == [0, 3, 6, 9]
    assert select_frames(10, 1, "uniform").tolist() == [9]
    assert select_frames(8, 50, "uniform").tolist() == list(range(8))
    for n in (51, 60, 99, 164, 1800):
        for ratio in (0.3, 0.5, 1.0):
            idx = select_frames(n, 50, "uniform", ratio)
            observed = observed_frames(n, ratio)
            assert len(idx) == min(50, observed)
            assert idx[0] == 0 and idx[-1] == observed - 1
            assert np.all(np.diff(idx) > 0)


def test_observed_frames_rounding():
    assert observed_frames(30, 0.1) == 3  # 0.1 * 30 is 3.0000000000000004 in floats
    assert observed_frames(164, 0.01) == 2  # ceil(1.64)
    assert observed_frames(40, 0.2) == 8
    assert observed_frames(3, 0.01) == 1
    assert observed_frames(7, 1.0) == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_frames=0, T=5),
        dict(num_frames=10, T=0),
        dict(num_frames=10, T=5, mode="random"),
        dict(num_frames=10, T=5, observed_ratio=0.0),
        dict(num_frames=10, T=5, observed_ratio=1.5),
    ],
)
def test_select_frames_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        select_frames(**kwargs)


# ---------------------------------------------------------------- small written files


def test_written_video_rgb_order_and_count_cache(tmp_path):
    path = _write_avi(tmp_path / "clip.avi", [(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    frames = read_frames(path)
    assert frames.shape == (3, 24, 32, 3)
    mean = frames.reshape(3, -1, 3).mean(axis=1)
    # BGR blue -> RGB (0, 0, 255); BGR red -> RGB (255, 0, 0); MJPG is lossy.
    np.testing.assert_allclose(mean[0], [0, 0, 255], atol=12)
    np.testing.assert_allclose(mean[1], [255, 0, 0], atol=12)
    np.testing.assert_allclose(mean[2], [0, 255, 0], atol=12)
    assert count_frames(path) == 3
    time.sleep(0.01)
    _write_avi(path, [(0, 0, 0)] * 5)  # replaced file: counted anew
    assert count_frames(path) == 5


def test_random_bytes_raise(tmp_path):
    path = tmp_path / "noise.avi"
    path.write_bytes(
        np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes()
    )
    with pytest.raises(VideoDecodeError, match="noise.avi") as info:
        read_frames(path)
    assert "download" in info.value.reason
    assert info.value.path == str(path)
    with pytest.raises(VideoDecodeError):
        count_frames(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        read_frames(path, [0])
    with pytest.raises(VideoDecodeError, match="empty"):
        count_frames(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_frames(tmp_path / "nope.avi")
    with pytest.raises(VideoDecodeError, match="no such file"):
        count_frames(tmp_path / "nope.avi")


def test_truncated_copy_raises_beyond_what_decodes(shared_data, tmp_path):
    data = (shared_data / UCF_CLIP).read_bytes()
    path = tmp_path / "truncated.avi"
    path.write_bytes(data[: len(data) // 2])
    n = count_frames(path)
    assert 0 < n < 164
    assert read_frames(path, np.arange(n)).shape == (n, 240, 320, 3)
    with pytest.raises(VideoDecodeError, match="truncated.avi") as info:
        read_frames(path, np.arange(164))
    assert "truncated" in info.value.reason and f"only {n} frames" in info.value.reason


def test_frame_folder_with_gap_names_the_missing_number(tmp_path):
    folder = _write_frames(tmp_path / "clip", [1, 2, 4, 5])
    with pytest.raises(VideoDecodeError, match="frame number 3 is missing") as info:
        read_frames(folder)
    assert info.value.path == str(folder)
    with pytest.raises(VideoDecodeError, match="3 is missing"):
        count_frames(folder)
    late = _write_frames(tmp_path / "late", [3, 4])
    with pytest.raises(VideoDecodeError, match="frame number 1 is missing"):
        read_frames(late)


def test_frame_folder_reads_rgb_and_ignores_other_files(tmp_path):
    folder = _write_frames(tmp_path / "clip", [1, 2, 3])
    (folder / "joint_positions.mat").write_bytes(b"not an image")
    frames = read_frames(folder)
    assert frames.shape == (3, 12, 16, 3)
    # frame n was written BGR (10n, 0, 255 - n): RGB is (255 - n, 0, 10n)
    assert frames[1, 0, 0].tolist() == [253, 0, 20]
    with pytest.raises(VideoDecodeError, match="3 frames"):
        read_frames(folder, [3])


def test_frame_folder_damaged_image_or_empty(tmp_path):
    folder = _write_frames(tmp_path / "clip", [1, 2, 3])
    (folder / "00002.png").write_bytes(b"garbage")
    with pytest.raises(VideoDecodeError, match="00002.png"):
        read_frames(folder)
    read_frames(folder, [0, 2])  # the damaged frame is not requested
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="zero frames"):
        read_frames(empty)


def test_bad_indices_are_value_errors(tmp_path):
    folder = _write_frames(tmp_path / "clip", [1, 2])
    for bad in ([], [-1], [[0, 1]], [0.5]):
        with pytest.raises(ValueError):
            read_frames(folder, bad)


# ---------------------------------------------------------------- streaming


def test_iter_frames_lists_a_frame_folder_once(tmp_path, monkeypatch):
    import msl_keras.data.video as video

    folder = _write_frames(tmp_path / "clip", range(1, 7))
    calls = []
    listing = video.frame_files
    monkeypatch.setattr(video, "frame_files", lambda p: calls.append(p) or listing(p))
    streamed = list(iter_frames(folder))
    assert len(calls) == 1  # not once per frame
    assert [i for i, _ in streamed] == list(range(6))
    np.testing.assert_array_equal(
        np.stack([f for _, f in streamed]), read_frames(folder)
    )
    picked = list(iter_frames(folder, indices=[1, 4], max_frames=1))
    assert [i for i, _ in picked] == [1]
    with pytest.raises(VideoDecodeError, match="folder holds 6 frames"):
        list(iter_frames(folder, indices=[2, 9]))


def test_iter_frames_fails_like_read_frames(tmp_path):
    """Streaming decodes as extraction does: same checks, messages that say what to do."""
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.*download or extract"):
        list(iter_frames(empty))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(VideoDecodeError, match="download or extract"):
        list(iter_frames(junk))
    path = _write_avi(tmp_path / "clip.avi", [(0, 0, 40 * i) for i in range(5)])
    picked = list(iter_frames(path, indices=[0, 3]))
    np.testing.assert_array_equal(
        np.stack([f for _, f in picked]), read_frames(path, [0, 3])
    )


def test_read_clip_first_decodes_the_video_once(tmp_path, monkeypatch):
    import msl_keras.data.video as video

    path = _write_avi(tmp_path / "clip.avi", [(0, 20 * i, 0) for i in range(7)])
    opened = []
    open_capture = video._open_capture
    monkeypatch.setattr(
        video, "_open_capture", lambda p: opened.append(p) or open_capture(p)
    )
    frames, indices, num_frames = read_clip(path, 4)
    assert len(opened) == 1  # one decode, not a count pass and a read pass
    assert num_frames == 7 and indices.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(frames, read_frames(path, range(4)))
    frames, indices, num_frames = read_clip(path, 4, observed_ratio=0.3)
    assert num_frames == 7 and indices.tolist() == [0, 1, 2]  # ceil(0.3 * 7) = 3
    np.testing.assert_array_equal(frames, read_frames(path, range(3)))
    with pytest.raises(ValueError, match="T must be"):
        read_clip(path, 0)
