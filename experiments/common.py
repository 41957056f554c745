"""Shared pieces of the experiment scripts: arguments, scales, the paper's numbers, tables.

Every script in this folder is a plain script, run from the repository root as
`python experiments/<script>.py --root <dataset folder> --scale paper|cpu|tiny`; it puts
this folder on `sys.path` and imports `common`. The scripts only choose configs and call
the pipeline's stage functions (`msl_keras.pipeline`): the numbers they print come from the
same `train_cnn`, `extract`, `train_lstm` and `evaluate` as `msl-keras run`.

Scales (`scale_config`), each a preset of `msl_keras.config` (`--preset` of `msl-keras`):

- `paper`: the paper's presets (`paper_jhmdb`, `paper_ut_interaction`, `paper_ucf101`):
  224x224 frames, the full VGG-16 with ImageNet weights, fc 4096, 2048 LSTM units, T = 50:
  the first T frames on UCF-101, T frames spread over each clip on UT-Interaction and
  JHMDB-21 (their earliest point is a ratio of the clip). For a GPU.
- `cpu`: small enough for 2 CPU cores. On the generated clips, the `demo` preset. On a
  real dataset, the `cpu_real` preset: 64x64 frames, a full-width VGG-16 trunk (so a
  VGG-16-shaped weights file can be loaded with `--weights`), fc 256, 128 LSTM units,
  T = 16 frames spread over each clip, fewer frames per clip and fewer epochs for the
  heads and the LSTM. With a
  pretrained trunk (`--weights imagenet` or a file) the heads' SGD step is the paper's
  0.001 (`PRETRAINED_CNN_LEARNING_RATE`), with the CAM mask normalised per frame
  (`cnn.cam_normalization="max"`): with the unnormalised mask of Eq. 3 the action head
  diverges at 0.001 (RESULTS.md, "The action head at the paper's learning rate").
- `tiny`: the `tiny` preset: seconds, for the tests; any dataset.

Run directories are named by the settings that make the features (`Config.run_name`), so
scripts sharing `--output-dir`, scale, dataset and seed share trained heads and feature
stores, and each LSTM (one per model and loss) is trained once.
"""

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# NumPy's matrices here are small (probe fits, bootstraps); OpenBLAS threads spinning on
# a shared, loaded machine made them ten times slower than one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCALES = ("paper", "cpu", "tiny")
REAL_DATASETS = ("jhmdb", "ut_interaction", "ucf101")
DEFAULT_OUTPUT_DIR = "runs/experiments"
# Observed ratios of the accuracy curves (keys as `evaluate` writes them).
RATIO_KEYS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1")

# The paper's numbers (accuracy in %, earliest / latest), from ../shared/paper/NOTES.md and
# the paper's Tables 1-4. [11] = Jain et al. (exponential loss), [21] = Ma et al. (ranking
# loss on the detection score).
PAPER_TABLES = {
    "table1": {
        "title": "Table 1: JHMDB-21, earliest = first 20% of each clip, latest = whole clip",
        "dataset": "jhmdb",
        "rows": {
            "context_jain": (28.0, 43.0),
            "context_ranking": (33.0, 39.0),
            "ours": (55.0, 58.0),
        },
    },
    "table2": {
        "title": "Table 2: UT-Interaction, earliest = first 50% of each clip, latest = whole clip",
        "dataset": "ut_interaction",
        "rows": {
            "context_jain": (45.0, 65.0),
            "context_ranking": (48.0, 60.0),
            "ours": (84.0, 90.0),
        },
    },
    "table3": {
        "title": "Table 3: UCF-101, earliest = first 2 frames, latest = whole clip (<= T)",
        "dataset": "ucf101",
        "rows": {
            "context_jain": (30.6, 71.1),
            "context_ranking": (22.6, 73.1),
            "ours": (80.5, 83.4),
        },
    },
    "table4": {
        "title": "Table 4: feature types on UCF-101 split 1, earliest K = 1 frame, latest K = T",
        "dataset": "ucf101",
        "rows": {
            "context_lstm": (62.80, 72.71),
            "action_lstm": (69.33, 77.86),
            "ours": (80.5, 83.37),
        },
    },
}

