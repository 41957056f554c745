"""extract/merge_shards: every clip stored, resume, failed clips kept apart, shards = one pass."""

import dataclasses
import importlib

import numpy as np
import pytest

from msl_keras.data import trunk_cache
from msl_keras.data.feature_store import FeatureStore, weights_fingerprint
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.records import ClipRecord
from msl_keras.data.video import count_frames, read_frames
from msl_keras.errors import MslKerasError
from msl_keras.runs import RunDirectory
from msl_keras.pipeline import (
    Fold,
    extract,
    load_extractor,
    merge_shards,
    prepare,
    train_cnn,
)
from tests.stage_helpers import make_tiny_dataset, tiny_config

extract_module = importlib.import_module("msl_keras.pipeline.extraction")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "generated")
    config = tiny_config(root, tmp_path_factory.mktemp("runs"), **{"cnn.epochs": 1})
    index = prepare(config)
    train_cnn(config, index, "split1", verbose=0)
    run = RunDirectory(config)
    return config, index, run, load_extractor(config, run, "split1")


def _as_fold(index, name, records=None):
    """A copy of split1 under another name (its own store file)."""
    fold = Fold(
        name, list(records if records is not None else index.fold("split1").records)
    )
    index.folds.append(fold)
    return fold


def _read(path):
    with FeatureStore.open(path) as store:
        return store.read(), store.settings, store.failed()


def test_store_holds_every_clip(setup, capsys, monkeypatch):
    config, index, run, extractor = setup
    path = extract(config, index, "split1", run=run)
    assert path == run.store_path("split1")
    out = capsys.readouterr().out
    assert "9/9" in out and "frames/s" in out  # the progress bar went through each clip
    arrays, settings, failed = _read(path)
    records = index.fold("split1").records
    assert list(arrays["clip_ids"]) == [r.clip_id for r in records]
    assert arrays["context"].shape == (9, 6, 8) and arrays["action"].shape == (9, 6, 8)
    assert list(arrays["labels"]) == [r.label for r in records]
    num_frames = [count_frames(r.path) for r in records]
    assert list(arrays["num_frames"]) == num_frames
    assert list(arrays["lengths"]) == [min(6, n) for n in num_frames]
    assert failed == {}
    assert (settings.T, settings.frame_selection, settings.dtype) == (
        6,
        "first",
        "float16",
    )
    assert settings.split == "split1" and settings.cam_class == "predicted"
    assert settings.input_size == (32, 32) and settings.num_classes == 3
    assert settings.extractor_fingerprint == weights_fingerprint(
        [extractor.trunk, extractor.context_head, extractor.action_head]
    )
    # The stored rows are the extractor's features of the first T frames.
    record = records[4]
    n = arrays["lengths"][4]
    frames = preprocess_frames(read_frames(record.path, np.arange(n)), (32, 32))
    expected = extractor.extract(frames)
    np.testing.assert_allclose(
        arrays["context"][4, :n], expected["context"], rtol=2e-3, atol=1e-3
    )
    np.testing.assert_allclose(
        arrays["action"][4, :n], expected["action"], rtol=2e-3, atol=1e-3
    )
    assert np.all(arrays["context"][4, n:] == 0)
    np.testing.assert_array_equal(arrays["frame_indices"][4, :n], np.arange(n))

    # Resuming a finished store decodes nothing.
    calls = []
    monkeypatch.setattr(extract_module, "read_clip", lambda *a, **k: calls.append(a))
    extract(config, index, "split1", run=run, extractor=extractor, verbose=0)
    assert calls == []
    assert len(_read(path)[0]["clip_ids"]) == 9


def test_resume_after_interruption(setup, monkeypatch):
    config, index, run, extractor = setup
    fold = _as_fold(index, "resume")
    original = extract_module.read_clip
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(extract_module, "read_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(config, index, fold, run=run, extractor=extractor, verbose=0)
    path = run.store_path(fold)
    first, _, _ = _read(path)
    assert len(first["clip_ids"]) == 4

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(extract_module, "read_clip", counting)
    extract(config, index, fold, run=run, extractor=extractor, verbose=0)
    assert len(calls) == 9  # 4 before the interruption, the 5 others after
    assert len(set(calls)) == 9
    arrays, _, _ = _read(path)
    assert list(arrays["clip_ids"]) == [r.clip_id for r in fold.records]
    np.testing.assert_array_equal(arrays["context"][:4], first["context"])
    index.folds.remove(fold)


def test_corrupt_clip_is_recorded_and_the_rest_kept(setup, tmp_path, caplog):
    config, index, run, extractor = setup
    broken = tmp_path / "broken.avi"
    broken.write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
    )
    records = list(index.fold("split1").records)
    records.insert(
        2, ClipRecord("broken_clip", str(broken), 0, "walk_right", "g09", "test")
    )
    fold = _as_fold(index, "corrupt", records)
    with caplog.at_level("INFO", logger="msl_keras"):
        extract(config, index, fold, run=run, extractor=extractor)
    out = caplog.text
    arrays, _, failed = _read(run.store_path(fold))
    assert set(failed) == {"broken_clip"} and "broken.avi" in failed["broken_clip"]
    assert len(arrays["clip_ids"]) == 9 and "broken_clip" not in list(
        arrays["clip_ids"]
    )
    tail = out[out.index("1 clip(s) failed") :]
    assert "broken_clip" in tail  # listed at the end
    index.folds.remove(fold)


