"""The leakage check: the action stream's CAM from the true label against the model's own
prediction, everything else equal.

    python experiments/leakage_check.py --root data/JHMDB --scale paper        # GPU, split 1
    python experiments/leakage_check.py --root data/generated --scale cpu

The action-aware features mask conv5_3 with the class activation map of one class (Eqs.
2-3). The authors' code took that class from the ground-truth label, for the test clips too
(../shared/paper/NOTES.md, defect 2): the features then carry the answer. This script trains
the heads once, then extracts the features of every clip twice with the SAME trunk and heads,
once with the CAM of the predicted class (`cnn.cam_class="predicted"`, our default) and once
with the CAM of the label (`"oracle"`), trains one MS-LSTM on each with the same seed and
settings, and scores them on the same test clips:

    predicted CAM, train and test            what a deployed model can do (ours)
    label CAM, train and test                what the original code measured
    label CAM for training, predicted test   the original model on videos without labels

No paper number to compare with: the paper's Tables 1-3 come from code with the label CAM,
and this check measures how much that can inflate them. Also reported: how often the CAM
branch's own prediction is the label on the test frames (when it is always right, the two
CAMs coincide and nothing leaks). Writes `<output-dir>/leakage_check/results.json` and
`leakage_check.png`.
"""

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

ROWS = {
    "predicted": "predicted CAM, train and test (ours)",
    "oracle": "label CAM, train and test (original code)",
    "oracle_trained_predicted_test": "label CAM to train, predicted CAM at test",
}


def _extra(parser):
    parser.add_argument(
        "--splits", nargs="+", type=int, choices=(1, 2, 3), default=[1],
        help="JHMDB / UCF-101 splits (default: 1)",
    )
    parser.add_argument(
        "--sets", nargs="+", type=int, choices=(1, 2), default=[1],
        help="UT-Interaction sets (default: 1, its 10 folds)",
    )
    parser.add_argument(
        "--folds", nargs="+", default=None,
        help="UT-Interaction folds (default: every fold of --sets)",
    )


def cam_agreement(extractor, config, fold):
    """Fraction of the fold's test frames whose CAM-branch prediction is the label."""
    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.data.video import read_clip

    size = int(config.cnn.input_size)
    hits = total = 0
    for record in fold.by_role("test"):
        frames, _, _ = read_clip(
            record.path,
            int(config.data.num_steps),
            mode=config.data.frame_selection,
            observed_ratio=config.data.observed_ratio,
        )
        out = extractor.extract(np.asarray(preprocess_frames(frames, (size, size))))
        hits += int((out["cam_scores"].argmax(-1) == record.label).sum())
        total += len(frames)
    return hits / max(total, 1)


def cross_evaluate(config, index, fold, run, checkpoint):
    """Scores `checkpoint` on the test features of `run` (the predicted-CAM store)."""
    from msl_keras.callbacks import causal_forward
    from msl_keras.pipeline.evaluation import score_stage
    from msl_keras.runs import load_lstm, read_fold_features

    _, _, arrays, _ = read_fold_features(config, index, fold, run, ("test",))
    test = arrays["test"]
    model = load_lstm(checkpoint)
    probs = causal_forward(
        model, {s: test[s] for s in ("context", "action")}, config.lstm.batch_size
    )["stage2"]
    return score_stage(
        probs,
        test["labels"],
        test["lengths"],
        test["frame_indices"],
        test["num_frames"],
        config.data.dataset,
        config.eval.ratios,
        max(1, min(int(config.eval.top_k), index.num_classes)),
    )


