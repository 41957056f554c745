"""Clip records: what every dataset reader returns, and the validation carve-out.

The official splits only give train and test; model selection must never look at test
(the original code's defect #9), so `carve_validation` moves whole *groups* of training
clips (never split over two roles: a UCF-101 `gNN` of the same actors and background,
a JHMDB source video, a UT-Interaction sequence) to validation.
"""

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np

from msl_keras.errors import DatasetError

ROLES = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One clip: its unique id, its video file or frame folder (`path`), 0-based
    `label`, `class_name`, `group` (never split over two roles) and `role` (`ROLES`).

    >>> ClipRecord("0_1_4", "set1/0_1_4.avi", 4, "punch", "sequence1", "train").role
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
        is_int = isinstance(self.label, (int, np.integer))
        if isinstance(self.label, bool) or not is_int or self.label < 0:
            raise ValueError(
                "ClipRecord label must be an int >= 0 (0-based class index). "
                f"Received: label={self.label!r} for clip {self.clip_id!r}"
            )


def by_role(records, role):
    """The records with the given role, in their original order."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}. Received: role={role!r}")
    return [r for r in records if r.role == role]


def summarize(records):
    """Counts per role: `{role: {"clips": n, "groups": n, "classes": n}}`."""
    records = list(records)
    return {
        role: {
            "clips": len(rs := by_role(records, role)),
            "groups": len({r.group for r in rs}),
            "classes": len({r.label for r in rs}),
        }
        for role in ROLES
    }


def list_lines(path, what, fix):
    """`(where, line)` of each non-blank line of a text list (`where`: "path, line n").
    Raises `DatasetError` "`what` '`path`' not found / is not a text file. `fix`"."""
    if not Path(path).is_file():
        raise DatasetError(f"{what} '{path}' not found. {fix}")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        message = f"{what} '{path}' is not a text file ({error}). {fix}"
        raise DatasetError(message) from None
    lines = enumerate(text.splitlines(), 1)
    return [(f"{path}, line {n}", line.strip()) for n, line in lines if line.strip()]


def check_listed_once(seen, clip_id, where):
    """Remembers in `seen` that `clip_id` is listed at `where`; a second time raises."""
    if clip_id in seen:
        raise DatasetError(
            f"{where}: clip {clip_id!r} is listed twice (first at {seen[clip_id]})"
        )
    seen[clip_id] = where


def _draw(rng, groups, fraction):
    """`fraction` of `groups` (rounded half up, >= 1, <= n - 1), drawn with `rng`."""
    n = len(groups)
    k = 0 if n < 2 else min(n - 1, max(1, int(fraction * n + 0.5)))
    return rng.permutation(groups)[:k]


def carve_validation(records, fraction=0.1, seed=0):
    """A new list of `records`, in order, with `fraction` (in [0, 1)) of the training
    groups moved, whole, to the `"validation"` role.

    The groups are drawn with `numpy.random.default_rng(seed)` from the sorted group
    names (independent of the records' order): rounded half up, at least one, never
    all. When every group holds one class (JHMDB's source videos) the draw is class by
    class, so that every class with two training groups or more is validated.

    Raises:
        ValueError: `fraction` outside `[0, 1)`.
        DatasetError: `fraction > 0` but the training clips form a single group.
    """
    records = list(records)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1). Received: {fraction}")
    train = [r for r in records if r.role == "train"]
    if fraction == 0.0 or not train:
        return records
    groups = sorted({r.group for r in train})
    if len(groups) < 2:
        raise DatasetError(
            f"Cannot carve validation out of {len(train)} training clips of one group "
            f"({groups[0]!r}; a group is never split). Pass validation_fraction=0, or "
            "use a dataset with more groups."
        )
    labels_of = defaultdict(set)
    for r in train:
        labels_of[r.group].add(r.label)
    labels = sorted({r.label for r in train})
    nested = len(labels) > 1 and all(len(c) == 1 for c in labels_of.values())
    pools = [[g for g in groups if labels_of[g] == {c}] for c in labels if nested]
    rng = np.random.default_rng(seed)
    chosen = {str(g) for pool in pools for g in _draw(rng, pool, fraction)}
    if not chosen:
        chosen = {str(g) for g in _draw(rng, groups, fraction)}
    return [
        dataclasses.replace(r, role="validation")
        if r.role == "train" and r.group in chosen
        else r
        for r in records
    ]
