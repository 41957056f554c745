"""Row 9: peak memory of feature extraction and of MS-LSTM training.

    python benchmarks/bench_memory.py --size paper

Each measurement runs in its own Python process, so its peak resident set size
(`VmHWM`, the high-water mark) is its own:
- extraction: the real `pipeline.extraction.extract` (decode, preprocess, one trunk pass,
  both heads, HDF5 store) over a small set of generated clips, then, in the same
  process, over a 4x larger set: the high-water mark must not rise with the number of
  clips (one clip in memory at a time); the baseline is the mark after the imports;
- training: `MultiStageLSTM` built and compiled by `pipeline.lstm_training`, two training
  steps at batch 32.
Against the machine's memory (24 GiB here). With `--device gpu` the GPU's peak is
reported too.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

FLAT = 1.1  # the larger set may use at most 10% more


def _clip_frames(spec):
    """Frames per generated clip (short at paper size: the peak is per batch)."""
    return {"paper": 16, "cpu": 16, "tiny": 6}[spec.name]


def _gpu_peak_gib(device):
    if device != "gpu":
        return None
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30


def _high_water_gib():
    """Peak resident memory of this process so far (VmHWM), GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return C.peak_rss_gib()


def child(args):
    """Runs one measurement in this process; prints a JSON line."""
    spec = args.spec
    import tensorflow as tf  # noqa: F401

    import msl_keras.pipeline.extraction  # noqa: F401

    result = {"baseline_gib": _high_water_gib()}
    if args.child == "extract":
        # The small set, then the 4x larger one, in one process: the high-water mark
        # after the larger set can only exceed the first if memory grows with clips.
        from msl_keras.pipeline.extraction import extract

        with C.device_scope(args.device):
            extractor = C.build_extractor(spec)
            for key, root in (("small", args.root), ("large", args.root_large)):
                config, index, run = C.stage_setup(
                    root, spec, clips_per_class=args.clips if key == "small"
                    else 4 * args.clips, frames=_clip_frames(spec)
                )
                start = C.clock()
                extract(
                    config, index, index.folds[0], run, extractor=extractor,
                    verbose=0,
                )
                result[key] = {
                    "seconds": C.clock() - start,
                    "clips": len(index.folds[0].records),
                    "peak_gib": _high_water_gib(),
                    "gpu_peak_gib": _gpu_peak_gib(args.device),
                }
    elif args.child == "train":
        from bench_lstm_step import ms_lstm_step

        with C.device_scope(args.device):
            step, _ = ms_lstm_step(spec)
            for _ in range(2):
                step()
        result["peak_gib"] = _high_water_gib()
        result["gpu_peak_gib"] = _gpu_peak_gib(args.device)
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(args, what, roots=None, clips=None):
    """Starts one measurement process; `_collect` waits for its result."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--size",
        args.size,
        "--device",
        args.device,
        "--child",
        what,
    ]
    if roots is not None:
        command += ["--root", roots[0], "--root-large", roots[1], "--clips", str(clips)]
    return what, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _collect(spawned):
    what, process = spawned
    stdout, stderr = process.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench_memory child '{what}' failed (exit {process.returncode}):\n"
            + stdout[-3000:]
            + stderr[-3000:]
        )
    return json.loads(lines[-1][len("RESULT ") :])


def run(args):
    spec = args.spec
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    small = 2  # clips per class (3 classes); the larger set has 4x as many
    with tempfile.TemporaryDirectory() as workdir:
        roots = []
        for clips in (small, 4 * small):
            roots.append(os.path.join(workdir, f"set{clips}"))
            C.stage_setup(
                roots[-1], spec, clips_per_class=clips, frames=_clip_frames(spec)
            )
        # The two processes run side by side (each peak is its own); at paper size
        # they would fight for the cores and the memory, so they run one by one.
        together = spec.name == "tiny"
        extraction = _spawn(args, "extract", roots, small)
        if not together:
            extraction = _collect(extraction)
        training = _spawn(args, "train")
        if together:
            extraction = _collect(extraction)
        training = _collect(training)
    a, b = extraction["small"], extraction["large"]
    baseline = extraction["baseline_gib"]
    growth = b["peak_gib"] / a["peak_gib"]
    gpu = ""
    if args.device == "gpu":
        gpu = (
            f" GPU peak: extraction {a['gpu_peak_gib']:.2f} / "
            f"{b['gpu_peak_gib']:.2f} GiB, training {training['gpu_peak_gib']:.2f} GiB."
        )
    rows = [
        C.Row(
            key="9a",
            what=f"peak memory of extraction, {b['clips']} clips vs {a['clips']} clips "
            "(pipeline.extraction)",
            against=f"the machine's {total:.0f} GiB; the smaller set",
            target=f"reported; flat in dataset size (<= {FLAT:g}x)",
            values=[growth],
            met=growth <= FLAT,
            detail=(
                f"peak RSS: {a['peak_gib']:.2f} GiB ({a['clips']} clips, "
                f"{a['seconds']:.1f} s) vs {b['peak_gib']:.2f} GiB ({b['clips']} clips, "
                f"{b['seconds']:.1f} s); process baseline (TF imported) "
                f"{baseline:.2f} GiB; of {total:.1f} GiB.{gpu}"
            ),
            size=spec.name,
            load=C.load(),
        ),
        C.Row(
            key="9b",
            what=f"peak memory of MS-LSTM training ({spec.units} units, T = "
            f"{spec.steps}, batch {spec.batch})",
            against=f"the machine's {total:.0f} GiB",
            target="reported (fits)",
            values=[training["peak_gib"]],
            unit=" GiB",
            met=None if training["peak_gib"] < total else False,
            detail=(
                f"peak RSS {training['peak_gib']:.2f} GiB = "
                f"{100 * training['peak_gib'] / total:.0f}% of {total:.1f} GiB "
                f"(baseline {training['baseline_gib']:.2f} GiB).{gpu}"
            ),
            size=spec.name,
            load=C.load(),
        ),
    ]
    return rows


def _extra(parser):
    parser.add_argument("--child", choices=("extract", "train"))
    parser.add_argument("--root")
    parser.add_argument("--root-large")
    parser.add_argument("--clips", type=int)


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv, extra=_extra)
    if args.child:
        return child(args)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
