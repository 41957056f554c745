"""The `msl-keras` command line: one subcommand per step of the pipeline.

The CLI only parses arguments, resolves the config and calls the functions in
`msl_keras.pipeline`; notebooks and experiments call the same functions.

    msl-keras demo                                  # every stage on the generated clips
    msl-keras run --preset paper_jhmdb --set data.root=/data/JHMDB
    msl-keras train-lstm --preset paper_jhmdb --set lstm.loss=ce
    msl-keras predict clip.avi --run-dir runs/<run> --plot probs.png --csv frames.csv
    msl-keras export --run-dir runs/<run> --format tflite --out exported/
    msl-keras import-features --preset imported --root my_features.npz
"""

import argparse
import logging
import os
import sys
import textwrap
import time

from msl_keras import __version__
from msl_keras.config import PRESETS, STRATEGIES
from msl_keras.errors import MslKerasError

EPILOG = """\
Configs: start from --preset (`msl-keras config --presets` lists them), then --config FILE
(JSON or YAML, may name its own preset), then --set KEY=VALUE (repeatable; e.g. --set
lstm.loss=ce --set data.root=/data/UCF-101). `msl-keras config --keys` lists every key.
Every run writes into <output_dir>/<run name>/; re-running the same command resumes an
interrupted stage.
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="msl-keras",
        description=(
            "Multi-stage LSTM action anticipation (Aliakbarian et al., ICCV 2017) "
            "in Keras 3."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"msl_keras {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # The arguments several subcommands share, as `parents=`.
    config = argparse.ArgumentParser(add_help=False)
    group = config.add_argument_group("configuration")
    group.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a named preset: {', '.join(PRESETS)} (default: demo, or the file's own)",
    )
    group.add_argument("--config", metavar="FILE", help="a JSON or YAML config file")
    group.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. lstm.units=512 (repeatable)",
    )
    group.add_argument("--root", help="dataset folder (same as --set data.root=...)")
    group.add_argument("--output-dir", help="where run directories go (default: runs)")
    group.add_argument("--seed", type=int, help="random seed (same as --set seed=...)")
    fold = argparse.ArgumentParser(add_help=False)
    fold.add_argument(
        "--fold",
        help="run one fold (e.g. split1, set1_seq3); default: every fold of the config",
    )
    strategy = argparse.ArgumentParser(add_help=False)
    strategy.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="tf.distribute strategy for training (default: the config's)",
    )
    run_dir = argparse.ArgumentParser(add_help=False)
    run_dir.add_argument("--run-dir", required=True, help="a run directory made by `run`/`demo`")
    run_dir.add_argument("--fold", help="which fold's models (default: the first)")
    run_dir.add_argument("--lstm", help="which LSTM subdirectory (default: the only/first one)")

    def add(name, help_text, description=None, parents=(config, fold)):
        return sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=parents,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add(
        "demo",
        "every stage on generated clips: our loss against cross-entropy (a few minutes)",
        "Generates small labelled clips (data/generated), fine-tunes the two feature "
        "heads, extracts features,\ntrains the MS-LSTM with the anticipation loss and "
        "with plain cross-entropy, and prints a table\nof earliest/latest accuracy with "
        "an accuracy-vs-frames plot.",
        parents=[config],
    )
    p.add_argument(
        "--losses",
        default="anticipation,ce",
        help="comma-separated loss names to compare (default: anticipation,ce)",
    )
    add(
        "prepare",
        "check a dataset folder and list its clips, splits and folds",
        parents=[config],
    )
    add("train-cnn", "fine-tune the context- and action-aware heads on frames (frozen trunk)")
    add("extract", "write the HDF5 feature store of each fold (resumable)").add_argument(
        "--shard",
        metavar="I/N",
        help="extract only shard I of N (0-based) into its own store; merge them after",
    )
    add(
        "import-features",
        "write the feature store of each fold from per-frame features made elsewhere",
        "Reads --root (data.root): a .npz or .h5 of (clips, T, D) 'context' and/or "
        "'action' arrays with\n'labels' and 'split1', ..., or a folder with clips.csv "
        "and context/<clip>.npy, action/<clip>.npy\n(layout: README, 'Bring your own "
        "features'). Then train-lstm and evaluate run on the\nstore with the same "
        "options. Needs data.dataset=imported (--preset imported).",
    ).add_argument(
        "--overwrite",
        action="store_true",
        help="replace a store imported from other features or settings",
    )
    add("merge", "merge the feature stores written by `extract --shard I/N`").add_argument(
        "--shards", type=int, required=True, help="N, the number of shards"
    )
    add(
        "train-lstm",
        "train the MS-LSTM (or one stream) with a loss chosen by name",
        parents=[config, fold, strategy],
    ).add_argument("--no-resume", action="store_true", help="start over, ignoring backups")
    add("evaluate", "accuracy against frames observed on the test clips")

    p = add(
        "predict",
        "anticipate the action of videos, frame by frame",
        "Streams each video through the trained model one frame at a time (one LSTM "
        "step per\nframe), prints the anticipated class as frames arrive and the "
        "anticipation moment:\nthe first frame from which the prediction stays fixed "
        "at p >= --threshold.\nThe whole video runs (the LSTM is causal); frames past "
        "the training T are marked.",
        parents=[run_dir],
    )
    p.add_argument(
        "videos", nargs="+", help="video files, frame folders or folders of videos"
    )
    p.add_argument(
        "--max-frames", type=int, help="stop each video after this many frames"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="pooled probability of the anticipation moment (default: 0.5)",
    )
    p.add_argument("--csv", metavar="FILE", help="write one row per frame of every video")
    p.add_argument("--top-k", type=int, default=3, help="classes per CSV row (default: 3)")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write the class probabilities over time with a frame strip (several "
        "videos: one file each, named <stem>_<video>.png)",
    )

    p = add(
        "export",
        "export the streaming model (one frame in, the anticipated class out)",
        "Writes one graph that takes one uint8 RGB frame of any size (resized and "
        "preprocessed\ninside) plus the recurrent state, the running sum of the "
        "probabilities and the frame\ncount, and returns the pooled probabilities, the "
        "anticipated class and the next state\n(see msl_keras/export.py).",
        parents=[run_dir],
    )
    p.add_argument(
        "--format",
        choices=("saved_model", "tflite"),
        default="saved_model",
        help="a SavedModel folder, or float32 and float16-weight .tflite files",
    )
    p.add_argument("--out", required=True, help="the output folder (new or empty)")

    add(
        "run",
        "every stage from one config: prepare, train-cnn, extract, train-lstm, evaluate",
        parents=[config, fold, strategy],
    )

    p = add(
        "import-original",
        "import the original code's per-video .npy features into a feature store",
        parents=[],
    )
    p.add_argument("--context-dir", required=True, help="its context-aware feature folder")
    p.add_argument("--action-dir", required=True, help="its action-aware feature folder")
    p.add_argument("--out", required=True, help="the feature store (.h5) to write")
    p.add_argument("--dataset", default="imported", help="dataset name recorded in the store")
    p.add_argument(
        "--allow-zero-rows",
        action="store_true",
        help="accept all-zero feature rows (the original wrote them when decoding failed)",
    )

    p = add(
        "import-original-weights",
        "load weights saved by the original scripts into msl_keras models",
        "Reads a Keras 2 `save_weights` file of the original code's context model, action"
        "\nmodel or MS-LSTM, maps its layers onto ours and reports exactly what loaded and "
        "what\ncannot (see docs/original-code.md).",
        parents=[],
    )
    p.add_argument("file", help="the original's .h5 weights file")
    p.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "context", "action", "ms_lstm"),
        help="which model the file holds (default: detected)",
    )
    p.add_argument("--out", help="write our model: a .keras or .weights.h5 path")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--inspect", action="store_true", help="only list the file's layers")
    p.add_argument("--input-size", type=int, help="CNN input size the file was trained at")
    p.add_argument("--fc-units", type=int, help="fc6/fc7 size")
    p.add_argument("--context-dim", type=int, help="MS-LSTM context feature size")
    p.add_argument("--action-dim", type=int, help="MS-LSTM action feature size")
    p.add_argument("--temporal-length", type=int, help="the original's T (its LSTM input)")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="load what fits and report the rest instead of refusing the file",
    )

    p = add(
        "config",
        "print the resolved config, every valid key or every preset",
        parents=[config],
    )
    p.add_argument("--keys", action="store_true", help="list every settable key")
    p.add_argument("--presets", action="store_true", help="list every preset")
    return parser


def resolve_config(args):
    """The config from --preset, --config, --set and the shortcut flags."""
    from msl_keras.config import load_config

    overrides = list(args.overrides)
    for flag in ("root", "output_dir", "seed", "strategy"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{'data.root' if flag == 'root' else flag}={value}")
    return load_config(args.config, preset=args.preset, overrides=overrides)


def _parse_shard(text):
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise MslKerasError(f"--shard takes I/N, e.g. 0/4. Received: --shard={text}") from None
    if not 0 <= index < count:
        raise MslKerasError(f"--shard I/N needs 0 <= I < N. Received: --shard={text}")
    return index, count


def _folds(index, name):
    if name is None:
        return index.folds
    chosen = [fold for fold in index.folds if fold.name == name]
    if not chosen:
        valid = ", ".join(fold.name for fold in index.folds)
        raise MslKerasError(f"Unknown fold '{name}'. Folds of this config: {valid}.")
    return chosen


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stdout()
    if args.command is None:
        parser.print_help()
        return 0
    start = time.perf_counter()
    try:
        code = _dispatch(args)
    except MslKerasError as error:
        message = textwrap.fill(str(error), 100, break_long_words=False)
        print(f"msl-keras {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nmsl-keras {args.command}: interrupted. Finished work is kept; run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return 130
    if args.command != "config":
        print(f"[{args.command} finished in {time.perf_counter() - start:.1f} s]")
    return code


class _StdoutHandler(logging.StreamHandler):
    """Writes to `sys.stdout` as it is at each message: a caller that swaps it after
    `main()` (a notebook, pytest's capture) gets the messages, not a closed stream."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def _log_to_stdout():
    """The stages' messages (`logging`, logger "msl_keras") go to this run's stdout."""
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("msl_keras")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)


