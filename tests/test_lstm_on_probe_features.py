"""experiments/lstm_on_probe_features.py: the probe's features as an imported dataset
whose splits are Table 2's folds, on the real UT-Interaction clip list."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import lstm_on_probe_features as script  # noqa: E402
from msl_keras.data.ut_interaction import ut_interaction_folds  # noqa: E402


def test_unit_rms_scales_each_frame_alone():
    x = np.array([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 1.0], [-2.0, 2.0]]])
    y = script.unit_rms(x)
    np.testing.assert_allclose(np.sqrt(np.mean(y[0, 0] ** 2)), 1.0)
    np.testing.assert_allclose(y[0, 0], x[0, 0] / np.sqrt(12.5))
    np.testing.assert_array_equal(y[0, 1], [0.0, 0.0])  # a zero frame stays zero
    np.testing.assert_allclose(y[1, 1], [-1.0, 1.0])
    assert y.dtype == np.float32


def _probe_like(root, steps=4, width=3):
    """Arrays shaped as the probe caches them, for every clip on disk (shuffled rows)."""
    from msl_keras.data.ut_interaction import read_ut_interaction

    ids = [r.clip_id for s, q in [(1, 1), (2, 11)] for r in read_ut_interaction(root, s, q)]
    ids = list(np.random.default_rng(0).permutation(ids))
    rng = np.random.default_rng(1)
    return {
        "clip_ids": np.array(ids),
        "frame_indices": np.tile(np.arange(steps), (len(ids), 1)),
        "num_frames": np.full(len(ids), 10),
        "block5_conv2": rng.normal(size=(len(ids), steps, width)).astype(np.float32),
        "block5_conv3": rng.normal(size=(len(ids), steps, width)).astype(np.float32),
    }


def test_each_fold_is_a_split_with_table2s_roles(shared_data):
    from msl_keras.data.ut_interaction import read_ut_interaction

    root = shared_data / "ut_interaction"
    features = _probe_like(root)
    folds = ut_interaction_folds(root)
    assert len(folds) == 20
    arrays = script.imported_arrays(features, root, 0.1, 0, folds, selected=[(2, 13)])
    assert [k for k in arrays if k.startswith("split")] == ["split13"]
    row = {c: i for i, c in enumerate(arrays["clip_ids"])}
    records = read_ut_interaction(root, 2, 13, validation_fraction=0.1, seed=0)
    for record in records:
        i = row[record.clip_id]
        assert arrays["split13"][i] == record.role
        assert arrays["labels"][i] == record.label
        assert arrays["groups"][i] == f"set2_{record.group}"
    set2 = {r.clip_id for r in records}
    others = [i for c, i in row.items() if c not in set2]
    assert len(others) == 60 and all(arrays["split13"][i] == "" for i in others)
    roles = {arrays["split13"][row[c]] for c in set2}
    assert roles == {"train", "validation", "test"}
    np.testing.assert_allclose(
        arrays["context"], script.unit_rms(features["block5_conv2"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        arrays["action"], script.unit_rms(features["block5_conv3"]), rtol=1e-6
    )
    assert list(arrays["class_names"]) == [
        "hand shake", "hug", "kick", "point", "punch", "push",
    ]  # fmt: skip


def test_features_of_other_clips_are_refused(shared_data):
    root = shared_data / "ut_interaction"
    features = _probe_like(root)
    features["clip_ids"] = features["clip_ids"].copy()
    features["clip_ids"][0] = "not_a_clip"
    with pytest.raises(ValueError, match="has no row in the features"):
        script.imported_arrays(features, root, 0.1, 0, ut_interaction_folds(root))


@pytest.mark.slow
def test_one_fold_runs_through_the_import_path(shared_data, tmp_path):
    root = shared_data / "ut_interaction"
    path = tmp_path / "probe.npz"
    np.savez(path, **_probe_like(root, steps=6))
    payload = script.main(
        [
            "--root", str(root), "--features", str(path), "--folds", "set1_seq3",
            "--methods", "ours", "--output-dir", str(tmp_path / "out"),
            "--set", "lstm.epochs=1", "--set", "lstm.units=8", "--set", "data.num_steps=6",
        ]
    )  # fmt: skip
    rows = payload["table"]["ours"]["per_fold"]
    assert list(rows) == ["set1_seq3"]
    assert rows["set1_seq3"]["test_clips"] == 6  # sequence 3 of set 1: 6 clips
    # Earliest is UT-Interaction's 50% of the clip, not the imported dataset's 20%.
    row = rows["set1_seq3"]
    assert row["earliest"] == row["accuracy_vs_ratio"]["0.5"]
