"""Tables 1-3 of the paper: earliest and latest accuracy, ours against the paper's baselines.

Used by `table1_jhmdb.py`, `table2_ut_interaction.py` and `table3_ucf101.py`. Each row is
one LSTM (`common.METHODS`): ours (the MS-LSTM trained with the anticipation loss, Eq. 1)
and the paper's two baselines, a context-aware LSTM trained with the loss of Jain et al.
[11] or with the ranking loss of Ma et al. [21]. Every row is run on every fold of the
protocol with the same trained heads and features, and averaged over folds:

- JHMDB-21 and UCF-101: the official splits 1-3 (`--splits`);
- UT-Interaction: the 10 leave-one-sequence-out folds of each set, both sets (`--sets`,
  `--folds`), reported per set and as their mean (`msl_keras.stages.run.summarize`);
- generated clips: their one split.

Earliest / latest follow the dataset's convention (`msl_keras.metrics.EARLIEST`), with
temporal average pooling of the final stage's predictions (the paper's inference).
"""

import time

import common
import numpy as np

RATIO_KEYS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1")
# Where the paper's earliest point sits on the observed-ratio axis (UCF-101: 2 frames of
# about 180, ~1%).
EARLIEST_RATIO = {"jhmdb": 0.2, "ut_interaction": 0.5, "ucf101": 0.01, "generated": 0.2}


def _extra_arguments(dataset):
    def extra(parser):
        parser.add_argument(
            "--methods",
            nargs="+",
            choices=("ours", "context_jain", "context_ranking"),
            default=["ours", "context_jain", "context_ranking"],
            help="table rows to run (default: all three)",
        )
        if dataset == "ut_interaction":
            parser.add_argument(
                "--sets", nargs="+", type=int, choices=(1, 2), default=[1, 2]
            )
            parser.add_argument(
                "--folds",
                nargs="+",
                default=None,
                help="only these folds, e.g. set1_seq1 set2_seq11 (default: all of --sets)",
            )
        else:
            parser.add_argument(
                "--splits",
                nargs="+",
                type=int,
                choices=(1, 2, 3),
                default=[1, 2, 3],
                help="official splits to average over (default: 1 2 3)",
            )

    return extra


def protocol_units(args):
    """`[(config, index, folds)]`: one unit per split (JHMDB, UCF-101) or one for all UT
    folds; the generated clips have one split."""
    from msl_keras.config import apply_overrides

    config = common.scale_config(args)
    verbose = not args.quiet
    if args.dataset == "ut_interaction":
        if len(args.sets) == 1:
            config = apply_overrides(config, {"data.ut_set": args.sets[0]})
        index = common.prepare_index(config, verbose)
        folds = common.select_folds(index, args.folds)
        return [(config, index, folds)]
    if args.dataset == "generated":
        index = common.prepare_index(config, verbose)
        return [(config, index, index.folds)]
    units = []
    for split in args.splits:
        split_config = apply_overrides(config, {"data.split": split})
        index = common.prepare_index(split_config, verbose)
        units.append((split_config, index, index.folds))
    return units


