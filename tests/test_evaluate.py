"""evaluate: one causal pass over the test clips, results.json / accuracy.csv / accuracy.png."""

import csv
import json

import numpy as np
import pytest

from msl_keras import metrics
from msl_keras.data.feature_store import FeatureStore
from msl_keras.errors import WeightsError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.stages.evaluate import evaluate
from msl_keras.stages.train_lstm import load_lstm, train_lstm
from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("evaluate")
    config = tiny_config(tmp_path, **{"lstm.epochs": 2, "eval.ratios": (0.2, 0.5, 1.0)})
    config, index, run = make_feature_run(tmp_path, config, num_classes=3)
    train_lstm(config, index, FOLD, run, verbose=0)
    results = evaluate(config, index, FOLD, run, verbose=False)
    return config, index, run, results


def test_results_files_and_keys(evaluated):
    config, _, run, results = evaluated
    T = config.data.num_steps
    results_dir = run.results_dir(FOLD)
    on_disk = json.loads((results_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    for key in (
        "dataset",
        "fold",
        "config",
        "clips",
        "stages",
        "summary",
        "checkpoint",
    ):
        assert key in results
    assert results["dataset"] == "generated" and results["fold"] == FOLD
    assert results["clips"] == {
        "train": 12,
        "validation": 6,
        "test": 6,
        "test_evaluated": 6,
        "test_missing": [],
    }
    assert results["config"]["lstm"]["units"] == 8
    assert set(results["stages"]) == {"stage1", "stage2"}
    assert results["summary"]["stage"] == "stage2"
    for scores in results["stages"].values():
        for curve in (
            "accuracy_vs_steps",
            "accuracy_vs_steps_pooled",
            "top_k_vs_steps",
            "top_k_vs_steps_pooled",
        ):
            assert len(scores[curve]) == T
            assert all(0.0 <= v <= 1.0 for v in scores[curve])
        # top-2 is never below top-1
        assert np.all(
            np.array(scores["top_k_vs_steps"]) >= np.array(scores["accuracy_vs_steps"])
        )
        assert set(scores["ratios"]) == {"0.2", "0.5", "1"}
        assert scores["ratios"]["1"]["pooled"] == pytest.approx(scores["latest"])
        for key in ("earliest", "latest", "earliest_raw", "latest_raw"):
            assert 0.0 <= scores[key] <= 1.0
    with open(results_dir / "accuracy.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["t"]) for r in rows] == list(range(1, T + 1))
    assert [float(r["stage2_pooled"]) for r in rows] == pytest.approx(
        results["stages"]["stage2"]["accuracy_vs_steps_pooled"]
    )
    assert (results_dir / "accuracy.png").stat().st_size > 1000


def test_one_pass_equals_rerunning_every_prefix(evaluated):
    config, index, run, results = evaluated
    test_ids = [r.clip_id for r in index.fold(FOLD).by_role("test")]
    with FeatureStore.open(run.store_path(FOLD)) as store:
        test = store.read(test_ids)
    model = load_lstm(run.lstm_dir(FOLD))
    T = config.data.num_steps
    x = {"context": test["context"], "action": test["action"]}
    # The slow way the original code did it: run the model on each prefix 1..t.
    prefix = {stage: np.zeros((len(test_ids), T, 3)) for stage in ("stage1", "stage2")}
    for t in range(1, T + 1):
        out = model({k: v[:, :t] for k, v in x.items()}, training=False)
        for stage in prefix:
            prefix[stage][:, t - 1] = np.asarray(out[stage])[:, t - 1]
    for stage, scores in results["stages"].items():
        labels, lengths = test["labels"], test["lengths"]
        raw = metrics.accuracy_vs_steps(prefix[stage], labels, lengths, pooled=False)
        pooled = metrics.accuracy_vs_steps(prefix[stage], labels, lengths)
        np.testing.assert_allclose(scores["accuracy_vs_steps"], raw)
        np.testing.assert_allclose(scores["accuracy_vs_steps_pooled"], pooled)
    # and the probabilities themselves agree
    one_pass = model(x, training=False)
    np.testing.assert_allclose(
        np.asarray(one_pass["stage2"]), prefix["stage2"], atol=1e-5
    )
    # pooled accuracy at t by hand for the last step
    pooled_probs = temporal_average_pooling(prefix["stage2"], test["lengths"])
    last = pooled_probs[np.arange(len(test_ids)), test["lengths"] - 1].argmax(-1)
    assert results["stages"]["stage2"]["latest"] == pytest.approx(
        np.mean(last == test["labels"])
    )


def test_missing_model_says_train_first(tmp_path):
    config, index, run = make_feature_run(tmp_path)
    with pytest.raises(WeightsError, match="Train one first"):
        evaluate(config, index, FOLD, run, verbose=False)
