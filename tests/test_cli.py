"""The `msl-keras` command line: help texts, clear errors, and every stage end to end.

The end-to-end tests run each subcommand at a tiny size, as a user would, on the
generated clips and on a few real UT-Interaction clips (skipped without ../shared/data).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msl_keras import cli
from msl_keras.config import PRESETS
from msl_keras.config import TINY as TINY_SETTINGS
from tests.stage_helpers import make_tiny_dataset

SUBCOMMANDS = (
    "demo",
    "prepare",
    "train-cnn",
    "extract",
    "merge",
    "train-lstm",
    "evaluate",
    "predict",
    "export",
    "run",
    "import-features",
    "import-original",
    "import-original-weights",
    "config",
)

TINY = [
    "data.num_steps=6",
    "cnn.input_size=32",
    "cnn.width=1/32",
    "cnn.fc_units=8",
    "cnn.cam_filters=4",
    "cnn.frames_per_clip=2",
    "cnn.epochs=2",
    "cnn.batch_size=8",
    "lstm.units=8",
    "lstm.epochs=2",
    "lstm.batch_size=4",
]


def _sets(overrides):
    return [arg for item in overrides for arg in ("--set", item)]


def test_help_of_the_program_and_of_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: msl-keras {name}" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_program():
    result = subprocess.run(
        [sys.executable, "-m", "msl_keras", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("msl_keras ")


def test_imported_features_have_no_cnn_stage(capsys):
    for command in ("train-cnn", "extract", "merge"):
        argv = [command, "--preset", "imported", "--root", "absent.npz"]
        if command == "merge":
            argv += ["--shards", "2"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "holds features, not videos" in err and "import-features" in err


def test_unknown_config_key_is_one_clear_error(capsys):
    assert cli.main(["config", "--set", "lstm.unit=3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'lstm.unit'" in err and "lstm.units" in err
    assert "Traceback" not in err


def test_config_prints_the_resolved_config_and_the_keys(capsys):
    assert cli.main(["config", "--preset", "paper_jhmdb", "--set", "lstm.loss=ce"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["data"]["dataset"] == "jhmdb" and config["lstm"]["loss"] == "ce"
    assert cli.main(["config", "--keys"]) == 0
    assert "lstm.units" in capsys.readouterr().out.split()


def test_config_lists_every_preset_and_builds_the_experiments_scales(capsys):
    assert cli.main(["config", "--presets"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(PRESETS)
    assert cli.main(["config", "--preset", "tiny", "--set", "lstm.units=9"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["name"], config["cnn"]["input_size"], config["lstm"]["units"]) == (
        "tiny", TINY_SETTINGS["cnn.input_size"], 9
    )


def test_a_dataset_folder_that_is_not_there_names_what_was_expected(tmp_path, capsys):
    code = cli.main(
        ["prepare", "--preset", "paper_ut_interaction", "--root", str(tmp_path / "nope")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "segmented_set1" in err and "Download" in err


def test_ut_interaction_preset_lists_both_sets(shared_data, capsys):
    """README's "all stages, all folds" command covers Table 2: both sets, 20 folds."""
    root = str(shared_data / "ut_interaction")
    assert cli.main(["prepare", "--preset", "paper_ut_interaction", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "120 clips in 20 folds" in out and "set1_seq1" in out and "set2_seq20" in out


def test_bad_shard_and_fold_are_refused(tmp_path, capsys):
    root = make_tiny_dataset(tmp_path / "clips")
    common = ["--root", str(root), "--output-dir", str(tmp_path / "runs"), *_sets(TINY)]
    assert cli.main(["extract", *common, "--shard", "2/2"]) == 2
    assert "0 <= I < N" in capsys.readouterr().err
    assert cli.main(["train-cnn", *common, "--fold", "split9"]) == 2
    assert "Folds of this config: split1" in capsys.readouterr().err


def test_every_stage_on_generated_clips(tmp_path, capsys):
    root = make_tiny_dataset(tmp_path / "clips")
    common = ["--root", str(root), "--output-dir", str(tmp_path / "runs"), *_sets(TINY)]
    assert cli.main(["prepare", *common]) == 0
    assert "split1" in capsys.readouterr().out
    assert cli.main(["train-cnn", *common]) == 0
    # Two shards, merged, as two machines would write them.
    assert cli.main(["extract", *common, "--shard", "0/2"]) == 0
    assert cli.main(["extract", *common, "--shard", "1/2"]) == 0
    assert cli.main(["merge", *common, "--shards", "2"]) == 0
    for loss in ("anticipation", "ce"):
        assert cli.main(["train-lstm", *common, "--set", f"lstm.loss={loss}"]) == 0
        assert cli.main(["evaluate", *common, "--set", f"lstm.loss={loss}"]) == 0
    capsys.readouterr()
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    results = sorted(runs[0].glob("split1/lstm/*/results/results.json"))
    assert len(results) == 2  # one LSTM folder per loss, sharing the features
    for path in results:
        data = json.loads(path.read_text())
        assert len(data["stages"]["stage2"]["accuracy_vs_steps_pooled"]) == 6
        assert (path.parent / "accuracy.png").is_file()
        assert (path.parent / "accuracy.csv").is_file()

    # `run` resumes: every stage is already done, so it only re-evaluates.
    assert cli.main(["run", *common]) == 0
    assert "earliest" in capsys.readouterr().out

    clip = next(root.glob(f"*/*.avi"))
    plot = tmp_path / "probs.png"
    lstm = next(runs[0].glob("split1/lstm/ms_lstm_anticipation_*")).name
    table = tmp_path / "frames.csv"
    code = cli.main(
        [
            "predict", str(clip), str(clip.parent), "--run-dir", str(runs[0]),
            "--lstm", lstm, "--plot", str(plot), "--csv", str(table), "--threshold", "0",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "anticipated:" in out and "[past training T=6]" in out
    assert "anticipation: " in out and f"wrote {table}" in out
    from msl_keras.data.video import count_frames

    videos = [clip, *sorted(clip.parent.glob("*.avi"))]
    assert len(list(tmp_path.glob("probs_*.png"))) == len(videos) - 1  # one per name
    rows = table.read_text().splitlines()[1:]
    assert len(rows) == sum(count_frames(v) for v in videos)  # every frame, past T

    exported = tmp_path / "exported"
    code = cli.main(["export", "--run-dir", str(runs[0]), "--lstm", lstm, "--out", str(exported)])
    assert code == 0
    assert f"wrote saved_model: {exported}" in capsys.readouterr().out
    assert (exported / "saved_model.pb").is_file()

    # The other model selection scheme through the same commands: its own run folder.
    refit = [*common, "--set", "data.model_selection=refit"]
    assert cli.main(["run", *refit]) == 0
    capsys.readouterr()
    assert cli.main(["train-lstm", *refit]) == 0  # resumes: both phases are done
    assert capsys.readouterr().out.count("already trained") == 2
    (path,) = [
        p
        for p in (tmp_path / "runs").glob("*/split1/lstm/*/results/results.json")
        if json.loads(p.read_text())["checkpoint"]["model_selection"] == "refit"
    ]
    results = json.loads(path.read_text())
    checkpoint, heads = results["checkpoint"], results["heads"]
    assert checkpoint["refit"]["epochs"] == checkpoint["best_epoch"]
    assert heads["model_selection"] == "refit"
    assert heads["context"]["refit_epochs"] == heads["context"]["best_epoch"]


@pytest.mark.parametrize("sequences", [(1, 2, 3)])
def test_every_stage_on_real_ut_interaction_clips(shared_data, tmp_path, capsys, sequences):
    """A few real UT-Interaction clips (sequences 1-3 of set 1) through every stage."""
    source = shared_data / "ut_interaction" / "segmented_set1"
    target = tmp_path / "ut" / "segmented_set1"
    target.mkdir(parents=True)
    for clip in source.glob("*.avi"):
        if int(clip.stem.split("_")[1]) in sequences:
            os.symlink(clip, target / clip.name)
    overrides = TINY + ["data.ut_set=1", "data.ut_test_sequence=3", "data.num_steps=4"]
    common = [
        "--preset",
        "paper_ut_interaction",
        "--root",
        str(target.parent),
        "--output-dir",
        str(tmp_path / "runs"),
        "--set",
        "cnn.weights=none",
        *_sets(overrides),
    ]
    assert cli.main(["run", *common]) == 0
    out = capsys.readouterr().out
    assert "set1_seq3" in out and "earliest" in out
    results = list(Path(tmp_path / "runs").glob("*/set1_seq3/lstm/*/results/results.json"))
    data = json.loads(results[0].read_text())
    assert data["clips"]["test"] == 6 and data["clips"]["test_evaluated"] == 6
    assert data["dataset"] == "ut_interaction"
    assert data["checkpoint"]["model_selection"] == "refit"  # the paper preset's


def test_demo_command_at_a_tiny_size(tmp_path, capsys):
    """`msl-keras demo` end to end: the table, the plot and the results file."""
    root = make_tiny_dataset(tmp_path / "clips")
    code = cli.main(
        ["demo", "--root", str(root), "--output-dir", str(tmp_path / "runs"), *_sets(TINY)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ours (anticipation loss, Eq. 1)" in out and "cross-entropy (Eq. 7)" in out
    report = json.loads(next((tmp_path / "runs").glob("*/split1/demo_results.json")).read_text())
    assert set(report["table"]) == {"anticipation", "ce"}
    for row in report["table"].values():
        assert 0.0 <= row["earliest"] <= 1.0 and 0.0 <= row["latest"] <= 1.0
    assert next((tmp_path / "runs").glob("*/split1/demo_accuracy_vs_frames.png")).is_file()


def test_the_demo_says_whether_the_early_advantage_is_beyond_noise():
    from msl_keras.demo import early_advantage

    agree = [1] * 30 + [0] * 30
    # 10 more clips right and none fewer: the paired interval stays above zero.
    ahead = early_advantage(agree + [1] * 10, agree + [0] * 10)
    assert ahead["difference"] == 14.3 and ahead["clips"] == 10
    assert ahead["interval"][0] > 0 and ahead["verdict"] == "ahead beyond noise"
    assert early_advantage(agree + [0] * 10, agree + [1] * 10)["verdict"] == (
        "behind beyond noise"
    )
    # 6 clips gained and 4 lost: +2 clips is within the noise of 70 clips.
    mixed = early_advantage(agree + [1] * 6 + [0] * 4, agree + [0] * 6 + [1] * 4)
    assert mixed["clips"] == 2 and mixed["verdict"] == "within noise"
    assert mixed["interval"][0] < 0 < mixed["interval"][1]
    assert early_advantage(agree, agree) == early_advantage(agree, agree)
    with pytest.raises(ValueError, match="same order"):
        early_advantage([1, 0], [1])


def _demo_in_a_fresh_folder(folder):
    """`python -m msl_keras demo` at the tiny size in a new process and folder.

    Returns the printed table (from its title to the verdict) and every LSTM's history
    (losses and validation scores to full float precision, by loss).
    """
    folder.mkdir()
    root = make_tiny_dataset(folder / "clips")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    command = [sys.executable, "-m", "msl_keras", "demo", "--root", str(root)]
    done = subprocess.run(
        command + ["--output-dir", str(folder / "runs"), *_sets(TINY)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "deterministic ops, 1 CPU thread, oneDNN off" in out
    table = out[out.index("MS-LSTM stage 2 on") : out.index("\nplot:")]
    histories = {
        path.parent.name.split("_u")[0]: path.read_text()
        for path in (folder / "runs").glob("*/split1/lstm/*/history.csv")
    }
    return table, histories


@pytest.mark.slow
def test_two_demo_runs_in_fresh_folders_print_the_same_table(tmp_path):
    """The demo repeats exactly: same table, same losses to the last bit."""
    first = _demo_in_a_fresh_folder(tmp_path / "first")
    second = _demo_in_a_fresh_folder(tmp_path / "second")
    assert set(first[1]) == {"ms_lstm_anticipation", "ms_lstm_ce"}
    assert second == first
    assert "95% paired bootstrap interval" in first[0]


def test_import_original_weights_and_features_from_the_command_line(tmp_path, capsys):
    """A user arriving from the original code: its weights file and its .npy features."""
    from tests.test_original_weights import context_file

    weights = tmp_path / "context_model.h5"
    context_file(weights)
    assert cli.main(["import-original-weights", str(weights), "--inspect"]) == 0
    assert "context" in capsys.readouterr().out
    out = tmp_path / "context.keras"
    assert cli.main(["import-original-weights", str(weights), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"wrote model: {out}" in printed
    # A second import refuses to overwrite without --overwrite.
    assert cli.main(["import-original-weights", str(weights), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_messages_follow_stdout_after_main_returns(monkeypatch):
    """The CLI's log handler writes to sys.stdout as it is at each message (a test or a
    notebook swaps it), not to the stream main() saw."""
    import io
    import logging

    assert cli.main(["config"]) == 0
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", swapped)
    logging.getLogger("msl_keras.pipeline").info("a message after main")
    assert "a message after main" in swapped.getvalue()
