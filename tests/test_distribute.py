"""Strategies by name; one epoch under MirroredStrategy on 2 logical CPUs, or under
MultiWorkerMirroredStrategy with two worker processes over 127.0.0.1, equals one replica."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from msl_keras.distribute import STRATEGY_NAMES, StrategyError, get_strategy
from msl_keras.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Logical devices must exist before TensorFlow initialises: a fresh interpreter.
MIRRORED_VS_DEFAULT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from msl_keras.distribute import configure_logical_cpus
    devices = configure_logical_cpus(2)

    import numpy as np
    from msl_keras.pipeline.lstm_training import train_lstm
    from msl_keras.runs import load_lstm
    from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config

    tmp = Path(sys.argv[1])
    results = {"devices": devices}
    weights = {}
    for strategy in ("default", "mirrored"):
        # batch 12 = all train clips: one step, split 6 + 6 over the two replicas.
        config = tiny_config(tmp / strategy, **{"strategy": strategy, "lstm.epochs": 1,
                                                "lstm.batch_size": 12})
        config, index, run = make_feature_run(tmp / strategy, config)
        best = train_lstm(config, index, FOLD, run, verbose=0)
        weights[strategy] = load_lstm(best.parent / "last.keras").get_weights()
        lines = (best.parent / "history.csv").read_text().splitlines()
        row = dict(zip(lines[0].split(","), lines[1].split(",")))
        keys = ("loss", "val_stage2_anticipation_accuracy")
        results[strategy] = {k: float(row[k]) for k in keys}
    results["max_weight_diff"] = max(
        float(np.abs(a - b).max()) for a, b in zip(weights["default"], weights["mirrored"])
    )
    print("RESULT " + json.dumps(results))
    """
)


def test_mirrored_on_two_logical_cpus_matches_default(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_VS_DEFAULT, str(tmp_path)],
        check=False,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    assert results["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert results["mirrored"]["loss"] == pytest.approx(
        results["default"]["loss"], rel=1e-4
    )
    assert results["mirrored"]["val_stage2_anticipation_accuracy"] == pytest.approx(
        results["default"]["val_stage2_anticipation_accuracy"]
    )
    assert results["max_weight_diff"] < 1e-5


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="'mirored'.*'mirrored'"):
        get_strategy("mirored")
    assert set(STRATEGY_NAMES) == {"default", "mirrored", "multi_worker", "tpu"}


def test_default_strategy_has_one_replica():
    assert get_strategy("default").num_replicas_in_sync == 1


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="TF_CONFIG"):
        get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="not valid JSON"):
        get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}}))
    with pytest.raises(StrategyError, match="'cluster' and 'task'"):
        get_strategy("multi_worker")


def test_tpu_without_a_tpu_says_what_to_do(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(StrategyError, match="No TPU could be reached"):
        get_strategy("tpu")


# One worker of a two-worker cluster on this machine. TF_CONFIG comes from the test;
# MultiWorkerMirroredStrategy must start before any other TensorFlow op.
MULTI_WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from msl_keras.pipeline.lstm_training import train_lstm
    from msl_keras.runs import load_lstm
    from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config

    tmp = Path(sys.argv[1])
    config = tiny_config(tmp, **{"strategy": "multi_worker", "lstm.epochs": 1,
                                 "lstm.batch_size": 12})
    config, index, run = make_feature_run(tmp, config)
    best = train_lstm(config, index, FOLD, run, verbose=0)
    weights = load_lstm(best.parent / "last.keras").get_weights()
    lines = (best.parent / "history.csv").read_text().splitlines()
    row = dict(zip(lines[0].split(","), lines[1].split(",")))
    np.savez(tmp / "weights.npz", *weights)
    print("RESULT " + json.dumps({"loss": float(row["loss"]),
                                  "weights": str(tmp / "weights.npz")}))
    """
)


def _free_loopback_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_on_loopback_match_one_process(tmp_path):
    """MultiWorkerMirroredStrategy, two processes over 127.0.0.1: one epoch of the
    MS-LSTM (global batch 12 = every train clip, 6 per worker) equals one process."""
    import numpy as np

    from msl_keras.pipeline.lstm_training import train_lstm
    from msl_keras.runs import load_lstm
    from tests.lstm_fixtures import FOLD, make_feature_run, tiny_config

    ports = _free_loopback_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    # Logs go to files, not pipes: a worker blocked on a full pipe would stall the ring.
    logs = [(tmp_path / f"worker{i}.out", tmp_path / f"worker{i}.err") for i in range(2)]
    workers, handles = [], []
    try:
        for index in range(2):
            handles += [open(logs[index][0], "w"), open(logs[index][1], "w")]
            env = dict(
                os.environ,
                PYTHONPATH=str(PROJECT_ROOT),
                CUDA_VISIBLE_DEVICES="",
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            )
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-c", MULTI_WORKER, str(tmp_path / f"worker{index}")],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=handles[-2],
                    stderr=handles[-1],
                )
            )
        # The single-process run, while the workers start.
        config = tiny_config(
            tmp_path / "single", **{"lstm.epochs": 1, "lstm.batch_size": 12}
        )
        config, index, run = make_feature_run(tmp_path / "single", config)
        best = train_lstm(config, index, FOLD, run, verbose=0)
        single = load_lstm(best.parent / "last.keras").get_weights()
        lines = (best.parent / "history.csv").read_text().splitlines()
        single_loss = float(dict(zip(lines[0].split(","), lines[1].split(",")))["loss"])
        for worker in workers:
            worker.wait(timeout=240)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
        for handle in handles:
            handle.close()
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-4000:]
    for stdout, _ in outputs:
        line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
        result = json.loads(line[len("RESULT ") :])
        assert result["loss"] == pytest.approx(single_loss, rel=1e-4)
        with np.load(result["weights"]) as saved:
            weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        assert len(weights) == len(single)
        assert max(float(np.abs(a - b).max()) for a, b in zip(weights, single)) < 1e-5