def run_table(key, script, description, argv=None):
    """Runs Table `key` ("table1" | "table2" | "table3"); returns the results payload."""
    from msl_keras.stages.run import summarize

    paper = common.PAPER_TABLES[key]
    args = common.parse_args(
        description, paper["dataset"], argv, extra=_extra_arguments(paper["dataset"])
    )
    start = time.perf_counter()
    units = protocol_units(args)
    per_method = {m: [] for m in args.methods}
    for config, index, folds in units:
        results = common.run_methods(
            config, index, folds, common.methods_of(args.methods), not args.quiet
        )
        for method, fold_results in results.items():
            per_method[method].extend(fold_results)
    wall = time.perf_counter() - start
    config, index, _ = units[0]

    rows, table, curves, paper_points = [], {}, {}, {}
    for method in args.methods:
        results = per_method[method]
        label = common.METHODS[method][0]
        summary = summarize(results)
        clips = np.array([r["clips"]["test_evaluated"] for r in results], float)
        weighted = {
            k: float(
                np.sum(clips * [r["summary"][k] for r in results]) / max(clips.sum(), 1)
            )
            for k in ("earliest", "latest")
        }
        paper_e, paper_l = paper["rows"][method]
        table[method] = {
            "label": label,
            "paper_earliest": paper_e / 100,
            "paper_latest": paper_l / 100,
            **{
                key: summary[key]
                for key in (
                    "earliest",
                    "earliest_std",
                    "latest",
                    "latest_std",
                    "earliest_raw",
                    "latest_raw",
                )
            },
            "per_set": summary["per_set"],
            "latest_not_whole_clip": summary["latest_not_whole_clip"],
            "coinciding_readings": summary["coinciding_readings"],
            "clip_weighted": weighted,
            "folds": len(results),
            "per_fold": {
                r["fold"]: {
                    "earliest": r["summary"]["earliest"],
                    "latest": r["summary"]["latest"],
                    "test_clips": r["clips"]["test_evaluated"],
                    "best_epoch": r["checkpoint"]["best_epoch"],
                    "val_anticipation_accuracy": r["checkpoint"][
                        "val_anticipation_accuracy"
                    ],
                    "timings_s": r["timings_s"],
                }
                for r in results
            },
        }
        rows.append(
            [label, paper_e, paper_l, 100 * summary["earliest"], 100 * summary["latest"]]
        )
        if len(summary["per_set"]) > 1:
            for subset, means in summary["per_set"].items():
                rows.append(
                    [
                        f"  {subset} ({len(means['folds'])} folds)",
                        None,
                        None,
                        100 * means["earliest"],
                        100 * means["latest"],
                    ]
                )
        ratio_curve = [
            np.mean(
                [
                    r["stages"][r["summary"]["stage"]]["ratios"][k]["pooled"]
                    for r in results
                ]
            )
            for k in RATIO_KEYS
        ]
        curves[label] = ([float(k) for k in RATIO_KEYS], ratio_curve)
        paper_points[label] = [
            (EARLIEST_RATIO[paper["dataset"]], paper_e),
            (1.0, paper_l),
        ]
        table[method]["accuracy_vs_ratio"] = dict(zip(RATIO_KEYS, ratio_curve))

    out_dir = common.experiment_dir(args, script.removesuffix(".py"))
    fold_count = len(per_method[args.methods[0]])
    where = (
        f"{args.dataset} at {args.root}, {fold_count} fold{'s' * (fold_count != 1)}, "
        f"scale {args.scale}, seed {args.seed}"
    )
    text = common.format_table(
        f"{paper['title']}\n(ours: {where}; earliest here = "
        f"{common_earliest(args.dataset)}; mean over folds"
        f"{', each set below' if args.dataset == 'ut_interaction' else ''}; temporal "
        "average pooling)",
        ["method", "paper earliest", "paper latest", "ours earliest", "ours latest"],
        rows,
    )
    plot = common.plot_ratio_curves(
        curves,
        out_dir / "accuracy_vs_observed.png",
        title=f"{key}: {where}",
        chance=1.0 / index.num_classes,
        paper_points=paper_points if args.dataset == paper["dataset"] else None,
    )
    payload = {
        "experiment": key,
        "command": common.command_line(script, args),
        "paper": {m: paper["rows"][m] for m in args.methods},
        "dataset": args.dataset,
        "root": str(args.root),
        "scale": args.scale,
        "seed": args.seed,
        "trunk_weights": common.trunk_description(config),
        "earliest_convention": common_earliest(args.dataset),
        "folds": [fold.name for _, _, folds in units for fold in folds],
        "num_classes": index.num_classes,
        "chance": 1.0 / index.num_classes,
        "table": table,
        "config": config.to_dict(),
        "wall_time_s": round(wall, 1),
        "machine": common.machine(),
        "plot": str(plot),
        "text": text,
    }
    path = common.write_results(out_dir, payload)
    print("\n" + text)
    print(
        f"\ntrunk: {payload['trunk_weights']}\nwall time: {wall:.0f} s\n"
        f"results: {path}\nplot: {plot}"
    )
    return payload


def common_earliest(dataset):
    from msl_keras.metrics import EARLIEST

    kind, amount = EARLIEST[dataset]
    return f"first {amount} frames" if kind == "frames" else f"first {100 * amount:g}%"
