"""Decoding clips into RGB frames, and choosing which frames a clip contributes.

A clip is a video file (OpenCV's FFmpeg backend) or a folder of numbered frame images
(`00001.png`, ...; as JHMDB ships them). A clip that cannot be opened, decodes no
frame, stops before a requested frame or has a gap raises `VideoDecodeError` naming
the file: the authors' code trained on all-zero rows instead (defect #1 in the notes).
Videos are decoded sequentially from the first frame: seeking in MPEG-4/XviD streams
lands on the nearest key frame. Headers are not trusted: 119 of the 120 UT-Interaction
clips claim one or two more frames than decode, so `count_frames` counts them.
"""

import functools
import os
import re
from pathlib import Path

import cv2
import numpy as np

from msl_keras.errors import VideoDecodeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")
SELECT_MODES = ("first", "uniform")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")

_TRAILING_NUMBER = re.compile(r"(\d+)$")
_AGAIN = "download or extract the clip again"


def _check_file(path):
    if not path.exists():
        reason = "no such file or folder; check the dataset root and the split lists"
    elif not path.is_file():
        reason = "not a regular file"
    elif path.stat().st_size == 0:
        reason = f"the file is empty (0 bytes); {_AGAIN}"
    else:
        return
    raise VideoDecodeError(path, reason)


def _open_capture(path):
    """Opens `path` with FFmpeg (the backend that reads AVI/MP4) where available."""
    _check_file(path)
    ffmpeg = cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG if ffmpeg else cv2.CAP_ANY)
    if not cap.isOpened():
        cap.release()
        reason = "OpenCV cannot open it as a video (damaged, or a codec OpenCV lacks)"
        raise VideoDecodeError(path, f"{reason}; {_AGAIN}")
    return cap


def _decode(path, keep):
    """Yields `(index, frame)` for every frame that decodes, in order: uint8 RGB
    `(H, W, 3)` where `keep(index)`, else None (grabbed without the colour conversion:
    cheaper). Raises `VideoDecodeError` when no frame decodes."""
    cap = _open_capture(path)
    index = 0
    try:
        while True:
            if keep(index):
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                yield index, frame[..., ::-1].copy()  # BGR -> RGB
            elif cap.grab():
                yield index, None
            else:
                break
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise VideoDecodeError(
            path, f"zero frames decode (the file holds no readable video); {_AGAIN}"
        )


