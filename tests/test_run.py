"""run_all / summarize: every fold of a protocol, reported per UT-Interaction set and overall."""

import os

import pytest

from msl_keras.config import apply_overrides, get_preset
from msl_keras.pipeline.dataset_index import prepare
from msl_keras.errors import ConfigError
from msl_keras.orchestrator import format_summary, run_all, run_fold, summarize


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
