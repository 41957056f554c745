"""Tables 1-3 of the paper: earliest and latest accuracy, ours against the paper's baselines.

Used by `table1_jhmdb.py`, `table2_ut_interaction.py` and `table3_ucf101.py`. Each row is
one LSTM (`common.METHODS`): ours (the MS-LSTM trained with the anticipation loss, Eq. 1)
and the paper's two baselines, a context-aware LSTM trained with the loss of Jain et al.
[11] or with the ranking loss of Ma et al. [21]. Every row is run on every fold of the
protocol with the same trained heads and features, and averaged over folds:

- JHMDB-21 and UCF-101: the official splits 1-3 (`--splits`);
- UT-Interaction: the 10 leave-one-sequence-out folds of each set, both sets (`--sets`,
  `--folds`), reported per set and as their mean (`msl_keras.orchestrator.summarize`);
- generated clips: their one split.

Earliest / latest follow the dataset's convention (`msl_keras.metrics.EARLIEST`), with
temporal average pooling of the final stage's predictions (the paper's inference).

The row `probe` (not in the paper, run by default) is the floor under ours: a linear
softmax classifier on the mean of the same frozen trunk's pooled conv features over the
frames observed (`probe_frozen_trunk.py`), on the same folds and frames. Each baseline row
is compared with ours fold by fold (`fold_statistics.compare`: mean paired difference,
bootstrap interval, sign test), for earliest and latest, in the printout and in
`results.json` (`paired`).
"""

import time

import common
import fold_statistics
import numpy as np
import probe_frozen_trunk

LABELS = {
    **{name: label for name, (label, _) in common.METHODS.items()},
    "probe": probe_frozen_trunk.LABEL,
}
RATIO_KEYS = common.RATIO_KEYS
# Where the paper's earliest point sits on the observed-ratio axis (UCF-101: 2 frames of
# about 180, ~1%).
EARLIEST_RATIO = {"jhmdb": 0.2, "ut_interaction": 0.5, "ucf101": 0.01, "generated": 0.2}


