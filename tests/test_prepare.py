"""prepare/describe: folds per protocol, role counts, missing clips, reader errors surface."""

from pathlib import Path

import pytest

from msl_keras.config import apply_overrides, get_preset
from msl_keras.errors import ConfigError, DatasetError
from msl_keras.pipeline import DatasetIndex, Fold, describe, prepare
from tests.stage_helpers import make_tiny_dataset, tiny_config


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "generated")


def test_generated_one_fold_with_three_roles(tiny_root, tmp_path):
    index = prepare(tiny_config(tiny_root, tmp_path))
    assert isinstance(index, DatasetIndex)
    assert index.dataset == "generated"
    assert index.class_names == ["walk_right", "jump", "approach"]
    assert index.fold_names == ["split1"]
    fold = index.fold("split1")
    assert isinstance(fold, Fold) and index.fold(fold) is fold
    counts = fold.counts()
    # 3 groups: the last is the test list, one of the two others is carved to validation.
    assert {role: c["clips"] for role, c in counts.items()} == {
        "train": 3,
        "validation": 3,
        "test": 3,
    }
    assert all(c["groups"] == 1 and c["classes"] == 3 for c in counts.values())
    groups = {role: {r.group for r in fold.by_role(role)} for role in counts}
    assert not groups["train"] & groups["validation"]
    assert len(index.clips()) == 9
    text = describe(index)
    assert (
        "Dataset generated" in text
        and "3 classes" in text
        and "9 clips in 1 fold" in text
    )
    assert "split1" in text and "Missing clips: none" in text
    with pytest.raises(ConfigError, match="no fold 'split9'"):
        index.fold("split9")


def test_validation_draw_follows_the_seed(tiny_root, tmp_path):
    seeds = {}
    for seed in range(6):
        fold = prepare(tiny_config(tiny_root, tmp_path, seed=seed)).folds[0]
        seeds[seed] = frozenset(r.group for r in fold.by_role("validation"))
    assert (
        prepare(tiny_config(tiny_root, tmp_path, seed=3))
        .folds[0]
        .by_role("validation")[0]
        .group
        in seeds[3]
    )
    assert len(set(seeds.values())) == 2  # both training groups get drawn by some seed


def test_generated_missing_folder(tmp_path):
    config = tiny_config(tmp_path / "absent", tmp_path)
    with pytest.raises(DatasetError, match="No generated data set"):
        prepare(config, generate=False)


def _ut(shared_data, tmp_path, ut_set, sequence):
    config = get_preset("paper_ut_interaction")
    return apply_overrides(
        config,
        {
            "data.root": str(shared_data / "ut_interaction"),
            "data.ut_set": ut_set,
            "data.ut_test_sequence": sequence,
            "output_dir": str(tmp_path),
        },
    )


def test_ut_interaction_full_protocol_has_20_folds(shared_data, tmp_path):
    index = prepare(_ut(shared_data, tmp_path, None, None))
    expected = [f"set1_seq{q}" for q in range(1, 11)] + [
        f"set2_seq{q}" for q in range(11, 21)
    ]
    assert index.fold_names == expected
    assert index.class_names == ["hand shake", "hug", "kick", "point", "punch", "push"]
    assert len(index.clips()) == 120
    for fold in index.folds:
        assert len(fold.records) == 60  # every clip of the fold's set
        test_groups = {r.group for r in fold.by_role("test")}
        assert test_groups == {f"sequence{fold.name.split('seq')[1]}"}
        assert fold.counts()["validation"]["groups"] == 1  # 0.1 of 9 sequences
    sizes = {f.name: len(f.by_role("test")) for f in index.folds}
    assert (
        sizes["set1_seq6"] == 5 and sizes["set1_seq8"] == 7 and sizes["set2_seq15"] == 6
    )
    text = describe(index)
    assert "120 clips in 20 folds" in text and "6 classes" in text
    assert "set2_seq20" in text


