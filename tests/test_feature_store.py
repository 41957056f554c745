"""FeatureStore: round trip, padding, resume after a killed writer, checks, merging."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from msl_keras.data.feature_store import (
    FeatureStore,
    StoreSettings,
    check_compatible,
    check_model_inputs,
    check_streams,
    merge_stores,
    weights_fingerprint,
    writing_new_store,
)
from msl_keras.errors import ConfigError, FeatureStoreError, FeatureStoreMismatchError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["walk", "run", "jump", "wave"]
T, DC, DA, N = 6, 5, 3, 4
NUM_CLIPS = 10


def make_settings(**changes):
    values = {
        "dataset": "generated",
        "split": "1",
        "T": T,
        "frame_selection": "first",
        "observed_ratio": 1.0,
        "input_size": (16, 16),
        "preprocessing": "vgg16_caffe",
        "extractor_fingerprint": "abc123",
        "cam_class": "predicted",
        "context_dim": DC,
        "action_dim": DA,
        "num_classes": N,
        "dtype": "float32",
    }
    values.update(changes)
    return StoreSettings(**values)


def make_clip(i, dc=DC, da=DA):
    """Clip i's arguments to `append` after the id: deterministic, 2..T steps."""
    rng = np.random.default_rng(i)
    n = 2 + i % (T - 1)
    context = rng.normal(size=(n, dc)).astype(np.float32)
    action = rng.normal(size=(n, da)).astype(np.float32)
    frame_indices = np.arange(n) * 3
    return context, action, i % N, frame_indices, 3 * n + 1


def clip_id(i):
    return f"clip_{i:03d}"


def fill(store, indices):
    for i in indices:
        store.append(clip_id(i), *make_clip(i))


def assert_matches_clips(arrays, indices):
    """The read arrays hold exactly clips `indices`, in that order, padded."""
    assert list(arrays["clip_ids"]) == [clip_id(i) for i in indices]
    for row, i in enumerate(indices):
        context, action, label, frames, num_frames = make_clip(i)
        n = len(context)
        assert arrays["lengths"][row] == n
        assert arrays["labels"][row] == label
        assert arrays["num_frames"][row] == num_frames
        np.testing.assert_array_equal(arrays["context"][row, :n], context)
        np.testing.assert_array_equal(arrays["action"][row, :n], action)
        np.testing.assert_array_equal(arrays["context"][row, n:], 0)
        np.testing.assert_array_equal(arrays["action"][row, n:], 0)
        np.testing.assert_array_equal(arrays["frame_indices"][row, :n], frames)
        np.testing.assert_array_equal(arrays["frame_indices"][row, n:], -1)


# -- settings --------------------------------------------------------------------------


