"""Row 3: training the heads from the cached trunk output vs recomputing the trunk.

    python benchmarks/bench_head_training.py --size paper

One training step = one batch through both heads (context head, then action head, each
`train_on_batch` with the paper's SGD), as `pipeline/head_training.py` compiles them.

- cached: the batch's conv5_2 maps are read from a `TrunkCache` file on disk
  (`CachedMapsDataset`, what `train_cnn` uses when the cache does not fit in memory);
- recomputed: the frames go through the frozen trunk first (`TrunkRunner`), once for
  both heads.

FLOP bound of the saving: (trunk forward + heads' forward and backward) / (heads' forward
and backward), counted analytically (`_common.flops_head_training`); target >= 0.9x it.
Second part: the real `train_cnn` stage on generated clips, run for two folds sharing
their clips (2 epochs each): the trunk must run once per (frame, view), and zero times
for the second fold.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET_FRACTION = 0.9


def _compile_heads(extractor):
    """Both heads with the CNN stage's optimizer (`pipeline.head_training._optimizer`: SGD,
    lr 0.001, momentum 0.9, weight decay 0.0005 without biases)."""
    import importlib

    from msl_keras.config import get_preset

    cnn = get_preset("paper_ucf101").cnn
    # The module (the package re-exports the function of that name).
    train_cnn = importlib.import_module("msl_keras.pipeline.head_training")
    context, action = extractor.context_head, extractor.action_head
    for head in (context, action):
        head.trainable = True
    context.compile(
        optimizer=train_cnn._optimizer(cnn, context), loss="categorical_crossentropy"
    )
    action.compile(
        optimizer=train_cnn._optimizer(cnn, action),
        loss={"cam": "categorical_crossentropy", "action": "categorical_crossentropy"},
    )


def step_timings(args, workdir):
    import numpy as np

    from msl_keras.data.trunk_cache import (
        CachedMapsDataset,
        TrunkCache,
        TrunkRunner,
        cache_key,
    )

    spec = args.spec
    batches = 2
    n = spec.batch * batches
    with C.device_scope(args.device):
        extractor = C.build_extractor(spec)
        _compile_heads(extractor)
        runner = TrunkRunner(extractor.trunk, batch_size=spec.batch)
        frames = C.network_frames(spec, n)
        labels = np.arange(n) % spec.num_classes
        keys = [cache_key("clip", i, "aug0") for i in range(n)]
        cache = TrunkCache(
            os.path.join(workdir, "cache.h5"), "bench", runner.map_shape, {}
        )
        cache.add(keys, runner(frames))
        rows = cache.rows(keys)
        data = {
            name: CachedMapsDataset(
                cache, rows, labels, spec.num_classes, spec.batch, outputs=name
            )
            for name in ("context", "action")
        }

        heads = {"context": extractor.context_head, "action": extractor.action_head}

        def cached():
            for i in range(batches):
                for name, head in heads.items():
                    x, y = data[name][i]
                    head.train_on_batch(x, y)

        def recomputed():
            for i in range(batches):
                picked = slice(i * spec.batch, (i + 1) * spec.batch)
                maps = runner(frames[picked])
                for name, head in heads.items():
                    _, y = data[name][i]  # labels only
                    head.train_on_batch(maps, y)

        with C.quiet_keras():
            times = C.alternate(
                {"cached": cached, "recomputed": recomputed}, args.repeats
            )
        cache.close()
    del extractor, runner
    C.cleanup()
    return times, n


def trunk_passes(workdir):
    """The real train_cnn stage, tiny, two 'folds' sharing clips: trunk runs counted."""
    from msl_keras.pipeline.head_training import train_cnn

    spec = C.SIZES["tiny"]
    config, index, run = C.stage_setup(
        workdir,
        spec,
        clips_per_class=2,
        frames=6,
        **{"cnn.epochs": 2, "cnn.frames_per_clip": 3, "cnn.augment_views": 2},
    )
    fold = index.folds[0]
    with C.quiet_keras():
        first = train_cnn(config, index, fold, run, verbose=0)
        # A second fold over the same clips (UT-Interaction's 10 folds share theirs):
        # retraining the heads from scratch must find every map in the cache.
        second = train_cnn(config, index, fold, run, overwrite=True, verbose=0)
    C.cleanup()
    unique = first["trunk_frames_computed"]
    used = first["train_frames"] + first["validation_frames"]
    return unique, used, second["trunk_frames_computed"], int(config.cnn.epochs)


def run(args):
    spec = args.spec
    with tempfile.TemporaryDirectory() as workdir:
        times, n = step_timings(args, workdir)
    with tempfile.TemporaryDirectory() as workdir:
        computed, used, computed_again, epochs = trunk_passes(workdir)
    heads, trunk = C.flops_head_training(spec), C.flops_trunk(spec)
    bound = (trunk + heads) / heads
    values = C.ratios(times["recomputed"], times["cached"])
    target = TARGET_FRACTION * bound
    step = 1e3 / (n / spec.batch)
    rows = [
        C.Row(
            key="3",
            what=f"head training step from the cached trunk output (both heads, "
            f"batch {spec.batch})",
            against="the same step recomputing the trunk",
            target=f">= 0.9x the FLOP bound ({bound:.2f}x) = {target:.2f}x",
            values=values,
            met=C.at_least(values, target),
            detail=(
                f"ms/step: cached {C.fmt_spread([t * step for t in times['cached']], 0)}, "
                f"recomputed {C.fmt_spread([t * step for t in times['recomputed']], 0)}. "
                f"FLOPs/frame: trunk forward {C.gflop(trunk):.2f} G, both heads forward "
                f"+ backward {C.gflop(heads):.2f} G (3x forward, no input gradient for "
                "conv5_3); bound = (trunk + heads) / heads."
            ),
            size=spec.name,
            load=C.load(),
        ),
        C.Row(
            key="3c",
            what="trunk passes per cached (frame, view), train_cnn over 2 folds "
            f"x {epochs} epochs",
            against="one pass per (frame, view) per epoch per fold without the cache",
            target="1 pass in total; 0 for the second fold",
            values=[computed / used],
            unit=" pass",
            met=computed == used and computed_again == 0,
            detail=(
                f"first fold: {computed} maps computed for {used} (frame, view) pairs "
                f"used {epochs} epochs x 2 heads; second fold: {computed_again} computed "
                f"(without the cache: {2 * epochs * used * 2} trunk passes)."
            ),
            size="tiny (count)",
            load=C.load(),
            digits=0,
        ),
    ]
    return rows


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
