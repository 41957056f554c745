"""Bad input: every case gives a clear error naming the file or key and saying what to
do, and an extraction that meets a bad clip records it, keeps going and lists it.

Where a case is already tested elsewhere it is not repeated here:

| case | tested in |
| --- | --- |
| clip that cannot be opened (random bytes, missing file) | test_video.py::test_random_bytes_raise, ::test_missing_file_raises |
| clip with zero frames: 0-byte file, empty frame folder | test_video.py::test_empty_file_raises, ::test_frame_folder_damaged_image_or_empty |
| clip with zero frames: a video that opens but holds no frame | here: test_video_with_no_frame |
| clip truncated mid-file (real UCF-101 clip) | test_video.py::test_truncated_copy_raises_beyond_what_decodes (needs ../shared/data) |
| clip truncated mid-file, without the shared data; in an extraction | here: test_truncated_clip_reads_what_decodes, test_extraction_meets_bad_clips |
| clip shorter than T: padded with zeros, masked by its length (store) | test_feature_store.py::test_short_clip_is_padded_with_zeros_and_masked_by_length |
| clip shorter than T: padded steps never counted (store -> dataset -> loss -> metrics) | here: test_short_clip_is_masked_not_counted, test_extraction_meets_bad_clips |
| frame folder with a gap | test_video.py::test_frame_folder_with_gap_names_the_missing_number; in an extraction: here |
| split file naming a clip that does not exist | test_readers.py::test_ucf101_missing_clip_names_list_line_and_clip, ::test_jhmdb_missing_clip_and_missing_dataset; test_generated.py::test_a_set_with_a_missing_clip_is_regenerated_or_reported |
| label outside the class list: UCF-101 label number disagreeing with classInd.txt | test_readers.py::test_ucf101_missing_dataset_and_bad_lists |
| label outside the class list: class folder not in classInd.txt, UT action 6+, generated label >= classes | here: test_labels_outside_the_class_list |
| label outside the class list: feature store append | test_feature_store.py::test_append_refuses_wrong_sizes_naming_clip_expected_and_received |
| feature store of another feature size or settings | test_feature_store.py::test_open_or_create_resumes_equal_settings_and_lists_differences, ::test_check_compatible_and_model_inputs; test_train_lstm.py::test_store_with_other_feature_sizes_is_refused |
| feature store from another extractor (extraction into it) | here: test_extraction_meets_bad_clips |
| extraction killed: resume, no duplicates | test_feature_store.py::test_resume_after_kills_has_no_duplicates_and_no_half_rows; test_extract.py::test_resume_after_interruption |
| NaN / inf features refused at load | test_feature_store.py::test_nan_written_behind_the_stores_back_is_refused_at_read, ::test_append_refuses_nan_inf_overflow_and_duplicates |
| NaN features out of an extractor: clip recorded as failed, the rest kept | here: test_nan_features_during_extraction |
| config with an unknown key | test_config.py::test_unknown_key_names_the_valid_ones |
| config file that does not parse | here: test_config_file_that_does_not_parse |
| weights file of another architecture: VGG-16 file, original code's files | test_vgg16_trunk.py::test_wrong_shape_file_raises; test_original_weights.py::test_files_of_another_architecture_raise_naming_the_file |
| weights file of another architecture given as cnn.weights; a .keras that is not an LSTM | here: test_weights_of_another_architecture |
| a bad clip in an extraction: recorded, the rest kept, listed at the end | test_extract.py::test_corrupt_clip_is_recorded_and_the_rest_kept (random bytes); every kind at once: here |
| random bytes and truncations of clips and split files | test_fuzz.py |
"""

import cv2
import numpy as np
import pytest