def _extra_arguments(dataset):
    def extra(parser):
        parser.add_argument(
            "--methods",
            nargs="+",
            choices=("ours", "context_jain", "context_ranking", "probe"),
            default=["ours", "context_jain", "context_ranking", "probe"],
            help="table rows to run (default: all four; 'probe' is the linear probe "
            "on the frozen trunk)",
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


def lstm_fold_row(result):
    """One fold's row of an LSTM method from its `evaluate` results."""
    stage = result["stages"][result["summary"]["stage"]]
    return {
        "fold": result["fold"],
        "subset": result.get("subset"),
        "earliest": result["summary"]["earliest"],
        "latest": result["summary"]["latest"],
        "earliest_raw": result["summary"]["earliest_raw"],
        "latest_raw": result["summary"]["latest_raw"],
        "test_clips": result["clips"]["test_evaluated"],
        "accuracy_vs_ratio": {k: stage["ratios"][k]["pooled"] for k in RATIO_KEYS},
        "best_epoch": result["checkpoint"]["best_epoch"],
        "val_anticipation_accuracy": result["checkpoint"]["val_anticipation_accuracy"],
        "latest_is_whole_clip": result["summary"].get("latest_is_whole_clip", True),
        "coinciding_readings": result["summary"].get("coinciding_readings", 0),
        "timings_s": result["timings_s"],
    }


def stage_wall_times(per_method, probe_seconds):
    """Seconds per stage summed over folds, per method (heads and features are made by
    the first LSTM method of each fold and reused by the others)."""
    times = {}
    for method, rows in per_method.items():
        total = {}
        for row in rows:
            for stage, seconds in row["timings_s"].items():
                total[stage] = total.get(stage, 0.0) + seconds
        times[method] = {k: round(v, 1) for k, v in total.items()}
    if "probe" in times:
        times["probe"]["trunk_features"] = round(probe_seconds, 1)
    return times


def run_table(key, script, description, argv=None, before_step=None):
    """Runs Table `key` ("table1" | "table2" | "table3"); returns the results payload.

    `before_step(name)`, if given, is called before each fold (its name) and before the
    probe ("probe"); it may raise to stop the run between steps (a time budget).
    """
    paper = common.PAPER_TABLES[key]
    args = common.parse_args(
        description, paper["dataset"], argv, extra=_extra_arguments(paper["dataset"])
    )
    start = time.perf_counter()
    units = protocol_units(args)
    lstm_methods = [m for m in args.methods if m != "probe"]
    per_method = {m: [] for m in args.methods}
    probe_seconds = 0.0
    out_dir = common.experiment_dir(args, script.removesuffix(".py"))
    for config, index, folds in units:
        if lstm_methods:
            results = common.run_methods(
                config, index, folds, common.methods_of(lstm_methods), not args.quiet,
                before_fold=before_step,
            )
            for method, fold_results in results.items():
                per_method[method].extend(lstm_fold_row(r) for r in fold_results)
        if "probe" in args.methods:
            if before_step is not None:
                before_step("probe")
            rows, data = probe_frozen_trunk.run_probe(
                config, index, folds, common.experiment_dir(args, "probe_frozen_trunk"),
                not args.quiet,
            )
            per_method["probe"].extend(rows)
            probe_seconds += data["seconds"]
    wall = time.perf_counter() - start
    config, index, _ = units[0]

    rows, table, curves, paper_points = [], {}, {}, {}
    for method in args.methods:
        label = LABELS[method]
        paper_e, paper_l = paper["rows"].get(method, (None, None))
        summary = common.summarise_rows(per_method[method])
        table[method] = {
            "label": label,
            "paper_earliest": None if paper_e is None else paper_e / 100,
            "paper_latest": None if paper_l is None else paper_l / 100,
            **summary,
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
        curves[label] = (
            [float(k) for k in RATIO_KEYS],
            [summary["accuracy_vs_ratio"][k] for k in RATIO_KEYS],
        )
        if paper_e is not None:
            paper_points[label] = [
                (EARLIEST_RATIO[paper["dataset"]], paper_e),
                (1.0, paper_l),
            ]

    paired = {}
    if "ours" in per_method:
        for method in args.methods:
            if method == "ours":
                continue
            paired[method] = {
                reading: fold_statistics.compare(
                    {r["fold"]: r[reading] for r in per_method["ours"]},
                    {r["fold"]: r[reading] for r in per_method[method]},
                )
                for reading in ("earliest", "latest")
            }

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
    if paired:
        text += "\n\nPaired differences over folds (bootstrap over folds, seed "
        text += f"{fold_statistics.SEED}; exact sign test):"
        for method, readings in paired.items():
            for reading, result in readings.items():
                text += f"\n  {reading:8s} " + fold_statistics.format_comparison(
                    method, result
                )
    from msl_keras.plots import plot_accuracy_curves

    plot = plot_accuracy_curves(
        curves,
        out_dir / "accuracy_vs_observed.png",
        title=f"{key}: {where}",
        chance=1.0 / index.num_classes,
        paper_points=paper_points if args.dataset == paper["dataset"] else None,
    )
    payload = {
        "experiment": key,
        "command": common.command_line(script, args),
        "paper": {m: paper["rows"].get(m) for m in args.methods},
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
        "paired": paired,
        "stage_wall_s": stage_wall_times(per_method, probe_seconds),
    }
    note = f"wall time per stage, summed over folds: {payload['stage_wall_s']}\n"
    return common.finish(
        out_dir, payload, config, wall, plot, text, note, code=args.code
    )


def common_earliest(dataset):
    from msl_keras.metrics import EARLIEST

    kind, amount = EARLIEST[dataset]
    return f"first {amount} frames" if kind == "frames" else f"first {100 * amount:g}%"
