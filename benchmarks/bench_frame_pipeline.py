"""Row 7: the tf.data frame pipeline with the paper's augmentation vs what training eats.

    python benchmarks/bench_frame_pipeline.py --size paper

Producer: `data.pipelines.frame_dataset` (frames held in memory as decoded uint8 at the
video size, shuffled, each frame augmented with its own parameters: flip, rotation,
aspect crop, resize, channel shift, colour jitter, then preprocessed), batches of 32,
frames/s. Consumer: the CNN stage's hungriest step, the frozen trunk's forward pass
over a batch (`TrunkRunner`, what fills the trunk cache: every augmented frame goes
through it once); a full training step that recomputes the trunk eats fewer frames/s.
Target: the pipeline produces >= 3x the frames/s the trunk consumes. The detail line
also gives `frame_dataset_from_records` (decoding the .avi files in the pipeline).
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 3.0


def _rate(dataset, batches):
    """frames/s of `batches` batches pulled from a fresh iterator (first one untimed)."""
    iterator = iter(dataset)
    next(iterator)
    start, frames = C.clock(), 0
    for _ in range(batches):
        x, _ = next(iterator)
        frames += int(x.shape[0])
    return frames / (C.clock() - start)


def run(args):
    import numpy as np

    from msl_keras.data.pipelines import frame_dataset, frame_dataset_from_records
    from msl_keras.pipeline.head_training import TrunkRunner

    spec = args.spec
    batches = 4 if spec.name != "tiny" else 3
    count = spec.batch * (batches + 2) * 2
    decoded = C.video_frames(spec, count)
    labels = np.arange(count) % spec.num_classes
    size = (spec.image, spec.image)
    dataset = frame_dataset(
        decoded, labels, batch_size=spec.batch, augment=True, size=size, seed=0
    ).repeat()
    with C.device_scope(args.device):
        extractor = C.build_extractor(spec)
        runner = TrunkRunner(extractor.trunk, batch_size=spec.batch)
        frames = C.network_frames(spec, spec.batch)
        rates = {"pipeline": [], "trunk": []}

        def produce():
            rates["pipeline"].append(_rate(dataset, batches))

        def consume():
            start = C.clock()
            runner(frames)
            rates["trunk"].append(len(frames) / (C.clock() - start))

        C.alternate({"pipeline": produce, "trunk": consume}, args.repeats)
        rates = {k: v[1:] for k, v in rates.items()}  # drop the warm-up call
        with tempfile.TemporaryDirectory() as workdir:
            config, index, _ = C.stage_setup(
                workdir, spec, clips_per_class=4, frames=spec.batch
            )
            records = index.folds[0].records
            from_files = frame_dataset_from_records(
                records, spec.batch, batch_size=spec.batch, size=size, seed=0
            ).repeat()
            decoding = [_rate(from_files, batches) for _ in range(args.repeats)]
    values = C.ratios(rates["pipeline"], rates["trunk"])
    row = C.Row(
        key="7",
        what="tf.data frame pipeline with the paper's augmentation "
        f"({spec.source[0]}x{spec.source[1]} -> {spec.image}px, batch {spec.batch})",
        against="the CNN stage's consumption (frozen trunk forward, batch "
        f"{spec.batch})",
        target=f">= {TARGET:g}x faster than consumption",
        values=values,
        met=C.at_least(values, TARGET),
        detail=(
            f"frames/s: frame_dataset {C.fmt_spread(rates['pipeline'], 0)}, "
            f"frame_dataset_from_records (decoding .avi) "
            f"{C.fmt_spread(decoding, 0)}, trunk forward "
            f"{C.fmt_spread(rates['trunk'], 1)}. Each side alone on the machine's "
            f"{os.cpu_count()} cores; running together, the pipeline takes about "
            f"1/{spread_median(values):.0f} of them."
        ),
        size=spec.name,
        load=C.load(),
    )
    del extractor, runner
    C.cleanup()
    return [row]


def spread_median(values):
    return max(C.spread(values)[0], 1e-9)


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