# Rows of the tables: label and the config overrides that make them.
METHODS = {
    "ours": (
        "Ours: MS-LSTM + our loss (Eq. 1)",
        {"lstm.model": "ms_lstm", "lstm.loss": "anticipation"},
    ),
    "context_jain": (
        "Context-Aware + loss of [11] (Jain)",
        {"lstm.model": "context", "lstm.loss": "jain"},
    ),
    "context_ranking": (
        "Context-Aware + loss of [21] (Ma, ranking)",
        {"lstm.model": "context", "lstm.loss": "ranking_score"},
    ),
    "context_lstm": (
        "Context-aware LSTM + our loss",
        {"lstm.model": "context", "lstm.loss": "anticipation"},
    ),
    "action_lstm": (
        "Action-aware LSTM + our loss",
        {"lstm.model": "action", "lstm.loss": "anticipation"},
    ),
}

# Measured with experiments/action_head_lr.py (RESULTS.md): with the normalised CAM mask
# the action head trains at 0.001 from a pretrained trunk; it used to be 1e-4.
PRETRAINED_CNN_LEARNING_RATE = 0.001

def add_common_arguments(parser, default_dataset):
    """`--root --dataset --scale --seed --output-dir --weights --set --quiet`."""
    parser.add_argument(
        "--root",
        default="data/generated",
        help="dataset folder; a folder named 'generated' (or holding the generator's "
        "manifest.json) is the generated clips, written there if missing "
        "(default: data/generated)",
    )
    parser.add_argument(
        "--dataset",
        choices=("generated",) + REAL_DATASETS,
        default=None,
        help=f"dataset of --root (default: 'generated' for generated clips, else "
        f"'{default_dataset}')",
    )
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        help="results go to <output-dir>/<experiment>/, run directories (heads, features, "
        f"LSTMs) to <output-dir>/runs/ (default: {DEFAULT_OUTPUT_DIR})",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="trunk weights: 'imagenet', 'none' (random) or a Keras VGG-16 .h5 file "
        "(default: the scale's: imagenet for paper, random otherwise)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override any config key, e.g. --set lstm.epochs=20 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="only print the tables")
    return parser


def parse_args(description, default_dataset, argv=None, extra=None):
    """Parses the common arguments (plus `extra(parser)`'s) and resolves the dataset."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, default_dataset)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow()
    args.dataset = resolve_dataset(args.root, default_dataset, args.dataset)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # The code the run starts from: read at the end, it would name any commit made
    # during a long run (pass it to `machine` / `finish`).
    args.code = code_version()
    return args


def quiet_tensorflow():
    """Hides TensorFlow's retracing warnings (each fold builds new models)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def resolve_dataset(root, default_dataset, explicit=None):
    """'generated' for a folder named `generated` or holding the generator's manifest."""
    if explicit:
        return explicit
    path = Path(root)
    if path.name == "generated" or (path / "manifest.json").is_file():
        return "generated"
    return default_dataset


