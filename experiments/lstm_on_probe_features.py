"""Where Table 2's accuracy is lost: our LSTMs on the probe's own frozen-trunk features.

    python experiments/lstm_on_probe_features.py --root ../shared/data/ut_interaction \
        --features runs/table2/probe_frozen_trunk/features/<fingerprint>.npz \
        --compare runs/table2/table2_ut_interaction/results.json

Not in the paper: a diagnostic. On UT-Interaction the linear probe on the frozen trunk
(`probe_frozen_trunk.py`) scores about as well as MS-LSTM + our loss on the fc7 features
of the heads (RESULTS.md). Either the heads (fc6 / fc7 learnt from scratch on ~48 clips)
lose what the trunk has, or the LSTM and its loss do not use it. This script trains the
same LSTMs (ours, Jain, Ma; the cpu scale's sizes) on the probe's features instead of the
heads': each of the T frames of a clip is the trunk's globally average pooled
`block5_conv2` (context stream) and `block5_conv3` (action stream), 512-d each, scaled
to unit RMS per frame (no statistic of any other clip). Same clips, frames, folds,
validation sequences (drawn by `read_ut_interaction` with `--validation-fraction` and
`--seed`, as Table 2's) and readings (earliest: the last frame within the first 50% of
each clip, UT-Interaction's convention, taken from `evaluate`'s 50% ratio). The features go through `msl-keras import-features`'s path
(`data.dataset="imported"`, one `split<q>` column per test sequence q), so every step is
the pipeline's own.

`--features` is the `.npz` the probe caches (`clip_ids`, `frame_indices`, `num_frames`
and one `(clips, T, 512)` array per layer); `--compare`, a Table 2 `results.json` whose
per-fold rows (the probe's, and ours on the heads' features) are paired with these.

Writes `<output-dir>/lstm_on_probe_features/results.json` (per fold, per method, and
the paired differences) and prints the table.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import fold_statistics  # noqa: E402
import numpy as np  # noqa: E402
import tables  # noqa: E402

STREAM_LAYERS = {"context": "block5_conv2", "action": "block5_conv3"}
METHODS = ("ours", "context_jain", "context_ranking")
# UT-Interaction's earliest point, 50% of each clip (metrics.EARLIEST); `evaluate` reads an
# imported dataset's at 20% (JHMDB's convention), so the row takes the 50% ratio.
UT_EARLIEST = "0.5"


def fold_row(result, set_number, sequence):
    """`tables.lstm_fold_row` of one fold, earliest read at UT-Interaction's 50%."""
    row = tables.lstm_fold_row(result)
    ratio = result["stages"][result["summary"]["stage"]]["ratios"][UT_EARLIEST]
    row.update(
        fold=f"set{set_number}_seq{sequence}",
        subset=f"set{set_number}",
        earliest=ratio["pooled"],
        earliest_raw=ratio["raw"],
    )
    return row


def unit_rms(features):
    """`(clips, T, D)` -> each frame divided by its root mean square (zeros stay 0)."""
    rms = np.sqrt(np.mean(np.square(features), axis=-1, keepdims=True))
    return (features / np.maximum(rms, 1e-12)).astype(np.float32)


def imported_arrays(features, root, validation_fraction, seed, folds, selected=None):
    """The `import-features` arrays of the probe's features, one split per fold.

    Args:
        features: the probe's cached arrays (`clip_ids`, `frame_indices`, `num_frames`,
            `block5_conv2`, `block5_conv3`).
        root: the UT-Interaction folder (labels and roles come from its reader).
        validation_fraction, seed: the validation draw of each fold, as Table 2's.
        folds: `[(set, test sequence)]` of the dataset (every clip gets its label).
        selected: the folds that get a split column (default: all of `folds`).

    Returns:
        dict of arrays for `numpy.savez` (`imported.FeatureSource` reads it): `context`,
        `action`, `labels`, `groups`, `clip_ids`, `frame_indices`, `num_frames`,
        `class_names` and `split<q>` per test sequence q (clips of the other set: "").
    """
    from msl_keras.data.ut_interaction import class_names, read_ut_interaction

    clip_ids = [str(c) for c in features["clip_ids"]]
    row = {clip_id: i for i, clip_id in enumerate(clip_ids)}
    labels = np.full(len(clip_ids), -1, np.int64)
    groups = [""] * len(clip_ids)
    arrays = {}
    for set_number, sequence in folds:
        roles = [""] * len(clip_ids)
        records = read_ut_interaction(
            root, set_number, sequence, validation_fraction=validation_fraction, seed=seed
        )
        for record in records:
            if record.clip_id not in row:
                raise ValueError(
                    f"clip '{record.clip_id}' of {root} has no row in the features: "
                    "compute them on the same dataset (probe_frozen_trunk.py)."
                )
            i = row[record.clip_id]
            roles[i] = record.role
            labels[i] = record.label
            groups[i] = f"set{set_number}_{record.group}"
        if selected is None or (set_number, sequence) in selected:
            arrays[f"split{sequence}"] = np.array(roles)
    if (labels < 0).any():
        missing = [clip_ids[i] for i in np.flatnonzero(labels < 0)]
        raise ValueError(f"clips {missing[:5]} of the features are not in {root}.")
    arrays.update(
        {
            stream: unit_rms(np.asarray(features[layer], np.float32))
            for stream, layer in STREAM_LAYERS.items()
        }
    )
    arrays.update(
        labels=labels,
        groups=np.array(groups),
        clip_ids=np.array(clip_ids),
        frame_indices=np.asarray(features["frame_indices"]),
        num_frames=np.asarray(features["num_frames"]),
        class_names=np.array(class_names()),
    )
    return arrays