from msl_keras import losses, metrics
from msl_keras.config import apply_overrides, load_config
from msl_keras.data import ut_interaction
from msl_keras.data.feature_store import FeatureStore
from msl_keras.data.pipelines import sequence_dataset
from msl_keras.data.records import ClipRecord
from msl_keras.data.video import count_frames, read_frames
from msl_keras.errors import (
    ConfigError,
    DatasetError,
    FeatureStoreMismatchError,
    VideoDecodeError,
    WeightsError,
)
from msl_keras.models import ContextAwareHead
from msl_keras.runs import RunDirectory
from msl_keras.pipeline import Fold, extract, load_extractor, prepare, train_cnn
from tests.lstm_fixtures import store_settings
from tests.lstm_fixtures import tiny_config as lstm_tiny_config
from tests.stage_helpers import make_tiny_dataset, tiny_config
from tests.test_fuzz import make_generated_tree, make_ucf_tree

T = 12  # longer than every tiny generated clip (6-8 frames): all are padded


def _write_avi(path, count, size=(32, 24)):
    """An MJPG AVI of `count` noise frames (noise: each frame is a sizeable chunk of
    the file, so a cut at 60% falls among the frames, not in the header)."""
    rng = np.random.default_rng(count)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for _ in range(count):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
    writer.release()
    return path


def _truncated_avi(path):
    """8 frames cut at 60% of the file: 3 frames decode."""
    data = _write_avi(path.with_name("full_" + path.name), 8).read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


# ---------------------------------------------------------------- single files


def test_video_with_no_frame(tmp_path):
    path = _write_avi(tmp_path / "header_only.avi", 0)
    assert path.stat().st_size > 0  # a container, no frame
    for read in (read_frames, count_frames):
        with pytest.raises(VideoDecodeError, match="header_only.avi") as info:
            read(path)
        assert "zero frames" in info.value.reason and "again" in info.value.reason


def test_truncated_clip_reads_what_decodes(tmp_path):
    cut = _truncated_avi(tmp_path / "cut.avi")
    n = count_frames(cut)
    assert 0 < n < 8  # counted from what decodes, not from the header
    assert read_frames(cut).shape == (n, 24, 32, 3)
    with pytest.raises(VideoDecodeError, match="cut.avi") as info:
        read_frames(cut, [7])
    assert f"only {n} frames decode" in info.value.reason


def test_short_clip_is_masked_not_counted(tmp_path):
    """A clip of 3 steps in a store of T = 6: zero rows after step 3 that no loss and
    no metric counts (the original counted them: zero features, class-0 labels)."""
    config = lstm_tiny_config(tmp_path)
    settings = store_settings(config, num_classes=3)
    rng = np.random.default_rng(0)
    with FeatureStore.create(tmp_path / "s.h5", settings, ["a", "b", "c"]) as store:
        store.append(
            "short", rng.normal(size=(3, 8)), rng.normal(size=(3, 8)), 2, [0, 1, 2], 3
        )
        store.append(
            "full", rng.normal(size=(6, 8)), rng.normal(size=(6, 8)), 1, range(6), 6
        )
        arrays = store.read()
    assert arrays["lengths"].tolist() == [3, 6]
    assert arrays["frame_indices"][0].tolist() == [0, 1, 2, -1, -1, -1]
    assert not arrays["context"][0, 3:].any()
    _, y = next(
        iter(sequence_dataset(arrays, num_classes=3, batch_size=2, shuffle=False))
    )
    assert y["stage2"].numpy()[0, 3:].sum() == 0  # padded steps carry no label
    probs = rng.dirichlet(np.ones(3), size=(2, 6)).astype("float32")
    changed = probs.copy()
    changed[0, 3:] = [1.0, 0.0, 0.0]  # the model's outputs after the clip's end
    loss = losses.AnticipationLoss()
    assert float(loss(y["stage2"], probs)) == pytest.approx(
        float(loss(y["stage2"], changed))
    )
    for pooled in (False, True):
        a = metrics.accuracy_vs_steps(
            probs, arrays["labels"], arrays["lengths"], pooled
        )
        b = metrics.accuracy_vs_steps(
            changed, arrays["labels"], arrays["lengths"], pooled
        )
        np.testing.assert_array_equal(a, b)


