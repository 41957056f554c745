"""Import of the original code's per-video .npy features."""

import numpy as np
import pytest

from msl_keras.original.features import (
    decode_original_label,
    import_original_features,
    original_roles,
)
from msl_keras.errors import ConfigError, DatasetError

T, DC, DA, N = 5, 6, 4, 3


def one_hot_rows(label, rows, valid=None):
    """The original's label file: a one-hot row per frame (zero after `valid`)."""
    array = np.zeros((rows, N))
    array[: rows if valid is None else valid, label] = 1.0
    return array


def write_clip(root, subset, clip, context, action, label, label_in="both"):
    for stream, features in (("context", context), ("action", action)):
        folder = root / stream / subset
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"feature_{clip}.npy", features)
        if label_in in ("both", stream):
            np.save(folder / f"label_{clip}.npy", label)


def features(seed, rows=T):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, DC)), rng.normal(
        size=(rows, DA)
    )  # float64, as np.zeros


def original_tree(root):
    """Three train clips with (T, N) labels, two val clips with (N,) and scalar labels."""
    clips = {}
    for i, clip in enumerate(["b_clip", "a_clip", "c_clip"]):
        context, action = features(i)
        write_clip(root, "train", clip, context, action, one_hot_rows(i % N, T))
        clips[clip] = (context, action, i % N)
    context, action = features(10)
    write_clip(root, "val", "v1", context, action, np.eye(N)[2], label_in="context")
    clips["v1"] = (context, action, 2)
    context, action = features(11)
    write_clip(root, "val", "v2", context, action, np.int64(1), label_in="action")
    clips["v2"] = (context, action, 1)
    return clips


def test_import_pairs_streams_and_keeps_values(tmp_path):
    clips = original_tree(tmp_path)
    out = tmp_path / "imported.h5"
    names = ["hug", "kick", "push"]
    with import_original_features(
        tmp_path / "context",
        tmp_path / "action",
        out,
        class_names=names,
        dataset="jhmdb",
    ) as store:
        s = store.settings
        assert (s.dataset, s.T, s.context_dim, s.action_dim, s.num_classes) == (
            "jhmdb",
            T,
            DC,
            DA,
            N,
        )
        assert s.cam_class == "oracle" and s.dtype == "float32"
        assert store.class_names == names
        arrays = store.read()
    assert list(arrays["clip_ids"]) == ["a_clip", "b_clip", "c_clip", "v1", "v2"]
    for row, clip in enumerate(arrays["clip_ids"]):
        context, action, label = clips[clip]
        np.testing.assert_array_equal(
            arrays["context"][row], context.astype(np.float32)
        )
        np.testing.assert_array_equal(arrays["action"][row], action.astype(np.float32))
        assert arrays["labels"][row] == label
    np.testing.assert_array_equal(arrays["lengths"], T)
    np.testing.assert_array_equal(
        arrays["frame_indices"], np.tile(np.arange(T), (5, 1))
    )
    np.testing.assert_array_equal(arrays["num_frames"], T)
    assert original_roles(tmp_path / "context") == {
        "a_clip": "train",
        "b_clip": "train",
        "c_clip": "train",
        "v1": "val",
        "v2": "val",
    }
    assert not (tmp_path / "imported.h5.partial").exists()


def test_settings_overrides_and_inferred_class_count(tmp_path):
    original_tree(tmp_path)
    with import_original_features(
        tmp_path / "context",
        tmp_path / "action",
        tmp_path / "a.h5",
        subsets=("train",),
        T=8,
        dtype="float16",
        split="fold3",
    ) as store:
        assert store.settings.T == 8 and store.settings.dtype == "float16"
        assert store.settings.split == "fold3" and store.settings.num_classes == N
        assert store.class_names == ["class_0", "class_1", "class_2"]
        arrays = store.read()
    assert arrays["context"].shape == (3, 8, DC)
    np.testing.assert_array_equal(arrays["context"][:, T:], 0)
    np.testing.assert_array_equal(arrays["frame_indices"][:, T:], -1)
    with pytest.raises(ConfigError, match="Unknown settings"):
        import_original_features(
            tmp_path / "context", tmp_path / "action", tmp_path / "b.h5", frames=3
        )
    with pytest.raises(DatasetError, match="more rows than T=3"):
        import_original_features(
            tmp_path / "context", tmp_path / "action", tmp_path / "c.h5", T=3
        )
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.partial").exists()


