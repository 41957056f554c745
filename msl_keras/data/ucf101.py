"""UCF-101: the official three train/test splits as clip records.

Layout expected (the official archives, extracted side by side)::

    <root>/UCF-101/<Class>/v_<Class>_gNN_cNN.avi     UCF101.rar
    <root>/ucfTrainTestlist/classInd.txt              UCF101TrainTestSplits-
    <root>/ucfTrainTestlist/trainlist0{1,2,3}.txt         RecognitionTask.zip
    <root>/ucfTrainTestlist/testlist0{1,2,3}.txt

`root` may also be the `UCF-101` folder itself (class folders directly under it); the
lists then need `lists_dir`. The lists have CRLF line ends; `classInd.txt` numbers the
101 classes from 1 (labels here are 0-based); `trainlist0N.txt` lines carry that number,
the test lists do not. The clip's group is its `gNN` (25 groups of the same actors and
backgrounds; the splits hold out groups 1-7, 8-14, 15-21). One class is spelt two ways:
the folder is `HandstandPushups` while its files are `v_HandStandPushups_*`; paths are
taken from the lists and resolved case-insensitively on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from msl_keras.data.records import ClipRecord, carve_validation
from msl_keras.errors import DatasetError

URL = "https://www.crcv.ucf.edu/data/UCF101.php"
VIDEOS_FOLDER = "UCF-101"
LISTS_FOLDER = "ucfTrainTestlist"
SPLITS = (1, 2, 3)
_CLIP_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$")


def _check_split(split) -> int:
    if split not in SPLITS:
        raise ValueError(
            f"UCF-101 split must be one of {SPLITS}. Received: split={split!r}"
        )
    return int(split)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of a list file."""
    if not path.is_file():
        raise DatasetError(
            f"UCF-101 split list not found: expected '{path}'. Download "
            f"UCF101TrainTestSplits-RecognitionTask.zip from {URL} and extract it so "
            f"that '{path.parent}' holds classInd.txt, trainlist01-03.txt and "
            "testlist01-03.txt (or pass lists_dir)."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"UCF-101 split list '{path}' is not a text file ({error}). Download "
            f"UCF101TrainTestSplits-RecognitionTask.zip from {URL} and extract it again."
        ) from None
    return [
        (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()
    ]


def _default_lists_dir(root: Path) -> Path:
    return root / LISTS_FOLDER


def class_names(lists_dir: str | os.PathLike) -> list[str]:
    """The 101 class names of `classInd.txt`, in label order (label = position)."""
    path = Path(lists_dir) / "classInd.txt"
    names = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdecimal():
            raise DatasetError(
                f"{path}, line {number}: expected '<index> <ClassName>'. Received: "
                f"{line!r}"
            )
        if int(parts[0]) != len(names) + 1:
            raise DatasetError(
                f"{path}, line {number}: class indices must run 1, 2, 3, ... in order; "
                f"expected {len(names) + 1}. Received: {line!r}"
            )
        names.append(parts[1])
    return names


def _video_dir(root: Path) -> Path:
    nested = root / VIDEOS_FOLDER
    return nested if nested.is_dir() else root


class _Resolver:
    """Finds listed clips on disk, case-insensitively; lists each class folder once."""

    def __init__(self, video_dir: Path):
        self.video_dir = video_dir
        self._folders = None
        self._files: dict[str, dict[str, str]] = {}

    def __call__(self, folder: str, filename: str) -> Path | None:
        exact = self.video_dir / folder / filename
        if self._folders is None:
            self._folders = {
                e.name.lower(): e.name for e in os.scandir(self.video_dir) if e.is_dir()
            }
        actual_folder = self._folders.get(folder.lower())
        if actual_folder is None:
            return None
        if actual_folder not in self._files:
            self._files[actual_folder] = {
                e.name.lower(): e.name
                for e in os.scandir(self.video_dir / actual_folder)
                if e.is_file()
            }
        actual_file = self._files[actual_folder].get(filename.lower())
        if actual_file is None:
            return None
        if actual_folder == folder and actual_file == filename:
            return exact
        return self.video_dir / actual_folder / actual_file


def read_ucf101(
    root: str | os.PathLike,
    split: int = 1,
    lists_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    check_files: bool = True,
) -> list[ClipRecord]:
    """Records of one official UCF-101 split.

    Args:
        root: folder holding `UCF-101/` (or the class folders themselves).
        split: 1, 2 or 3.
        lists_dir: folder of `classInd.txt` and the lists; default
            `<root>/ucfTrainTestlist`.
        validation_fraction: share of the training groups `gNN` moved to validation
            (`carve_validation`: e.g. 2 of the 18 training groups of split 1, in every
            class). `0` keeps all in train.
        seed: seed of the validation draw.
        check_files: resolve every clip on disk and fail on a missing one; `False`
            parses the lists only (paths are then `<videos>/<as listed>`).

    Returns:
        `ClipRecord`s, training list first then test list, in list order; `clip_id` is
        the file name without `.avi`, `group` is `"gNN"`.

    Raises:
        DatasetError: a list or the videos folder is missing (with the download URL), a
            list line is malformed, or (check_files) a listed clip is not on disk.
    """
    split = _check_split(split)
    root = Path(root)
    if lists_dir is None and not root.is_dir():
        raise DatasetError(
            f"UCF-101 not found: the folder '{root}' does not exist. Expected "
            f"'{root / VIDEOS_FOLDER}/<Class>/v_<Class>_gNN_cNN.avi' and "
            f"'{root / LISTS_FOLDER}/classInd.txt'. Download UCF101.rar and "
            f"UCF101TrainTestSplits-RecognitionTask.zip from {URL} and extract both "
            "there."
        )
    lists_dir = _default_lists_dir(root) if lists_dir is None else Path(lists_dir)
    if not lists_dir.is_dir():
        raise DatasetError(
            f"UCF-101 split lists not found: expected the folder '{lists_dir}' with "
            "classInd.txt, trainlist01-03.txt and testlist01-03.txt. Download "
            f"UCF101TrainTestSplits-RecognitionTask.zip from {URL} and extract it "
            "there, or pass lists_dir."
        )
    names = class_names(lists_dir)
    label_of = {name: i for i, name in enumerate(names)}
    label_of_lower = {name.lower(): i for i, name in enumerate(names)}
    video_dir = _video_dir(root)
    resolve = None
    if check_files:
        if not video_dir.is_dir():
            raise DatasetError(
                "UCF-101 videos not found: expected "
                f"'{root / VIDEOS_FOLDER}/<Class>/v_<Class>_gNN_cNN.avi'. Download "
                f"UCF101.rar from {URL} and extract it into '{root}', or pass "
                "check_files=False to read the lists only."
            )
        resolve = _Resolver(video_dir)

    records = []
    seen = {}
    for role, list_name in (
        ("train", f"trainlist0{split}.txt"),
        ("test", f"testlist0{split}.txt"),
    ):
        list_path = lists_dir / list_name
        for number, line in _lines(list_path):
            where = f"{list_path}, line {number}"
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
                    f"{where}: file name does not follow v_<Class>_gNN_cNN.avi. "
                    f"Received: {line!r}"
                )
            if clip_id in seen:
                raise DatasetError(
                    f"{where}: clip {clip_id!r} is listed twice (first at "
                    f"{seen[clip_id]})"
                )
            seen[clip_id] = where
            if resolve is not None:
                path = resolve(folder, filename)
                if path is None:
                    raise DatasetError(
                        f"{where}: clip {parts[0]!r} not found; expected "
                        f"'{video_dir / folder / filename}'. The UCF-101 extraction is "
                        f"incomplete: extract UCF101.rar from {URL} again."
                    )
            else:
                path = video_dir / folder / filename
            records.append(
                ClipRecord(
                    clip_id=clip_id,
                    path=str(path),
                    label=label,
                    class_name=names[label],
                    group=f"g{match.group('group')}",
                    role=role,
                )
            )
    return carve_validation(records, validation_fraction, seed)
