"""Features made elsewhere: a .npz, an .h5 or a folder of .npy -> feature store -> LSTM stages.

End to end at a tiny size for every layout with one and two streams (write features,
`import_features`, `train_lstm`, `evaluate`), the README's worked example as written,
and a clear error for each kind of bad input.
"""

import csv
import re
import shlex
from pathlib import Path

import h5py
import numpy as np
import pytest

from msl_keras import cli
from msl_keras.config import load_config
from msl_keras.data.feature_store import FeatureStore
from msl_keras.data.imported import FeatureSource, imported_records
from msl_keras.errors import (
    ConfigError,
    DatasetError,
    FeatureStoreError,
    FeatureStoreMismatchError,
)
from msl_keras.pipeline import evaluate, import_features, prepare, train_lstm

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLIPS, T, NUM_CLASSES = 24, 8, 3
DIMS = {"context": 6, "action": 5}


def _features(streams, seed=0):
    """Class-dependent features of CLIPS clips with 3..T rows; splits and groups."""
    rng = np.random.default_rng(seed)
    labels = np.arange(CLIPS) % NUM_CLASSES
    lengths = rng.integers(3, T + 1, CLIPS)
    arrays = {
        stream: (
            rng.normal(size=(NUM_CLASSES, DIMS[stream]))[labels][:, None, :] * 2
            + rng.normal(size=(CLIPS, T, DIMS[stream]))
        ).astype(np.float32)
        for stream in streams
    }
    for array in arrays.values():
        array[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    groups = [f"g{i // NUM_CLASSES}" for i in range(CLIPS)]  # 8 groups of 3 classes
    split1 = ["test" if group in ("g0", "g1") else "train" for group in groups]
    return {
        **arrays,
        "labels": labels,
        "lengths": lengths,
        "clip_ids": [f"v_{i:03d}" for i in range(CLIPS)],
        "groups": groups,
        "split1": split1,
        "class_names": [f"action{k}" for k in range(NUM_CLASSES)],
    }


def write_npz(path, data):
    np.savez(path, **{k: np.asarray(v) for k, v in data.items()})
    return path


def write_h5(path, data):
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            value = np.asarray(value)
            if value.dtype.kind == "U":
                value = value.astype(h5py.string_dtype())
            f[key] = value
    return path


def write_folder(folder, data):
    folder.mkdir(parents=True)
    streams = [s for s in DIMS if s in data]
    with open(folder / "clips.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip_id", "label", "group", "split1"])
        for i, clip_id in enumerate(data["clip_ids"]):
            writer.writerow([clip_id, data["labels"][i], data["groups"][i], data["split1"][i]])
            n = int(data["lengths"][i])
            for stream in streams:
                (folder / stream).mkdir(exist_ok=True)
                np.save(folder / stream / f"{clip_id}.npy", data[stream][i, :n])
    (folder / "classes.txt").write_text("\n".join(data["class_names"]) + "\n")
    return folder


WRITERS = {
    "npz": lambda tmp, data: write_npz(tmp / "features.npz", data),
    "h5": lambda tmp, data: write_h5(tmp / "features.h5", data),
    "folder": lambda tmp, data: write_folder(tmp / "features", data),
}


def _config(tmp_path, root, model, **overrides):
    settings = {
        "data.root": str(root),
        "data.num_steps": T,
        "data.validation_fraction": 0.2,
        "output_dir": str(tmp_path / "runs"),
        "lstm.model": model,
        "lstm.units": 8,
        "lstm.dropout": 0.0,
        "lstm.epochs": 1,
        "lstm.batch_size": 8,
        "lstm.learning_rate": 0.5,
        "eval.top_k": 2,
        **overrides,
    }
    return load_config(preset="imported", overrides=[f"{k}={v}" for k, v in settings.items()])


