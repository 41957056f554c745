"""train_lstm on a tiny synthetic store: selection on validation, resume, refusals."""

import csv
import importlib
import json

import numpy as np
import pytest

from msl_keras.callbacks import EpochCheckpoint, ValidationAnticipationAccuracy
from msl_keras.config import config_from_dict
from msl_keras.errors import FeatureStoreMismatchError
from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config

# msl_keras.stages exports functions named like their modules: fetch the module itself.
stage = importlib.import_module("msl_keras.stages.train_lstm")


def _history(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_best_model_is_chosen_on_validation_never_test(tmp_path, monkeypatch):
    config, index, run = make_feature_run(
        tmp_path, tiny_config(tmp_path, **{"lstm.epochs": 3})
    )
    seen = []

    class Recording(ValidationAnticipationAccuracy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self)

    monkeypatch.setattr(stage, "ValidationAnticipationAccuracy", Recording)
    best_path = stage.train_lstm(config, index, FOLD, run, verbose=0)

    fold = index.fold(FOLD)
    validation_ids = {r.clip_id for r in fold.by_role("validation")}
    test_ids = {r.clip_id for r in fold.by_role("test")}
    (callback,) = seen
    assert set(callback.clip_ids) == validation_ids
    assert not set(callback.clip_ids) & test_ids
    # The callback's arrays are the validation clips' features, row for row.
    from msl_keras.data.feature_store import FeatureStore

    with FeatureStore.open(run.store_path(FOLD)) as store:
        expected = store.read(callback.clip_ids)
    np.testing.assert_array_equal(callback.features["context"], expected["context"])
    np.testing.assert_array_equal(callback.labels, expected["labels"])

    lstm_dir = run.lstm_dir(FOLD)
    assert best_path == lstm_dir / "best.keras"
    for name in (
        "best.keras",
        "last.keras",
        "config.json",
        "history.csv",
        "state.json",
    ):
        assert (lstm_dir / name).is_file(), name
    assert (
        config_from_dict(json.loads((lstm_dir / "config.json").read_text())) == config
    )

    rows = _history(lstm_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # epochs count from 1
    scores = [float(r["val_anticipation_accuracy"]) for r in rows]
    state = json.loads((lstm_dir / "state.json").read_text())
    assert state["epochs_done"] == 3
    # The same convention as the history: the row whose epoch is best_epoch.
    best_row = rows[int(np.argmax(scores))]  # first of equal scores
    assert state["best_epoch"] == int(best_row["epoch"])
    assert state["model_selection"] == "holdout"
    assert state["trained_on"] == {"train": 12}
    assert state["best"] == pytest.approx(max(scores))
    # best.keras is that epoch's model: it scores the logged best on validation.
    assert callback.score(stage.load_lstm(best_path)) == pytest.approx(max(scores))


def test_resume_continues_where_it_stopped(tmp_path, monkeypatch):
    # One batch per epoch (batch >= train clips) and no dropout: the epoch's gradient
    # does not depend on the clip order, so a resumed run must equal an uninterrupted one.
    overrides = {"lstm.epochs": 3, "lstm.batch_size": 16}
    config, index, run = make_feature_run(
        tmp_path / "a", tiny_config(tmp_path / "a", **overrides)
    )
    best = stage.train_lstm(config, index, FOLD, run, verbose=0)
    straight = stage.load_lstm(best.parent / "last.keras")

    config_b, index_b, run_b = make_feature_run(
        tmp_path / "b", tiny_config(tmp_path / "b", **overrides)
    )

    class Interrupt(Exception):
        pass

    class KilledAfterFirstEpoch(EpochCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            raise Interrupt

    monkeypatch.setattr(stage, "EpochCheckpoint", KilledAfterFirstEpoch)
    with pytest.raises(Interrupt):
        stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    lstm_dir = run_b.lstm_dir(FOLD)
    assert json.loads((lstm_dir / "state.json").read_text())["epochs_done"] == 1
    monkeypatch.setattr(stage, "EpochCheckpoint", EpochCheckpoint)

    stage.train_lstm(config_b, index_b, FOLD, run_b, resume=True, verbose=0)
    rows = _history(lstm_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert json.loads((lstm_dir / "state.json").read_text())["epochs_done"] == 3
    resumed = stage.load_lstm(lstm_dir / "last.keras", compile=True)
    assert int(resumed.optimizer.iterations) == 3
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # A finished run is not trained again.
    before = (lstm_dir / "last.keras").stat().st_mtime_ns
    stage.train_lstm(config_b, index_b, FOLD, run_b, resume=True, verbose=0)
    assert (lstm_dir / "last.keras").stat().st_mtime_ns == before


def test_store_with_other_feature_sizes_is_refused(tmp_path):
    config, index, run = make_feature_run(tmp_path, context_dim=5)  # config says 8
    with pytest.raises(FeatureStoreMismatchError, match="context_dim"):
        stage.train_lstm(config, index, FOLD, run, verbose=0)
    assert not (run.lstm_dir(FOLD) / "best.keras").exists()


def test_single_stream_lstm_trains_on_its_stream(tmp_path):
    config = tiny_config(
        tmp_path, **{"lstm.model": "action", "lstm.epochs": 1, "lstm.loss": "ce"}
    )
    config, index, run = make_feature_run(tmp_path, config)
    model = stage.load_lstm(stage.train_lstm(config, index, FOLD, run, verbose=0))
    assert model.stream == "action" and stage.input_dims(model) == (None, 8)
    assert stage.model_outputs(config) == ("stage1",)
