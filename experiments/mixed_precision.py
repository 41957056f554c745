"""Mixed precision on real clips: what bfloat16 / float16 change against float32.

    python experiments/mixed_precision.py --root ../shared/data/ut_interaction \\
        --weights data/weights/vgg16_hed_bsds500_notop.h5            # ~15 min, 2 cores

(`data/weights/vgg16_hed_bsds500_notop.h5` is made by
`experiments/hed_trunk_weights.py`; any Keras VGG-16 no-top file, or `--weights
imagenet`, works the same.) The paper computes in float32 and says nothing about
precision: there is no paper number to compare with; the question is whether
`cnn.compute_dtype` / `lstm.compute_dtype` other than float32 keep its results.

On one UT-Interaction fold (default: set 1, test sequence 1; `--set` overrides any key)
at the `cpu` scale made larger (112x112 frames, full-width VGG-16 trunk, fc 512, CAM
conv 256 filters, 4 frames per training clip, 4 head epochs), for each `--dtypes`:

1. **Features of the same trained heads.** The float32 run's trunk and heads extract the
   frames of the fold's test and validation clips in float32 and in each other dtype
   (`TwoStreamFeatureExtractor.set_compute_dtype`): the relative difference of the
   context and action features against float32 (per frame `max|f - f32| / max|f32|`:
   its max and mean over frames; and `mean|f - f32| / mean|f32|` over all), the share of
   frames whose CAM class (arg-max of the CAM branch's scores, the class that masks the
   action stream) and whose context-head class agree with float32.
2. **Speed.** Extraction of one batch of 32 of those frames per dtype, alternated
   repeat by repeat (A, B, C, A, B, C, ...) in this process: ms per frame, median
   [min, max] of `--repeats`.
3. **The whole fold.** `run_fold` (train_cnn, extract, train_lstm, evaluate) with
   `cnn.compute_dtype` = `lstm.compute_dtype` = the dtype, each in its own run
   directory: pooled accuracy at the earliest (50% of each clip) and latest (whole
   clip) point. float16 runs this only when its extraction is at most
   `--max-slowdown` times float32's (CPUs without float16 arithmetic emulate it).

Writes `<output-dir>/mixed_precision/results.json`.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

# The fold's sizes (module docstring); `--set` goes on top.
FOLD_SETTINGS = {
    "data.ut_set": 1,
    "data.ut_test_sequence": 1,
    "cnn.input_size": 112,
    "cnn.fc_units": 512,
    "cnn.cam_filters": 256,
    "cnn.frames_per_clip": 4,
    "cnn.augment_views": 1,
    "cnn.epochs": 4,
}


def extra_arguments(parser):
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16", "float16"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--max-clips",
        type=int,
        default=12,
        help="test and validation clips whose frames are compared (default 12)",
    )
    parser.add_argument(
        "--max-slowdown",
        type=float,
        default=3.0,
        help="run the whole fold in a dtype only if its extraction takes at most this "
        "many times float32's (default 3)",
    )


def with_dtype(config, dtype):
    from msl_keras.config import apply_overrides

    return apply_overrides(
        config, {"cnn.compute_dtype": dtype, "lstm.compute_dtype": dtype}
    )


def fold_frames(config, fold, max_clips):
    """Preprocessed frames `(n, S, S, 3)` of the fold's test and validation clips."""
    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.data.video import read_clip

    records = (fold.by_role("test") + fold.by_role("validation"))[:max_clips]
    size = int(config.cnn.input_size)
    chunks = []
    for record in records:
        frames, _, _ = read_clip(
            record.path,
            config.data.num_steps,
            mode=config.data.frame_selection,
            observed_ratio=config.data.observed_ratio,
        )
        chunks.append(np.asarray(preprocess_frames(frames, (size, size))))
    return np.concatenate(chunks), len(records)


def compare_features(reference, other):
    """Relative differences of the two streams and the agreement of the classes."""
    out = {}
    for stream in ("context", "action"):
        ref = reference[stream].astype(np.float64)
        diff = np.abs(other[stream].astype(np.float64) - ref)
        scale = np.maximum(np.abs(ref).max(axis=1), 1e-12)
        per_frame = diff.max(axis=1) / scale
        out[stream] = {
            "max_relative": float(per_frame.max()),
            "mean_relative": float(per_frame.mean()),
            "mean_abs_over_mean_abs": float(
                diff.mean() / max(np.abs(ref).mean(), 1e-12)
            ),
        }
    for key, name in (("cam_scores", "cam_class"), ("context_probs", "context_class")):
        agree = reference[key].argmax(axis=1) == other[key].argmax(axis=1)
        out[f"{name}_agreement"] = float(agree.mean())
    return out


