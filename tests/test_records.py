"""ClipRecord, by_role, summarize and the group-preserving validation carve-out."""

import dataclasses
import random

import pytest

from msl_keras.data.records import (
    ROLES,
    ClipRecord,
    by_role,
    carve_validation,
    summarize,
)
from msl_keras.errors import DatasetError


def _records(num_groups=10, classes=3, clips=2, nested=False, test_groups=()):
    """clips per (group, class); nested=True gives each group a single class."""
    records = []
    for g in range(num_groups):
        labels = [g % classes] if nested else range(classes)
        for label in labels:
            for c in range(clips):
                group = f"g{g:02d}"
                records.append(
                    ClipRecord(
                        clip_id=f"{group}_k{label}_c{c}",
                        path=f"/data/{group}_k{label}_c{c}.avi",
                        label=label,
                        class_name=f"class{label}",
                        group=group,
                        role="test" if g in test_groups else "train",
                    )
                )
    return records


def _roles_by_group(records):
    roles = {}
    for r in records:
        roles.setdefault(r.group, set()).add(r.role)
    return roles


def test_clip_record_is_frozen_and_validated():
    r = ClipRecord("a", "/a.avi", 0, "x", "g01", "train")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.role = "test"
    with pytest.raises(ValueError, match="role"):
        ClipRecord("a", "/a.avi", 0, "x", "g01", "val")
    with pytest.raises(ValueError, match="label"):
        ClipRecord("a", "/a.avi", -1, "x", "g01", "train")
    with pytest.raises(ValueError, match="label"):
        ClipRecord("a", "/a.avi", "3", "x", "g01", "train")
    assert ROLES == ("train", "validation", "test")


def test_carve_moves_whole_groups_and_leaves_test_alone():
    records = _records(num_groups=10, test_groups=(8, 9))
    carved = carve_validation(records, fraction=0.25, seed=3)
    assert [r.clip_id for r in carved] == [r.clip_id for r in records]
    roles = _roles_by_group(carved)
    assert all(len(v) == 1 for v in roles.values())
    # 8 training groups * 0.25 = 2 groups, each 3 classes * 2 clips.
    validation_groups = {g for g, v in roles.items() if v == {"validation"}}
    assert len(validation_groups) == 2
    assert len(by_role(carved, "validation")) == 12
    assert {g for g, v in roles.items() if v == {"test"}} == {"g08", "g09"}
    for before, after in zip(records, carved, strict=True):
        if before.role == "test":
            assert after == before
        else:
            assert dataclasses.replace(after, role="train") == before


def test_carve_is_deterministic_and_order_free():
    records = _records(num_groups=12)
    a = carve_validation(records, 0.25, seed=7)
    b = carve_validation(records, 0.25, seed=7)
    assert a == b
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    c = carve_validation(shuffled, 0.25, seed=7)
    assert {r.clip_id: r.role for r in c} == {r.clip_id: r.role for r in a}
    chosen = {
        frozenset(
            r.group
            for r in carve_validation(records, 0.25, seed=s)
            if r.role == "validation"
        )
        for s in range(6)
    }
    assert len(chosen) > 1  # the seed matters


def test_carve_rounding_keeps_one_training_group():
    records = _records(num_groups=4)
    # 4 * 0.1 = 0.4 -> at least one group; 4 * 0.95 = 3.8 -> capped at 3, one stays.
    assert summarize(carve_validation(records, 0.1))["validation"]["groups"] == 1
    carved = carve_validation(records, 0.95)
    assert summarize(carved)["validation"]["groups"] == 3
    assert summarize(carved)["train"]["groups"] == 1
    # 10 * 0.15 = 1.5 rounds half up to 2.
    assert summarize(carve_validation(_records(10), 0.15))["validation"]["groups"] == 2


def test_carve_fraction_zero_and_bad_values():
    records = _records(num_groups=3)
    assert carve_validation(records, 0.0) == records
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            carve_validation(records, bad)
    with pytest.raises(DatasetError, match="validation_fraction=0"):
        carve_validation(_records(num_groups=1), 0.1)


def test_carve_keeps_existing_validation():
    records = _records(num_groups=5)
    records[0] = dataclasses.replace(records[0], role="validation")
    carved = carve_validation(records, 0.0)
    assert carved[0].role == "validation"


def test_carve_stratifies_when_groups_nest_in_classes():
    # 3 classes; class 0 has groups g00, g03, g06, g09; class 2 has g02, g05, g08 ...
    records = _records(num_groups=10, classes=3, nested=True)
    # ... and a fourth class with a single group, which must stay in train.
    records.append(ClipRecord("solo", "/solo.avi", 3, "class3", "solo_group", "train"))
    carved = carve_validation(records, 0.1, seed=0)
    val = by_role(carved, "validation")
    assert {r.label for r in val} == {0, 1, 2}  # every class with >= 2 groups
    assert (
        summarize(carved)["validation"]["groups"] == 3
    )  # one per class (0.1*3 or 4 -> 1)
    assert [r.role for r in carved if r.clip_id == "solo"] == ["train"]
    assert all(len(v) == 1 for v in _roles_by_group(carved).values())


def test_by_role_and_summarize():
    records = _records(num_groups=4, classes=2, clips=1, test_groups=(3,))
    assert len(by_role(records, "train")) == 6
    assert by_role(records, "validation") == []
    with pytest.raises(ValueError, match="role"):
        by_role(records, "val")
    assert summarize(records) == {
        "train": {"clips": 6, "groups": 3, "classes": 2},
        "validation": {"clips": 0, "groups": 0, "classes": 0},
        "test": {"clips": 2, "groups": 1, "classes": 2},
    }
