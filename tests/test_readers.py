"""Dataset readers on the real split lists and clips, and on fake trees in tmp_path."""

from collections import Counter

import cv2
import numpy as np
import pytest

from msl_keras.data import jhmdb, ucf101, ut_interaction
from msl_keras.data.records import by_role, summarize
from msl_keras.data.video import count_frames, read_frames
from msl_keras.errors import DatasetError


def _write_avi(path, frames=4, size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    return path


def _groups(records, role):
    return {r.group for r in records if r.role == role}


def _assert_disjoint_roles(records):
    ids = [r.clip_id for r in records]
    assert len(ids) == len(set(ids))
    train, val, test = (
        _groups(records, role) for role in ("train", "validation", "test")
    )
    assert not train & val and not train & test and not val & test


# ---------------------------------------------------------------- UT-Interaction


def test_ut_folds_and_clips(shared_data):
    root = shared_data / "ut_interaction"
    folds = ut_interaction.ut_interaction_folds(root)
    assert folds == [(1, s) for s in range(1, 11)] + [(2, s) for s in range(11, 21)]
    clips = {}
    for set_number, test_sequence in folds:
        records = ut_interaction.read_ut_interaction(root, set_number, test_sequence)
        assert len(records) == 60
        clips.update({r.clip_id: r for r in records})
        test = by_role(records, "test")
        expected = {(1, 6): 5, (1, 8): 7}.get((set_number, test_sequence), 6)
        assert len(test) == expected
        assert _groups(records, "test") == {f"sequence{test_sequence}"}
        assert len(_groups(records, "validation")) == 1  # 0.1 of 9 sequences
        assert len(_groups(records, "train")) == 8
        _assert_disjoint_roles(records)
    assert len(clips) == 120
    for clip_id, r in clips.items():
        _, sequence, action = (int(x) for x in clip_id.split("_"))
        assert r.label == action
        assert r.class_name == ut_interaction.ACTIONS[action]
        assert r.group == f"sequence{sequence}"
        assert r.path.endswith(
            f"segmented_set{1 if sequence <= 10 else 2}/{clip_id}.avi"
        )
    assert Counter(r.label for r in clips.values()) == {k: 20 for k in range(6)}
    assert clips["43_8_4"].class_name == "punch"
    assert ut_interaction.class_names() == [
        "hand shake",
        "hug",
        "kick",
        "point",
        "punch",
        "push",
    ]


def test_ut_validation_options(shared_data):
    root = shared_data / "ut_interaction"
    a = ut_interaction.read_ut_interaction(root, 2, 13, validation_fraction=0.3, seed=1)
    assert a == ut_interaction.read_ut_interaction(
        root, 2, 13, validation_fraction=0.3, seed=1
    )
    assert len(_groups(a, "validation")) == 3  # 0.3 * 9 = 2.7 -> 3
    _assert_disjoint_roles(a)
    b = ut_interaction.read_ut_interaction(root, 1, 6, validation_sequences=[2, 9])
    assert _groups(b, "validation") == {"sequence2", "sequence9"}
    assert len(by_role(b, "test")) == 5
    c = ut_interaction.read_ut_interaction(root, 1, 6, validation_fraction=0.0)
    assert summarize(c)["validation"]["clips"] == 0
    with pytest.raises(ValueError, match="11-20"):
        ut_interaction.read_ut_interaction(root, 2, 3)
    with pytest.raises(ValueError, match="validation_sequences"):
        ut_interaction.read_ut_interaction(root, 1, 6, validation_sequences=[6])


def test_ut_decodes_a_clip(shared_data):
    records = ut_interaction.read_ut_interaction(shared_data / "ut_interaction", 1, 8)
    clip = next(r for r in records if r.clip_id == "44_8_4")
    n = count_frames(clip.path)
    frames = read_frames(clip.path, [0, n - 1])
    assert frames.shape[0] == 2 and frames.shape[-1] == 3 and frames.dtype == np.uint8


def test_ut_missing_or_odd_files(tmp_path):
    with pytest.raises(DatasetError, match="Human_Interaction.html") as info:
        ut_interaction.read_ut_interaction(tmp_path / "nowhere", 1, 1)
    assert "segmented_set1" in str(info.value)
    set1 = tmp_path / "segmented_set1"
    set1.mkdir()
    (set1 / "0_1_4.avi").write_bytes(b"")
    (set1 / "readme.txt").write_text("ignored")
    with pytest.raises(DatasetError, match="sequence"):
        ut_interaction.ut_interaction_folds(tmp_path)  # set 1 lacks sequences 2-10
    (set1 / "copy of 1_1_2.avi").write_bytes(b"")
    with pytest.raises(DatasetError, match="copy of 1_1_2.avi"):
        ut_interaction.read_ut_interaction(tmp_path, 1, 1)


# ---------------------------------------------------------------- UCF-101


@pytest.mark.parametrize(
    "split,train,test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)]
)
def test_ucf101_lists(shared_data, split, train, test):
    lists = shared_data / "splits" / "ucf101"
    records = ucf101.read_ucf101(
        shared_data / "ucf101", split, lists_dir=lists, check_files=False
    )
    counts = summarize(records)
    assert counts["train"]["clips"] + counts["validation"]["clips"] == train
    assert counts["test"]["clips"] == test
    for role in ("train", "validation", "test"):
        assert counts[role]["classes"] == 101
    # 18 training groups * 0.1 -> 2 groups, across all classes; 7 test groups untouched
    assert counts["validation"]["groups"] == 2 and counts["test"]["groups"] == 7
    _assert_disjoint_roles(records)
    assert {r.label for r in records} == set(range(101))


def test_ucf101_labels_groups_and_quirks(shared_data):
    lists = shared_data / "splits" / "ucf101"
    names = ucf101.class_names(lists)
    assert len(names) == 101 and names[0] == "ApplyEyeMakeup" and names[100] == "YoYo"
    assert names[36] == "HandstandPushups"  # '37 HandstandPushups' in classInd.txt
    records = ucf101.read_ucf101(
        shared_data / "ucf101", 1, lists_dir=lists, check_files=False
    )
    by_id = {r.clip_id: r for r in records}
    hsp = by_id["v_HandStandPushups_g08_c01"]
    assert (hsp.label, hsp.class_name, hsp.group) == (36, "HandstandPushups", "g08")
    assert hsp.path.endswith("HandstandPushups/v_HandStandPushups_g08_c01.avi")
    first = by_id["v_ApplyEyeMakeup_g01_c01"]
    assert (first.role, first.label, first.group) == ("test", 0, "g01")
    assert count_frames(first.path) == 164  # the real sample is where the list says
    assert not any("\r" in r.path or "\r" in r.class_name for r in records)
    again = ucf101.read_ucf101(
        shared_data / "ucf101", 1, lists_dir=lists, check_files=False
    )
    assert again == records
    other = ucf101.read_ucf101(
        shared_data / "ucf101", 1, lists_dir=lists, check_files=False, seed=5
    )
    assert _groups(other, "validation") != _groups(records, "validation")


def _fake_ucf(root, crlf=True):
    """Two classes, three groups; the HandstandPushups file-name spelling on disk."""
    videos = root / "UCF-101"
    _write_avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    _write_avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g02_c01.avi")
    _write_avi(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g03_c01.avi")
    _write_avi(videos / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi", frames=3)
    _write_avi(videos / "HandstandPushups" / "v_HandStandPushups_g02_c01.avi", frames=3)
    _write_avi(videos / "HandstandPushups" / "v_HandStandPushups_g03_c01.avi", frames=3)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    end = "\r\n" if crlf else "\n"

    def write(name, lines):
        (lists / name).write_bytes(end.join(lines + [""]).encode())

    write("classInd.txt", ["1 ApplyEyeMakeup", "2 HandstandPushups"])
    write(
        "trainlist01.txt",
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 1",
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi 1",
            "HandstandPushups/v_HandStandPushups_g02_c01.avi 2",
            # spelt as the class folder: resolved case-insensitively on disk
            "HandstandPushups/v_HandstandPushups_g03_c01.avi 2",
        ],
    )
    write(
        "testlist01.txt",
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
            "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        ],
    )
    return lists


def test_ucf101_fake_tree_with_files(tmp_path):
    _fake_ucf(tmp_path)
    records = ucf101.read_ucf101(tmp_path, 1, validation_fraction=0.5, seed=0)
    assert len(records) == 6
    for r in records:
        assert count_frames(r.path) == (4 if r.label == 0 else 3)
    resolved = next(r for r in records if r.clip_id == "v_HandstandPushups_g03_c01")
    assert resolved.path.endswith("HandstandPushups/v_HandStandPushups_g03_c01.avi")
    assert summarize(records)["validation"]["groups"] == 1  # 0.5 of g02, g03
    assert _groups(records, "test") == {"g01"}
    _assert_disjoint_roles(records)


def test_ucf101_missing_clip_names_list_line_and_clip(tmp_path):
    lists = _fake_ucf(tmp_path)
    (tmp_path / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g03_c01.avi").unlink()
    with pytest.raises(DatasetError) as info:
        ucf101.read_ucf101(tmp_path, 1)
    message = str(info.value)
    assert str(lists / "trainlist01.txt") in message
    assert "line 2" in message
    assert "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi" in message
    assert ucf101.URL in message
    # the lists alone still parse
    assert len(ucf101.read_ucf101(tmp_path, 1, check_files=False)) == 6


def test_ucf101_missing_dataset_and_bad_lists(tmp_path):
    with pytest.raises(DatasetError, match="crcv.ucf.edu/data/UCF101.php"):
        ucf101.read_ucf101(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="ucfTrainTestlist"):
        ucf101.read_ucf101(tmp_path)  # exists, but holds nothing
    lists = _fake_ucf(tmp_path)
    with pytest.raises(DatasetError, match="trainlist02.txt"):
        ucf101.read_ucf101(tmp_path, 2)
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 2\n"
    )
    with pytest.raises(DatasetError, match="line 1: label 2 disagrees"):
        ucf101.read_ucf101(tmp_path, 1, check_files=False)
    with pytest.raises(ValueError, match="split"):
        ucf101.read_ucf101(tmp_path, 4)


# ---------------------------------------------------------------- JHMDB


@pytest.mark.parametrize("split", [1, 2, 3])
def test_jhmdb_lists(shared_data, split):
    records = jhmdb.read_jhmdb(
        shared_data / "jhmdb" / "frames",
        split,
        splits_dir=shared_data / "splits" / "jhmdb",
        check_files=False,
    )
    assert len(records) == 928
    assert {r.label for r in records} == set(range(21))
    counts = summarize(records)
    assert counts["validation"]["classes"] == 21  # drawn class by class
    _assert_disjoint_roles(records)  # no source video in two roles
    for r in records:
        assert r.class_name == jhmdb.CLASSES[r.label]
        assert r.clip_id.startswith(r.group) and r.class_name in r.group


def test_jhmdb_real_frame_folder(shared_data):
    records = jhmdb.read_jhmdb(
        shared_data / "jhmdb" / "frames",
        1,
        splits_dir=shared_data / "splits" / "jhmdb",
        check_files=False,
    )
    clip = next(
        r for r in records if r.clip_id == "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    )
    # '<name>.avi 1' in catch_test_split1.txt: a training clip (or carved to validation)
    assert clip.role in ("train", "validation")
    assert (clip.class_name, clip.label) == ("catch", 1)
    assert clip.group == "Goal_Keeping_Tips_catch"
    assert clip.path.endswith("catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2")
    assert read_frames(clip.path).shape == (40, 240, 320, 3)
    split3 = jhmdb.read_jhmdb(
        shared_data / "jhmdb" / "frames",
        3,
        splits_dir=shared_data / "splits" / "jhmdb",
        check_files=False,
    )
    assert [r.role for r in split3 if r.clip_id == clip.clip_id] == ["test"]  # '... 2'
    assert jhmdb.class_names() == list(jhmdb.CLASSES)
    assert len(jhmdb.CLASSES) == 21 and list(jhmdb.CLASSES) == sorted(jhmdb.CLASSES)


def test_jhmdb_clip_group():
    assert jhmdb.clip_group(
        "Torwarttraining_2_(_sterreich)_catch_f_cm_np1_ba_goo_0.avi"
    ) == ("Torwarttraining_2_(_sterreich)_catch")
    assert jhmdb.clip_group("some_clip_3") == "some_clip"


def _fake_jhmdb(tmp_path):
    root, splits = tmp_path / "videos", tmp_path / "splits"
    splits.mkdir()
    for name in jhmdb.CLASSES:
        (root / name).mkdir(parents=True)
        (splits / f"{name}_test_split1.txt").write_text("")
    _write_avi(root / "catch" / "a_catch_f_cm_np1_fr_med_0.avi", frames=5)
    frames = root / "catch" / "b_catch_f_cm_np1_fr_med_0"
    frames.mkdir()
    for n in (1, 2, 3):
        cv2.imwrite(str(frames / f"{n:05d}.png"), np.zeros((8, 8, 3), np.uint8))
    _write_avi(root / "catch" / "c_catch_f_cm_np1_fr_med_0.avi", frames=2)
    (splits / "catch_test_split1.txt").write_text(
        "a_catch_f_cm_np1_fr_med_0.avi 1 \n"
        "b_catch_f_cm_np1_fr_med_0.avi 1 \n"
        "unused_catch_f_cm_np1_fr_med_0.avi 0 \n"
        "c_catch_f_cm_np1_fr_med_0.avi 2 \n"
    )
    return root, splits


def test_jhmdb_fake_tree_detects_videos_and_frame_folders(tmp_path):
    root, _ = _fake_jhmdb(tmp_path)
    records = jhmdb.read_jhmdb(root, 1, validation_fraction=0.5)  # splits in ../splits
    assert [(r.clip_id[0], r.role) for r in records] == [
        ("a", "train"),
        ("b", "validation"),
        ("c", "test"),
    ] or [(r.clip_id[0], r.role) for r in records] == [
        ("a", "validation"),
        ("b", "train"),
        ("c", "test"),
    ]
    assert [count_frames(r.path) for r in records] == [5, 3, 2]
    assert records[0].path.endswith(".avi") and not records[1].path.endswith(".avi")


def test_jhmdb_missing_clip_and_missing_dataset(tmp_path):
    root, splits = _fake_jhmdb(tmp_path)
    (root / "catch" / "c_catch_f_cm_np1_fr_med_0.avi").unlink()
    with pytest.raises(DatasetError) as info:
        jhmdb.read_jhmdb(root, 1)
    message = str(info.value)
    assert "catch_test_split1.txt, line 4" in message
    assert "c_catch_f_cm_np1_fr_med_0" in message and jhmdb.URL in message
    with pytest.raises(DatasetError, match="jhmdb.is.tue.mpg.de"):
        jhmdb.read_jhmdb(tmp_path / "nowhere", 1)
    with pytest.raises(DatasetError, match=r"catch_test_split2.txt.*\(21 in all\)"):
        jhmdb.read_jhmdb(root, 2)
    (splits / "catch_test_split1.txt").write_text("a.avi train\n")
    with pytest.raises(DatasetError, match="line 1"):
        jhmdb.read_jhmdb(root, 1, check_files=False)
