"""The original code's choices against ours, on the SAME features, through the pipeline.

    python experiments/original_vs_ours.py                 # the demo's clips and heads (minutes)
    python experiments/original_vs_ours.py --tiny          # the same at CI size (seconds)
    python experiments/original_vs_ours.py --synthetic     # random but learnable features
    python experiments/original_vs_ours.py --store runs/<run>/split1/features/split1.h5
    python experiments/original_vs_ours.py --store imported.h5 --original-dir <its context dir>

No paper number to match: the paper reports only its own choices (e.g. JHMDB-21
earliest/latest 55% / 58%, Table 1; UCF-101 MS-LSTM 80.5% / 83.4%, Table 4). This script
measures how far each deviation of the authors' code (shared/paper/NOTES.md, defects
2, 6, 8, 9; docs/original-code.md) moves such numbers, everything else held fixed:

1. loss: the MS-LSTM trained with our anticipation loss (Eq. 1) against the original's
   "partially_linear" (Eq. 1 with T = 150, N = 21, /32), "totally_linear" and
   "exponential" (the whole-clip cross-entropy times 11.67 / 11.69) losses; and the
   "linear" loss against plain cross-entropy at an 11.67x learning rate (the same
   training: the differences are float rounding, amplified over the epochs);
2. evaluation: stage 1 (what its evaluation scored) against stage 2 (the MS-LSTM's
   prediction); the mean accuracy over steps 1..T-1 (it never scored the T-th) against
   1..T; its ground truth read from the label row at each step (class 0 on all-zero,
   padded rows) against the clip's label; re-running the model once per prefix against
   one causal pass (same numbers, T times the work);
3. model selection: the epoch chosen on the test clips (its checkpoint monitored them)
   against the epoch chosen on validation: the test accuracy of the first is optimistic;
4. CAM class (pipeline mode only): features extracted with the CAM of the true label
   (its extraction, also on test clips: a leak) against the predicted class.

The features (of the generated clips through `train_cnn` and `extract`, synthetic, or a
store) are written once as an imported feature file (`msl_keras.data.imported`) whose
`split1` holds the train / validation / test clips, and every LSTM is trained and scored
by the pipeline: `orchestrator.run_fold` (import_features -> train_lstm -> evaluate) with
the losses as its variants, from the same seed, size, optimizer and epochs. The original's
selection is `split2`: the same training clips, with copies of the test clips as its
validation clips. Metrics are `evaluate`'s (test clips, stage 2, temporal average
pooling, earliest = the first 20% of each clip as on JHMDB-21, the original code's
dataset) unless a row says otherwise; the rows about its evaluation score the trained
model's test probabilities its way. Prints a table and writes `results.json` (and
`table.txt`) into `--out`.
"""

import argparse
import csv
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from msl_keras import metrics
from msl_keras.config import ORIGINAL_VS_OURS, apply_overrides, get_preset
from msl_keras.data.feature_store import FeatureStore
from msl_keras.layers.temporal_average_pooling import temporal_average_pooling
from msl_keras.orchestrator import run_fold
from msl_keras.original.losses import original_linear_scale
from msl_keras.pipeline import load_lstm, prepare
from msl_keras.runs import RunDirectory

ROLES = ("train", "validation", "test")
STREAMS = ("context", "action")
# The LSTM variants of `run_fold`: {name: (what the row calls it, its overrides)}; the
# scaled learning rate of "original_ce_scaled_lr" is set from the config's (`variants`).
LOSSES = {
    "anticipation": ("Eq. 1 (anticipation)", {"lstm.loss": "anticipation"}),
    "original_anticipation": (
        "its Eq. 1 (T=150, N=21, /32, weight (t-1)/T)",
        {"lstm.loss": "original_anticipation"},
    ),
    "original_linear": ("'totally_linear': CE x 11.67", {"lstm.loss": "original_linear"}),
    "original_exponential": (
        "'exponential': CE x 11.69",
        {"lstm.loss": "original_exponential"},
    ),
    "original_ce_scaled_lr": ("plain CE, 11.67 x lr", {"lstm.loss": "original_ce"}),
}
TEST_COPY = "{}@as_validation"  # the id of a test clip's copy in split2


# --------------------------------------------------------------------------------------
# Features: one dict of arrays per role, as FeatureStore.read() returns them


