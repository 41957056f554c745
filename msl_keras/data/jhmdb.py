"""JHMDB-21: the official three splits as clip records.

Layout expected (the official archives)::

    <root>/<class>/<clip>.avi               (JHMDB_video.zip: ReCompress_Videos/), or
    <root>/<class>/<clip>/00001.png ...     (the per-frame images: Rename_Images/)
    <splits_dir>/<class>_test_split{1,2,3}.txt   (splits.zip)

Each split file line is `<clip>.avi <id>`: id `1` = train, `2` = test (`0`, HMDB's "not
used", is skipped). Labels are the position of the class in the 21 sorted `CLASSES`.

JHMDB has no official groups, but its clips are cut from source videos and clip names
follow `<video>_<class>_<body>_<camera>_<people>_<view>_<quality>_<n>` (e.g.
`Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2`). Two clips of one video share actors and
scene, and the official splits never put one video in both train and test. The group is
therefore the clip name without its last six fields (`Goal_Keeping_Tips_catch`); a name
not in that form falls back to the name without its trailing `_<n>`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from msl_keras.data.records import ClipRecord, carve_validation
from msl_keras.errors import DatasetError

URL = "http://jhmdb.is.tue.mpg.de/"
CLASSES = (
    "brush_hair",
    "catch",
    "clap",
    "climb_stairs",
    "golf",
    "jump",
    "kick_ball",
    "pick",
    "pour",
    "pullup",
    "push",
    "run",
    "shoot_ball",
    "shoot_bow",
    "shoot_gun",
    "sit",
    "stand",
    "swing_baseball",
    "throw",
    "walk",
    "wave",
)
SPLITS = (1, 2, 3)
_ROLE_OF_ID = {"1": "train", "2": "test", "0": None}
_META_SUFFIX = re.compile(r"_[a-z]+_(?:cm|nm)_np\d+_[a-z]+_[a-z]+_\d+$")
_INDEX_SUFFIX = re.compile(r"_\d+$")


def class_names(splits_dir: str | os.PathLike | None = None) -> list[str]:
    """The 21 JHMDB classes, sorted (label = position).

    With `splits_dir`, also checks that every class has its three split files there.
    """
    if splits_dir is not None:
        _check_splits_dir(Path(splits_dir), SPLITS)
    return list(CLASSES)


def clip_group(clip_name: str) -> str:
    """The source video of a JHMDB clip (see module docstring): its group."""
    name = clip_name[:-4] if clip_name.lower().endswith(".avi") else clip_name
    group = _META_SUFFIX.sub("", name)
    if group == name:
        group = _INDEX_SUFFIX.sub("", name)
    return group


def _check_splits_dir(splits_dir: Path, splits) -> None:
    missing = [
        f"{c}_test_split{s}.txt"
        for s in splits
        for c in CLASSES
        if not (splits_dir / f"{c}_test_split{s}.txt").is_file()
    ]
    if missing:
        raise DatasetError(
            f"JHMDB split files missing in '{splits_dir}': "
            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
            f"({len(missing)} in all). Download splits.zip from {URL} and extract it "
            "there, or pass splits_dir."
        )


def _find_splits_dir(root: Path) -> Path:
    candidates = [root / "splits", root.parent / "splits"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetError(
        "JHMDB split files not found: looked for '<class>_test_split<n>.txt' in "
        f"{' and '.join(repr(str(c)) for c in candidates)}. Download splits.zip from "
        f"{URL} and extract it there, or pass splits_dir."
    )


def read_jhmdb(
    root: str | os.PathLike,
    split: int = 1,
    splits_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    check_files: bool = True,
) -> list[ClipRecord]:
    """Records of one official JHMDB split.

    Args:
        root: folder of the 21 class folders, holding either `<clip>.avi` files or
            `<clip>/` frame folders (detected per clip; a video file wins if both
            exist).
        split: 1, 2 or 3.
        splits_dir: folder of the split files; default `<root>/splits`, else
            `<root>/../splits`.
        validation_fraction: share of each class' training source videos moved to
            validation (`carve_validation`). `0` keeps all in train.
        seed: seed of the validation draw.
        check_files: fail on a listed clip that is neither a video nor a frame
            folder. With `False` the path is the frame folder where it exists, else
            `<clip>.avi`.

    Returns:
        `ClipRecord`s, class by class in `CLASSES` order then file order; `clip_id` is
        the clip name without `.avi`, `group` its source video (`clip_group`).

    Raises:
        DatasetError: the root, the split files or (check_files) a clip is missing, with
            the download URL; a malformed split line.
    """
    if split not in SPLITS:
        raise ValueError(
            f"JHMDB split must be one of {SPLITS}. Received: split={split!r}"
        )
    root = Path(root)
    if check_files and not root.is_dir():
        raise DatasetError(
            f"JHMDB not found: the folder '{root}' does not exist. Expected "
            f"'{root}/<class>/<clip>.avi' (JHMDB_video.zip) or "
            f"'{root}/<class>/<clip>/00001.png' (the frames archive), for the 21 "
            f"classes. Download from {URL}."
        )
    splits_dir = _find_splits_dir(root) if splits_dir is None else Path(splits_dir)
    _check_splits_dir(splits_dir, (split,))

    records = []
    seen = {}
    for label, class_name in enumerate(CLASSES):
        split_path = splits_dir / f"{class_name}_test_split{split}.txt"
        class_dir = root / class_name
        if check_files and not class_dir.is_dir():
            raise DatasetError(
                f"JHMDB class folder '{class_dir}' not found (needed by "
                f"'{split_path}'). The extraction is incomplete: download the videos "
                f"or frames from {URL}."
            )
        try:
            lines = split_path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as error:
            raise DatasetError(
                f"JHMDB split file '{split_path}' is not a text file ({error}). "
                f"Download splits.zip from {URL} and extract it again."
            ) from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{split_path}, line {number}"
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
            if clip_id in seen:
                raise DatasetError(
                    f"{where}: clip {clip_id!r} is listed twice (first at "
                    f"{seen[clip_id]})"
                )
            seen[clip_id] = where
            video, frames = class_dir / f"{clip_id}.avi", class_dir / clip_id
            if video.is_file():
                path = video
            elif frames.is_dir():
                path = frames
            elif check_files:
                raise DatasetError(
                    f"{where}: clip {clip_id!r} not found; expected the video "
                    f"'{video}' or the frame folder '{frames}/00001.png ...'. The "
                    f"extraction is incomplete: download JHMDB again from {URL}."
                )
            else:
                path = video
            records.append(
                ClipRecord(
                    clip_id=clip_id,
                    path=str(path),
                    label=label,
                    class_name=class_name,
                    group=clip_group(clip_id),
                    role=role,
                )
            )
    return carve_validation(records, validation_fraction, seed)