def scale_config(args, extra_overrides=None):
    """The `Config` of `args.scale` for `args.dataset` at `args.root` (module docstring).

    Order: the scale's preset, then `extra_overrides` (the script's), then `--weights`,
    `--seed`, `--output-dir`, then the user's `--set` overrides.
    """
    from msl_keras.config import apply_overrides, get_preset, parse_override

    dataset, scale = args.dataset, args.scale
    if scale == "paper":
        preset = f"paper_{'ucf101' if dataset == 'generated' else dataset}"
    elif scale == "tiny":
        preset = "tiny"
    else:
        preset = "demo" if dataset == "generated" else "cpu_real"
    config = get_preset(preset)
    settings = {"data.dataset": dataset}
    if dataset == "ut_interaction":
        # Both sets, all 20 leave-one-sequence-out folds (scripts may pick folds).
        settings.update({"data.ut_set": None, "data.ut_test_sequence": None})
    settings.update(
        {"name": f"exp_{scale}", "data.root": str(args.root), "seed": args.seed}
    )
    settings["output_dir"] = str(Path(args.output_dir) / "runs")
    settings.update(extra_overrides or {})
    if args.weights is not None:
        settings["cnn.weights"] = None if args.weights.lower() == "none" else args.weights
    if scale == "cpu" and dataset != "generated" and settings.get("cnn.weights"):
        # Pretrained conv5 maps are ~100x larger than a random trunk's: the random
        # trunk's 0.01 is too large a step for them (RESULTS.md, action_head_lr).
        settings["cnn.learning_rate"] = PRETRAINED_CNN_LEARNING_RATE
    config = apply_overrides(config, settings)
    user = dict(parse_override(item) for item in args.overrides)
    return apply_overrides(config, user)


def methods_of(names):
    """`{name: config overrides}` of rows of `METHODS`."""
    return {name: METHODS[name][1] for name in names}


def trunk_description(config):
    """Which trunk weights a config uses, for the results."""
    weights = config.cnn.weights
    if weights is None:
        return f"random initialisation (seed {config.seed}); no pretrained weights"
    if weights == "imagenet":
        return "ImageNet VGG-16 (Keras applications, no top)"
    return f"weights file {weights}"


def select_folds(index, names=None):
    """The index's folds, or those named in `names` (an error lists the valid ones)."""
    if not names:
        return list(index.folds)
    return [index.fold(name) for name in names]


def prepare_index(config, verbose=True):
    """`prepare(config)` (writing the generated clips if needed), reported."""
    from msl_keras.pipeline.dataset_index import describe, prepare

    index = prepare(config)
    if verbose:
        print(describe(index), flush=True)
    return index


def run_methods(config, index, folds, methods, verbose=True, before_fold=None):
    """`run_fold` of each fold with `methods` as its LSTM variants, one line per result.

    Args:
        config: the `Config` that makes the heads and features.
        index, folds: the `DatasetIndex` and the folds of it to run.
        methods: `{name: config overrides}` of the LSTMs, e.g. `methods_of(["ours"])`
            or `{"ce": {"lstm.loss": "ce"}}`.
        before_fold: optional `before_fold(fold_name)`, called before each fold (a time
            budget stops the run there, `table2_paper_scale_gpu.py`).

    Returns:
        `{method: [evaluate results of each fold]}` (each with `timings_s`; the heads
        and features of a fold are timed in its first method's).
    """
    import keras

    from msl_keras.orchestrator import run_fold
    from msl_keras.runs import RunDirectory

    run = RunDirectory.create(config)
    results = {method: [] for method in methods}
    for number, fold in enumerate(folds, 1):
        if before_fold is not None:
            before_fold(fold.name)
        fold_results = run_fold(config, index, fold, run, variants=methods, verbose=0)
        for method, result in fold_results.items():
            results[method].append(result)
            if verbose:
                summary, timings = result["summary"], result["timings_s"]
                print(
                    f"[{number}/{len(folds)}] {fold.name} {method}: earliest "
                    f"{100 * summary['earliest']:5.1f}%  latest "
                    f"{100 * summary['latest']:5.1f}%  ({sum(timings.values()):.0f} s: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
                    + ")",
                    flush=True,
                )
        keras.backend.clear_session()  # keep memory flat over many folds
    return results


def mean_over_folds(results, key_fn):
    """Mean and standard deviation over folds of `key_fn(result)`."""
    import numpy as np

    values = np.array([key_fn(r) for r in results], dtype=float)
    return float(values.mean()), float(values.std())


def _mean(rows, key):
    return mean_over_folds(rows, lambda r: r[key])