def synthetic_features(num_classes=3, per_role=(24, 12, 12), steps=8, dim=8, seed=0):
    """Random features whose class evidence grows along the clip (learnable, and
    anticipation is a real problem: the first steps are ambiguous). Clip lengths vary
    from half of `steps` to `steps`, so padding and masks are exercised."""
    rng = np.random.default_rng(seed)
    context_centers = rng.normal(size=(num_classes, dim))
    action_centers = rng.normal(size=(num_classes, dim))
    features = {}
    for role, count in zip(ROLES, per_role):
        labels = np.arange(count) % num_classes
        lengths = rng.integers(max(1, steps // 2), steps + 1, size=count)
        context = np.zeros((count, steps, dim), np.float32)
        action = np.zeros((count, steps, dim), np.float32)
        frames = np.full((count, steps), -1, np.int32)
        for i, (label, n) in enumerate(zip(labels, lengths)):
            growth = (np.arange(1, n + 1) / n)[:, None]
            context[i, :n] = 0.4 * context_centers[label] + rng.normal(size=(n, dim))
            action[i, :n] = 1.5 * growth * action_centers[label] + rng.normal(
                size=(n, dim)
            )
            frames[i, :n] = np.arange(n)
        features[role] = {
            "context": context,
            "action": action,
            "labels": labels.astype(np.int64),
            "lengths": lengths.astype(np.int32),
            "frame_indices": frames,
            "num_frames": lengths.astype(np.int64),
            "clip_ids": np.array([f"{role}_{i:03d}" for i in range(count)]),
        }
    return features


def store_features(path, seed=0, fractions=(0.6, 0.2, 0.2), original_dir=None):
    """An existing FeatureStore split into train/validation/test clips. A store records
    no roles: with `original_dir` (a stream folder of the original's `.npy` layout, for
    a store made by `msl-keras import-original`) its "val" clips are the test clips and
    a seeded, class-stratified fifth of its "train" clips is validation; otherwise a
    seeded, class-stratified split by `fractions`."""
    with FeatureStore.open(path) as store:
        arrays = store.read()
        num_classes = store.settings.num_classes
    rng = np.random.default_rng(seed)
    labels = arrays["labels"]
    roles = np.empty(len(labels), dtype=object)
    if original_dir is not None:
        from msl_keras.original.features import original_roles

        subset = original_roles(original_dir)
        ids = [str(c) for c in arrays["clip_ids"]]
        missing = [c for c in ids if c not in subset]
        if missing:
            raise SystemExit(
                f"{len(missing)} clips of '{path}' are not in '{original_dir}' "
                f"(e.g. {missing[0]}): pass the folder the store was imported from."
            )
        is_test = np.array([subset[c] == "val" for c in ids])
        roles[is_test] = "test"
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero((labels == label) & ~is_test))
            cut = round(0.2 * len(idx))
            roles[idx[:cut]], roles[idx[cut:]] = "validation", "train"
    else:
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            cut1 = round(fractions[0] * len(idx))
            cut2 = cut1 + round(fractions[1] * len(idx))
            roles[idx[:cut1]], roles[idx[cut1:cut2]], roles[idx[cut2:]] = ROLES
    features = {
        role: {key: value[roles == role] for key, value in arrays.items()}
        for role in ROLES
    }
    return features, num_classes


def pipeline_features(work, tiny, seed=0):
    """The generated clips through the stages: prepare, train_cnn, then extract twice
    from the same trained heads, with the predicted-class CAM (ours) and with the
    true-label CAM (the original's). Returns `({"predicted": ..., "oracle": ...},
    num_classes)`."""
    from msl_keras.data.generated import generate_dataset
    from msl_keras.pipeline import extract, load_extractor, train_cnn

    root = Path(work) / "generated"  # the demo's clips: prepare makes them
    if tiny:
        root = generate_dataset(
            Path(work) / "generated_tiny", num_classes=3, clips_per_class=6,
            num_frames=10, frame_size=(32, 24), num_groups=3, seed=seed,
        )  # fmt: skip
    config = apply_overrides(
        get_preset("tiny" if tiny else "original_vs_ours"),
        {"data.root": str(root), "output_dir": str(Path(work) / "runs"), "seed": seed},
    )
    index = prepare(config)
    fold = index.fold("split1")
    run = RunDirectory.create(config)
    train_cnn(config, index, fold, run=run, verbose=0)
    stores = {"predicted": extract(config, index, fold, run=run, verbose=0)}
    oracle_config = apply_overrides(config, {"cnn.cam_class": "oracle"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the leak is the point here
        extractor = load_extractor(oracle_config, run, fold)
        stores["oracle"] = extract(
            oracle_config, index, fold, run=RunDirectory.create(oracle_config),
            verbose=0, extractor=extractor,
        )  # fmt: skip
    features = {}
    for cam, path in stores.items():
        with FeatureStore.open(path) as store:
            done = set(store.completed_ids())
            features[cam] = {
                role: store.read(
                    [r.clip_id for r in fold.by_role(role) if r.clip_id in done]
                )
                for role in ROLES
            }
    return features, index.num_classes


def write_imported(folder, features, num_classes):
    """Writes `{role: arrays}` as an imported feature file (`msl_keras.data.imported`)
    named by its content: `split1` gives each clip its role; `split2` is the original's
    selection, the same train clips with a copy of each test clip as validation (and
    the test clips). Returns its path (kept when it exists: the same features)."""
    test = features["test"]
    parts = [features[role] for role in ROLES] + [test]
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in (
        *STREAMS, "labels", "lengths", "frame_indices", "num_frames")}  # fmt: skip
    counts = [len(part["labels"]) for part in parts]
    arrays["clip_ids"] = np.concatenate(
        [np.asarray(part["clip_ids"]).astype(str) for part in parts[:3]]
        + [[TEST_COPY.format(c) for c in np.asarray(test["clip_ids"]).astype(str)]]
    )
    roles = np.repeat(np.array([*ROLES, ""]), counts)
    arrays["split1"] = roles
    arrays["split2"] = np.where(roles == "validation", "", roles)
    arrays["split2"][sum(counts[:3]) :] = "validation"
    arrays["class_names"] = np.array([f"class_{k}" for k in range(num_classes)])
    digest = hashlib.sha1()
    for key in sorted(arrays):
        digest.update(key.encode() + np.ascontiguousarray(arrays[key]).tobytes())
    # The store fingerprints the file's bytes, and a .npz holds its writing time.
    path = Path(folder) / f"features_{digest.hexdigest()[:10]}.npz"
    if not path.is_file():
        np.savez(path, **arrays)
    return path


def imported_config(path, steps, split, lstm_preset, overrides, seed, work):
    """The `imported` preset on split `split` of `path`, with the LSTM and eval settings
    of `lstm_preset` plus `overrides`; roles exactly as the file gives them."""
    base = apply_overrides(get_preset(lstm_preset), overrides)
    config = apply_overrides(
        get_preset("imported"),
        {
            "data.root": str(path),
            "data.split": split,
            "data.num_steps": int(steps),
            "data.validation_fraction": 0.0,
            "output_dir": str(Path(work) / "runs"),
            "seed": seed,
        },
    )
    return apply_overrides(config, {"lstm": vars(base.lstm), "eval": vars(base.eval)})


def variants(config):
    """`run_fold`'s variants: each loss of `LOSSES`; CE at the scaled learning rate."""
    scaled = config.lstm.learning_rate * original_linear_scale()
    out = {name: dict(overrides) for name, (_, overrides) in LOSSES.items()}
    out["original_ce_scaled_lr"]["lstm.learning_rate"] = scaled
    return out


def ours_only(config):
    """`run_fold`'s variants of the rows that compare data, not losses: our loss."""
    return {"anticipation": LOSSES["anticipation"][1]}


# --------------------------------------------------------------------------------------
# The trained models' test probabilities, scored the original's way


def stage2_probabilities(model, test, steps=None):
    """`(clips, T, N)` stage-2 probabilities of `model` on the test clips (`steps`:
    observe only the first `steps` of each clip, zeroing the rest, as the original's
    per-prefix evaluation did)."""
    x = {s: test[s].astype(np.float32) for s in STREAMS}
    if steps is not None:
        x = {s: np.where(np.arange(v.shape[1])[None, :, None] < steps, v, 0.0)
             for s, v in x.items()}  # fmt: skip
    return model.predict(x, batch_size=32, verbose=0)["stage2"]


def kept_model(result):
    """The model `evaluate` scored in `result` (the LSTM folder's `best.keras`)."""
    return load_lstm(result["checkpoint"]["path"])


def history_losses(result):
    """The training loss of each epoch (`history.csv` beside the scored model)."""
    path = Path(result["checkpoint"]["path"]).parent / "history.csv"
    with open(path, newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


# --------------------------------------------------------------------------------------
# The comparisons


def scores(result, stage="stage2"):
    """`evaluate`'s pooled earliest / latest and mean over steps of one stage."""
    stage = result["stages"][stage]
    return {
        "earliest": stage["earliest"],
        "latest": stage["latest"],
        "mean": stage["mean_accuracy_pooled"],
    }


def _row(group, what, original, ours, metric, original_value, ours_value, note=""):
    return {
        "group": group,
        "comparison": what,
        "original": original,
        "ours": ours,
        "metric": metric,
        "original_value": float(original_value),
        "ours_value": float(ours_value),
        "difference": float(ours_value) - float(original_value),
        "note": note,
    }


def compare_losses(results, test):
    ours = scores(results["anticipation"])
    rows = []
    for name in ("original_anticipation", "original_linear", "original_exponential"):
        theirs = scores(results[name])
        for metric in ("earliest", "latest", "mean"):
            rows.append(
                _row("loss", "training loss", LOSSES[name][0], LOSSES["anticipation"][0],
                     metric, theirs[metric], ours[metric])
            )  # fmt: skip
    linear, ce = results["original_linear"], results["original_ce_scaled_lr"]
    gap = float(np.max(np.abs(stage2_probabilities(kept_model(linear), test)
                              - stage2_probabilities(kept_model(ce), test))))  # fmt: skip
    rows.append(
        _row("loss", "'linear' = CE at 11.67x lr", "'totally_linear', lr",
             LOSSES["original_ce_scaled_lr"][0], "mean", scores(linear)["mean"],
             scores(ce)["mean"],
             f"largest difference of any test probability of the two kept models: "
             f"{gap:.1e} (float rounding, which training amplifies over the epochs)")
    )  # fmt: skip
    return rows, gap


def compare_evaluation(result, test):
    rows = []
    stage1, stage2 = scores(result, "stage1"), scores(result)
    for metric in ("earliest", "latest", "mean"):
        rows.append(
            _row("evaluation", "stage scored", "stage 1 (context only)",
                 "stage 2 (MS-LSTM)", metric, stage1[metric], stage2[metric])
        )  # fmt: skip
    curve = np.array(result["stages"]["stage2"]["accuracy_vs_steps_pooled"])
    rows.append(
        _row("evaluation", "steps averaged", "t = 1..T-1 (never the T-th)",
             "t = 1..T", "mean", np.mean(curve[:-1]), np.mean(curve),
             f"accuracy at the T-th step, never reported by it: {curve[-1]:.3f}")
    )  # fmt: skip
    model = kept_model(result)
    probs = stage2_probabilities(model, test)
    labels, lengths = test["labels"], test["lengths"]
    # `evaluate`'s curve again from these probabilities: they are the scored model's.
    ours = metrics.accuracy_vs_steps(probs, labels, lengths, pooled=True)
    reproduced = float(np.max(np.abs(ours - curve)))
    # Its ground truth: argmax of the label row at step t, class 0 on all-zero rows; its
    # prediction: the mean of the first t outputs, padded steps included.
    steps = probs.shape[1]
    valid = np.arange(steps)[None, :] < lengths[:, None]
    row_labels = np.where(valid, labels[:, None], 0)
    pooled_all = temporal_average_pooling(probs)
    theirs = np.mean(np.argmax(pooled_all, -1) == row_labels, axis=0)
    rows.append(
        _row("evaluation", "ground truth", "label row at step t (0 if padded)",
             "the clip's label", "mean", np.mean(theirs), np.mean(curve),
             "short clips count as class 0 after their end")
    )  # fmt: skip
    # Re-running the model once per prefix (later steps zeroed, as it did) against one
    # causal pass.
    start = time.perf_counter()
    one_pass = stage2_probabilities(model, test)
    one_pass_s = time.perf_counter() - start
    start = time.perf_counter()
    prefix = np.stack(
        [stage2_probabilities(model, test, t)[:, t - 1] for t in range(1, steps + 1)], 1
    )
    prefix_s = time.perf_counter() - start
    gap = float(np.max(np.abs(prefix - one_pass)))
    a = np.mean(metrics.accuracy_vs_steps(prefix, labels, lengths))
    b = np.mean(metrics.accuracy_vs_steps(one_pass, labels, lengths))
    rows.append(
        _row("evaluation", "forward passes", f"one per prefix ({steps} passes)",
             "one causal pass", "mean", a, b,
             f"the kept model; largest probability difference {gap:.1e}; "
             f"{prefix_s:.2f} s against {one_pass_s:.2f} s")
    )  # fmt: skip
    return rows, gap, reproduced


def compare_selection(on_test, on_validation):
    theirs, ours = scores(on_test), scores(on_validation)
    epoch_test = on_test["checkpoint"]["best_epoch"]
    epoch_validation = on_validation["checkpoint"]["best_epoch"]
    return [
        _row("selection", "epoch kept", f"best on TEST (epoch {epoch_test})",
             f"best on validation (epoch {epoch_validation})", metric, theirs[metric],
             ours[metric],
             "the original's number is optimistic: chosen by the clips it reports"
             if metric == "mean" else "")
        for metric in ("earliest", "latest", "mean")
    ]  # fmt: skip


def compare_cam(predicted, oracle):
    ours, theirs = scores(predicted), scores(oracle)
    return [
        _row("cam", "CAM class at extraction", "true label (leaks on test)",
             "predicted class", metric, theirs[metric], ours[metric])
        for metric in ("earliest", "latest", "mean")
    ]  # fmt: skip


def format_table(rows):
    choice = "original's choice"
    title = (
        f"{'comparison':<26} {choice:<44} {'ours':<30} {'metric':<8} {'orig.':>6} "
        f"{'ours':>6} {'diff':>7}"
    )
    lines = [title, "-" * len(title)]
    for r in rows:
        lines.append(
            f"{r['comparison']:<26} {r['original']:<44} {r['ours']:<30} {r['metric']:<8} "
            f"{r['original_value']:6.3f} {r['ours_value']:6.3f} {r['difference']:+7.3f}"
        )
        if r["note"]:
            lines.append(f"{'':<26}   ({r['note']})")
    return "\n".join(lines)


def _record(result):
    checkpoint = result["checkpoint"]
    return {
        "loss": result["loss"],
        "learning_rate": result["config"]["lstm"]["learning_rate"],
        "fold": result["fold"],
        "best_epoch": checkpoint["best_epoch"],
        "epochs_done": checkpoint["epochs_done"],
        "val_anticipation_accuracy": checkpoint["val_anticipation_accuracy"],
        "model": checkpoint["path"],
        "test": {stage: scores(result, stage) for stage in ("stage1", "stage2")},
        "timings_s": result["timings_s"],
    }


def run_experiment(features, num_classes, *, work, lstm_preset, overrides, seed,
                   oracle_features=None, log=print):  # fmt: skip
    """All comparisons on `features` ({role: arrays}); returns the results dict."""
    steps = features["train"]["context"].shape[1]
    Path(work).mkdir(parents=True, exist_ok=True)

    def fold_results(source, splits):
        """`run_fold` of each `{split: variants}` on the imported file of `source`."""
        path = write_imported(work, source, num_classes)
        results = {}
        for split, split_variants in splits.items():
            config = imported_config(path, steps, split, lstm_preset, overrides, seed, work)
            index, start = prepare(config), time.perf_counter()
            results[split] = run_fold(
                config, index, index.folds[0], RunDirectory.create(config),
                variants=split_variants(config), verbose=0,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            log(f"  {path.name} split{split}: trained and scored "
                f"{', '.join(results[split])} ({seconds:.1f} s)")  # fmt: skip
        return results

    splits = fold_results(features, {1: variants, 2: ours_only})
    results, on_test = splits[1], splits[2]
    loss_rows, linear_gap = compare_losses(results, features["test"])
    eval_rows, prefix_gap, reproduced = compare_evaluation(
        results["anticipation"], features["test"]
    )
    ours = results["anticipation"]
    rows = loss_rows + eval_rows + compare_selection(on_test["anticipation"], ours)
    runs = {name: _record(result) for name, result in results.items()}
    runs["anticipation_selected_on_test"] = _record(on_test["anticipation"])
    if oracle_features is not None:
        oracle = fold_results(oracle_features, {1: ours_only})[1]["anticipation"]
        rows += compare_cam(ours, oracle)
        runs["anticipation_oracle_cam"] = _record(oracle)
    return {
        "rows": rows,
        "checks": {
            "linear_vs_scaled_lr_ce_max_prob_difference": linear_gap,
            "prefix_vs_one_pass_max_prob_difference": prefix_gap,
            "probabilities_vs_evaluate_max_accuracy_difference": reproduced,
        },
        "runs": runs,
        "training_loss": {
            "selected_on_validation": history_losses(ours),
            "selected_on_test": history_losses(on_test["anticipation"]),
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--synthetic",
        action="store_true",
        help="random but learnable features instead of the pipeline",
    )
    source.add_argument("--store", help="an existing feature store (.h5) to compare on")
    parser.add_argument(
        "--original-dir",
        help="with --store made by import-original: a stream folder of "
        "the original layout, whose train/val subsets give the roles",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="CI sizes (seconds): the tiny preset"
    )
    parser.add_argument(
        "--work",
        default="runs/original_vs_ours",
        help="where clips, feature files and runs go",
    )
    parser.add_argument(
        "--out", default=None, help="where results.json goes (default: <work>/results)"
    )
    parser.add_argument("--epochs", type=int, help="LSTM epochs per training")
    parser.add_argument("--units", type=int, help="LSTM units")
    parser.add_argument(
        "--lr", type=float, default=ORIGINAL_VS_OURS["lstm.learning_rate"],
        help="LSTM learning rate (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # The LSTMs: the original_vs_ours preset (the demo's, at this script's step and
    # epochs), or the tiny preset at the same step.
    lstm_preset = "tiny" if args.tiny else "original_vs_ours"
    overrides = {**ORIGINAL_VS_OURS, "lstm.learning_rate": args.lr}
    if args.tiny:
        overrides["lstm.epochs"] = 4
    if args.epochs:
        overrides["lstm.epochs"] = args.epochs
    if args.units:
        overrides["lstm.units"] = args.units
    lstm = apply_overrides(get_preset(lstm_preset), overrides).lstm
    oracle = None
    start = time.perf_counter()
    if args.synthetic:
        per_role, steps, classes = (
            ((24, 12, 12), 8, 3) if args.tiny else ((120, 40, 40), 32, 4)
        )
        features = synthetic_features(
            classes, per_role, steps, dim=lstm.units, seed=args.seed
        )
        num_classes, source_name = classes, "synthetic"
    elif args.store:
        features, num_classes = store_features(
            args.store, seed=args.seed, original_dir=args.original_dir
        )
        source_name = f"store {args.store}"
    else:
        print("pipeline: generating clips, training the heads, extracting twice ...")
        sets, num_classes = pipeline_features(args.work, args.tiny, seed=args.seed)
        features, oracle = sets["predicted"], sets["oracle"]
        source_name = "generated clips through the stages"
    counts = {role: len(features[role]["labels"]) for role in ROLES}
    if min(counts.values()) == 0:
        raise SystemExit(
            f"Every role needs clips; the split gave {counts}. Use a store with more "
            "clips (or, with --original-dir, one whose 'val' folder is not empty)."
        )
    print(f"features: {source_name}; clips {counts}; {num_classes} classes")
    results = run_experiment(
        features, num_classes, work=args.work, lstm_preset=lstm_preset,
        overrides=overrides, seed=args.seed, oracle_features=oracle,
    )  # fmt: skip
    results.update(
        {
            "command": " ".join(
                ["python", "experiments/original_vs_ours.py"]
                + list(argv or sys.argv[1:])
            ),
            "source": source_name,
            "clips": counts,
            "num_classes": int(num_classes),
            "lstm": vars(lstm),
            "seed": args.seed,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    table = format_table(results["rows"])
    print()
    print(table)
    out = Path(args.out) if args.out else Path(args.work) / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "table.txt").write_text(table + "\n")
    print(f"\nwrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