def main(argv=None):
    import keras

    from msl_keras.config import apply_overrides
    from msl_keras.plots import plot_accuracy_curves
    from msl_keras.runs import RunDirectory
    from msl_keras.pipeline.evaluation import evaluate
    from msl_keras.pipeline.extraction import extract
    from msl_keras.orchestrator import run_fold
    from msl_keras.pipeline.lstm_training import train_lstm
    from msl_keras.runs import load_extractor
    from tables import common_earliest, protocol_units

    args = common.parse_args(__doc__, "jhmdb", argv, extra=_extra)
    verbose = not args.quiet
    start = time.perf_counter()
    args.overrides = ["cnn.cam_class=predicted"] + list(args.overrides)
    units = protocol_units(args)
    scores = {row: [] for row in ROWS}
    agreement, timings = [], []
    for config, index, folds in units:
        config = apply_overrides(config, common.METHODS["ours"][1])
        oracle_config = apply_overrides(config, {"cnn.cam_class": "oracle"})
        run = RunDirectory.create(config)
        oracle_run = RunDirectory.create(oracle_config)
        for fold in folds:
            t0 = time.perf_counter()
            (result,) = run_fold(config, index, fold, run, verbose=0).values()
            scores["predicted"].append(result["stages"]["stage2"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "oracle" warns: on purpose
                # The heads and trunk of the predicted run, the label's CAM.
                extractor = load_extractor(oracle_config, str(run.root), fold)
                extract(
                    oracle_config, index, fold, run=oracle_run,
                    extractor=extractor, verbose=0,
                )
            (oracle_run.cnn_dir(fold)).mkdir(parents=True, exist_ok=True)
            (oracle_run.cnn_dir(fold) / "HEADS.txt").write_text(
                f"Features extracted with the heads of {run.cnn_dir(fold)} "
                "(cam_class='oracle' at extraction only).\n"
            )
            best = train_lstm(oracle_config, index, fold, run=oracle_run, verbose=0)
            oracle = evaluate(oracle_config, index, fold, run=oracle_run, verbose=False)
            scores["oracle"].append(oracle["stages"]["stage2"])
            scores["oracle_trained_predicted_test"].append(
                cross_evaluate(config, index, fold, run, best)
            )
            predicted_extractor = load_extractor(config, run, fold)
            agreement.append(cam_agreement(predicted_extractor, config, fold))
            timings.append(round(time.perf_counter() - t0, 1))
            if verbose:
                print(
                    f"{fold.name}: "
                    + ", ".join(
                        f"{row} {100 * scores[row][-1]['earliest']:.1f}/"
                        f"{100 * scores[row][-1]['latest']:.1f}%"
                        for row in ROWS
                    )
                    + f"; CAM class = label on {100 * agreement[-1]:.0f}% of test frames",
                    flush=True,
                )
            keras.backend.clear_session()
    wall = time.perf_counter() - start
    config, index, _ = units[0]

    table, rows, curves = {}, [], {}
    for row, label in ROWS.items():
        runs = scores[row]
        steps = min(len(s["accuracy_vs_steps_pooled"]) for s in runs)
        curve = np.mean([s["accuracy_vs_steps_pooled"][:steps] for s in runs], axis=0)
        curves[label] = curve
        table[row] = {
            "label": label,
            "earliest": float(np.mean([s["earliest"] for s in runs])),
            "latest": float(np.mean([s["latest"] for s in runs])),
            "mean_over_steps": float(curve.mean()),
            "accuracy_vs_steps_pooled": curve.tolist(),
        }
        rows.append(
            [label, 100 * table[row]["earliest"], 100 * table[row]["latest"],
             100 * table[row]["mean_over_steps"]]
        )
    inflation = {
        k: table["oracle"][k] - table["predicted"][k]
        for k in ("earliest", "latest", "mean_over_steps")
    }
    out_dir = common.experiment_dir(args, "leakage_check")
    folds = [fold.name for _, _, fs in units for fold in fs]
    where = f"{args.dataset}, {len(folds)} fold(s), scale {args.scale}, seed {args.seed}"
    text = common.format_table(
        f"Leakage check: MS-LSTM + our loss, stage 2 pooled ({where}; earliest = "
        f"{common_earliest(args.dataset)})",
        ["action-stream CAM class", "earliest", "latest", "mean over t"],
        rows,
    ) + (
        "\nlabel CAM minus predicted CAM: "
        f"earliest {100 * inflation['earliest']:+.1f}, "
        f"latest {100 * inflation['latest']:+.1f}, "
        f"mean {100 * inflation['mean_over_steps']:+.1f}"
        f" points; the CAM branch predicts the label on "
        f"{100 * float(np.mean(agreement)):.0f}% of the test frames"
    )
    plot = plot_accuracy_curves(
        curves, out_dir / "leakage_check.png",
        title=f"Leakage check ({where})", chance=1.0 / index.num_classes,
    )
    payload = {
        "experiment": "leakage_check",
        "command": common.command_line("leakage_check.py", args),
        "paper": "none: the paper's numbers come from code with the label CAM (defect 2)",
        "dataset": args.dataset,
        "scale": args.scale,
        "seed": args.seed,
        "trunk_weights": common.trunk_description(config),
        "folds": folds,
        "chance": 1.0 / index.num_classes,
        "table": table,
        "inflation_label_minus_predicted": inflation,
        "cam_class_equals_label_on_test_frames": float(np.mean(agreement)),
        "per_fold_cam_agreement": dict(zip(folds, agreement)),
        "per_fold_time_s": dict(zip(folds, timings)),
    }
    return common.finish(out_dir, payload, config, wall, plot, text, code=args.code)


if __name__ == "__main__":
    main()