@pytest.mark.parametrize(
    "layout, streams, model",
    [
        # Each layout once and both stream counts in the default suite; the rest slow.
        ("npz", ("context", "action"), "ms_lstm"),
        ("h5", ("action",), "action"),
        ("folder", ("context",), "context"),
        pytest.param("npz", ("context",), "context", marks=pytest.mark.slow),
        pytest.param("h5", ("context", "action"), "ms_lstm", marks=pytest.mark.slow),
        pytest.param("folder", ("context", "action"), "ms_lstm", marks=pytest.mark.slow),
    ],
)
def test_import_then_train_and_evaluate(tmp_path, layout, streams, model):
    data = _features(streams)
    root = WRITERS[layout](tmp_path, data)
    config = _config(tmp_path, root, model)
    index = prepare(config)
    fold = index.folds[0]
    assert index.class_names == data["class_names"]
    assert fold.name == "split1"
    counts = fold.counts()
    assert counts["test"] == {"clips": 6, "groups": 2, "classes": 3}
    assert counts["validation"]["clips"] > 0 and counts["validation"]["groups"] >= 1
    # Groups never straddle train and validation.
    train_groups = {r.group for r in fold.by_role("train")}
    assert not train_groups & {r.group for r in fold.by_role("validation")}

    path = import_features(config, index, fold, verbose=False)
    with FeatureStore.open(path) as store:
        assert store.settings.streams == streams
        assert store.settings.dataset == "imported"
        assert len(store) == CLIPS
        arrays = store.read([data["clip_ids"][5]])
        for stream in streams:
            n = int(data["lengths"][5])
            assert arrays[stream].shape == (1, T, DIMS[stream])
            np.testing.assert_allclose(
                arrays[stream][0, :n], data[stream][5, :n], rtol=1e-3, atol=1e-3
            )
        assert arrays["lengths"][0] == data["lengths"][5]
        assert arrays["frame_indices"][0, : arrays["lengths"][0]].tolist() == list(
            range(int(data["lengths"][5]))
        )
        assert arrays["num_frames"][0] == data["lengths"][5]

    best = train_lstm(config, index, fold, verbose=0)
    assert best.is_file()
    results = evaluate(config, index, fold, verbose=False)
    assert results["clips"]["test_evaluated"] == 6
    assert results["model"] == model
    assert set(results["stages"]) == ({"stage1", "stage2"} if model == "ms_lstm" else {"stage1"})
    assert 0.0 <= results["summary"]["latest"] <= 1.0


def test_ms_lstm_on_a_single_stream_store_is_a_clear_error(tmp_path):
    root = write_npz(tmp_path / "features.npz", _features(("context",)))
    config = _config(tmp_path, root, "ms_lstm")
    index = prepare(config)
    path = import_features(config, index, "split1", verbose=False)
    with pytest.raises(FeatureStoreMismatchError) as error:
        train_lstm(config, index, "split1", verbose=0)
    message = str(error.value)
    assert str(path) in message
    assert "only the context stream" in message and "lstm.model=context" in message


def test_more_rows_than_T_follow_the_frame_selection(tmp_path):
    data = _features(("context",))
    data["frame_indices"] = np.tile(np.arange(T) * 10, (CLIPS, 1))
    data["num_frames"] = np.full(CLIPS, 10 * T)
    root = write_npz(tmp_path / "features.npz", data)
    config = _config(
        tmp_path, root, "context", **{"data.num_steps": 3, "data.frame_selection": "uniform"}
    )
    index = prepare(config)
    with FeatureStore.open(import_features(config, index, "split1", verbose=False)) as store:
        arrays = store.read([data["clip_ids"][0]])
    n = int(data["lengths"][0])
    rows = [0, (n - 1 + 1) // 2, n - 1]  # select_frames(n, 3, "uniform")
    assert arrays["lengths"][0] == 3
    assert arrays["frame_indices"][0].tolist() == [10 * r for r in rows]
    assert arrays["num_frames"][0] == 10 * T
    np.testing.assert_allclose(
        arrays["context"][0], data["context"][0, rows], rtol=1e-3, atol=1e-3
    )


def test_importing_again_keeps_the_store_or_refuses_other_features(tmp_path, caplog):
    data = _features(("context",))
    root = write_npz(tmp_path / "features.npz", data)
    config = _config(tmp_path, root, "context")
    index = prepare(config)
    path = import_features(config, index, "split1", verbose=False)
    written = path.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="msl_keras"):
        assert import_features(config, index, "split1") == path
    assert "already holds these features" in caplog.text
    assert path.stat().st_mtime_ns == written
    data["context"][0, 0, 0] += 1.0  # other features, same clips
    write_npz(root, data)
    with pytest.raises(FeatureStoreError, match="extractor_fingerprint.*--overwrite"):
        import_features(config, index, "split1", verbose=False)
    import_features(config, index, "split1", overwrite=True, verbose=False)
    with FeatureStore.open(path) as store:
        assert store.read(["v_000"])["context"][0, 0, 0] == pytest.approx(
            data["context"][0, 0, 0], abs=1e-2
        )


def test_a_split_may_name_validation_clips_and_leave_clips_out(tmp_path):
    data = _features(("context",))
    data["split1"] = ["validation"] * 3 + [""] * 3 + list(data["split1"][6:])
    source = FeatureSource.open(write_npz(tmp_path / "f.npz", data))
    records = imported_records(source, split=1, validation_fraction=0.0)
    assert len(records) == CLIPS - 3
    assert [r.role for r in records[:3]] == ["validation"] * 3
    assert "v_003" not in {r.clip_id for r in records}


def test_defaults_without_optional_arrays(tmp_path):
    data = _features(("action",))
    kept = {k: data[k] for k in ("action", "labels", "split1")}
    source = FeatureSource.open(write_npz(tmp_path / "f.npz", kept))
    assert source.clip_ids[:2] == ["clip_00000", "clip_00001"]
    assert source.groups == source.clip_ids
    assert source.class_names == ["class_0", "class_1", "class_2"]
    clip = source.clip(0)
    assert clip["action"].shape == (T, DIMS["action"])  # no lengths: every row
    assert clip["frame_indices"].tolist() == list(range(T)) and clip["num_frames"] == T