def test_settings_validate_and_round_trip_through_json():
    settings = make_settings(split=2, input_size=[16, 24])
    assert settings.split == "2" and settings.input_size == (16, 24)
    again = StoreSettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert again == settings
    for bad in (
        {"dtype": "float64"},
        {"frame_selection": "middle"},
        {"T": 0},
        {"observed_ratio": 1.5},
        {"input_size": (16,)},
        {"cam_class": ""},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            make_settings(**bad)
    with pytest.raises(ConfigError, match="Unknown StoreSettings keys"):
        StoreSettings.from_dict({**settings.to_dict(), "colour": "red"})


def test_weights_fingerprint_is_stable_and_tracks_values():
    import keras

    def model():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        return m

    first, second = model(), model()  # other variable names, same values
    fp = weights_fingerprint(first)
    assert len(fp) == 40 and fp == weights_fingerprint(second)
    assert fp == weights_fingerprint(first.get_weights())
    weights = first.get_weights()
    weights[0][0, 0] += 1.0
    first.set_weights(weights)
    assert weights_fingerprint(first) != fp
    a = np.arange(6, dtype=np.float32)
    assert weights_fingerprint([a]) != weights_fingerprint([a.reshape(2, 3)])
    assert weights_fingerprint([first, second]) != weights_fingerprint([second, first])
    with pytest.raises(ConfigError, match="Received: object"):
        weights_fingerprint(object())


# -- round trip ------------------------------------------------------------------------


def test_create_append_read_round_trip(tmp_path):
    path = tmp_path / "store.h5"
    with FeatureStore.create(path, make_settings(), CLASS_NAMES) as store:
        fill(store, range(5))
        assert len(store) == 5
        assert store.completed_ids() == [clip_id(i) for i in range(5)]
        assert clip_id(2) in store and "other" not in store
        assert_matches_clips(store.read(), range(5))
    with FeatureStore.open(path) as store:
        assert store.settings == make_settings()
        assert store.class_names == CLASS_NAMES
        assert store.info["schema_version"] == 1
        assert store.info["msl_keras_version"]
        arrays = store.read()
        assert arrays["context"].shape == (5, T, DC) and arrays["action"].shape == (
            5,
            T,
            DA,
        )
        assert arrays["context"].dtype == np.float32
        assert_matches_clips(arrays, range(5))
        assert_matches_clips(store.read([clip_id(3), clip_id(0)]), [3, 0])
        assert store.read(dtype=np.float16)["context"].dtype == np.float16
        with pytest.raises(FeatureStoreError, match="no complete clip 'nope'"):
            store.read(["nope"])
        with pytest.raises(FeatureStoreError, match="read-only"):
            store.append(clip_id(7), *make_clip(7))


def test_short_clip_is_padded_with_zeros_and_masked_by_length(tmp_path):
    context = np.full((2, DC), 7.0, np.float32)
    action = np.full((2, DA), -7.0, np.float32)
    with FeatureStore.create(tmp_path / "s.h5", make_settings(), CLASS_NAMES) as store:
        store.append("short", context, action, 1, np.array([4, 9]), 10)
        raw = store._file
        assert raw["lengths"][0] == 2
        np.testing.assert_array_equal(raw["frame_indices"][0], [4, 9, -1, -1, -1, -1])
        np.testing.assert_array_equal(raw["context"][0, 2:], 0)
        np.testing.assert_array_equal(raw["action"][0, 2:], 0)
        arrays = store.read()
    np.testing.assert_array_equal(arrays["context"][0, :2], 7.0)
    assert arrays["lengths"].tolist() == [2]


def test_float16_halves_the_feature_bytes(tmp_path):
    sizes, files = {}, {}
    for dtype in ("float16", "float32"):
        path = tmp_path / f"{dtype}.h5"
        settings = make_settings(dtype=dtype, context_dim=64, action_dim=32)
        with FeatureStore.create(
            path, settings, CLASS_NAMES, compression=None
        ) as store:
            for i in range(4):
                rng = np.random.default_rng(i)
                store.append(
                    clip_id(i),
                    rng.normal(size=(T, 64)),
                    rng.normal(size=(T, 32)),
                    0,
                    np.arange(T),
                    T,
                )
            sizes[dtype] = sum(
                store._file[name].id.get_storage_size()
                for name in ("context", "action")
            )
            assert store._file["context"].dtype == np.dtype(dtype)
        files[dtype] = path.stat().st_size
    assert sizes["float32"] == 4 * T * (64 + 32) * 4
    assert sizes["float16"] * 2 == sizes["float32"]
    assert files["float16"] < files["float32"]
    with FeatureStore.open(tmp_path / "float16.h5") as store:
        rng = np.random.default_rng(0)
        expected = rng.normal(size=(T, 64)).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(store.read()["context"][0], expected)


# -- refusals at append ----------------------------------------------------------------


def test_append_refuses_wrong_sizes_naming_clip_expected_and_received(tmp_path):
    with FeatureStore.create(tmp_path / "s.h5", make_settings(), CLASS_NAMES) as store:
        context, action, _, frames, num_frames = make_clip(0)
        with pytest.raises(FeatureStoreMismatchError) as info:
            store.append("wide", np.zeros((2, DC + 1)), action[:2], 0, np.arange(2), 5)
        message = str(info.value)
        assert (
            "'wide'" in message and f"(2, {DC + 1})" in message and f"{DC})" in message
        )
        with pytest.raises(FeatureStoreMismatchError, match="action_dim=3"):
            store.append(
                "a", context, np.zeros((len(context), 7)), 0, frames, num_frames
            )
        with pytest.raises(FeatureStoreError, match=f"1 to T={T}"):
            store.append(
                "long",
                np.zeros((T + 1, DC)),
                np.zeros((T + 1, DA)),
                0,
                np.arange(T + 1),
                T + 1,
            )
        with pytest.raises(
            FeatureStoreError, match="context has 2 steps but action has 3"
        ):
            store.append("b", np.zeros((2, DC)), np.zeros((3, DA)), 0, np.arange(2), 5)
        with pytest.raises(
            FeatureStoreError, match=r"label 4 is outside \[0, num_classes=4\)"
        ):
            store.append("c", context, action, 4, frames, num_frames)
        with pytest.raises(FeatureStoreError, match="frame_indices must lie in"):
            store.append("d", context, action, 0, frames, int(frames.max()))
        assert len(store) == 0 and store._file["complete"].shape == (0,)


def test_append_refuses_nan_inf_overflow_and_duplicates(tmp_path):
    with FeatureStore.create(
        tmp_path / "s.h5", make_settings(dtype="float16"), CLASS_NAMES
    ) as store:
        context, action, label, frames, num_frames = make_clip(0)
        bad = context.copy()
        bad[1, 2] = np.nan
        with pytest.raises(
            FeatureStoreError, match=r"Clip 'nan'.*NaN or inf at steps \[1\]"
        ):
            store.append("nan", bad, action, label, frames, num_frames)
        bad_action = action.copy()
        bad_action[0, 0] = np.inf
        with pytest.raises(FeatureStoreError, match="Clip 'inf': action"):
            store.append("inf", context, bad_action, label, frames, num_frames)
        with pytest.raises(FeatureStoreError, match="range of float16.*float32"):
            store.append("big", context * 1e6, action, label, frames, num_frames)
        assert len(store) == 0 and store._file["complete"].shape == (0,)
        store.append("ok", context, action, label, frames, num_frames)
        with pytest.raises(FeatureStoreError, match="'ok' is already complete"):
            store.append("ok", context, action, label, frames, num_frames)
        assert len(store) == 1 and store._file["complete"].shape == (1,)


def test_nan_written_behind_the_stores_back_is_refused_at_read(tmp_path):
    path = tmp_path / "s.h5"
    with FeatureStore.create(path, make_settings(), CLASS_NAMES) as store:
        fill(store, range(3))
    with h5py.File(path, "r+") as raw:
        raw["action"][1, 0, 0] = np.nan
    with FeatureStore.open(path) as store:
        with pytest.raises(FeatureStoreError) as info:
            store.read()
        assert str(path) in str(info.value) and "'clip_001'" in str(info.value)
        assert "clip_000" not in str(info.value)
        assert_matches_clips(store.read([clip_id(0), clip_id(2)]), [0, 2])


def test_failures_are_listed_until_the_clip_completes(tmp_path):
    with FeatureStore.create(tmp_path / "s.h5", make_settings(), CLASS_NAMES) as store:
        store.record_failure(clip_id(1), "VideoDecodeError: truncated")
        store.record_failure(clip_id(2), "empty clip")
        fill(store, [0])
        assert store.failed() == {
            clip_id(1): "VideoDecodeError: truncated",
            clip_id(2): "empty clip",
        }
        fill(store, [1])
        assert store.failed() == {clip_id(2): "empty clip"}
        with pytest.raises(FeatureStoreError, match="complete"):
            store.record_failure(clip_id(0), "x")
    with FeatureStore.open(tmp_path / "s.h5") as store:
        assert store.failed() == {clip_id(2): "empty clip"}


# -- settings mismatch and compatibility -----------------------------------------------


def test_open_or_create_resumes_equal_settings_and_lists_differences(tmp_path):
    path = tmp_path / "s.h5"
    with FeatureStore.open_or_create(path, make_settings(), CLASS_NAMES) as store:
        fill(store, range(2))
    with FeatureStore.open_or_create(path, make_settings(), CLASS_NAMES) as store:
        assert store.completed_ids() == [clip_id(0), clip_id(1)]
        fill(store, [2])
    other = make_settings(T=8, extractor_fingerprint="fff", dtype="float16")
    with pytest.raises(FeatureStoreMismatchError) as info:
        FeatureStore.open_or_create(path, other, CLASS_NAMES)
    message = str(info.value)
    assert str(path) in message and "Delete the file" in message
    assert "T: the store has 6, asked for 8" in message
    assert "extractor_fingerprint: the store has 'abc123', asked for 'fff'" in message
    assert "dtype: the store has 'float32', asked for 'float16'" in message
    assert "dataset" not in message
    with pytest.warns(UserWarning, match="class names"):
        FeatureStore.open_or_create(path, make_settings(), list("abcd")).close()
    with FeatureStore.open(path) as store:  # the failed attempts closed the file
        assert len(store) == 3
    with pytest.raises(FeatureStoreError, match="already exists"):
        FeatureStore.create(path, make_settings(), CLASS_NAMES)


def test_check_compatible_and_model_inputs(tmp_path):
    with FeatureStore.create(tmp_path / "s.h5", make_settings(), CLASS_NAMES) as store:
        check_compatible(store, {"T": T, "split": 1, "input_size": [16, 16]})
        with pytest.raises(FeatureStoreMismatchError) as info:
            check_compatible(
                store, {"T": 50, "cam_class": "oracle", "dataset": "generated"}
            )
        message = str(info.value)
        assert "T: the store has 6, expected 50" in message
        assert "cam_class: the store has 'predicted', expected 'oracle'" in message
        assert "dataset:" not in message and "s.h5" in message
        with pytest.raises(ConfigError, match="Unknown StoreSettings keys"):
            check_compatible(store, {"steps": 50})
        check_model_inputs(store, DC, DA)
        check_model_inputs(store.settings, context_dim=DC)  # single-stream model
        with pytest.raises(FeatureStoreMismatchError) as info:
            check_model_inputs(store, 4096, DA)
        message = str(info.value)
        assert "context_dim: the store holds 5, the model expects 4096" in message
        assert "action_dim" not in message.split("\n")[1]
        assert "Re-extract" in message and f"context_dim={DC}" in message


# -- corrupt files ---------------------------------------------------------------------


def test_truncated_random_or_foreign_files_give_feature_store_errors(tmp_path):
    path = tmp_path / "store.h5"
    with FeatureStore.create(
        path, make_settings(context_dim=256), CLASS_NAMES, compression=None
    ) as store:
        for i in range(4):
            store.append(
                clip_id(i), np.ones((T, 256)), np.ones((T, DA)), 0, np.arange(T), T
            )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for opener in (
        lambda: FeatureStore.open(path),
        lambda: FeatureStore.open_or_create(
            path, make_settings(context_dim=256), CLASS_NAMES
        ),
    ):
        with pytest.raises(FeatureStoreError) as info:
            opener()
        assert str(path) in str(info.value) and "Delete the file" in str(info.value)
    noise = tmp_path / "noise.h5"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FeatureStoreError, match="noise.h5.*Delete the file"):
        FeatureStore.open(noise)
    foreign = tmp_path / "weights.h5"
    with h5py.File(foreign, "w") as raw:
        raw["kernel"] = np.zeros(3)
    with pytest.raises(FeatureStoreError, match="not an msl_keras feature store"):
        FeatureStore.open(foreign)
    with pytest.raises(FeatureStoreError, match="does not exist"):
        FeatureStore.open(tmp_path / "missing.h5")