def _dispatch(args):
    if args.command == "demo":
        # oneDNN picks its CPU kernels by instruction set, so its round-off differs
        # between processors; TensorFlow reads this once, at import (below). The user's
        # value wins.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from msl_keras import pipeline
    from msl_keras.demo import demo
    from msl_keras.orchestrator import run_all

    if args.command == "config":
        from msl_keras.config import preset_descriptions, valid_keys

        if args.keys:
            print("\n".join(valid_keys()))
        elif args.presets:
            print("\n".join(preset_descriptions()))
        else:
            print(resolve_config(args).to_json())
        return 0

    if args.command == "import-original":
        from msl_keras.original.features import import_original_features

        store = import_original_features(
            args.context_dir,
            args.action_dir,
            args.out,
            dataset=args.dataset,
            allow_zero_rows=args.allow_zero_rows,
        )
        print(f"wrote {store}")
        return 0

    if args.command == "import-original-weights":
        from msl_keras.original import weights as original_weights

        sizes = ("input_size", "fc_units", "context_dim", "action_dim", "temporal_length")
        options = {k: getattr(args, k) for k in sizes if getattr(args, k) is not None}
        if args.allow_partial:
            options["allow_partial"] = True
        if args.inspect:
            print(original_weights.inspect_original_weights(args.file, args.kind, **options))
            return 0
        imported = original_weights.import_original_weights(
            args.file, args.kind, out=args.out, overwrite=args.overwrite, **options
        )
        print(imported.report)
        for role, path in imported.files.items():
            print(f"wrote {role}: {path}")
        return 0

    if args.command == "predict":
        pipeline.predict_from_run_dir(
            args.videos,
            args.run_dir,
            fold=args.fold,
            lstm=args.lstm,
            max_frames=args.max_frames,
            threshold=args.threshold,
            plot_path=args.plot,
            csv_path=args.csv,
            top_k=args.top_k,
        )
        return 0

    if args.command == "export":
        from msl_keras.export import export_from_run_dir

        export_from_run_dir(
            args.run_dir, args.out, args.format, fold=args.fold, lstm=args.lstm
        )
        return 0

    config = resolve_config(args)
    if args.command == "demo":
        losses = [name.strip() for name in args.losses.split(",") if name.strip()]
        demo(config, losses=losses)
        return 0

    features_only = config.data.dataset == "imported"
    if features_only and args.command in ("train-cnn", "extract", "merge"):
        raise MslKerasError(
            f"data.dataset=imported holds features, not videos: there is nothing to "
            f"{args.command}. Write its feature store with `msl-keras import-features`, "
            "then run train-lstm and evaluate."
        )
    index = pipeline.prepare(config)
    if args.command == "prepare":
        print(pipeline.describe(index))
        return 0
    if args.command == "run":
        run_all(config, index=index, folds=_folds(index, args.fold))
        return 0

    run = pipeline.RunDirectory.create(config)
    for fold in _folds(index, args.fold):
        if args.command == "train-cnn":
            pipeline.train_cnn(config, index, fold, run=run)
        elif args.command == "extract":
            shard = _parse_shard(args.shard) if args.shard else (0, 1)
            pipeline.extract(config, index, fold, run=run, shard=shard)
        elif args.command == "import-features":
            pipeline.import_features(config, index, fold, run=run, overwrite=args.overwrite)
        elif args.command == "merge":
            pipeline.merge_shards(config, fold, run, args.shards)
        elif args.command == "train-lstm":
            pipeline.train_lstm(config, index, fold, run=run, resume=not args.no_resume)
        elif args.command == "evaluate":
            pipeline.evaluate(config, index, fold, run=run)
    if args.command == "import-features":
        print(
            "next: `msl-keras train-lstm` then `msl-keras evaluate`, with the same "
            "--preset/--config/--set/--root options."
        )
    return 0

