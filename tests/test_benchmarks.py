"""The benchmark scripts run at tiny size and print every row (timings are not tested)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
ROW_KEYS = (
    "1", "2", "2b", "3", "3c", "4", "5", "6", "6c",
    "8a", "8b", "8c", "9a", "9b", "10a", "10b", "10c",
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    target = out / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nnotes above\n<!-- run_all:begin -->\nOLD-BLOCK\n"
                      "<!-- run_all:end -->\nnotes below\n")
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(BENCHMARKS, "run_all.py"),
            "--size", "tiny",
            "--repeats", "1",
            "--output", str(out / "tiny.md"),
            "--json", str(out / "tiny.json"),
            "--update", str(target),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    return done, out


def test_run_all_tiny_prints_every_row(tiny_run):
    done, _ = tiny_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("[")]
    keys = [line[1 : line.index("]")] for line in printed]
    assert keys == list(ROW_KEYS), keys
    for line in printed:
        assert "| measured " in line and "| met: " in line
        assert "measured -" not in line, line


def test_run_all_writes_markdown_and_json(tiny_run):
    done, out = tiny_run
    assert done.returncode == 0, done.stderr[-4000:]
    table = (out / "tiny.md").read_text()
    assert "| # | what | measured against | target |" in table
    for key in ROW_KEYS:
        assert f"\n| {key} |" in table
    assert "TensorFlow" in table and "Load average" in table
    rows = json.loads((out / "tiny.json").read_text())["rows"]
    assert [r["key"] for r in rows] == list(ROW_KEYS)
    assert all(r["values"] for r in rows)
    updated = (out / "BENCHMARKS.md").read_text()
    assert updated.startswith("# Benchmarks\n\nnotes above\n<!-- run_all:begin -->\n")
    assert updated.endswith("<!-- run_all:end -->\nnotes below\n")
    assert "OLD-BLOCK" not in updated and "| 10c |" in updated


@pytest.mark.parametrize(
    "script, keys, details",
    [
        ("bench_all_lengths", ["4"], ["identical"]),
        # the Keras streaming step and its exported TFLite file, timed
        ("bench_streaming_predict", ["6", "6c"], ["TFLite", "MiB file"]),
    ],
)
def test_a_script_runs_alone_with_its_own_arguments(tmp_path, script, keys, details):
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(BENCHMARKS, f"{script}.py"),
            "--size", "tiny",
            "--repeats", "1",
            "--json", str(tmp_path / "rows.json"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["key"] for row in rows] == keys
    assert all(row["values"][0] > 0 for row in rows)
    assert all(text in rows[-1]["detail"] for text in details)