# -- bad input: each a DatasetError naming the file and what to do ----------------------


def _open_error(path):
    with pytest.raises(DatasetError) as error:
        with FeatureSource.open(path) as source:
            source.dims()
            for row in range(len(source)):
                source.clip(row)
    return str(error.value)


def test_ragged_npz_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "ragged.npz"
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 4)), np.zeros((5, 4))
    np.savez(path, context=ragged, labels=[0, 1], split1=["train", "test"])
    message = _open_error(path)
    assert str(path) in message and "'context'" in message
    assert "(clips, T, D)" in message and "lengths" in message


def test_ragged_feature_sizes_in_a_folder_name_the_files(tmp_path):
    folder = write_folder(tmp_path / "features", _features(("context",)))
    np.save(folder / "context" / "v_007.npy", np.zeros((4, DIMS["context"] + 1)))
    message = _open_error(folder)
    assert "several sizes" in message and "v_007.npy" in message


def test_streams_with_other_row_counts_in_a_folder(tmp_path):
    folder = write_folder(tmp_path / "features", _features(("context", "action")))
    np.save(folder / "action" / "v_002.npy", np.zeros((1, DIMS["action"])))
    message = _open_error(folder)
    assert "v_002" in message and "same frames" in message


def test_missing_labels(tmp_path):
    data = _features(("context",))
    del data["labels"]
    path = write_npz(tmp_path / "f.npz", data)
    message = _open_error(path)
    assert str(path) in message and "no 'labels' array" in message


def test_missing_label_column_and_missing_npy(tmp_path):
    folder = write_folder(tmp_path / "features", _features(("context",)))
    (folder / "context" / "v_004.npy").unlink()
    message = _open_error(folder)
    assert "v_004" in message and str(folder / "context") in message
    (folder / "clips.csv").write_text("clip_id,group\nv_000,g0\n")
    message = _open_error(folder)
    assert "clips.csv" in message and "'label'" in message


def test_nan_names_the_file_clip_and_steps(tmp_path):
    data = _features(("context", "action"))
    data["action"][4, 1] = np.nan
    path = write_h5(tmp_path / "f.h5", data)
    message = _open_error(path)
    assert str(path) in message and "'v_004'" in message and "action" in message
    assert "at steps 1." in message
    folder = write_folder(tmp_path / "features", data)
    message = _open_error(folder)
    assert str(folder / "action" / "v_004.npy") in message


def test_label_out_of_range(tmp_path):
    data = _features(("context",))
    data["labels"][3] = NUM_CLASSES
    path = write_npz(tmp_path / "f.npz", data)
    message = _open_error(path)
    assert str(path) in message and "v_003=3" in message and "[0, 3)" in message
    data["labels"][3] = -1
    message = _open_error(write_npz(tmp_path / "g.npz", data))
    assert "v_003=-1" in message


def test_unknown_role_and_unknown_split(tmp_path):
    data = _features(("context",))
    data["split1"][0] = "val"
    message = _open_error(write_npz(tmp_path / "f.npz", data))
    assert "split 'split1'" in message and "'val'" in message and "'validation'" in message
    data["split1"][0] = "train"
    source = FeatureSource.open(write_npz(tmp_path / "g.npz", data))
    with pytest.raises(DatasetError, match="no split 'split2'.*split1"):
        imported_records(source, split=2)
    del data["split1"]
    source = FeatureSource.open(write_npz(tmp_path / "h.npz", data))
    with pytest.raises(DatasetError, match="defines no split"):
        imported_records(source, split=1)


def test_lengths_out_of_range_and_bad_paths(tmp_path):
    data = _features(("context",))
    data["lengths"][2] = T + 1
    message = _open_error(write_npz(tmp_path / "f.npz", data))
    assert "'lengths' must lie in [1, T=8]" in message
    assert "No features at" in _open_error(tmp_path / "absent.npz")
    (tmp_path / "f.txt").write_text("x")
    assert ".npz" in _open_error(tmp_path / "f.txt")
    (tmp_path / "empty").mkdir()
    assert "clips.csv" in _open_error(tmp_path / "empty")


def test_another_dataset_cannot_be_imported(tmp_path):
    config = load_config(preset="demo", overrides=[f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="data.dataset='imported'"):
        import_features(config, index=None, fold="split1")


# -- the README's worked example, as written ----------------------------------------


def _readme_section(title):
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    section = _readme_section("Bring your own features")
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})
    name = yaml.splitlines()[0].removeprefix("#").strip()  # "# my_run.yaml"
    Path(name).write_text(yaml)
    lines = [line.split("#")[0].strip() for line in commands.splitlines()]
    lines = [line for line in lines if line]
    assert [shlex.split(line)[1] for line in lines] == [
        "import-features",
        "train-lstm",
        "evaluate",
    ]
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "msl-keras"
        assert cli.main(argv[1:]) == 0, capsys.readouterr().err
    assert "evaluate: fold 'split1'" in capsys.readouterr().out
