"""Same seed and config -> same features and same metrics, run to run, on CPU.

The whole pipeline (generated clips -> train_cnn -> extract -> train_lstm -> evaluate)
runs twice at tiny size in two fresh Python processes (`python tests/test_determinism.py
pipeline <dir> <seed>`), each in its own folder; the feature stores must be equal bit
for bit and every reported metric equal. In one process, the LSTM stage trained twice
with the same seed gives the same weights, and another seed other weights (so the
comparison can fail).
"""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _pipeline(workdir, seed):
    """Runs in a child process: every stage, then the store and the metrics to disk."""
    sys.path.insert(0, str(ROOT))
    from msl_keras.data.feature_store import FeatureStore
    from msl_keras.runs import RunDirectory
    from msl_keras.pipeline import evaluate, extract, prepare, train_cnn, train_lstm
    from tests.stage_helpers import make_tiny_dataset, tiny_config

    workdir = Path(workdir)
    root = make_tiny_dataset(workdir / "generated")
    config = tiny_config(
        root,
        workdir / "runs",
        **{
            "cnn.epochs": 1,
            "lstm.epochs": 1,
            "lstm.units": 8,
            "lstm.batch_size": 4,
            "seed": int(seed),
        },
    )
    index = prepare(config)
    run = RunDirectory.create(config)
    train_cnn(config, index, "split1", run=run, verbose=0)
    store = extract(config, index, "split1", run=run, verbose=0)
    train_lstm(config, index, "split1", run=run, verbose=0)
    results = evaluate(config, index, "split1", run=run, verbose=False)
    with FeatureStore.open(store) as opened:
        arrays = opened.read(dtype=np.float16)
    np.savez(workdir / "features.npz", **{k: arrays[k] for k in ("context", "action")})
    (workdir / "metrics.json").write_text(json.dumps(results["stages"]))


def test_two_runs_give_the_same_features_and_metrics(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "pipeline", str(folder), "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
    a, b = (np.load(folder / "features.npz") for folder in folders)
    for key in ("context", "action"):
        assert a[key].shape[0] == 9 and np.abs(a[key]).sum() > 0
        np.testing.assert_array_equal(a[key], b[key])  # bit for bit
    metrics_a, metrics_b = (
        json.loads((folder / "metrics.json").read_text()) for folder in folders
    )
    assert set(metrics_a) == {"stage1", "stage2"}
    assert metrics_a == metrics_b


def test_lstm_stage_repeats_with_a_seed_and_changes_with_another(tmp_path):
    from msl_keras.config import apply_overrides
    from msl_keras.pipeline.lstm_training import train_lstm
    from msl_keras.runs import load_lstm
    from tests.lstm_fixtures import make_feature_run, tiny_config

    weights = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        config = apply_overrides(
            tiny_config(tmp_path / name),
            {"seed": seed, "lstm.dropout": 0.3, "lstm.epochs": 1},
        )
        config, index, run = make_feature_run(tmp_path / name, config=config)
        best = train_lstm(config, index, "split1", run=run, verbose=0)
        weights[name] = load_lstm(best).get_weights()
        keras.backend.clear_session()
    for x, y in zip(weights["first"], weights["again"]):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y) for x, y in zip(weights["first"], weights["other"])
    )


if __name__ == "__main__" and sys.argv[1:2] == ["pipeline"]:
    _pipeline(sys.argv[2], sys.argv[3])