def summarise_rows(rows):
    """Mean (and std) over folds, per subset (UT-Interaction's sets), clip-weighted means
    and the mean accuracy-vs-ratio curve of one method's fold rows.

    Args:
        rows: `[{"fold", "subset", "earliest", "latest", "test_clips",
            "accuracy_vs_ratio" {ratio key: accuracy}, ...}]`, one per fold (other keys
            are kept per fold; `latest_is_whole_clip` and `coinciding_readings`, from
            `evaluate`, are also listed over folds).
    """
    import numpy as np

    clips = np.array([r["test_clips"] for r in rows], float)
    subsets = sorted({r["subset"] for r in rows if r.get("subset")})
    summary = {
        "earliest": _mean(rows, "earliest")[0],
        "earliest_std": _mean(rows, "earliest")[1],
        "latest": _mean(rows, "latest")[0],
        "latest_std": _mean(rows, "latest")[1],
        "per_set": {
            subset: {
                "folds": [r["fold"] for r in rows if r.get("subset") == subset],
                **{
                    k: _mean([r for r in rows if r.get("subset") == subset], k)[0]
                    for k in ("earliest", "latest")
                },
            }
            for subset in subsets
        },
        "clip_weighted": {
            k: float(np.sum(clips * [r[k] for r in rows]) / max(clips.sum(), 1))
            for k in ("earliest", "latest")
        },
        "folds": len(rows),
        "accuracy_vs_ratio": {
            k: float(np.mean([r["accuracy_vs_ratio"][k] for r in rows])) for k in RATIO_KEYS
        },
        "latest_not_whole_clip": [
            r["fold"] for r in rows if not r.get("latest_is_whole_clip", True)
        ],
        "coinciding_readings": [r["fold"] for r in rows if r.get("coinciding_readings")],
        "per_fold": {r["fold"]: {k: v for k, v in r.items() if k != "fold"} for r in rows},
    }
    for key in ("earliest_raw", "latest_raw"):
        if all(key in r for r in rows):
            summary[key] = _mean(rows, key)[0]
    return summary


def format_table(title, header, rows):
    """A plain text table: `rows` of strings and numbers (numbers as %)."""
    cells = [list(header)] + [
        [c if isinstance(c, str) else ("-" if c is None else f"{c:.1f}%") for c in row]
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                for i, c in enumerate(row)
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def experiment_dir(args, name):
    path = Path(args.output_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line(script, args):
    """The command that reproduces this run."""
    return "python " + " ".join(
        shlex.quote(p) for p in [f"experiments/{script}"] + list(args.argv)
    )


def machine(code):
    """Where the run happened: `code` (`code_version()` at the run's start), CPU count,
    platform, TensorFlow's devices."""
    import tensorflow as tf

    return {
        "code": code,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def code_version():
    """The commit of the repository and the msl_keras/ files changed since (read-only)."""
    import subprocess

    def git(*command):
        try:
            return subprocess.run(
                ["git", *command], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "msl_keras")
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "msl_keras_changes": [line[3:] for line in changed.splitlines()],
    }


def write_results(out_dir, payload):
    """Writes `results.json` (numbers as fractions in [0, 1], as `evaluate` does)."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def percent(value):
    return None if value is None else 100.0 * float(value)


def finish(out_dir, payload, config, wall, plot, text, note="", *, code):
    """Writes an experiment's `results.json` and prints where it went.

    `payload` gets what every experiment records after its own keys: the config, the
    wall time, the machine (with `code`, the run's `args.code`), the plot and the text
    table. Prints the text, then `note` (lines of the script's own), the trunk weights,
    the wall time and both paths.

    Returns:
        The payload written.
    """
    payload = {
        **payload,
        "config": config.to_dict(),
        "wall_time_s": round(wall, 1),
        "machine": machine(code),
        "plot": str(plot),
        "text": text,
    }
    path = write_results(out_dir, payload)
    print("\n" + text)
    print(
        f"\n{note}trunk: {trunk_description(config)}\nwall time: {wall:.0f} s\n"
        f"results: {path}\nplot: {plot}"
    )
    return payload