def test_labels_outside_the_class_list(tmp_path):
    files, read = make_ucf_tree(tmp_path / "ucf")
    classes, trainlist = files[0], files[1]
    trainlist.write_text("Basketball/v_Basketball_g02_c01.avi 3\r\n")
    with pytest.raises(DatasetError) as info:
        read()
    message = str(info.value)
    assert "trainlist01.txt, line 1" in message and "'Basketball'" in message
    assert str(classes) in message
    trainlist.write_text("Archery/v_Archery_g02_c01.avi 7\r\n")
    with pytest.raises(
        DatasetError, match="line 1: label 7 disagrees with classInd.txt"
    ):
        read()
    files, read = make_generated_tree(tmp_path / "gen")
    files[1].write_text("jump/jump_g1_c0.avi 5 g1\n")
    with pytest.raises(DatasetError) as info:
        read()
    message = str(info.value)
    assert "trainlist.txt, line 1" in message and "label below 2" in message
    assert "classes.txt" in message and "generate_dataset" in message
    ut = tmp_path / "ut" / "segmented_set1"
    ut.mkdir(parents=True)
    _write_avi(ut / "0_1_6.avi", 2)
    with pytest.raises(DatasetError, match=r"0_1_6.avi' names action 6.*0-5"):
        ut_interaction.read_ut_interaction(tmp_path / "ut", 1, 1)


def test_config_file_that_does_not_parse(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"preset": "demo", "lstm": {"units": 8,}}')
    with pytest.raises(ConfigError, match="run.json' is not valid JSON"):
        load_config(str(path))
    path.write_text('{"preset": "demo", "lstm": {"unitz": 8}}')
    with pytest.raises(
        ConfigError, match="Unknown config key 'lstm.unitz'.*lstm.units"
    ):
        load_config(str(path))


def test_config_yaml_that_does_not_parse(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: demo\nlstm: [1, 2\n")
    with pytest.raises(ConfigError, match="run.yaml"):
        load_config(str(path))


def test_weights_of_another_architecture(tmp_path):
    from tests.test_original_weights import ms_lstm_file

    ms_lstm_file(tmp_path / "ms_lstm_final.h5", 6, 5)
    config = apply_overrides(
        tiny_config(tmp_path, tmp_path / "runs"),
        {"cnn.weights": str(tmp_path / "ms_lstm_final.h5")},
    )
    from msl_keras.runs import build_trunk

    with pytest.raises(
        WeightsError, match=r"ms_lstm_final.h5' has no weights for layer"
    ):
        build_trunk(config)


@pytest.mark.parametrize("kind", ["damaged", "not_an_lstm"])
def test_lstm_checkpoint_of_another_architecture(tmp_path, kind):
    from msl_keras.runs import load_lstm

    path = tmp_path / "best.keras"
    if kind == "damaged":
        path.write_bytes(b"not a zip" * 10)
    else:
        head = ContextAwareHead(3, fc_units=8, width=1 / 32)
        head.build((None, 2, 2, 16))
        head.save(path)
    with pytest.raises(WeightsError, match="best.keras"):
        load_lstm(path)


# ---------------------------------------------------------------- an extraction


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "generated")
    config = tiny_config(
        root, tmp_path_factory.mktemp("runs"), **{"cnn.epochs": 1, "data.num_steps": T}
    )
    index = prepare(config)
    run = RunDirectory.create(config)
    train_cnn(config, index, "split1", run=run, verbose=0)
    return config, index, run, load_extractor(config, run, "split1")


def _bad_clips(folder):
    """One clip of each bad kind, and a truncated clip (3 of its 8 frames decode)."""
    folder.mkdir()
    noise = folder / "noise.avi"
    noise.write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    )
    empty = folder / "empty.avi"
    empty.write_bytes(b"")
    header = _write_avi(folder / "header_only.avi", 0)
    gap = folder / "gap_frames"
    gap.mkdir()
    for n in (1, 2, 4):
        cv2.imwrite(str(gap / f"{n:05d}.png"), np.zeros((24, 32, 3), np.uint8))
    truncated = _truncated_avi(folder / "truncated.avi")
    return {
        "noise": (noise, "OpenCV cannot open it"),
        "empty": (empty, "empty (0 bytes)"),
        "header_only": (header, "zero frames"),
        "gap": (gap, "frame number 3 is missing"),
        "missing": (folder / "missing.avi", "no such file"),
        "truncated": (truncated, None),  # decodes in part: stored, shorter
    }


