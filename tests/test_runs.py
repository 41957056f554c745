"""Run directory layout, config.json round trip, refusal of a foreign run, and seeding."""

import dataclasses
import json
import random

import numpy as np
import pytest

from msl_keras.config import apply_overrides, get_preset
from msl_keras.errors import ConfigError
from msl_keras.runs import RunDirectory, fold_name, resolve_run, settings_differences
from msl_keras.seeding import onednn_enabled, pin_cpu_threads, set_seed


@pytest.fixture
def config(tmp_path):
    return apply_overrides(get_preset("demo"), {"output_dir": str(tmp_path / "runs")})


def test_layout_follows_the_contract(config, tmp_path):
    run = RunDirectory(config)
    root = tmp_path / "runs" / config.run_name()
    assert run.root == root
    assert not root.exists()  # the constructor writes nothing
    assert run.fold_dir("split1") == root / "split1"
    assert run.cnn_dir("split1") == root / "split1" / "cnn"
    assert run.store_path("split1") == root / "split1" / "features" / "split1.h5"
    assert run.store_path("set1_seq3", shard=(2, 4)) == (
        root / "set1_seq3" / "features" / "set1_seq3.shard-2-of-4.h5"
    )
    lstm = root / "split1" / "lstm" / config.lstm_run_name()
    assert run.lstm_dir("split1") == lstm
    assert run.results_dir("split1") == lstm / "results"
    assert run.best_path("split1") == lstm / "best.keras"
    assert run.trunk_cache_dir == root / "trunk_cache"
    assert run.trunk_weights_path == root / "trunk.weights.h5"
    assert run.cnn_info_path("split1") == root / "split1" / "cnn" / "cnn_info.json"


def test_what_the_folder_holds_is_read_back(config):
    run = RunDirectory.create(config)
    assert run.read_cnn_info("split1") is None and run.trained_folds() == []
    run.cnn_dir("split1").mkdir(parents=True)
    run.cnn_info_path("split1").write_text(json.dumps({"class_names": ["a", "b"]}))
    assert run.read_cnn_info("split1") == {"class_names": ["a", "b"]}
    for fold in ("split2", "split1"):
        run.lstm_dir(fold).mkdir(parents=True)
    (run.root / "split3").mkdir()  # heads or features only: no LSTM
    assert run.trained_folds() == ["split1", "split2"]


def test_fold_objects_and_bad_names(config):
    run = RunDirectory(config)

    @dataclasses.dataclass
    class Named:
        name: str

    assert run.fold_dir(Named("split2")) == run.root / "split2"
    for bad in ("", "..", "a/b", 3):
        with pytest.raises(ConfigError, match="fold"):
            fold_name(bad)
    for bad in ((4, 4), (0, 0), (-1, 2), "x"):
        with pytest.raises(ConfigError, match="shard"):
            run.store_path("split1", shard=bad)


def test_create_writes_config_and_reopens(config):
    run = RunDirectory.create(config)
    saved = json.loads(run.config_path.read_text())
    assert saved == config.to_dict() | {"eval": saved["eval"]}
    reopened = RunDirectory.open(run.root)
    assert reopened.config == config
    assert reopened.root == run.root
    # A second creator with another LSTM setting shares the run: same folder, no error.
    other_lstm = apply_overrides(config, {"lstm.loss": "ce"})
    assert other_lstm.run_name() == config.run_name()
    again = RunDirectory.create(other_lstm)
    assert again.root == run.root
    # The first creator's config.json is kept.
    assert json.loads(run.config_path.read_text())["lstm"]["loss"] == config.lstm.loss
    assert again.lstm_dir("split1") != run.lstm_dir("split1")


def test_create_refuses_a_folder_made_with_other_cnn_settings(config, tmp_path):
    root = tmp_path / "shared_root"
    RunDirectory.create(config, root=root)
    other = apply_overrides(config, {"cnn.fc_units": 32})
    with pytest.raises(ConfigError, match=r"cnn.fc_units: 64 -> 32"):
        RunDirectory.create(other, root=root)
    with pytest.raises(ConfigError, match="not a run directory"):
        RunDirectory.open(tmp_path / "nowhere")


def test_resolve_run(config, tmp_path):
    run = resolve_run(config)
    assert run.config_path.is_file()
    assert resolve_run(config, run) is run
    assert resolve_run(config, str(run.root)).root == run.root
    with pytest.raises(ConfigError):
        resolve_run(config, 3)


def test_set_seed_repeats_every_generator():
    import tensorflow as tf

    def draw():
        return (
            random.random(),
            float(np.random.rand()),
            float(tf.random.uniform(())),
        )

    set_seed(7)
    first = draw()
    set_seed(7)
    assert draw() == first
    set_seed(8)
    assert draw() != first
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)


def test_pin_cpu_threads_reports_whether_the_pools_are_pinned(monkeypatch):
    import tensorflow as tf

    pinned = pin_cpu_threads(1)
    assert pinned == (tf.config.threading.get_intra_op_parallelism_threads() == 1)
    with pytest.raises(ValueError, match="threads"):
        pin_cpu_threads(0)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not onednn_enabled()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    assert onednn_enabled()


def test_a_run_given_to_a_stage_is_bound_to_the_stages_config(config):
    """LSTMs with other losses share a run's features but never its LSTM folder."""
    run = RunDirectory.create(config)
    ce = apply_overrides(config, {"lstm.loss": "ce"})
    bound = resolve_run(ce, run)
    assert bound.root == run.root
    assert bound.lstm_dir("split1") != run.lstm_dir("split1")
    assert bound.lstm_dir("split1").name == ce.lstm_run_name()
    assert resolve_run(config, run) is run


def test_settings_differences_name_each_key(config):
    stored = json.loads(config.to_json())  # tuples come back as lists: still equal
    assert settings_differences(stored, config) == []
    other = apply_overrides(
        config, {"seed": 3, "lstm.units": 5, "output_dir": "x", "strategy": "mirrored"}
    )
    # Where a run lives and how it is distributed are not compared by default.
    assert settings_differences(stored, other) == [
        ("lstm.units", 64, 5),
        ("seed", 0, 3),
    ]
    assert settings_differences(stored, other, parts=("data", "cnn")) == []
    del stored["data"]["model_selection"]  # a config.json from before that key
    assert settings_differences(stored, config, parts=("data",)) == [
        ("data.model_selection", "(missing)", "holdout")
    ]