def frame_files(folder):
    """The numbered frame images of a frame folder (image files whose name ends in a
    number: `00001.png`, `frame_0001.jpg`; others are ignored), in frame order. Raises
    `VideoDecodeError` on no image, a number used twice, or a gap (from 0 or 1 on).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(folder, "no such frame folder")
    numbered = {}
    for entry in os.scandir(folder):
        stem, suffix = os.path.splitext(entry.name)
        match = _TRAILING_NUMBER.search(stem)
        if suffix.lower() not in IMAGE_EXTENSIONS or not entry.is_file() or not match:
            continue
        number = int(match.group(1))
        if number in numbered:
            twice = f"'{numbered[number].name}' and '{entry.name}'"
            why = f"frame number {number} appears twice ({twice}); keep one of them"
            raise VideoDecodeError(folder, why)
        numbered[number] = Path(entry.path)
    if not numbered:
        why = f"zero frames: no numbered image ({', '.join(IMAGE_EXTENSIONS)})"
        raise VideoDecodeError(folder, f"{why}; extract the clip's frames again")
    numbers = sorted(numbered)
    missing = sorted(set(range(min(numbers[0], 1), numbers[-1])) - set(numbers))
    if missing:
        why = f"frame number {missing[0]} is missing ({len(missing)} in all)"
        raise VideoDecodeError(folder, f"{why}; extract the clip's frames again")
    return [numbered[n] for n in numbers]


def _as_indices(indices):
    array = np.asarray(indices)
    integral = np.issubdtype(array.dtype, np.integer)
    if array.ndim != 1 or array.size == 0 or not integral or array.min() < 0:
        raise ValueError(
            "indices must be a non-empty 1-D sequence of 0-based frame numbers. "
            f"Received: {array!r}"
        )
    return array.astype(np.int64)


def _past_end(path, index, holds):
    why = f"frame index {index} requested but {holds}"
    return VideoDecodeError(path, f"{why}; request indices below count_frames(path)")


def _stack(path, frames):
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoDecodeError(
            path, f"frames of different sizes {sorted(shapes)}; re-encode the clip"
        )
    return np.stack(frames)


def _read_image(file):
    """One frame image as uint8 RGB `(H, W, 3)`."""
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoDecodeError(
            file, "OpenCV cannot read this image; extract the clip's frames again"
        )
    return image[..., ::-1].copy()


def read_frames(path, indices=None):
    """Frames of a clip (a video file or a frame folder) as uint8 RGB
    `(len(indices), height, width, 3)`: `indices` are 0-based frame numbers, in the
    order given (repeats allowed); `None` returns every frame that decodes.

    Raises:
        VideoDecodeError: the clip cannot be opened, decodes no frame, ends before the
            largest requested index, has a gap or an unreadable image.
        ValueError: `indices` is empty, not 1-D, not integer, or negative.
    """
    path = Path(path)
    wanted = None if indices is None else _as_indices(indices)
    if path.is_dir():
        files = frame_files(path)
        if wanted is None:
            wanted = np.arange(len(files))
        elif wanted.max() >= len(files):
            raise _past_end(path, wanted.max(), f"the folder holds {len(files)} frames")
        frames = {i: _read_image(files[i]) for i in np.unique(wanted).tolist()}
        return _stack(path, [frames[i] for i in wanted.tolist()])
    needed = None if wanted is None else set(wanted.tolist())
    last = None if wanted is None else int(wanted.max())
    frames, count = {}, 0
    for index, frame in _decode(path, lambda i: needed is None or i in needed):
        frames[index], count = frame, index + 1
        if index == last:
            break
    if wanted is None:
        wanted = np.arange(count)
    elif last >= count:
        why = f"only {count} frames decode (the file is truncated: download it again)"
        raise _past_end(path, last, why)
    return _stack(path, [frames[i] for i in wanted.tolist()])


def iter_frames(path, indices=None, max_frames=None):
    """Streams `(frame_index, uint8 RGB (height, width, 3))` of the increasing `indices`
    (`None`: all), at most `max_frames` (`None`: to the end). A video that ends before a
    requested index stops there; the errors are `read_frames`' (and no frame at all).
    """
    path = Path(path)
    wanted = None if indices is None else _as_indices(indices).tolist()
    limit = np.inf if max_frames is None else int(max_frames)
    if path.is_dir():
        files = frame_files(path)
        wanted = range(len(files)) if wanted is None else wanted
        for emitted, index in enumerate(wanted):
            if emitted >= limit:
                return
            if index >= len(files):
                raise _past_end(path, index, f"the folder holds {len(files)} frames")
            yield index, _read_image(files[index])
        return
    targets = None if wanted is None else iter(wanted)
    target = None if targets is None else next(targets)
    emitted = 0
    for index, frame in _decode(path, lambda i: targets is None or i == target):
        if frame is None:
            continue
        yield index, frame
        emitted += 1
        target = None if targets is None else next(targets, None)
        if emitted >= limit or (targets is not None and target is None):
            break
    if emitted == 0 and limit > 0:
        why = "zero frames decode (no video, or it ends before the first requested one)"
        fix = "or request indices below count_frames(path)"
        raise VideoDecodeError(path, f"{why}; {_AGAIN}, {fix}")


@functools.lru_cache(maxsize=65536)
def _count_frames_cached(path, mtime_ns, size):
    return sum(1 for _ in _decode(Path(path), lambda i: False))


def count_frames(path):
    """Number of frames that decode (memoised per path, mtime and size), or of numbered
    images in a frame folder; not the container's claim."""
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    _check_file(path)
    stat = path.stat()
    return _count_frames_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def list_videos(paths):
    """The videos named by files and folders, in the order given: a folder holding
    video files (`VIDEO_EXTENSIONS`) stands for them, sorted by name; any other folder
    is one frame folder. Raises `VideoDecodeError` for a path that does not exist."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = []
    for path in map(Path, paths):
        if not path.exists():
            raise VideoDecodeError(path, "no such video file or folder; check the path")
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            videos.extend(inside or [path])
        else:
            videos.append(path)
    return videos


def video_fps(path):
    """Frames per second a video file declares (None for a frame folder or no claim)."""
    path = Path(path)
    if path.is_dir():
        return None
    cap = _open_capture(path)
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    cap.release()
    return fps if fps > 0 else None


def observed_frames(num_frames, observed_ratio=1.0):
    """Frames seen after observing `observed_ratio` (in (0, 1]) of a clip of
    `num_frames` (an int, or an int array): `ceil(ratio * frames)`, at least 1.

    The product is rounded to 9 decimals first, so that float noise does not add a frame
    (`0.1 * 30` is `3.0000000000000004`; this returns 3).
    """
    counts = np.asarray(num_frames)
    integral = np.issubdtype(counts.dtype, np.integer) or np.all(np.mod(counts, 1) == 0)
    if not integral or np.any(counts < 1):
        raise ValueError(f"num_frames must be an int >= 1. Received: {num_frames=}")
    if not 0.0 < observed_ratio <= 1.0:
        raise ValueError(
            f"observed_ratio must be in (0, 1]. Received: {observed_ratio=}"
        )
    counts = counts.astype(np.int64)
    seen = np.ceil(np.round(float(observed_ratio) * counts, 9)).astype(np.int64)
    seen = np.clip(seen, 1, counts)
    return int(seen) if seen.ndim == 0 else seen


def select_frames(num_frames, T, mode="first", observed_ratio=1.0):
    """Which frames of a clip feed the T time steps: int64 indices `(n,)`, n <= T.

    Of the `observed = observed_frames(num_frames, observed_ratio)` frames, `"first"`
    takes `0 .. min(T, observed) - 1` (the paper's "at most the first T = 50 frames");
    `"uniform"` takes all when `observed <= T`, else T spread evenly from the first to
    the last, `i * (observed - 1) / (T - 1)` rounded half up (`T = 1`: the last).

    >>> select_frames(120, 5, "uniform", observed_ratio=0.5).tolist()
    [0, 15, 30, 44, 59]
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T must be an int >= 1. Received: T={T}")
    if mode not in SELECT_MODES:
        raise ValueError(f"mode must be one of {SELECT_MODES}. Received: mode={mode!r}")
    T = int(T)
    observed = observed_frames(num_frames, observed_ratio)
    if mode == "first" or observed <= T:
        return np.arange(min(T, observed), dtype=np.int64)
    if T == 1:
        return np.array([observed - 1], dtype=np.int64)
    i = np.arange(T, dtype=np.int64)
    # Integer form of floor(i * (observed - 1) / (T - 1) + 0.5): no float rounding.
    return (2 * i * (observed - 1) + (T - 1)) // (2 * (T - 1))


def read_clip(path, T, mode="first", observed_ratio=1.0):
    """`(frames, indices, num_frames)` of a clip: up to T frames (`select_frames`),
    uint8 RGB `(n, height, width, 3)`, their int64 indices `(n,)` and the clip's
    decodable frame count. With `mode="first"` a video is decoded once (the first T
    frames kept, the rest counted); `"uniform"` counts first (memoised), then decodes.
    """
    if mode == "first" and not Path(path).is_dir():
        select_frames(1, T, mode=mode, observed_ratio=observed_ratio)  # check arguments
        decoded = list(_decode(Path(path), lambda i: i < int(T)))
        indices = select_frames(len(decoded), T, mode, observed_ratio)
        kept = [frame for _, frame in decoded[: len(indices)]]
        return _stack(Path(path), kept), indices, len(decoded)
    num_frames = count_frames(path)
    indices = select_frames(num_frames, T, mode=mode, observed_ratio=observed_ratio)
    return read_frames(path, indices), indices, num_frames