def test_a_store_held_open_by_another_writer_says_so(tmp_path):
    path = tmp_path / "s.h5"
    code = (
        "import sys; from msl_keras.data.feature_store import FeatureStore\n"
        "try:\n    FeatureStore.open(sys.argv[1])\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    with FeatureStore.create(path, make_settings(), CLASS_NAMES):
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.stdout.startswith("FeatureStoreError"), result.stderr
    assert "another process holds it open" in result.stdout


# -- resume after a killed writer ------------------------------------------------------

# An extraction loop in a child process. `mode` says where it dies on clip `stop`:
# "exit_mid_row" after writing only the context row, "exit_before_flag" after the row's
# data is flushed but before its complete flag, "wait_for_kill" at that same point,
# waiting for the parent's SIGKILL.
CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[4])
from msl_keras.data.feature_store import FeatureStore
from tests.test_feature_store import (
    CLASS_NAMES, NUM_CLIPS, clip_id, make_clip, make_settings,
)

path, mode, stop = sys.argv[1], sys.argv[2], clip_id(int(sys.argv[3]))
write_row, commit = FeatureStore._write_row, FeatureStore._commit

def partial_write(self, slot, cid, row):
    if cid == stop and mode == "exit_mid_row":
        self._file["context"][slot] = row["context"]
        self._file.flush()
        os._exit(3)
    write_row(self, slot, cid, row)

