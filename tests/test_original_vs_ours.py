"""experiments/original_vs_ours.py at tiny size, through the pipeline (run_fold).

It runs and writes its table and results.json; its built-in checks hold (one pass =
per-prefix re-runs; the scaled "linear" loss = cross-entropy at a scaled learning rate;
the probabilities it scores the original's way are the ones `evaluate` scored); the
original's selection trains exactly as ours and only picks its epoch on (copies of) the
test clips; and each row holds the scores of the run and stage it names."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "original_vs_ours.py"


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("original_vs_ours", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_starts_with_the_command_that_runs_it():
    docstring = SCRIPT.read_text().split('"""')[1]
    assert "python experiments/original_vs_ours.py" in docstring.splitlines()[2]


def test_the_imported_file_holds_our_roles_and_the_originals_selection(
    experiment, tmp_path
):
    """split1: each clip in its role; split2: the same training clips, the test clips,
    and as validation a copy of each test clip (same features, same label)."""
    features = experiment.synthetic_features(3, (6, 3, 3), steps=5, dim=4, seed=1)
    path = experiment.write_imported(tmp_path, features, 3)
    assert experiment.write_imported(tmp_path, features, 3) == path  # named by content
    data = np.load(path)
    ids = list(data["clip_ids"])
    for role in ("train", "validation", "test"):
        rows = [ids.index(c) for c in features[role]["clip_ids"]]
        assert list(data["split1"][rows]) == [role] * len(rows)
        np.testing.assert_array_equal(data["context"][rows], features[role]["context"])
    train, test = (features[r]["clip_ids"] for r in ("train", "test"))
    assert [c for c, r in zip(ids, data["split2"]) if r == "train"] == list(train)
    assert [c for c, r in zip(ids, data["split2"]) if r == "test"] == list(test)
    copies = [ids.index(c) for c, r in zip(ids, data["split2"]) if r == "validation"]
    originals = [ids.index(c) for c in test]
    assert [ids[row] for row in copies] == [f"{c}@as_validation" for c in test]
    assert list(data["split1"][copies]) == [""] * len(copies)
    for key in ("context", "action", "labels", "lengths"):
        np.testing.assert_array_equal(data[key][copies], data[key][originals])


def test_synthetic_tiny_run(experiment, tmp_path, capsys):
    results = experiment.main(
        ["--synthetic", "--tiny", "--epochs", "3", "--work", str(tmp_path / "work"),
         "--out", str(tmp_path / "out")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "comparison" in printed and "best on TEST" in printed
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "table.txt").read_text().startswith("comparison")
    assert saved["rows"] == results["rows"]
    groups = {row["group"] for row in saved["rows"]}
    assert groups == {"loss", "evaluation", "selection"}  # no CAM: no extraction here
    checks = saved["checks"]
    assert checks["prefix_vs_one_pass_max_prob_difference"] < 1e-5
    assert checks["linear_vs_scaled_lr_ce_max_prob_difference"] < 1e-4
    assert checks["probabilities_vs_evaluate_max_accuracy_difference"] < 1e-6
    runs = saved["runs"]
    for name, run in runs.items():
        assert run["epochs_done"] == 3, name
        assert Path(run["model"]).is_file()
    assert {runs[k]["loss"] for k in ("original_linear", "original_ce_scaled_lr")} == {
        "original_linear", "original_ce"
    }
    assert runs["original_ce_scaled_lr"]["learning_rate"] == pytest.approx(
        runs["original_linear"]["learning_rate"] * 11.67, rel=1e-3
    )
    # The original's selection: the same training, epoch by epoch, and its selection
    # score IS its test score (its validation clips are the test clips).
    losses = saved["training_loss"]
    assert losses["selected_on_test"] == losses["selected_on_validation"]
    on_test = runs["anticipation_selected_on_test"]
    assert on_test["val_anticipation_accuracy"] == pytest.approx(
        on_test["test"]["stage2"]["mean"]
    )
    assert on_test["fold"] == "split2" and runs["anticipation"]["fold"] == "split1"

    # Every row holds the test scores of the run and stage it names.
    loss_runs = {
        "its Eq. 1": "original_anticipation",
        "'totally_linear': CE": "original_linear",
        "'exponential'": "original_exponential",
    }
    ours = runs["anticipation"]["test"]
    checked = set()
    for row in saved["rows"]:
        group, metric, original = row["group"], row["metric"], row["original"]
        if group == "loss" and row["comparison"] == "training loss":
            key = next(k for prefix, k in loss_runs.items() if original.startswith(prefix))
            expected = (runs[key]["test"]["stage2"][metric], ours["stage2"][metric])
        elif group == "evaluation" and row["comparison"] == "stage scored":
            expected = (ours["stage1"][metric], ours["stage2"][metric])
        elif group == "selection":
            assert f"epoch {on_test['best_epoch']})" in original
            assert f"epoch {runs['anticipation']['best_epoch']})" in row["ours"]
            expected = (on_test["test"]["stage2"][metric], ours["stage2"][metric])
        else:
            continue
        assert (row["original_value"], row["ours_value"]) == pytest.approx(expected)
        checked.add((group, metric))
    assert len(checked) == 9  # loss, evaluation and selection x earliest, latest, mean


def test_pipeline_tiny_run_compares_the_cam_class(experiment, tmp_path):
    """Generated clips -> heads -> extraction with the predicted and the true-label
    CAM -> the same comparisons, plus the CAM rows."""
    results = experiment.main(
        ["--tiny", "--epochs", "2", "--work", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    cam_rows = [row for row in results["rows"] if row["group"] == "cam"]
    assert [row["metric"] for row in cam_rows] == ["earliest", "latest", "mean"]
    assert "true label" in cam_rows[0]["original"]
    oracle = results["runs"]["anticipation_oracle_cam"]["test"]["stage2"]
    assert [row["original_value"] for row in cam_rows] == [
        oracle[m] for m in ("earliest", "latest", "mean")
    ]
    assert results["source"] == "generated clips through the stages"
    assert (tmp_path / "r" / "results.json").is_file()
