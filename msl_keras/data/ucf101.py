"""UCF-101: the official three train/test splits as clip records.

Layout expected (the official archives, extracted side by side)::

    <root>/UCF-101/<Class>/v_<Class>_gNN_cNN.avi     UCF101.rar
    <root>/ucfTrainTestlist/classInd.txt              UCF101TrainTestSplits-
    <root>/ucfTrainTestlist/trainlist0{1,2,3}.txt         RecognitionTask.zip
    <root>/ucfTrainTestlist/testlist0{1,2,3}.txt

`root` may also be the `UCF-101` folder itself (then pass `lists_dir`). `classInd.txt`
numbers the 101 classes from 1 (labels here are 0-based); train list lines carry that
number, test list lines do not. A clip's group is its `gNN` (25 groups of the same
actors and backgrounds). The folder `HandstandPushups` holds `v_HandStandPushups_*`
files, so listed paths are resolved case-insensitively on disk.
"""

import os
import re
from pathlib import Path

from msl_keras.data.records import (
    ClipRecord,
    carve_validation,
    check_listed_once,
    list_lines,
)
from msl_keras.errors import DatasetError

URL = "https://www.crcv.ucf.edu/data/UCF101.php"
VIDEOS_FOLDER = "UCF-101"
LISTS_FOLDER = "ucfTrainTestlist"
SPLITS = (1, 2, 3)
_CLIP_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")
_SPLITS_ZIP = f"UCF101TrainTestSplits-RecognitionTask.zip from {URL}"


def _lines(path):
    fix = f"Download {_SPLITS_ZIP} and extract it into '{path.parent}'."
    return list_lines(path, "UCF-101 split list", fix)


def class_names(lists_dir):
    """The 101 class names of `classInd.txt`, in label order (label = position)."""
    names = []
    for where, line in _lines(Path(lists_dir) / "classInd.txt"):
        parts = line.split()
        index = int(parts[0]) if len(parts) == 2 and parts[0].isdecimal() else None
        if index != len(names) + 1:
            raise DatasetError(
                f"{where}: expected '{len(names) + 1} <ClassName>' (indices run 1, 2, "
                f"3, ... in order). Received: {line!r}"
            )
        names.append(parts[1])
    return names


def read_ucf101(
    root, split=1, lists_dir=None, validation_fraction=0.1, seed=0, check_files=True
):
    """`ClipRecord`s of official split 1, 2 or 3: the training list then the test list.

    Args:
        root: the folder holding `UCF-101/` (or the class folders themselves).
        lists_dir: default `<root>/ucfTrainTestlist`.
        validation_fraction: share of the training groups `gNN` carved out for
            validation (`carve_validation`; 0.1 is 2 of the 18 of split 1).
        check_files: resolve every clip on disk and fail on a missing one; `False`
            parses the lists only (paths are then `<videos>/<as listed>`).

    Raises:
        DatasetError: a list or the videos folder is missing (with the download URL), a
            list line is malformed, or (check_files) a listed clip is not on disk.
    """
    if split not in SPLITS:
        raise ValueError(f"UCF-101 split must be one of {SPLITS}. Received: {split=}")
    root = Path(root)
    if lists_dir is None and not root.is_dir():
        raise DatasetError(
            f"UCF-101 not found: no folder '{root}'. Download UCF101.rar and "
            f"{_SPLITS_ZIP} and extract both there."
        )
    lists_dir = root / LISTS_FOLDER if lists_dir is None else Path(lists_dir)
    if not lists_dir.is_dir():
        raise DatasetError(
            f"UCF-101 split lists not found: no folder '{lists_dir}'. Download "
            f"{_SPLITS_ZIP} and extract it there, or pass lists_dir."
        )
    names = class_names(lists_dir)
    label_of = {name: i for i, name in enumerate(names)}
    label_of_lower = {name.lower(): i for i, name in enumerate(names)}
    video_dir = root / VIDEOS_FOLDER if (root / VIDEOS_FOLDER).is_dir() else root
    if check_files and not video_dir.is_dir():
        raise DatasetError(
            f"UCF-101 videos not found: no folder '{root / VIDEOS_FOLDER}'. Download "
            f"UCF101.rar from {URL} and extract it into '{root}', or pass "
            "check_files=False to read the lists only."
        )
    on_disk = {  # (folder, file) lower-cased: path, of the files in the class folders
        (folder.name.lower(), file.name.lower()): Path(file.path)
        for folder in (os.scandir(video_dir) if check_files else ())
        if folder.is_dir()
        for file in os.scandir(folder.path)
        if file.is_file()
    }
    records, seen = [], {}
    for role, name in (("train", "trainlist"), ("test", "testlist")):
        for where, line in _lines(lists_dir / f"{name}0{split}.txt"):
            parts = line.split()
            if len(parts) not in (1, 2) or "/" not in parts[0]:
                raise DatasetError(
                    f"{where}: expected '<Class>/v_<Class>_gNN_cNN.avi[ <label>]'. "
                    f"Received: {line!r}"
                )
            folder, filename = parts[0].split("/", 1)
            label = label_of.get(folder, label_of_lower.get(folder.lower()))
            if label is None:
                raise DatasetError(
                    f"{where}: class folder {folder!r} is not in "
                    f"{lists_dir / 'classInd.txt'}. Received: {line!r}"
                )
            if len(parts) == 2 and parts[1] != str(label + 1):
                raise DatasetError(
                    f"{where}: label {parts[1]} disagrees with classInd.txt, which "
                    f"numbers {names[label]!r} as {label + 1}. Received: {line!r}"
                )
            clip_id = filename[:-4] if filename.lower().endswith(".avi") else filename
            match = _CLIP_NAME.match(clip_id)
            if match is None:
                raise DatasetError(
                    f"{where}: file name not of the form v_<Class>_gNN_cNN.avi. "
                    f"Received: {line!r}"
                )
            check_listed_once(seen, clip_id, where)
            found = on_disk.get((folder.lower(), filename.lower()))
            if check_files and found is None:
                raise DatasetError(
                    f"{where}: clip '{video_dir / folder / filename}' not found. "
                    f"Extract UCF101.rar from {URL} again."
                )
            path = str(found or video_dir / folder / filename)
            group = f"g{match.group('group')}"
            records.append(ClipRecord(clip_id, path, label, names[label], group, role))
    return carve_validation(records, validation_fraction, seed)