def time_extraction(extractor, frames, dtypes, repeats):
    """ms per frame of `extractor.extract(frames)` per dtype, alternated per repeat."""
    times = {dtype: [] for dtype in dtypes}
    for dtype in dtypes:  # trace each dtype once, untimed
        extractor.set_compute_dtype(dtype)
        extractor.extract(frames, batch_size=len(frames))
    for _ in range(repeats):
        for dtype in dtypes:
            extractor.set_compute_dtype(dtype)
            extractor.extract(frames[:1], batch_size=1)  # retrace outside the timing
            start = time.perf_counter()
            extractor.extract(frames, batch_size=len(frames))
            times[dtype].append(1000 * (time.perf_counter() - start) / len(frames))
    extractor.set_compute_dtype("float32")
    return {
        dtype: {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        for dtype, values in times.items()
    }


def main(argv=None):
    args = common.parse_args(
        __doc__.split("\n")[0], "ut_interaction", argv, extra=extra_arguments
    )
    from msl_keras.runs import RunDirectory
    from msl_keras.orchestrator import run_fold
    from msl_keras.runs import load_extractor

    started = time.perf_counter()
    base = common.scale_config(args, FOLD_SETTINGS)
    dtypes = ["float32"] + [d for d in args.dtypes if d != "float32"]
    index = common.prepare_index(base, verbose=not args.quiet)
    fold = common.select_folds(index)[0]
    print(f"fold {fold.name}; trunk: {common.trunk_description(base)}", flush=True)

    # 1. The float32 pipeline first: its heads are the ones compared below.
    results = {
        "experiment": "mixed_precision",
        "fold": fold.name,
        "dtypes": dtypes,
        "whole_fold": {},
    }
    configs = {dtype: with_dtype(base, dtype) for dtype in dtypes}
    runs = {dtype: RunDirectory.create(configs[dtype]) for dtype in dtypes}

    def whole_fold(dtype):
        start = time.perf_counter()
        (result,) = run_fold(configs[dtype], index, fold, runs[dtype], verbose=0).values()
        summary = result["summary"]
        results["whole_fold"][dtype] = {
            "earliest": summary["earliest"],
            "latest": summary["latest"],
            "test_clips": result["clips"]["test_evaluated"],
            "lstm_best_epoch": result["checkpoint"]["best_epoch"],
            "timings_s": result["timings_s"],
        }
        print(
            f"whole fold, {dtype}: earliest {100 * summary['earliest']:.1f}%  latest "
            f"{100 * summary['latest']:.1f}%  ({time.perf_counter() - start:.0f} s: "
            + ", ".join(f"{k} {v:.0f}" for k, v in result["timings_s"].items())
            + ")",
            flush=True,
        )

    whole_fold("float32")

    # 2. Same heads, other compute dtypes: features, classes, speed.
    extractor = load_extractor(configs["float32"], runs["float32"], fold)
    frames, num_clips = fold_frames(base, fold, args.max_clips)
    reference = extractor.extract(frames, batch_size=32)
    results["features"] = {"frames": int(len(frames)), "clips": num_clips}
    for dtype in dtypes[1:]:
        extractor.set_compute_dtype(dtype)
        results["features"][dtype] = compare_features(
            reference, extractor.extract(frames, batch_size=32)
        )
        print(f"features, {dtype} vs float32: {results['features'][dtype]}", flush=True)
    extractor.set_compute_dtype("float32")
    speed = time_extraction(extractor, frames[:32], dtypes, args.repeats)
    results["extraction_ms_per_frame"] = speed
    for dtype in dtypes:
        s = speed[dtype]
        gain = speed["float32"]["median"] / s["median"]
        print(
            f"extraction, {dtype}: {s['median']:.1f} [{s['min']:.1f}, {s['max']:.1f}] "
            f"ms/frame ({gain:.2f}x float32's speed)",
            flush=True,
        )

    # 3. The whole fold in each other dtype.
    for dtype in dtypes[1:]:
        slowdown = speed[dtype]["median"] / speed["float32"]["median"]
        if slowdown > args.max_slowdown:
            print(
                f"whole fold, {dtype}: skipped (extraction {slowdown:.1f}x slower than "
                f"float32, > --max-slowdown {args.max_slowdown})",
                flush=True,
            )
            results["whole_fold"][dtype] = {"skipped_slowdown": slowdown}
            continue
        whole_fold(dtype)

    results.update(
        {
            "trunk": common.trunk_description(base),
            "config": base.to_dict(),
            "command": common.command_line("mixed_precision.py", args),
            "machine": common.machine(args.code),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    path = common.write_results(common.experiment_dir(args, "mixed_precision"), results)
    print(f"wrote {path} ({results['seconds']:.0f} s)", flush=True)
    return results


if __name__ == "__main__":
    main()
