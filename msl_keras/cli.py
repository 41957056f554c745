"""The `msl-keras` command line: one subcommand per step of the pipeline, each calling
the `msl_keras.pipeline` function notebooks and experiments call. Examples: README.md.
"""

import argparse
import logging
import os
import sys
import textwrap
import time

from msl_keras import __version__
from msl_keras.config import (
    EXPORT_FORMATS,
    PRESETS,
    STRATEGIES,
    load_config,
    valid_keys,
)
from msl_keras.errors import MslKerasError

EPILOG = """\
Configs: --preset (`msl-keras config --presets`), then --config FILE (JSON or YAML, may
name its own preset), then --set KEY=VALUE (repeatable; `msl-keras config --keys`).
Runs write into <output_dir>/<run name>/; the same command again resumes a stage.
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="msl-keras",
        description="Multi-stage LSTM action anticipation (Aliakbarian et al., ICCV "
        "2017) in Keras 3.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version = f"msl_keras {__version__}"
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # The arguments several subcommands share, as `parents=`.
    config = argparse.ArgumentParser(add_help=False)
    arg = config.add_argument_group("configuration").add_argument
    text = f"a named preset: {', '.join(PRESETS)} (default: demo, or the file's own)"
    arg("--preset", metavar="NAME", help=text)
    arg("--config", metavar="FILE", help="a JSON or YAML config file")
    text = "override one setting, e.g. lstm.units=512 (repeatable)"
    arg("--set", dest="overrides", metavar="KEY=VALUE", action="append", help=text)
    arg("--root", help="dataset folder (same as --set data.root=...)")
    arg("--output-dir", help="where run directories go (default: runs)")
    arg("--seed", type=int, help="random seed (same as --set seed=...)")
    fold = argparse.ArgumentParser(add_help=False)
    text = "run one fold (e.g. split1, set1_seq3); default: every fold of the config"
    fold.add_argument("--fold", help=text)
    strategy = argparse.ArgumentParser(add_help=False)
    text = "tf.distribute strategy for training (default: the config's)"
    strategy.add_argument("--strategy", choices=STRATEGIES, help=text)
    run_dir = argparse.ArgumentParser(add_help=False)
    arg = run_dir.add_argument
    arg("--run-dir", required=True, help="a run directory made by `run`/`demo`")
    arg("--fold", help="which fold's models (default: the first)")
    arg("--lstm", help="which LSTM subdirectory (default: the only/first one)")

    def add(name, help_text, description=None, parents=(config, fold)):
        """The subcommand `name`; returns its `add_argument`."""
        return sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=parents,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        ).add_argument

    text = "every stage on generated clips: our loss against cross-entropy (minutes)"
    arg = add("demo", text, parents=[config])
    text = "comma-separated loss names to compare (default: anticipation,ce)"
    arg("--losses", default="anticipation,ce", help=text)
    text = "check a dataset folder and list its clips, splits and folds"
    add("prepare", text, parents=[config])
    text = "fine-tune the context- and action-aware heads on frames (frozen trunk)"
    add("train-cnn", text)
    arg = add("extract", "write the HDF5 feature store of each fold (resumable)")
    text = "extract only shard I of N (0-based) into its own store; merge them after"
    arg("--shard", metavar="I/N", help=text)
    text = "write each fold's feature store from per-frame features made elsewhere"
    more = "Needs --preset imported; --root: README, 'Bring your own features'."
    arg = add("import-features", text, f"{text}.\n{more}")
    text = "replace a store imported from other features or settings"
    arg("--overwrite", action="store_true", help=text)
    arg = add("merge", "merge the feature stores written by `extract --shard I/N`")
    arg("--shards", type=int, required=True, help="N, the number of shards")
    text = "train the MS-LSTM (or one stream) with a loss chosen by name"
    arg = add("train-lstm", text, parents=[config, fold, strategy])
    arg("--no-resume", action="store_true", help="start over, ignoring backups")
    add("evaluate", "accuracy against frames observed on the test clips")

    text = "anticipate the action of videos, frame by frame (README, 'Predict')"
    arg = add("predict", text, parents=[run_dir])
    arg("videos", nargs="+", help="video files, frame folders or folders of videos")
    arg("--max-frames", type=int, help="stop each video after this many frames")
    text = "pooled probability of the anticipation moment (default: 0.5)"
    arg("--threshold", type=float, default=0.5, help=text)
    text = "write one row per frame of every video"
    arg("--csv", metavar="FILE", dest="csv_path", help=text)
    arg("--top-k", type=int, default=3, help="classes per CSV row (default: 3)")
    text = (
        "write the class probabilities over time with a frame strip (several videos: "
        "one file each, named <stem>_<video>.png)"
    )
    arg("--plot", metavar="PNG", dest="plot_path", help=text)

    text = "export the streaming model: one frame in, the anticipated class out"
    arg = add("export", text, f"{text} (msl_keras/export.py).", parents=[run_dir])
    text = "a SavedModel folder, or float32 and float16-weight .tflite files"
    arg("--format", choices=EXPORT_FORMATS, default="saved_model", help=text)
    arg("--out", required=True, help="the output folder (new or empty)")

    text = "one config's stages: prepare, train-cnn, extract, train-lstm, evaluate"
    add("run", text, parents=[config, fold, strategy])

    text = "import the original code's per-video .npy features into a feature store"
    arg = add("import-original", text, parents=[])
    arg("--context-dir", required=True, help="its context-aware feature folder")
    arg("--action-dir", required=True, help="its action-aware feature folder")
    text = "the feature store (.h5) to write"
    arg("--out", dest="out_path", metavar="OUT", required=True, help=text)
    arg("--dataset", default="imported", help="dataset name recorded in the store")
    text = "accept all-zero feature rows (the original's for a failed decoding)"
    arg("--allow-zero-rows", action="store_true", help=text)

    text = "load weights saved by the original scripts into msl_keras models"
    more = "(Keras 2 `save_weights` files; docs/original-code.md)"
    arg = add("import-original-weights", text, f"{text} {more}", parents=[])
    arg("file", help="the original's .h5 weights file")
    kinds = ("auto", "context", "action", "ms_lstm")
    text = "which model the file holds (default: detected)"
    arg("--kind", default="auto", choices=kinds, help=text)
    arg("--out", help="write our model: a .keras or .weights.h5 path")
    arg("--overwrite", action="store_true", help="replace existing outputs")
    arg("--inspect", action="store_true", help="only list the file's layers")
    arg("--input-size", type=int, help="CNN input size the file was trained at")
    arg("--fc-units", type=int, help="fc6/fc7 size")
    arg("--context-dim", type=int, help="MS-LSTM context feature size")
    arg("--action-dim", type=int, help="MS-LSTM action feature size")
    arg("--temporal-length", type=int, help="the original's T (its LSTM input)")
    text = "load what fits and report the rest instead of refusing the file"
    arg("--allow-partial", action="store_true", help=text)

    text = "print the resolved config, every valid key or every preset"
    arg = add("config", text, parents=[config])
    arg("--keys", action="store_true", help="list every settable key")
    arg("--presets", action="store_true", help="list every preset")
    return parser


def resolve_config(args):
    """The config from --preset, --config, --set and the shortcut flags."""
    overrides = list(args.overrides or ())
    for flag in ("root", "output_dir", "seed", "strategy"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{'data.root' if flag == 'root' else flag}={value}")
    return load_config(args.config, preset=args.preset, overrides=overrides)


class _StdoutHandler(logging.StreamHandler):
    """Writes to `sys.stdout` as it is at each message: a caller that swaps it after
    `main()` (a notebook, pytest's capture) gets the messages, not a closed stream."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # The stages' messages (logger "msl_keras"; the default format is the message).
    logger = logging.getLogger("msl_keras")
    logger.handlers = [_StdoutHandler()]
    logger.setLevel(logging.INFO)
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
        resume = "Finished work is kept; run the same command again to resume."
        print(f"\nmsl-keras {args.command}: interrupted. {resume}", file=sys.stderr)
        return 130
    if args.command != "config":
        print(f"[{args.command} finished in {time.perf_counter() - start:.1f} s]")
    return code


def _dispatch(args):
    if args.command == "demo":
        # oneDNN's CPU kernels, and so their round-off, depend on the processor;
        # TensorFlow reads this once, at import (below). The user's value wins.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from msl_keras import pipeline
    from msl_keras.demo import demo
    from msl_keras.orchestrator import run_all
    from msl_keras.runs import check_shard

    # The options of the commands that take no config are their function's arguments.
    options = {k: v for k, v in vars(args).items() if k != "command"}
    if args.command == "config":
        if args.keys:
            print("\n".join(valid_keys()))
        elif args.presets:
            width = max(map(len, PRESETS))
            for name, text in PRESETS.items():
                print(f"{name:<{width}}  {text}")
        else:
            print(resolve_config(args).to_json())
        return 0
    if args.command == "import-original":
        from msl_keras.original.features import import_original_features

        print(f"wrote {import_original_features(**options)}")
        return 0
    if args.command == "import-original-weights":
        from msl_keras.original import weights

        sizes = "input_size fc_units context_dim action_dim temporal_length".split()
        sizes = {k: options[k] for k in sizes if options[k] is not None}
        sizes["allow_partial"] = args.allow_partial
        if args.inspect:
            print(weights.inspect_original_weights(args.file, args.kind, **sizes))
            return 0
        imported = weights.import_original_weights(
            args.file, args.kind, out=args.out, overwrite=args.overwrite, **sizes
        )
        print(imported.report)
        for role, path in imported.files.items():
            print(f"wrote {role}: {path}")
        return 0
    if args.command == "predict":
        pipeline.predict_from_run_dir(**options)
        return 0
    if args.command == "export":
        from msl_keras.export import export_from_run_dir

        export_from_run_dir(**options)
        return 0

    config = resolve_config(args)
    if args.command == "demo":
        losses = [name.strip() for name in args.losses.split(",") if name.strip()]
        demo(config, losses=losses)
        return 0
    cnn_stage = args.command in ("train-cnn", "extract", "merge")
    if cnn_stage and config.data.dataset == "imported":
        raise MslKerasError(
            "data.dataset=imported holds features, not videos: nothing to "
            f"{args.command}. Write its store with `msl-keras import-features`, then "
            "train-lstm and evaluate."
        )
    index = pipeline.prepare(config)
    if args.command == "prepare":
        print(pipeline.describe(index))
        return 0
    folds = index.folds if args.fold is None else [index.fold(args.fold)]
    if args.command == "run":
        run_all(config, index=index, folds=folds)
        return 0

    run = pipeline.RunDirectory.create(config)
    for fold in folds:
        if args.command == "train-cnn":
            pipeline.train_cnn(config, index, fold, run=run)
        elif args.command == "extract":
            shard = check_shard(args.shard) if args.shard else (0, 1)
            pipeline.extract(config, index, fold, run=run, shard=shard)
        elif args.command == "import-features":
            pipeline.import_features(
                config, index, fold, run=run, overwrite=args.overwrite
            )
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
