"""train_lstm on a tiny synthetic store: selection on validation, resume, refusals."""

import csv
import functools
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from msl_keras import metrics
from msl_keras.callbacks import causal_forward
from msl_keras.config import Config, apply_overrides, config_from_dict
from msl_keras.data.feature_store import FeatureStore
from msl_keras.errors import ConfigError, FeatureStoreMismatchError
from msl_keras.pipeline.evaluation import evaluate
from msl_keras.runs import load_lstm
from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config

import msl_keras.pipeline.lstm_training as stage  # noqa: E402


def _history(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_best_model_is_chosen_on_validation_never_test(tmp_path, monkeypatch):
    config, index, run = make_feature_run(
        tmp_path, tiny_config(tmp_path, **{"lstm.epochs": 3})
    )
    scored = []  # the clips of fit's validation pass
    original_dataset = stage.sequence_dataset

    def recording_dataset(arrays, **kwargs):
        if not kwargs.get("shuffle"):
            scored.append(arrays)
        return original_dataset(arrays, **kwargs)

    monkeypatch.setattr(stage, "sequence_dataset", recording_dataset)
    best_path = stage.train_lstm(config, index, FOLD, run, verbose=0)

    fold = index.fold(FOLD)
    validation_ids = {r.clip_id for r in fold.by_role("validation")}
    test_ids = {r.clip_id for r in fold.by_role("test")}
    (validation,) = scored
    clip_ids = [str(c) for c in validation["clip_ids"]]
    assert set(clip_ids) == validation_ids
    assert not set(clip_ids) & test_ids
    # The scored arrays are the validation clips' features, row for row.
    with FeatureStore.open(run.store_path(FOLD)) as store:
        expected = store.read(clip_ids)
    np.testing.assert_array_equal(validation["context"], expected["context"])
    np.testing.assert_array_equal(validation["labels"], expected["labels"])

    lstm_dir = run.lstm_dir(FOLD)
    assert best_path == lstm_dir / "best.keras"
    for name in (
        "best.keras",
        "last.keras",
        "config.json",
        "history.csv",
        "training.json",
    ):
        assert (lstm_dir / name).is_file(), name
    assert not (lstm_dir / "backup").exists()  # a finished fit keeps no backup
    assert (
        config_from_dict(json.loads((lstm_dir / "config.json").read_text())) == config
    )

    rows = _history(lstm_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # epochs count from 1
    scores = [float(r[stage.selection_monitor(load_lstm(best_path))]) for r in rows]
    state = json.loads((lstm_dir / "training.json").read_text())
    assert state["epochs_done"] == 3
    # The same convention as the history: the row whose epoch is best_epoch.
    best_row = rows[int(np.argmax(scores))]  # first of equal scores
    assert state["best_epoch"] == int(best_row["epoch"])
    assert state["model_selection"] == "holdout"
    assert state["trained_on"] == {"train": 12}
    assert state["best"] == pytest.approx(max(scores))
    # best.keras is that epoch's model: the numpy score of one causal pass over the
    # validation clips (mean over steps of the pooled accuracy) is the logged best.
    probs = causal_forward(
        load_lstm(best_path), {s: validation[s] for s in ("context", "action")}
    )["stage2"]
    curve = metrics.accuracy_vs_steps(
        probs, validation["labels"], validation["lengths"], pooled=True
    )
    assert float(np.mean(curve)) == pytest.approx(max(scores))


class Interrupt(Exception):
    pass


def _kill_after_backup(monkeypatch, directory_name=None):
    """Interrupts a fit right after `BackupAndRestore` backed up an epoch (of the fit in
    a folder named `directory_name`, or any fit)."""

    class KilledAfterBackup(keras.callbacks.BackupAndRestore):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            folder = Path(self.backup_dir).parent.name
            if directory_name is None or folder == directory_name:
                raise Interrupt

    monkeypatch.setattr(keras.callbacks, "BackupAndRestore", KilledAfterBackup)


def _straight_then_interrupted(tmp_path, monkeypatch, overrides):
    """The best checkpoint of a run trained straight through (folder "a"), and the same
    run (folder "b") interrupted after its first epoch's backup: `(best, (config, index,
    run))`, the second ready to be resumed."""
    config, index, run = make_feature_run(
        tmp_path / "a", tiny_config(tmp_path / "a", **overrides)
    )
    best = stage.train_lstm(config, index, FOLD, run, verbose=0)
    config_b, index_b, run_b = make_feature_run(
        tmp_path / "b", tiny_config(tmp_path / "b", **overrides)
    )
    with monkeypatch.context() as patch:
        _kill_after_backup(patch)
        with pytest.raises(Interrupt):
            stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    return best, (config_b, index_b, run_b)


def test_resume_continues_where_it_stopped(tmp_path, monkeypatch):
    # One batch per epoch (batch >= train clips) and no dropout: the epoch's gradient
    # does not depend on the clip order, so a resumed run must equal an uninterrupted one.
    overrides = {"lstm.epochs": 3, "lstm.batch_size": 16}
    best, (config_b, index_b, run_b) = _straight_then_interrupted(
        tmp_path, monkeypatch, overrides
    )
    straight = load_lstm(best.parent / "last.keras")
    lstm_dir = run_b.lstm_dir(FOLD)
    assert [int(r["epoch"]) for r in _history(lstm_dir / "history.csv")] == [1]
    assert (lstm_dir / "backup").is_dir() and not (lstm_dir / "training.json").exists()

    stage.train_lstm(config_b, index_b, FOLD, run_b, resume=True, verbose=0)
    rows = _history(lstm_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert json.loads((lstm_dir / "training.json").read_text())["epochs_done"] == 3
    resumed = load_lstm(lstm_dir / "last.keras", compile=True)
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
    model = load_lstm(stage.train_lstm(config, index, FOLD, run, verbose=0))
    assert model.stream == "action" and model.input_dims == {"action": 8}
    assert model.stage_names == ("stage1",)
    # One output: Keras logs the selection score without an output prefix.
    (row,) = _history(run.lstm_dir(FOLD) / "history.csv")
    assert stage.selection_monitor(model) == "val_anticipation_accuracy"
    assert 0.0 <= float(row["val_anticipation_accuracy"]) <= 1.0
    record = json.loads((run.lstm_dir(FOLD) / "training.json").read_text())
    assert record["best_epoch"] == 1


def _weights(path):
    return load_lstm(path).get_weights()


def test_another_seed_trains_its_own_lstm(tmp_path):
    """Issue 14: a run folder given with another seed gets a new LSTM, never the old one."""
    config, index, run = make_feature_run(
        tmp_path, tiny_config(tmp_path, **{"lstm.epochs": 1})
    )
    first = stage.train_lstm(config, index, FOLD, run, verbose=0)
    other = apply_overrides(config, {"seed": 1})
    second = stage.train_lstm(other, index, FOLD, run, verbose=0)
    assert first.parent != second.parent and "seed1" in second.parent.name
    stored = [json.loads((p.parent / "config.json").read_text())["seed"] for p in (first, second)]
    assert stored == [0, 1]
    assert any(
        not np.array_equal(a, b) for a, b in zip(_weights(first), _weights(second))
    )


def test_resume_refuses_other_settings_and_keeps_its_config(tmp_path, monkeypatch):
    """A folder made with other settings (here: the old folder name, which did not hash
    the seed) is neither resumed nor relabelled; resume=False starts it over."""
    config, index, run = make_feature_run(
        tmp_path, tiny_config(tmp_path, **{"lstm.epochs": 1})
    )
    monkeypatch.setattr(Config, "lstm_run_name", lambda self: "ms_lstm_old_name")
    stage.train_lstm(config, index, FOLD, run, verbose=0)
    lstm_dir = run.lstm_dir(FOLD)
    stored = (lstm_dir / "config.json").read_text()
    before = (lstm_dir / "last.keras").stat().st_mtime_ns

    other = apply_overrides(
        config, {"seed": 1, "lstm.learning_rate": 0.1, "cnn.learning_rate": 0.01}
    )
    with pytest.raises(ConfigError) as error:
        stage.train_lstm(other, index, FOLD, run, verbose=0)
    message = str(error.value)
    assert "seed: 0 -> 1" in message and "lstm.learning_rate: 0.5 -> 0.1" in message
    # Settings the folder name does not hash, from a run folder passed explicitly.
    assert "cnn.learning_rate: 0.05 -> 0.01" in message
    assert "output_dir" in message and "resume=False" in message
    assert "lstm.units" not in message  # only the keys that differ
    assert (lstm_dir / "config.json").read_text() == stored
    assert (lstm_dir / "last.keras").stat().st_mtime_ns == before

    # Where the run lives and how it is distributed are not settings of the LSTM.
    stage.train_lstm(
        apply_overrides(config, {"name": "renamed", "output_dir": str(tmp_path / "x")}),
        index,
        FOLD,
        run,
        verbose=0,
    )
    assert (lstm_dir / "last.keras").stat().st_mtime_ns == before

    stage.train_lstm(other, index, FOLD, run, resume=False, verbose=0)
    assert json.loads((lstm_dir / "config.json").read_text())["seed"] == 1


def _refit_config(tmp_path, **overrides):
    # One batch per epoch (batch >= 18 clips) and no dropout: training does not depend
    # on the clip order, so a resumed run equals an uninterrupted one.
    settings = {
        "data.model_selection": "refit",
        "lstm.epochs": 3,
        "lstm.batch_size": 32,
        **overrides,
    }
    return tiny_config(tmp_path, **settings)


def _scores_by_epoch(monkeypatch, scores):
    """Selection scores fixed per epoch (one batch per epoch: iterations = epochs)."""
    built = []
    original_build = stage.build_lstm

    def recording_build(*args, **kwargs):
        built.append(original_build(*args, **kwargs))
        return built[-1]

    def result(self):  # of the model being fitted
        return ops.take(ops.convert_to_tensor(scores), built[-1].optimizer.iterations - 1)

    monkeypatch.setattr(stage, "build_lstm", recording_build)
    monkeypatch.setattr(metrics.AnticipationAccuracy, "result", result)


def test_a_resumed_run_keeps_the_best_epoch_from_before_the_interruption(
    tmp_path, monkeypatch
):
    """BackupAndRestore does not back up ModelCheckpoint's best score: the resumed run
    must start it from the history, or a worse later epoch would replace best.keras."""
    _scores_by_epoch(monkeypatch, [0.6, 0.2, 0.4])  # epoch 1 is the best
    overrides = {"lstm.epochs": 3, "lstm.batch_size": 32}
    best, (config_b, index_b, run_b) = _straight_then_interrupted(
        tmp_path, monkeypatch, overrides
    )
    straight = _weights(best)
    best = stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    record = json.loads((best.parent / "training.json").read_text())
    assert (record["best_epoch"], record["epochs_done"]) == (1, 3)
    assert record["best"] == pytest.approx(0.6)
    assert int(load_lstm(best, compile=True).optimizer.iterations) == 1
    for a, b in zip(straight, _weights(best)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_refit_trains_on_train_and_validation_from_the_same_start(tmp_path, monkeypatch):
    config, index, run = make_feature_run(tmp_path, _refit_config(tmp_path))
    _scores_by_epoch(monkeypatch, [0.2, 0.6, 0.4])  # epoch 2 is the best
    fitted, initial, read = [], [], []
    original_dataset, original_build = stage.sequence_dataset, stage.build_lstm
    original_read = FeatureStore.read

    def recording_dataset(arrays, **kwargs):
        if kwargs.get("shuffle"):  # the clips a model is fitted on
            fitted.append(sorted(str(c) for c in arrays["clip_ids"]))
        return original_dataset(arrays, **kwargs)

    def recording_build(*args, **kwargs):
        model = original_build(*args, **kwargs)
        initial.append(model.get_weights())
        return model

    def recording_read(self, clip_ids=None, **kwargs):
        arrays = original_read(self, clip_ids, **kwargs)
        read.extend(str(c) for c in arrays["clip_ids"])
        return arrays

    monkeypatch.setattr(stage, "sequence_dataset", recording_dataset)
    monkeypatch.setattr(stage, "build_lstm", recording_build)
    monkeypatch.setattr(FeatureStore, "read", recording_read)
    best = stage.train_lstm(config, index, FOLD, run, verbose=0)

    fold = index.fold(FOLD)
    ids = {
        role: sorted(r.clip_id for r in fold.by_role(role))
        for role in ("train", "validation", "test")
    }
    # Selection on the train clips, then the refit on train + validation; never test.
    assert fitted == [ids["train"], sorted(ids["train"] + ids["validation"])]
    assert not set(read) & set(ids["test"])
    # Both models start from the same initial weights (the same seed).
    assert len(initial) == 2
    for a, b in zip(*initial):
        np.testing.assert_array_equal(a, b)

    lstm_dir = run.lstm_dir(FOLD)
    state = json.loads((lstm_dir / "training.json").read_text())
    assert state["best_epoch"] == 2 and state["epochs_done"] == 3
    assert state["model_selection"] == "refit"
    refit = json.loads((lstm_dir / "refit" / "training.json").read_text())
    assert refit["epochs"] == refit["epochs_done"] == 2
    assert refit["trained_on"] == {"train": 12, "validation": 6}
    assert [int(r["epoch"]) for r in _history(lstm_dir / "refit" / "history.csv")] == [1, 2]
    # best.keras is the refit model, after two passes over the 18 clips.
    model = load_lstm(best, compile=True)
    assert int(model.optimizer.iterations) == 2
    for a, b in zip(model.get_weights(), _weights(lstm_dir / "refit" / "last.keras")):
        np.testing.assert_array_equal(a, b)

    monkeypatch.setattr(FeatureStore, "read", original_read)
    results = evaluate(config, index, FOLD, run, verbose=False)
    assert results["checkpoint"]["model_selection"] == "refit"
    assert results["checkpoint"]["best_epoch"] == 2
    assert results["checkpoint"]["refit"] == {
        "epochs": 2,
        "epochs_done": 2,
        "trained_on": {"train": 12, "validation": 6},
    }


def test_refit_resumes_its_second_phase(tmp_path, monkeypatch):
    """Killed in the refit, a run skips the finished selection and resumes the refit
    (a kill during selection is the holdout resume above: the same code)."""
    _scores_by_epoch(monkeypatch, [0.2, 0.6, 0.4])
    config, index, run = make_feature_run(tmp_path / "a", _refit_config(tmp_path / "a"))
    straight = _weights(stage.train_lstm(config, index, FOLD, run, verbose=0))

    config_b, index_b, run_b = make_feature_run(
        tmp_path / "b", _refit_config(tmp_path / "b")
    )

    lstm_dir = run_b.lstm_dir(FOLD)
    with monkeypatch.context() as patch:
        _kill_after_backup(patch, "refit")
        with pytest.raises(Interrupt):
            stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    assert json.loads((lstm_dir / "training.json").read_text())["epochs_done"] == 3
    assert [int(r["epoch"]) for r in _history(lstm_dir / "refit" / "history.csv")] == [1]
    assert not (lstm_dir / "refit" / "training.json").exists()
    assert not (lstm_dir / "best.keras").exists()  # no model to evaluate yet
    selection_done = (lstm_dir / "last.keras").stat().st_mtime_ns
    best = stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    assert (lstm_dir / "last.keras").stat().st_mtime_ns == selection_done
    assert [int(r["epoch"]) for r in _history(lstm_dir / "history.csv")] == [1, 2, 3]
    assert [int(r["epoch"]) for r in _history(lstm_dir / "refit" / "history.csv")] == [1, 2]
    for a, b in zip(straight, _weights(best)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # A finished run trains nothing more, in either phase.
    stamps = [(d / "last.keras").stat().st_mtime_ns for d in (lstm_dir, lstm_dir / "refit")]
    stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    assert stamps == [
        (d / "last.keras").stat().st_mtime_ns for d in (lstm_dir, lstm_dir / "refit")
    ]


def test_float16_lstm_trains_with_loss_scaling(tmp_path):
    import keras

    config = tiny_config(tmp_path, **{"lstm.compute_dtype": "float16"})
    model = stage.compile_lstm(stage.build_lstm(config, 3, 8, 8), config)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.stage1_lstm.cell.compute_dtype == "float16"
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    inputs = {
        "context": rng.normal(size=(4, 6, 8)).astype("float32"),
        "action": rng.normal(size=(4, 6, 8)).astype("float32"),
    }
    labels = keras.ops.one_hot(np.arange(4) % 3, 3)
    targets = {k: np.repeat(labels[:, None], 6, axis=1) for k in ("stage1", "stage2")}
    logs = model.fit(inputs, targets, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    after = model.get_weights()
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_store_of_another_compute_dtype_is_refused(tmp_path):
    config, index, run = make_feature_run(tmp_path)  # features made in float32
    other = apply_overrides(config, {"cnn.compute_dtype": "bfloat16"})
    with pytest.raises(FeatureStoreMismatchError, match="compute_dtype"):
        stage.train_lstm(other, index, FOLD, run, verbose=0)
    assert not (run.lstm_dir(FOLD) / "best.keras").exists()


def test_end_of_fit_checkpoints_write_the_same_best_model_once(tmp_path, monkeypatch):
    """`checkpoints="end_of_fit"` keeps the best epoch in memory: one write, no backup,
    and the same best.keras and training.json as the per-epoch checkpoints."""
    overrides = {"lstm.epochs": 4}
    config, index, run = make_feature_run(
        tmp_path / "a", tiny_config(tmp_path / "a", **overrides)
    )
    per_epoch = stage.train_lstm(config, index, FOLD, run, verbose=0)
    overrides["checkpoints"] = "end_of_fit"
    config_b, index_b, run_b = make_feature_run(
        tmp_path / "b", tiny_config(tmp_path / "b", **overrides)
    )
    saved = []
    original_save = keras.Model.save

    def recording_save(model, path, *args, **kwargs):
        saved.append(Path(path).name)
        return original_save(model, path, *args, **kwargs)

    class NoBackup(keras.callbacks.BackupAndRestore):
        def __init__(self, *args, **kwargs):
            raise AssertionError("end_of_fit made a BackupAndRestore")

    monkeypatch.setattr(keras.Model, "save", recording_save)
    monkeypatch.setattr(keras.callbacks, "BackupAndRestore", NoBackup)
    at_end = stage.train_lstm(config_b, index_b, FOLD, run_b, verbose=0)
    assert saved == ["best.tmp.keras"]
    lstm_dir = run_b.lstm_dir(FOLD)
    assert at_end == lstm_dir / "best.keras" and not (lstm_dir / "last.keras").exists()
    records = [(p.parent / "training.json").read_text() for p in (per_epoch, at_end)]
    first, second = map(json.loads, records)
    assert first == second and second["epochs_done"] == 4
    for a, b in zip(_weights(per_epoch), _weights(at_end)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_model_in_memory_scores_as_its_best_keras(tmp_path):
    """`return_model`: the fitted model when it holds best.keras's weights, which
    `evaluate` then scores as it scores the file; None when the fit had finished or
    "every_epoch" kept an earlier epoch in best.keras."""
    train = functools.partial(stage.train_lstm, verbose=0, return_model=True)
    at_end = {"lstm.epochs": 3, "checkpoints": "end_of_fit"}
    refit = {"lstm.epochs": 3, "data.model_selection": "refit"}
    for name, overrides in (("end_of_fit", at_end), ("refit", refit)):
        where = tmp_path / name
        config, index, run = make_feature_run(where, tiny_config(where, **overrides))
        best, model = train(config, index, FOLD, run)
        for a, b in zip(model.get_weights(), load_lstm(best).get_weights()):
            np.testing.assert_array_equal(a, b)
        in_memory = evaluate(config, index, FOLD, run, verbose=0, model=model)
        loaded = evaluate(config, index, FOLD, run, verbose=0)
        assert in_memory["stages"] == loaded["stages"]
        assert train(config, index, FOLD, run) == (best, None)  # already trained
    every = tiny_config(tmp_path / "b", **{"lstm.epochs": 3})
    config_b, index_b, run_b = make_feature_run(tmp_path / "b", every)
    assert train(config_b, index_b, FOLD, run_b)[1] is None


@pytest.mark.parametrize("selection", ["end_of_fit", "refit"])
def test_a_reused_lstm_trains_as_a_new_build_without_tracing_again(
    tmp_path, monkeypatch, selection
):
    """`reuse_models`: the second fold's LSTM is the first fold's object, set back to
    its fresh build (weights, dropout seeds, SGD momenta, step count), so it ends with
    the weights a new build ends with; it is not built again, and Keras keeps its train
    function (made, and traced, only when `train_function` is None)."""
    monkeypatch.setattr(stage, "_BUILT", {})
    builds = []
    build = stage.build_lstm
    monkeypatch.setattr(stage, "build_lstm", lambda *a: builds.append(1) or build(*a))
    train = functools.partial(stage.train_lstm, verbose=0, return_model=True)
    overrides = {"lstm.epochs": 3, "lstm.dropout": 0.5, "checkpoints": "end_of_fit"}
    if selection == "refit":  # the refit is the same model's third fit
        overrides = {**overrides, "data.model_selection": "refit"}
    trained = {}
    for reuse in (False, True):
        for data_seed in (0, 1):  # two folds: different features, same shapes
            where = tmp_path / f"{reuse}_{data_seed}"
            config = tiny_config(where, reuse_models=reuse, **overrides)
            config, index, run = make_feature_run(where, config, seed=data_seed)
            best, model = train(config, index, FOLD, run)
            trained[reuse, data_seed] = model, model.train_function, model.get_weights()
    fits = 2 if selection == "refit" else 1
    assert len(builds) == 2 * fits + 1  # each fit a new build, then one for all reused
    first, second = trained[True, 0], trained[True, 1]
    assert second[0] is first[0] and second[1] is first[1]
    assert trained[False, 0][0] is not trained[False, 1][0]
    # The two folds train to different weights; each reused fit ends as its new build.
    fold_0, fold_1 = trained[False, 0][2], trained[False, 1][2]
    assert not all(np.array_equal(a, b) for a, b in zip(fold_0, fold_1))
    for data_seed in (0, 1):
        for a, b in zip(trained[False, data_seed][2], trained[True, data_seed][2]):
            np.testing.assert_array_equal(a, b)
