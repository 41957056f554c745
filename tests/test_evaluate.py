"""evaluate: one causal pass over the test clips, results.json / accuracy.csv / accuracy.png."""

import csv
import json
import warnings

import numpy as np
import pytest

from msl_keras import metrics
from msl_keras.config import apply_overrides, get_preset
from msl_keras.data.feature_store import FeatureStore
from msl_keras.errors import ConfigError, WeightsError
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.pipeline.evaluation import check_readings, evaluate
from msl_keras.pipeline.lstm_training import train_lstm
from msl_keras.runs import load_lstm
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


# --------------------------------------------------------------------------------------
# Which step each reported point reads: refused and flagged settings


def _stored_frames(config, lengths):
    """frame_indices (clips, T) as extraction selects them for `config`."""
    from msl_keras.data.video import select_frames

    data = config.data
    frame_indices = np.full((len(lengths), data.num_steps), -1)
    for row, n in enumerate(lengths):
        chosen = select_frames(
            int(n), data.num_steps, data.frame_selection, data.observed_ratio
        )
        frame_indices[row, : len(chosen)] = chosen
    return frame_indices, np.asarray(lengths)


def _ut_lengths(shared_data):
    from pathlib import Path

    from msl_keras.data.video import count_frames

    clips = sorted(Path(shared_data, "ut_interaction").glob("segmented_set*/*.avi"))
    return [count_frames(clip) for clip in clips]


def _check(config, lengths):
    return check_readings(config, *_stored_frames(config, lengths), fold="f")


def test_ut_preset_reads_earliest_and_latest_at_different_steps(shared_data):
    """The real 120 clips: the preset's reading separates earliest from latest on every
    clip; the first 50 frames (the old default) are refused, naming the fix."""
    lengths = _ut_lengths(shared_data)
    config = get_preset("paper_ut_interaction")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no flag either
        report = _check(config, lengths)
    assert report["clips"] == 120
    assert report["points"]["earliest"]["step"] == [25, 25]
    assert report["points"]["latest"]["step"] == [50, 50]
    assert report["points"]["latest"]["share_of_clip_read"] == [1.0, 1.0]
    assert report["latest_is_whole_clip"] and report["latest_not_whole_clip"] == 0
    assert report["coinciding_readings"] == {"clips": 0, "pairs": {}}
    old = apply_overrides(config, {"data.frame_selection": "first"})
    with pytest.raises(ConfigError, match="76 of 120") as info:
        _check(old, lengths)
    assert "data.frame_selection=uniform" in str(info.value)


@pytest.mark.parametrize("preset", ["paper_ut_interaction", "paper_jhmdb"])
def test_ratio_presets_separate_earliest_from_latest_synthetic_lengths(preset):
    lengths = [15, 40, 52, 99, 120, 183]
    config = get_preset(preset)
    report = _check(config, lengths)
    assert report["latest_is_whole_clip"]
    old = apply_overrides(config, {"data.frame_selection": "first"})
    if preset == "paper_ut_interaction":  # 50% of 99+ frames covers the first 50
        with pytest.raises(ConfigError, match="3 of 6 test clips"):
            _check(old, lengths)
    else:  # 20% of 183 frames is 37 < 50: flagged, latest stops at frame 50
        with pytest.warns(UserWarning, match="'latest' does not reach the last frame"):
            report = _check(old, lengths)
        assert report["latest_not_whole_clip"] == 4  # the clips of 52+ frames
        assert not report["latest_is_whole_clip"]


def test_observed_ratio_below_one_is_refused():
    config = apply_overrides(
        get_preset("paper_ut_interaction"), {"data.observed_ratio": 0.5}
    )
    with pytest.raises(ConfigError, match="data.observed_ratio=1"):
        _check(config, [120, 60])


def test_ucf101_first_frames_flag_the_flat_ratio_curve():
    """UCF-101's latest is the first T frames (paper): not flagged; the ratios past
    T frames read step T, which is flagged with the pairs and clip counts."""
    config = get_preset("paper_ucf101")
    with pytest.warns(UserWarning, match="flat there by construction"):
        report = _check(config, [164, 40])
    assert report["latest_is_whole_clip"]
    assert report["points"]["earliest"]["step"] == [2, 2]
    # 164 frames: 0.3 observes 50 frames, so 0.3 to 1.0 all read step 50.
    assert report["coinciding_readings"]["clips"] == 1
    assert list(report["coinciding_readings"]["pairs"]) == [
        "0.3/0.4", "0.4/0.5", "0.5/0.6", "0.6/0.7", "0.7/0.8", "0.8/0.9", "0.9/1",
    ]


def test_evaluate_refuses_coinciding_earliest_and_latest_and_writes_readings(
    tmp_path, evaluated
):
    _, _, _, results = evaluated
    readings = results["readings"]
    assert readings["latest_is_whole_clip"] and readings["clips"] == 6
    assert set(readings["points"]) == {"earliest", "latest", "0.2", "0.5", "1"}
    assert results["summary"]["latest_is_whole_clip"] is True
    # The first 6 frames of 60-frame clips: 20% (12 frames) covers every stored step.
    config = tiny_config(tmp_path, **{"lstm.epochs": 1})
    config, index, run = make_feature_run(tmp_path, config, clip_frames=60)
    train_lstm(config, index, FOLD, run, verbose=0)
    with pytest.raises(ConfigError, match="read the same stored step for 6 of 6"):
        evaluate(config, index, FOLD, run, verbose=False)
