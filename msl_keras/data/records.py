"""Clip records: what every dataset reader returns, and the validation carve-out.

A reader (`ucf101`, `jhmdb`, `ut_interaction`, `generated`) turns a dataset on disk
into a list of `ClipRecord`s, one per clip, each with its role in the protocol:
`"train"`, `"validation"` or `"test"`. The official splits only give train and test;
model selection must never look at test (the original code's defect #9), so
`carve_validation` moves whole *groups* of training clips to validation. A group is the
unit that must not straddle two roles: a UCF-101 group `gNN` (same actors and
background), a JHMDB source video, a UT-Interaction sequence.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from msl_keras.errors import DatasetError

ROLES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One clip of a dataset and its place in the protocol.

    Args:
        clip_id: unique name of the clip in its dataset, e.g.
            `"v_ApplyEyeMakeup_g08_c01"`.
        path: the video file, or the folder of numbered frame images, as a string.
        label: class index, 0-based.
        class_name: the class' name as the dataset spells it.
        group: clips sharing a group never go to different roles (see module docstring).
        role: one of `ROLES`.

    Example:

    >>> r = ClipRecord("0_1_4", "set1/0_1_4.avi", 4, "punch", "sequence1", "train")
    >>> r.role
    'train'
    """

    clip_id: str
    path: str
    label: int
    class_name: str
    group: str
    role: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(
                f"ClipRecord role must be one of {ROLES}. Received: role={self.role!r} "
                f"for clip {self.clip_id!r}"
            )
        if isinstance(self.label, bool) or not isinstance(
            self.label, (int, np.integer)
        ):
            raise ValueError(
                "ClipRecord label must be an int class index. Received: "
                f"label={self.label!r} for clip {self.clip_id!r}"
            )
        if self.label < 0:
            raise ValueError(
                "ClipRecord label must be >= 0 (0-based class index). Received: "
                f"label={self.label} for clip {self.clip_id!r}"
            )


def by_role(records: Iterable[ClipRecord], role: str) -> list[ClipRecord]:
    """The records with the given role, in their original order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}. Received: role={role!r}")
    return [r for r in records if r.role == role]


def _share(fraction: float, n: int) -> int:
    """How many of `n` groups `fraction` asks for: rounded half up, >= 1, <= n - 1."""
    if n < 2:
        return 0
    return min(n - 1, max(1, int(fraction * n + 0.5)))


def carve_validation(
    records: Iterable[ClipRecord], fraction: float = 0.1, seed: int = 0
) -> list[ClipRecord]:
    """Move whole groups of training clips to the `"validation"` role.

    The groups are drawn at random with `numpy.random.default_rng(seed)` from the
    sorted group names, so the result depends only on the records and the seed (not on
    their order). About `fraction` of the training *groups* move (rounded half up, at
    least one, never all of them). When every group holds a single class (JHMDB: one
    source video, one class), the draw is made class by class, so that every class with
    two or more training groups has validation clips; otherwise (UCF-101's `gNN` and
    UT-Interaction's sequences span all classes) the draw is over all groups. Test
    records, and records already in validation, are left as they are.

    Args:
        records: the reader's records.
        fraction: share of the training groups to move, in `[0, 1)`. `0` returns the
            records unchanged.
        seed: seed of the draw.

    Returns:
        A new list, in the order of `records`, with some `"train"` roles replaced by
        `"validation"`.

    Raises:
        ValueError: `fraction` outside `[0, 1)`.
        DatasetError: `fraction > 0` but the training clips form a single group.
    """
    records = list(records)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            "validation fraction must be in [0, 1): a share of the training groups. "
            f"Received: fraction={fraction}"
        )
    train = [r for r in records if r.role == "train"]
    if fraction == 0.0 or not train:
        return records
    groups = sorted({r.group for r in train})
    if len(groups) < 2:
        raise DatasetError(
            f"Cannot carve a validation set out of {len(train)} training clips: they "
            f"all belong to group {groups[0]!r} and a group is never split. Pass "
            "validation_fraction=0 to train without validation, or use a dataset with "
            "more groups."
        )
    classes_of_group = defaultdict(set)
    for r in train:
        classes_of_group[r.group].add(r.label)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    nested = all(len(c) == 1 for c in classes_of_group.values())
    if nested and len({r.label for r in train}) > 1:
        groups_of_class = defaultdict(list)
        for g in groups:
            groups_of_class[next(iter(classes_of_group[g]))].append(g)
        for label in sorted(groups_of_class):
            class_groups = groups_of_class[label]
            k = _share(fraction, len(class_groups))
            chosen.update(str(g) for g in rng.permutation(class_groups)[:k])
    if not chosen:
        k = _share(fraction, len(groups))
        chosen.update(str(g) for g in rng.permutation(groups)[:k])
    return [
        dataclasses.replace(r, role="validation")
        if r.role == "train" and r.group in chosen
        else r
        for r in records
    ]


def summarize(records: Iterable[ClipRecord]) -> dict[str, dict[str, int]]:
    """Counts per role: `{role: {"clips": n, "groups": n, "classes": n}}` for every "
    "role."""
    records = list(records)
    summary = {}
    for role in ROLES:
        rs = [r for r in records if r.role == role]
        summary[role] = {
            "clips": len(rs),
            "groups": len({r.group for r in rs}),
            "classes": len({r.label for r in rs}),
        }
    return summary