def _empty_ut_root(root):
    """Both segmented sets as named empty files: 6 actions x 10 sequences each."""
    for set_number, sequences in ((1, range(1, 11)), (2, range(11, 21))):
        folder = root / f"segmented_set{set_number}"
        folder.mkdir(parents=True)
        for sequence in sequences:
            for action in range(6):
                (folder / f"{sequence * 6 + action}_{sequence}_{action}.avi").touch()
    return root


def _check_preset_runs_both_sets(root, tmp_path):
    """The preset (README: "all stages, all folds") is Table 2's protocol: 20 folds,
    each tagged with its set."""
    config = apply_overrides(
        get_preset("paper_ut_interaction"),
        {"data.root": str(root), "output_dir": str(tmp_path)},
    )
    index = prepare(config)
    assert index.fold_names == [f"set1_seq{q}" for q in range(1, 11)] + [
        f"set2_seq{q}" for q in range(11, 21)
    ]
    assert [f.subset for f in index.folds] == ["set1"] * 10 + ["set2"] * 10
    assert len(index.clips()) == 120


def test_ut_interaction_preset_runs_both_sets(tmp_path):
    _check_preset_runs_both_sets(_empty_ut_root(tmp_path / "ut"), tmp_path)


def test_ut_interaction_preset_runs_both_sets_of_the_real_clips(shared_data, tmp_path):
    _check_preset_runs_both_sets(shared_data / "ut_interaction", tmp_path)


def test_ut_interaction_one_set_and_one_fold(shared_data, tmp_path):
    index = prepare(_ut(shared_data, tmp_path, 2, None))
    assert index.fold_names == [f"set2_seq{q}" for q in range(11, 21)]
    index = prepare(_ut(shared_data, tmp_path, 1, 3))
    assert index.fold_names == ["set1_seq3"]
    assert {r.clip_id.split("_")[1] for r in index.folds[0].by_role("test")} == {"3"}
    with pytest.raises(ConfigError, match="test_sequence"):
        prepare(_ut(shared_data, tmp_path, 1, 13))  # set 2's numbering
    with pytest.raises(ConfigError, match="ut_set"):
        prepare(_ut(shared_data, tmp_path, None, 3))


def test_reader_errors_surface_as_they_are(tmp_path):
    config = _ut(tmp_path, tmp_path, 1, 1)
    with pytest.raises(DatasetError, match="segmented_set1.zip"):
        prepare(config)
    config = apply_overrides(
        get_preset("paper_ucf101"),
        {"data.root": str(tmp_path / "UCF"), "output_dir": "x"},
    )
    with pytest.raises(DatasetError, match="UCF101.rar"):
        prepare(config)


def test_ucf101_lists_with_one_clip_on_disk(shared_data, tmp_path):
    config = apply_overrides(
        get_preset("paper_ucf101"),
        {
            "data.root": str(shared_data / "ucf101"),
            "data.lists_dir": str(shared_data / "splits" / "ucf101"),
            "output_dir": str(tmp_path),
        },
    )
    with pytest.raises(DatasetError, match="not found"):
        prepare(
            config
        )  # check_files=True: the reader's message about the first missing clip
    index = prepare(config, check_files=False)
    assert index.fold_names == ["split1"]
    assert len(index.class_names) == 101
    [present] = index.folds[0].records
    assert present.clip_id == "v_ApplyEyeMakeup_g01_c01" and present.role == "test"
    assert len(index.missing) == 9537 + 3783 - 1
    text = describe(index)
    assert "Missing clips: 13319 listed but not on disk" in text
    assert "no training clip" in text


def test_jhmdb_frame_folder_clip(shared_data, tmp_path):
    config = apply_overrides(
        get_preset("paper_jhmdb"),
        {
            "data.root": str(shared_data / "jhmdb" / "frames"),
            "data.lists_dir": str(shared_data / "splits" / "jhmdb"),
            "output_dir": str(tmp_path),
        },
    )
    index = prepare(config, check_files=False)
    assert len(index.class_names) == 21
    [present] = index.folds[0].records
    # "1" in catch_test_split1.txt: a training clip (train or carved to validation).
    assert present.class_name == "catch" and present.role in ("train", "validation")
    assert Path(present.path).is_dir()
    assert len(index.missing) == 928 - 1
