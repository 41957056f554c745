"""JHMDB-21: the official three splits as clip records.

Layout expected (the official archives)::

    <root>/<class>/<clip>.avi               (JHMDB_video.zip: ReCompress_Videos/), or
    <root>/<class>/<clip>/00001.png ...     (the per-frame images: Rename_Images/)
    <splits_dir>/<class>_test_split{1,2,3}.txt   (splits.zip)

A split file line is `<clip>.avi <id>`: `1` train, `2` test, `0` (HMDB's "not used")
skipped. Labels are positions in the 21 sorted `CLASSES`. JHMDB has no groups, but two
clips of one source video share actors and scene (the splits never separate them); clip
names are `<video>_<class>_<body>_<camera>_<people>_<view>_<quality>_<n>`, so the group
is the name without its last six fields (`Goal_Keeping_Tips_catch` of
`Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2`), else without its trailing `_<n>`.
"""

import re
from pathlib import Path

from msl_keras.data.records import (
    ClipRecord,
    carve_validation,
    check_listed_once,
    list_lines,
)
from msl_keras.errors import DatasetError, listing

URL = "http://jhmdb.is.tue.mpg.de/"
CLASSES = tuple(
    "brush_hair catch clap climb_stairs golf jump kick_ball pick pour pullup push run "
    "shoot_ball shoot_bow shoot_gun sit stand swing_baseball throw walk wave".split()
)
SPLITS = (1, 2, 3)
_ROLE_OF_ID = {"1": "train", "2": "test", "0": None}
_META_SUFFIX = re.compile(r"_[a-z]+_(?:cm|nm)_np\d+_[a-z]+_[a-z]+_\d+$")
_INDEX_SUFFIX = re.compile(r"_\d+$")
_GET_SPLITS = f"Download splits.zip from {URL} and extract it"


def class_names():
    """The 21 JHMDB classes, sorted (label = position)."""
    return list(CLASSES)


def clip_group(clip_name):
    """The source video of a JHMDB clip (see module docstring): its group."""
    name = clip_name[:-4] if clip_name.lower().endswith(".avi") else clip_name
    group = _META_SUFFIX.sub("", name)
    return _INDEX_SUFFIX.sub("", name) if group == name else group


def _check_splits_dir(splits_dir, split):
    names = [f"{c}_test_split{split}.txt" for c in CLASSES]
    missing = [name for name in names if not (splits_dir / name).is_file()]
    if missing:
        raise DatasetError(
            f"JHMDB split files missing in '{splits_dir}': {listing(missing, 4)}. "
            f"{_GET_SPLITS} there, or pass splits_dir."
        )


def _find_splits_dir(root):
    candidates = [root / "splits", root.parent / "splits"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetError(
        "JHMDB split files not found: looked for '<class>_test_split<n>.txt' in "
        f"{' and '.join(repr(str(c)) for c in candidates)}. {_GET_SPLITS} there, or "
        "pass splits_dir."
    )


def read_jhmdb(
    root, split=1, splits_dir=None, validation_fraction=0.1, seed=0, check_files=True
):
    """`ClipRecord`s of official split 1, 2 or 3, class by class, in file order.

    Args:
        root: folder of the class folders, of `<clip>.avi` files or `<clip>/` frame
            folders (per clip; a video file wins if both exist).
        splits_dir: default `<root>/splits`, else `<root>/../splits`.
        validation_fraction: share of each class' training source videos carved out
            for validation (`carve_validation`).
        check_files: fail on a listed clip that is neither a video nor a frame folder.

    Raises:
        DatasetError: the root, the split files or (check_files) a clip is missing, with
            the download URL; a malformed split line.
    """
    if split not in SPLITS:
        raise ValueError(f"JHMDB split must be one of {SPLITS}. Received: {split=}")
    root = Path(root)
    if check_files and not root.is_dir():
        raise DatasetError(
            f"JHMDB not found: no folder '{root}' of '<class>/<clip>.avi' videos or "
            f"'<class>/<clip>/00001.png' frames. Download them from {URL}."
        )
    splits_dir = _find_splits_dir(root) if splits_dir is None else Path(splits_dir)
    _check_splits_dir(splits_dir, split)
    records, seen = [], {}
    for label, name in enumerate(CLASSES):
        split_path = splits_dir / f"{name}_test_split{split}.txt"
        class_dir = root / name
        if check_files and not class_dir.is_dir():
            raise DatasetError(
                f"JHMDB class folder '{class_dir}' (of '{split_path}') not found. "
                f"Download the videos or frames from {URL} again."
            )
        fix = f"{_GET_SPLITS} again."
        for where, line in list_lines(split_path, "JHMDB split file", fix):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in _ROLE_OF_ID:
                raise DatasetError(
                    f"{where}: expected '<clip>.avi <1|2>' (1 = train, 2 = test). "
                    f"Received: {line!r}"
                )
            role = _ROLE_OF_ID[parts[1]]
            if role is None:
                continue
            clip_id = parts[0][:-4] if parts[0].lower().endswith(".avi") else parts[0]
            check_listed_once(seen, clip_id, where)
            video, frames = class_dir / f"{clip_id}.avi", class_dir / clip_id
            path = video if video.is_file() or not frames.is_dir() else frames
            if check_files and path is video and not video.is_file():
                raise DatasetError(
                    f"{where}: clip {clip_id!r} not found: no video '{video}' nor "
                    f"frame folder '{frames}'. Download JHMDB from {URL} again."
                )
            group = clip_group(clip_id)
            records.append(ClipRecord(clip_id, str(path), label, name, group, role))
    return carve_validation(records, validation_fraction, seed)
