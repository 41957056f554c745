"""experiments/original_vs_ours.py at tiny size: it runs, writes its table and
results.json, its built-in checks hold (one pass = per-prefix re-runs; the scaled
"linear" loss = cross-entropy at a scaled learning rate), and each row holds the scores of
the run, epoch and stage it names."""

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


def test_synthetic_tiny_run(experiment, tmp_path, capsys):
    results = experiment.main(
        ["--synthetic", "--tiny", "--epochs", "3", "--out", str(tmp_path)]
    )
    printed = capsys.readouterr().out
    assert "comparison" in printed and "best on TEST" in printed
    saved = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "table.txt").read_text().startswith("comparison")
    assert saved["rows"] == results["rows"]
    groups = {row["group"] for row in saved["rows"]}
    assert groups == {"loss", "evaluation", "selection"}  # no CAM: no extraction here
    checks = saved["checks"]
    assert checks["prefix_vs_one_pass_max_prob_difference"] < 1e-5
    assert checks["linear_vs_scaled_lr_ce_max_prob_difference"] < 1e-4
    # Every row holds the test scores of the run, epoch and stage it names, read back
    # from the per-epoch records; the epochs are the checkpoints' choices.
    runs = saved["runs"]

    def best_epoch(values):
        return int(np.argmax(values)) + 1  # a checkpoint keeps the first best

    for run in runs.values():
        test_means = [epoch["stage2"]["mean"] for epoch in run["test_per_epoch"]]
        assert run["selected_epoch_on_validation"] == best_epoch(
            run["validation_mean_per_epoch"]
        )
        assert run["selected_epoch_on_test"] == best_epoch(test_means)

    def test_score(key, stage, metric, on="validation"):
        run = runs[key]
        return run["test_per_epoch"][run[f"selected_epoch_on_{on}"] - 1][stage][metric]

    loss_runs = {
        "its Eq. 1": "original_anticipation",
        "'totally_linear'": "original_linear",
        "'exponential'": "original_exponential",
    }
    checked = set()
    for row in saved["rows"]:
        group, metric, original = row["group"], row["metric"], row["original"]
        if group == "loss" and row["comparison"] == "training loss":
            key = next(k for prefix, k in loss_runs.items() if original.startswith(prefix))
            expected = (test_score(key, "stage2", metric),
                        test_score("anticipation", "stage2", metric))  # fmt: skip
        elif group == "evaluation" and row["comparison"] == "stage scored":
            expected = (test_score("anticipation", "stage1", metric),
                        test_score("anticipation", "stage2", metric))  # fmt: skip
        elif group == "selection":
            ours = runs["anticipation"]
            assert f"epoch {ours['selected_epoch_on_test']})" in original
            assert f"epoch {ours['selected_epoch_on_validation']})" in row["ours"]
            expected = (test_score("anticipation", "stage2", metric, on="test"),
                        test_score("anticipation", "stage2", metric))  # fmt: skip
        else:
            continue
        assert (row["original_value"], row["ours_value"]) == pytest.approx(expected)
        checked.add((group, metric))
    assert len(checked) == 9  # loss, evaluation and selection x earliest, latest, mean
    compared = {row["original"] for row in saved["rows"] if row["group"] == "loss"}
    assert any("11.67" in text for text in compared)
    assert len(saved["runs"]["anticipation"]["test_per_epoch"]) == 3


def test_pipeline_tiny_run_compares_the_cam_class(experiment, tmp_path):
    """Generated clips -> heads -> extraction with the predicted and the true-label
    CAM -> the same comparisons, plus the CAM rows."""
    results = experiment.main(
        [
            "--tiny",
            "--epochs",
            "2",
            "--work",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    cam_rows = [row for row in results["rows"] if row["group"] == "cam"]
    assert [row["metric"] for row in cam_rows] == ["earliest", "latest", "mean"]
    assert "true label" in cam_rows[0]["original"]
    assert results["source"] == "generated clips through the stages"
    assert (tmp_path / "r" / "results.json").is_file()
