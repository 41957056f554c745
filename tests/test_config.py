"""Config presets, overrides from the command line and from files, and clear key errors."""

import json

import pytest

from msl_keras import config as cfg
from msl_keras.errors import ConfigError


@pytest.mark.parametrize("name", sorted(cfg.PRESETS))
def test_presets_build_and_round_trip(name, tmp_path):
    config = cfg.get_preset(name)
    path = tmp_path / "config.json"
    cfg.save_config(config, path)
    assert cfg.load_config(path) == config
    assert cfg.config_from_dict(config.to_dict()) == config


def test_the_benchmarks_paper_size_is_the_papers_network_on_the_demo_clips():
    paper, bench = cfg.get_preset("paper_ucf101"), cfg.get_preset("bench_paper")
    assert (bench.cnn.input_size, bench.cnn.width, bench.cnn.fc_units) == (
        paper.cnn.input_size, paper.cnn.width, paper.cnn.fc_units
    )
    assert (bench.lstm.units, bench.data.num_steps) == (
        paper.lstm.units, paper.data.num_steps
    )
    assert bench.data == cfg.apply_overrides(
        cfg.get_preset("demo"), {"data.num_steps": 50}
    ).data


def test_paper_presets_hold_the_papers_settings():
    config = cfg.get_preset("paper_ucf101")
    assert config.data.num_steps == 50
    assert config.lstm.units == 2048
    assert (config.cnn.learning_rate, config.cnn.momentum, config.cnn.weight_decay) == (
        0.001,
        0.9,
        0.0005,
    )
    assert (config.lstm.learning_rate, config.lstm.momentum, config.lstm.batch_size) == (
        0.001,
        0.9,
        32,
    )
    assert config.cnn.input_size == 224 and config.cnn.fc_units == 4096
    assert config.cnn.cam_class == "predicted"


def test_paper_presets_refit_on_every_training_clip_and_the_demo_holds_out():
    for name in ("paper_ucf101", "paper_jhmdb", "paper_ut_interaction"):
        assert cfg.get_preset(name).data.model_selection == "refit", name
    assert cfg.get_preset("demo").data.model_selection == "holdout"
    with pytest.raises(ConfigError, match="data.model_selection"):
        cfg.load_config(preset="demo", overrides=["data.model_selection=test"])


def test_overrides_coerce_strings_to_field_types():
    config = cfg.load_config(
        preset="demo",
        overrides=["lstm.units=12", "cnn.width=1/8", "cnn.augment=false", "cnn.weights=none"],
    )
    assert config.lstm.units == 12
    assert config.cnn.width == 0.125
    assert config.cnn.augment is False
    assert config.cnn.weights is None


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown config key 'lstm.unit'.*lstm\.units"):
        cfg.load_config(preset="demo", overrides=["lstm.unit=3"])
    with pytest.raises(ConfigError, match="Unknown config key 'nope'"):
        cfg.apply_overrides(cfg.get_preset("demo"), {"nope": 1})


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="lstm.loss|lstm.model"):
        cfg.load_config(preset="demo", overrides=["lstm.model=gru"])
    with pytest.raises(ConfigError, match="must be a whole number"):
        cfg.load_config(preset="demo", overrides=["lstm.units=many"])
    with pytest.raises(ConfigError, match="Valid presets"):
        cfg.get_preset("paper_kinetics")


def test_yaml_file_with_preset_and_nested_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: paper_jhmdb\nlstm:\n  loss: ce\n  units: 256\nseed: 7\n")
    config = cfg.load_config(path, overrides=["data.split=3"])
    assert config.data.dataset == "jhmdb"
    assert (config.lstm.loss, config.lstm.units, config.seed, config.data.split) == (
        "ce",
        256,
        7,
        3,
    )


def test_run_names_follow_the_settings_that_make_them():
    a = cfg.get_preset("demo")
    b = cfg.apply_overrides(a, {"lstm.loss": "ce"})
    c = cfg.apply_overrides(a, {"cnn.fc_units": 32})
    # LSTMs with other losses share the features of one run directory.
    assert a.run_name() == b.run_name() and a.lstm_run_name() != b.lstm_run_name()
    assert "_ce_" in b.lstm_run_name()
    assert a.run_name() != c.run_name()
    assert a.run_name() == cfg.get_preset("demo").run_name()
    # The seed makes the LSTM too: LSTMs of two seeds never share a folder (issue 14).
    seeded = cfg.apply_overrides(a, {"seed": 1})
    assert a.lstm_run_name() != seeded.lstm_run_name() and "seed1" in seeded.lstm_run_name()
    placed = cfg.apply_overrides(a, {"output_dir": "elsewhere", "strategy": "mirrored"})
    assert a.lstm_run_name() == placed.lstm_run_name()
    json.loads(a.to_json())


def test_paper_presets_read_earliest_and_latest_faithfully():
    """UT-Interaction and JHMDB (earliest = a ratio of the clip) spread T frames over the
    whole clip; UCF-101 (earliest = 2 frames, latest <= the first T) keeps the first T.
    The UT-Interaction preset runs both sets (Table 2: 20 folds)."""
    ut = cfg.get_preset("paper_ut_interaction")
    assert (ut.data.frame_selection, ut.data.observed_ratio) == ("uniform", 1.0)
    assert ut.data.ut_set is None and ut.data.ut_test_sequence is None
    assert "_sets1-2_" in ut.run_name()
    assert "_set2_" in cfg.apply_overrides(ut, {"data.ut_set": "2"}).run_name()
    assert cfg.get_preset("paper_jhmdb").data.frame_selection == "uniform"
    assert cfg.get_preset("paper_ucf101").data.frame_selection == "first"
    assert cfg.get_preset("demo").data.frame_selection == "first"


def test_compute_dtypes_round_trip_and_bad_ones_are_refused(tmp_path):
    config = cfg.get_preset("demo")
    assert config.cnn.compute_dtype == config.lstm.compute_dtype == "float32"
    config = cfg.load_config(
        preset="demo",
        overrides=["cnn.compute_dtype=bfloat16", "lstm.compute_dtype=float16"],
    )
    assert (config.cnn.compute_dtype, config.lstm.compute_dtype) == (
        "bfloat16",
        "float16",
    )
    path = tmp_path / "config.json"
    cfg.save_config(config, path)
    assert cfg.load_config(path) == config
    assert cfg.config_from_dict(config.to_dict()) == config
    # Heads and features made in another precision get their own run directory.
    assert config.run_name() != cfg.get_preset("demo").run_name()
    for key in ("cnn.compute_dtype", "lstm.compute_dtype"):
        with pytest.raises(ConfigError, match=f"{key} must be one of 'float32'"):
            cfg.load_config(preset="demo", overrides=[f"{key}=int8"])