def test_a_clip_that_fails_to_decode_from_the_cache_is_recorded(setup, tmp_path, monkeypatch):
    """cnn.extract_from_cache: a clip whose frame count is known but whose frames do not
    decode is recorded as failed, naming its file, and the other clips are kept."""
    config, index, run, extractor = setup
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video" * 100)
    records = list(index.fold("split1").records)
    records.insert(1, ClipRecord("broken_clip", str(broken), 0, "walk_right", "g09", "test"))
    fold = _as_fold(index, "cache_corrupt", records)
    counted = extract_module.cached_num_frames
    monkeypatch.setattr(
        extract_module, "cached_num_frames",
        lambda cache, r: 8 if r.clip_id == "broken_clip" else counted(cache, r),
    )  # fmt: skip
    cached = dataclasses.replace(
        config, cnn=dataclasses.replace(config.cnn, extract_from_cache=True)
    )
    extract(cached, index, fold, run=run, extractor=extractor, verbose=0)
    arrays, _, failed = _read(run.store_path(fold))
    assert set(failed) == {"broken_clip"}
    assert failed["broken_clip"].count("broken.avi") == 1
    assert len(arrays["clip_ids"]) == len(records) - 1
    index.folds.remove(fold)


def test_two_shards_merged_equal_one_extraction(setup):
    config, index, run, extractor = setup
    single_path = run.store_path("split1")
    if not single_path.exists():
        extract(config, index, "split1", run=run, extractor=extractor, verbose=0)
    single, single_settings, _ = _read(single_path)
    for fold_name, pass_fold in (("sharded", True), ("sharded_by_name", False)):
        fold = _as_fold(index, fold_name)
        paths = [
            extract(
                config,
                index,
                fold,
                run=run,
                shard=(i, 2),
                extractor=extractor,
                verbose=0,
            )
            for i in range(2)
        ]
        assert paths[1] == run.store_path(fold, shard=(1, 2))
        shard0, _, _ = _read(paths[0])
        assert list(shard0["clip_ids"]) == [r.clip_id for r in fold.records[0::2]]
        merged_path = merge_shards(config, fold if pass_fold else fold.name, run, 2)
        assert merged_path == run.store_path(fold)
        merged, settings, _ = _read(merged_path)
        assert list(merged["clip_ids"]) == list(single["clip_ids"])
        for key in ("context", "action"):
            np.testing.assert_allclose(merged[key], single[key], rtol=1e-3, atol=1e-3)
        for key in ("labels", "lengths", "frame_indices", "num_frames"):
            np.testing.assert_array_equal(merged[key], single[key])
        assert dataclasses.replace(settings, split="split1") == single_settings
        index.folds.remove(fold)
    with pytest.raises(MslKerasError, match="already exists"):
        merge_shards(config, "sharded", run, 2)
    with pytest.raises(MslKerasError, match="shard store"):
        merge_shards(config, "sharded", run, 3)


def test_extraction_from_the_trunk_cache(setup, monkeypatch):
    """cnn.extract_from_cache: the same features (to float16), and a second fold of the
    same clips runs neither the decoder nor the trunk."""
    config, index, run, extractor = setup
    single_path = run.store_path("split1")
    if not single_path.exists():
        extract(config, index, "split1", run=run, extractor=extractor, verbose=0)
    single, single_settings, _ = _read(single_path)
    cached_config = dataclasses.replace(
        config, cnn=dataclasses.replace(config.cnn, extract_from_cache=True)
    )
    fold = _as_fold(index, "from_cache")
    path = extract(cached_config, index, fold, run=run, extractor=extractor, verbose=0)
    arrays, settings, _ = _read(path)
    assert dataclasses.replace(settings, split="split1") == single_settings
    for key in ("context", "action"):
        np.testing.assert_allclose(arrays[key], single[key], rtol=1e-2, atol=1e-2)
    for key in ("labels", "lengths", "frame_indices", "num_frames"):
        np.testing.assert_array_equal(arrays[key], single[key])

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a frame whose trunk output is cached")

    monkeypatch.setattr(trunk_cache, "read_frames", no_decoding)
    again = _as_fold(index, "from_cache_again")
    path = extract(cached_config, index, again, run=run, extractor=extractor, verbose=0)
    np.testing.assert_array_equal(_read(path)[0]["context"], arrays["context"])
    index.folds.remove(fold)
    index.folds.remove(again)