def test_missing_partners_and_labels_are_listed(tmp_path):
    original_tree(tmp_path)
    (tmp_path / "action" / "train" / "feature_b_clip.npy").unlink()
    (tmp_path / "context" / "val" / "feature_v2.npy").unlink()
    with pytest.raises(DatasetError) as info:
        import_original_features(
            tmp_path / "context", tmp_path / "action", tmp_path / "a.h5"
        )
    message = str(info.value)
    assert "train/b_clip" in message and "val/v2" in message and "a_clip" not in message
    assert not (tmp_path / "a.h5").exists()

    root = tmp_path / "nolabel"
    context, action = features(0)
    write_clip(root, "train", "x", context, action, np.int64(0), label_in="none")
    with pytest.raises(DatasetError, match="'x' has no label file"):
        import_original_features(root / "context", root / "action", tmp_path / "b.h5")


def test_label_formats():
    assert decode_original_label(np.int64(2)) == (2, None)
    assert decode_original_label(np.array([0.0, 1.0, 0.0])) == (1, 3)
    assert decode_original_label(one_hot_rows(2, 6, valid=4)) == (2, 3)
    with pytest.raises(DatasetError, match="one-hot"):
        decode_original_label(np.array([1.0, 1.0, 0.0]))
    with pytest.raises(DatasetError, match="one-hot"):
        decode_original_label(np.array([0.2, 0.7, 0.1]))
    rows = one_hot_rows(0, 4)
    rows[2] = [0, 0, 1]
    with pytest.raises(DatasetError, match=r"different classes \[0, 2\]"):
        decode_original_label(rows)
    with pytest.raises(DatasetError, match="every label row is zero"):
        decode_original_label(np.zeros((4, 3)))


def test_label_files_of_the_two_streams_must_agree(tmp_path):
    context, action = features(0)
    write_clip(tmp_path, "train", "x", context, action, np.int64(0), label_in="context")
    np.save(tmp_path / "action" / "train" / "label_x.npy", np.int64(2))
    with pytest.raises(DatasetError, match="label files disagree"):
        import_original_features(
            tmp_path / "context", tmp_path / "action", tmp_path / "a.h5"
        )


def zero_row_tree(root):
    context, action = features(0)
    write_clip(root, "train", "fine", context, action, one_hot_rows(0, T))
    context, action = features(1)
    context[3:], action[3:] = 0, 0  # decoding "failed" at frame 3
    write_clip(root, "train", "tail", context, action, one_hot_rows(1, T, valid=3))
    context, action = features(2)
    context[1] = 0  # one zero row inside the clip, context stream only
    write_clip(root, "train", "hole", context, action, one_hot_rows(2, T))
    write_clip(root, "val", "blank", np.zeros((T, DC)), np.zeros((T, DA)), np.int64(1))


def test_all_zero_rows_are_refused_unless_allowed(tmp_path):
    zero_row_tree(tmp_path)
    out = tmp_path / "a.h5"
    with pytest.raises(DatasetError) as info:
        import_original_features(tmp_path / "context", tmp_path / "action", out)
    message = str(info.value)
    assert "3 clips have all-zero feature rows" in message
    assert (
        "train/tail (2 of 5 rows)" in message and "val/blank (5 of 5 rows)" in message
    )
    assert "train/hole (1 of 5 rows)" in message and "fine" not in message
    assert "could not decode" in message and "allow_zero_rows=True" in message
    assert not out.exists() and not (tmp_path / "a.h5.partial").exists()

    with import_original_features(
        tmp_path / "context", tmp_path / "action", out, allow_zero_rows=True
    ) as store:
        arrays = store.read()
        assert "blank" in store.failed() and "zero" in store.failed()["blank"]
    assert list(arrays["clip_ids"]) == ["fine", "hole", "tail"]
    assert arrays["lengths"].tolist() == [T, T, 3]  # trailing zeros -> padding
    np.testing.assert_array_equal(arrays["frame_indices"][2], [0, 1, 2, -1, -1])
    np.testing.assert_array_equal(arrays["context"][1, 1], 0)  # kept as data
    assert arrays["labels"].tolist() == [0, 2, 1]
