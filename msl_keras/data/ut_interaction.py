"""UT-Interaction: the segmented sets and their leave-one-sequence-out folds.

Layout expected (the official `segmented_set1.zip` and `segmented_set2.zip`)::

    <root>/segmented_set1/<clip>_<sequence>_<action>.avi    sequences 1-10
    <root>/segmented_set2/<clip>_<sequence>_<action>.avi    sequences 11-20

Actions 0..5 are `ACTIONS`. Each set is evaluated by 10-fold leave-one-sequence-out;
validation takes whole sequences out of the nine training ones (no actor pair or scene
in both). In set 1, sequence 6 has 5 clips (no punch) and sequence 8 has 7.
"""

import os
import re
from pathlib import Path

from msl_keras.data.records import ClipRecord, carve_validation
from msl_keras.errors import DatasetError

URL = "https://cvrc.ece.utexas.edu/SDHA2010/Human_Interaction.html"
ACTIONS = ("hand shake", "hug", "kick", "point", "punch", "push")
SETS = {1: range(1, 11), 2: range(11, 21)}
_CLIP_NAME = re.compile(r"^\d+_(?P<sequence>\d+)_(?P<action>\d+)\.avi$", re.IGNORECASE)


def class_names():
    """The six UT-Interaction actions, in label order."""
    return list(ACTIONS)


def _scan(root, set_number):
    """(path, clip_id, sequence, action) of each clip of a set, by clip number."""
    if set_number not in SETS:
        raise ValueError(f"set_number must be 1 or 2. Received: {set_number=}")
    folder, sequences = Path(root) / f"segmented_set{set_number}", SETS[set_number]
    if not folder.is_dir():
        raise DatasetError(
            f"UT-Interaction set {set_number}: no folder '{folder}'. Download "
            f"segmented_set{set_number}.zip from {URL} and extract it into '{root}'."
        )
    clips = []
    for entry in os.scandir(folder):
        if not entry.name.lower().endswith(".avi"):
            continue
        match = _CLIP_NAME.match(entry.name)
        if match is None:
            raise DatasetError(
                f"'{entry.path}' is not named <clip>_<sequence>_<action>.avi as the "
                "official clips are; rename or remove it."
            )
        sequence, action = int(match.group("sequence")), int(match.group("action"))
        if sequence not in sequences:
            raise DatasetError(
                f"'{entry.path}' names sequence {sequence}, but set {set_number} holds "
                f"{sequences[0]}-{sequences[-1]}; move it to the right set folder."
            )
        if action >= len(ACTIONS):
            raise DatasetError(
                f"'{entry.path}' names action {action}; UT-Interaction actions are "
                f"0-{len(ACTIONS) - 1} ({', '.join(ACTIONS)})."
            )
        clips.append((entry.path, entry.name[:-4], sequence, action))
    if not clips:
        raise DatasetError(
            f"No clip in '{folder}' (<clip>_<sequence>_<action>.avi). Download "
            f"segmented_set{set_number}.zip from {URL} again."
        )
    # By clip number (the clip id starts with it), then by name.
    return sorted(clips, key=lambda c: (int(c[1].split("_")[0]), c[1]))


def ut_interaction_folds(root, set_numbers=tuple(SETS)):
    """The folds `(set_number, test_sequence)` of `set_numbers`, from the clips on
    disk: `(1, 1) .. (1, 10), (2, 11) .. (2, 20)`. Raises `DatasetError` when a set
    folder is missing or empty, or a sequence has no clip."""
    folds = []
    for set_number in set_numbers:
        found = sorted({sequence for _, _, sequence, _ in _scan(root, set_number)})
        if missing := sorted(set(SETS[set_number]) - set(found)):
            folder = Path(root) / f"segmented_set{set_number}"
            raise DatasetError(
                f"UT-Interaction set {set_number} has no clip of sequence(s) {missing} "
                f"in '{folder}'. Download "
                f"segmented_set{set_number}.zip from {URL} again."
            )
        folds.extend((set_number, sequence) for sequence in found)
    return folds


def read_ut_interaction(
    root, set_number, test_sequence, validation_fraction=0.1, seed=0,
    validation_sequences=None,
):  # fmt: skip
    """`ClipRecord`s of every clip of set 1 or 2 (by clip number; group
    `"sequence<k>"`) for the fold that tests on `test_sequence` (1-10 for set 1, 11-20
    for set 2). `validation_fraction` of the training sequences go to validation
    (`carve_validation`; 0.1 moves one), or the `validation_sequences` given.
    Raises `DatasetError` as `_scan`, `ValueError` for a sequence not in the set.
    """
    clips = _scan(root, set_number)
    sequences = sorted({c[2] for c in clips})
    if test_sequence not in sequences:
        raise ValueError(
            f"test_sequence must be one of the sequences of set {set_number} on disk "
            f"{sequences} (set 2 is numbered 11-20). Received: {test_sequence=}"
        )
    if validation_sequences is not None:
        validation_sequences = sorted({int(s) for s in validation_sequences})
        # A proper subset of the other sequences: at least one is left to train on.
        if not set(validation_sequences) < set(sequences) - {test_sequence}:
            raise ValueError(
                "validation_sequences must be sequences of the set other than the "
                f"test sequence {test_sequence}, leaving at least one to train on. "
                f"Received: {validation_sequences=}"
            )
    roles = {sequence: "validation" for sequence in validation_sequences or ()}
    roles[test_sequence] = "test"
    records = []
    for path, clip_id, sequence, action in clips:
        group, role = f"sequence{sequence}", roles.get(sequence, "train")
        records.append(ClipRecord(clip_id, path, action, ACTIONS[action], group, role))
    if validation_sequences is None:
        records = carve_validation(records, validation_fraction, seed)
    return records
