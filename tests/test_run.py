"""run_all / summarize: every fold of a protocol, reported per UT-Interaction set and overall."""

import json
import os

import pytest

from msl_keras.config import apply_overrides, get_preset
from msl_keras.pipeline.dataset_index import prepare
from msl_keras.errors import ConfigError
from msl_keras.orchestrator import (
    format_summary, prune_fold, run_all, run_fold, summarize,
)  # fmt: skip
from msl_keras.runs import RunDirectory
from tests.lstm_fixtures import FOLD, make_feature_run


def _result(fold, subset, earliest, latest):
    """The parts of an `evaluate` result that `summarize` reads."""
    return {
        "fold": fold,
        "subset": subset,
        "summary": {
            "earliest": earliest,
            "latest": latest,
            "earliest_raw": earliest,
            "latest_raw": latest,
            "mean_accuracy_pooled": (earliest + latest) / 2,
            "latest_is_whole_clip": True,
            "coinciding_readings": 0,
        },
    }


def test_summary_reports_each_set_and_their_mean():
    results = [
        _result("set1_seq1", "set1", 0.5, 1.0),
        _result("set1_seq2", "set1", 0.7, 1.0),
        _result("set2_seq11", "set2", 0.2, 0.4),
        _result("set2_seq12", "set2", 0.4, 0.6),
    ]
    summary = summarize(results)
    assert list(summary["per_set"]) == ["set1", "set2"]
    assert summary["per_set"]["set1"]["folds"] == ["set1_seq1", "set1_seq2"]
    assert summary["per_set"]["set1"]["earliest"] == pytest.approx(0.6)
    assert summary["per_set"]["set2"]["latest"] == pytest.approx(0.5)
    assert summary["per_set"]["set2"]["earliest_std"] == pytest.approx(0.1)
    # Equal folds per set: the mean over folds is the mean of the two sets.
    assert summary["earliest"] == pytest.approx((0.6 + 0.3) / 2)
    assert summary["latest"] == pytest.approx((1.0 + 0.5) / 2)
    assert summary["latest_not_whole_clip"] == [] and summary["coinciding_readings"] == []
    text = format_summary(get_preset("paper_ut_interaction"), summary)
    assert "set1" in text and "set2" in text and "mean" in text
    # Datasets with one split have no sets.
    assert summarize([_result("split1", None, 0.5, 0.5)])["per_set"] == {}


def test_a_variant_changes_only_the_lstm_it_trains():
    """The variants of a fold share its heads and features: a setting that makes other
    features is refused before anything runs."""
    with pytest.raises(ConfigError, match=r"Variant 'wide' sets cnn\.fc_units"):
        run_fold(
            get_preset("demo"), None, "split1", None,
            variants={"ce": {"lstm.loss": "ce"}, "wide": {"cnn.fc_units": 128}},
        )  # fmt: skip


def test_a_pruned_fold_returns_its_stored_results(tmp_path):
    """`prune_fold` deletes a scored fold's .keras files; `run_fold` then reads its
    results back instead of training again (the synthetic fold has no clip to train
    on). A variant without results is refused by both."""
    config, index, run = make_feature_run(tmp_path)
    variants = {"ce": {"lstm.loss": "ce"}, "default": {}}
    kept = []
    for name in ("context_head.keras", "action_head.keras"):
        kept.append(run.cnn_dir(FOLD) / name)
    for name, overrides in variants.items():
        variant = RunDirectory(apply_overrides(config, overrides), root=run.root)
        refit = variant.lstm_dir(FOLD) / "refit" / "last.keras"
        kept += [variant.best_path(FOLD), refit]
        results = variant.results_dir(FOLD) / "results.json"
        if name == "ce":
            results.parent.mkdir(parents=True)
            results.write_text(json.dumps({"fold": FOLD, "loss": "ce"}))
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"model")
    with pytest.raises(ConfigError, match="default has no results"):
        prune_fold(config, FOLD, run, variants)
    assert all(path.is_file() for path in kept)
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"fold": FOLD, "loss": "anticipation"}))
    assert sorted(prune_fold(config, FOLD, run, variants)) == sorted(kept)
    assert not any(path.exists() for path in kept) and results.is_file()
    assert run_fold(config, index, FOLD, run, variants=variants, verbose=0) == {
        "ce": {"fold": FOLD, "loss": "ce", "timings_s": {}},
        "default": {"fold": FOLD, "loss": "anticipation", "timings_s": {}},
    }
    with pytest.raises(ConfigError, match="was pruned .* no results for jain"):
        run_fold(config, index, FOLD, run, variants={"jain": {"lstm.loss": "jain"}})


@pytest.mark.slow
def test_both_sets_end_to_end_on_real_clips(shared_data, tmp_path, capsys):
    """The paper preset at a tiny size on one real clip per sequence (20 clips): the
    fold list holds both sets' 20 folds; one fold of each runs every stage, and the
    summary has set 1, set 2 and their mean."""
    root = tmp_path / "ut"
    for set_number, sequences in ((1, range(1, 11)), (2, range(11, 21))):
        folder = root / f"segmented_set{set_number}"
        folder.mkdir(parents=True)
        for sequence in sequences:
            source = shared_data / "ut_interaction" / f"segmented_set{set_number}"
            clip = sorted(source.glob(f"*_{sequence}_{sequence % 6}.avi"))[0]
            os.symlink(clip, folder / clip.name)
    config = apply_overrides(
        get_preset("paper_ut_interaction"),
        {
            "data.root": str(root),
            "output_dir": str(tmp_path / "runs"),
            "data.num_steps": 4,
            "cnn.weights": None,
            "cnn.input_size": 32,
            "cnn.width": 1 / 32,
            "cnn.fc_units": 8,
            "cnn.cam_filters": 4,
            "cnn.frames_per_clip": 2,
            "cnn.augment_views": 1,
            "cnn.epochs": 1,
            "cnn.batch_size": 8,
            "lstm.units": 8,
            "lstm.epochs": 1,
            "lstm.batch_size": 4,
            "eval.ratios": (0.5, 1.0),
        },
    )
    index = prepare(config)
    assert len(index.folds) == 20
    assert {f.subset for f in index.folds} == {"set1", "set2"}
    folds = [index.fold("set1_seq1"), index.fold("set2_seq11")]
    outcome = run_all(config, index=index, folds=folds, verbose=True)
    summary = outcome["summary"]
    assert summary["folds"] == ["set1_seq1", "set2_seq11"]
    assert list(summary["per_set"]) == ["set1", "set2"]
    for means in summary["per_set"].values():
        assert 0.0 <= means["earliest"] <= 1.0 and 0.0 <= means["latest"] <= 1.0
    assert summary["earliest"] == pytest.approx(
        (summary["per_set"]["set1"]["earliest"] + summary["per_set"]["set2"]["earliest"])
        / 2
    )
    for result in outcome["results"]:
        readings = result["readings"]
        assert readings["points"]["earliest"]["step"] == [2, 2]  # 50% of 4 steps
        assert readings["latest_is_whole_clip"]
    out = capsys.readouterr().out
    assert "set1" in out and "set2" in out and "mean" in out