def fold_config(args, npz, sequence):
    """The cpu scale's LSTM settings on the imported features of fold `sequence`."""
    from msl_keras.config import apply_overrides, get_preset, parse_override

    settings = {
        "name": "lstm_on_probe",
        "data.dataset": "imported",
        "data.root": str(npz),
        "data.split": sequence,
        # The validation clips are marked in the split (Table 2's draw); none carved.
        "data.validation_fraction": 0.0,
        "data.model_selection": "refit",
        "lstm.epochs": 30,
        "seed": args.seed,
        "output_dir": str(Path(args.output_dir) / "runs"),
    }
    config = apply_overrides(get_preset("cpu_real"), settings)
    return apply_overrides(config, dict(parse_override(o) for o in args.overrides))


def compared_rows(path, method):
    """`{fold: row}` of `method` in a Table 2 `results.json`."""
    table = json.loads(Path(path).read_text())["table"]
    if method not in table:
        return {}
    return table[method]["per_fold"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the UT-Interaction folder")
    parser.add_argument("--features", required=True, help="the probe's cached .npz")
    parser.add_argument("--compare", help="a Table 2 results.json to pair with")
    parser.add_argument("--output-dir", default=common.DEFAULT_OUTPUT_DIR)
    parser.add_argument("--folds", nargs="+", help="e.g. set1_seq1 (default: all 20)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    args.code = common.code_version()  # at the start, as common.parse_args does
    common.quiet_tensorflow()
    from msl_keras.pipeline.dataset_index import prepare

    start = time.perf_counter()
    out_dir = common.experiment_dir(args, "lstm_on_probe_features")
    from msl_keras.data.ut_interaction import ut_interaction_folds

    every_fold = ut_interaction_folds(args.root)
    folds = [f for f in every_fold if not args.folds or f"set{f[0]}_seq{f[1]}" in args.folds]
    with np.load(args.features) as opened:
        features = {k: opened[k] for k in opened.files}
    npz = out_dir / "features.npz"
    np.savez(
        npz,
        **imported_arrays(
            features, args.root, args.validation_fraction, args.seed, every_fold, folds
        ),
    )
    per_method = {m: [] for m in args.methods}
    for number, (set_number, sequence) in enumerate(folds, 1):
        config = fold_config(args, npz, sequence)
        index = prepare(config)
        results = common.run_methods(
            config, index, index.folds, common.methods_of(args.methods), verbose=False
        )
        for method, fold_results in results.items():
            row = fold_row(fold_results[0], set_number, sequence)
            per_method[method].append(row)
            print(
                f"[{number}/{len(folds)}] {row['fold']} {method}: earliest "
                f"{100 * row['earliest']:5.1f}%  latest {100 * row['latest']:5.1f}%",
                flush=True,
            )
    wall = time.perf_counter() - start

    table = {m: common.summarise_rows(rows) for m, rows in per_method.items()}
    rows = [
        [f"{tables.LABELS[m]}, on the probe's features", 100 * s["earliest"],
         100 * s["latest"]]
        for m, s in table.items()
    ]  # fmt: skip
    paired = {}
    if args.compare:
        references = {
            "probe": compared_rows(args.compare, "probe"),
            "ours on the heads' features": compared_rows(args.compare, "ours"),
        }
        for name, reference in references.items():
            if not reference:
                continue
            ours = {r["fold"]: r for r in per_method.get("ours", [])}
            shared = sorted(set(ours) & set(reference))
            paired[name] = {
                reading: fold_statistics.compare(
                    {f: ours[f][reading] for f in shared},
                    {f: reference[f][reading] for f in shared},
                )
                for reading in ("earliest", "latest")
            }
    text = common.format_table(
        f"LSTMs on the probe's frozen-trunk features (UT-Interaction, {len(folds)} "
        "folds; mean over folds)",
        ["method", "earliest", "latest"],
        rows,
    )
    for name, readings in paired.items():
        for reading, result in readings.items():
            text += f"\n  {reading:8s} " + fold_statistics.format_comparison(
                name, result
            )
    from msl_keras.plots import plot_accuracy_curves

    plot = plot_accuracy_curves(
        {
            tables.LABELS[m]: (
                [float(k) for k in common.RATIO_KEYS],
                [s["accuracy_vs_ratio"][k] for k in common.RATIO_KEYS],
            )
            for m, s in table.items()
        },
        out_dir / "accuracy_vs_observed.png",
        title="LSTMs on the probe's features",
        chance=1.0 / 6,
    )
    payload = {
        "experiment": "lstm_on_probe_features",
        "command": common.command_line("lstm_on_probe_features.py", args),
        "features": str(args.features),
        "features_settings": str(features.get("settings", "")),
        "stream_layers": STREAM_LAYERS,
        "folds": [f"set{s}_seq{q}" for s, q in folds],
        "table": table,
        "paired": paired,
    }
    # Not common.finish: its "trunk" line would name the config's (unused) CNN weights;
    # the trunk is the one that made --features.
    payload.update(
        config=config.to_dict(), wall_time_s=round(wall, 1),
        machine=common.machine(args.code), plot=str(plot), text=text,
    )  # fmt: skip
    path = common.write_results(out_dir, payload)
    print(f"\n{text}\n\nwall time: {wall:.0f} s\nresults: {path}\nplot: {plot}")
    return payload


if __name__ == "__main__":
    main()