def test_extraction_meets_bad_clips(trained, tmp_path, caplog):
    config, index, run, extractor = trained
    good = index.fold("split1").records
    bad = _bad_clips(tmp_path / "bad")
    records = list(good)
    for number, (name, (path, _)) in enumerate(bad.items()):
        records.insert(
            2 * number, ClipRecord(name, str(path), 0, "walk_right", "gx", "test")
        )
    fold = Fold("bad_clips", records)
    index.folds.append(fold)
    try:
        with caplog.at_level("INFO", logger="msl_keras"):
            path = extract(config, index, fold, run=run, extractor=extractor)
        out = caplog.text
        with FeatureStore.open(path) as store:
            arrays, failed = store.read(), store.failed()
        failing = {k: v for k, v in bad.items() if v[1] is not None}
        assert set(failed) == set(failing)
        for name, (clip_path, reason) in failing.items():
            assert clip_path.name in failed[name] and reason in failed[name]
        tail = out[out.index(f"{len(failing)} clip(s) failed") :]
        assert all(name in tail for name in failing)  # listed at the end
        stored = [r.clip_id for r in records if r.clip_id not in failing]
        assert list(arrays["clip_ids"]) == stored  # one bad file cost nothing else
        # Every clip is shorter than T: stored with its own length, padded and masked.
        lengths = dict(zip(arrays["clip_ids"], arrays["lengths"]))
        for record in good:
            assert lengths[record.clip_id] == count_frames(record.path) < T
        row = list(arrays["clip_ids"]).index("truncated")
        n = count_frames(bad["truncated"][0])
        assert lengths["truncated"] == n == 3
        assert (arrays["frame_indices"][row, n:] == -1).all()
        assert not arrays["context"][row, n:].any()
        # Run again: the failures are retried (and fail again), nothing is duplicated.
        extract(config, index, fold, run=run, extractor=extractor, verbose=0)
        with FeatureStore.open(path) as store:
            assert store.completed_ids() == stored and set(store.failed()) == set(
                failing
            )
        # Another extractor (other weights) cannot write into this store.
        other = load_extractor(config, run, "split1")
        kernel = other.context_head.fc7.kernel
        kernel.assign(kernel + 0.01)
        with pytest.raises(FeatureStoreMismatchError) as info:
            extract(config, index, fold, run=run, extractor=other, verbose=0)
        message = str(info.value)
        assert path.name in message and "extractor_fingerprint" in message
    finally:
        index.folds.remove(fold)


def test_nan_features_during_extraction(trained, monkeypatch):
    config, index, run, extractor = trained
    records = index.fold("split1").records[:4]
    fold = Fold("nan_features", list(records))
    index.folds.append(fold)
    original = extractor.extract
    calls = []

    def extract_with_nan(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            out = dict(out, context=np.full_like(out["context"], np.nan))
        return out

    monkeypatch.setattr(extractor, "extract", extract_with_nan)
    try:
        path = extract(
            config, index, fold, run=run, extractor=extractor, verbose=0
        )
        with FeatureStore.open(path) as store:
            failed = store.failed()
            assert store.completed_ids() == [records[i].clip_id for i in (0, 2, 3)]
        assert set(failed) == {records[1].clip_id}
        assert "NaN or inf" in failed[records[1].clip_id]
    finally:
        index.folds.remove(fold)