def killed_commit(self, slot, cid, durable=True):
    if cid == stop and mode == "exit_before_flag":
        os._exit(3)
    if cid == stop and mode == "wait_for_kill":
        print("paused", flush=True)
        time.sleep(60)
        os._exit(4)
    commit(self, slot, cid, durable)

FeatureStore._write_row, FeatureStore._commit = partial_write, killed_commit
with FeatureStore.open_or_create(path, make_settings(), CLASS_NAMES) as store:
    done = set(store.completed_ids())
    for i in range(NUM_CLIPS):
        if clip_id(i) not in done:
            store.append(clip_id(i), *make_clip(i))
            print("done", clip_id(i), flush=True)
"""


def run_child(path, mode, stop):
    args = [sys.executable, "-c", CHILD, str(path), mode, str(stop), str(PROJECT_ROOT)]
    if mode != "wait_for_kill":
        result = subprocess.run(
            args, check=False, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 3, result.stderr
        return
    child = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in child.stdout:
            if line.strip() == "paused":
                os.kill(child.pid, signal.SIGKILL)
                break
        assert child.wait(timeout=60) == -signal.SIGKILL, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        child.stderr.close()


def raw_rows(path):
    with h5py.File(path, "r") as raw:
        return (
            raw["complete"][:].tolist(),
            list(raw["clip_ids"].asstr()[:]),
            raw["context"][:],
        )


def test_resume_after_kills_has_no_duplicates_and_no_half_rows(tmp_path):
    path = tmp_path / "store.h5"

    # 1. Killed after clip 3's data is flushed, before its complete flag.
    run_child(path, "exit_before_flag", 3)
    complete, ids, context = raw_rows(path)
    assert complete == [1, 1, 1, 0] and ids[3] == clip_id(3)
    np.testing.assert_array_equal(context[3, : len(make_clip(3)[0])], make_clip(3)[0])
    with FeatureStore.open(path) as store:  # the written-but-unflagged row is not data
        assert store.completed_ids() == [clip_id(i) for i in range(3)]
        before = store.read()
    assert_matches_clips(before, range(3))

    # 2. Resumed, then SIGKILLed at the same point of clip 6 (row 3 reused first).
    run_child(path, "wait_for_kill", 6)
    complete, ids, _ = raw_rows(path)
    assert complete == [1, 1, 1, 1, 1, 1, 0] and ids[6] == clip_id(6)
    with FeatureStore.open(path) as store:
        assert store.completed_ids() == [clip_id(i) for i in range(6)]

    # 3. Resumed, and killed in the middle of clip 8's row (context only on disk).
    run_child(path, "exit_mid_row", 8)
    complete, ids, context = raw_rows(path)
    assert complete == [1] * 8 + [0] and ids[8] == ""
    assert np.abs(context[8]).sum() > 0

    # 4. Resumed in this process: the remaining clips, in a different order.
    with FeatureStore.open_or_create(path, make_settings(), CLASS_NAMES) as store:
        done = set(store.completed_ids())
        assert done == {clip_id(i) for i in range(8)}
        for i in (9, 8):
            store.append(clip_id(i), *make_clip(i))
    complete, ids, _ = raw_rows(path)
    assert complete == [1] * 10 and len(set(ids)) == 10
    with FeatureStore.open(path) as store:
        assert len(store) == NUM_CLIPS
        order = list(range(8)) + [9, 8]  # clip 9 took the half-written row 8
        assert_matches_clips(store.read(), order)
        after = store.read([clip_id(i) for i in range(3)])
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


# -- merging shards --------------------------------------------------------------------


def test_merge_of_two_shards_equals_one_store(tmp_path):
    with FeatureStore.create(
        tmp_path / "one.h5", make_settings(), CLASS_NAMES
    ) as store:
        fill(store, range(8))
        expected = store.read()
    for name, indices in (("even", range(0, 8, 2)), ("odd", range(1, 8, 2))):
        with FeatureStore.create(
            tmp_path / f"{name}.h5", make_settings(), CLASS_NAMES
        ) as store:
            fill(store, indices)
            store.record_failure(f"broken_{name}", "cannot decode")
    shards = [tmp_path / "even.h5", tmp_path / "odd.h5"]
    order = [clip_id(i) for i in range(8)]
    with merge_stores(shards, tmp_path / "merged.h5", order=order) as merged:
        assert merged.settings == make_settings()
        assert merged.class_names == CLASS_NAMES
        arrays = merged.read()
        assert merged.failed() == {
            "broken_even": "cannot decode",
            "broken_odd": "cannot decode",
        }
    assert set(arrays) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(arrays[key], expected[key])
    with merge_stores(shards, tmp_path / "shard_order.h5") as merged:
        assert merged.completed_ids() == [clip_id(i) for i in (0, 2, 4, 6, 1, 3, 5, 7)]
    assert not (tmp_path / "merged.h5.partial").exists()


def test_merge_refuses_overlapping_ids_and_different_settings(tmp_path):
    with FeatureStore.create(tmp_path / "a.h5", make_settings(), CLASS_NAMES) as store:
        fill(store, [0, 1, 2])
    with FeatureStore.create(tmp_path / "b.h5", make_settings(), CLASS_NAMES) as store:
        fill(store, [2, 3])
    with FeatureStore.create(
        tmp_path / "c.h5", make_settings(split="2", T=7), CLASS_NAMES
    ) as store:
        fill(store, [5])
    with pytest.raises(FeatureStoreError, match="'clip_002' in .*a.h5, .*b.h5"):
        merge_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    with pytest.raises(FeatureStoreMismatchError) as info:
        merge_stores([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "m.h5")
    message = str(info.value)
    assert "split:" in message and "T:" in message and "c.h5" in message
    assert "dataset" not in message
    assert not (tmp_path / "m.h5").exists()
    assert not (tmp_path / "m.h5.partial").exists()
    with pytest.raises(FeatureStoreError, match="already exists"):
        merge_stores([tmp_path / "a.h5"], tmp_path / "b.h5")


def test_a_single_stream_store_holds_reads_and_merges_one_stream(tmp_path):
    settings = make_settings(action_dim=None)
    assert settings.streams == ("context",) and settings.dim("action") is None
    assert StoreSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(ConfigError, match="at least one stream"):
        make_settings(context_dim=None, action_dim=None)
    paths = []
    for shard, indices in enumerate(((0, 2, 4), (1, 3))):
        path = tmp_path / f"shard{shard}.h5"
        with FeatureStore.create(path, settings, CLASS_NAMES) as store:
            for i in indices:
                context, _, label, frames, num_frames = make_clip(i)
                store.append(clip_id(i), context, None, label, frames, num_frames)
            context, action, label, frames, num_frames = make_clip(9)
            with pytest.raises(FeatureStoreMismatchError, match="action features were given"):
                store.append(clip_id(9), context, action, label, frames, num_frames)
        paths.append(path)
    with h5py.File(paths[0], "r") as f:
        assert "action" not in f and f["context"].shape == (3, T, DC)
    with merge_stores(paths, tmp_path / "merged.h5") as merged:
        assert "action_dim" not in repr(merged)
        arrays = merged.read([clip_id(i) for i in range(5)])
        assert "action" not in arrays and arrays["context"].shape == (5, T, DC)
        for i in range(5):
            context, _, label, frames, _ = make_clip(i)
            n = context.shape[0]
            np.testing.assert_allclose(arrays["context"][i, :n], context)
            assert arrays["labels"][i] == label
        check_streams(merged, ("context",))
        check_model_inputs(merged, context_dim=DC)
        with pytest.raises(FeatureStoreMismatchError, match="only the context stream"):
            check_streams(merged, ("context", "action"))
        with pytest.raises(FeatureStoreMismatchError, match="lstm.model=context"):
            check_model_inputs(merged, context_dim=DC, action_dim=DA)


def test_a_new_store_appears_only_when_complete(tmp_path):
    out = tmp_path / "new.h5"
    with pytest.raises(RuntimeError, match="stop"):
        with writing_new_store(out, make_settings(), CLASS_NAMES) as store:
            fill(store, range(3))
            assert not out.exists()
            raise RuntimeError("stop")
    assert not out.exists() and not (tmp_path / "new.h5.partial").exists()
    with writing_new_store(out, make_settings(), CLASS_NAMES) as store:
        fill(store, range(3))
    with FeatureStore.open(out) as store:
        assert len(store) == 3
