"""Row 1: both feature streams per frame vs a bare Keras VGG-16, in GFLOP/s.

    python benchmarks/bench_two_stream_flops.py --size paper

Our extraction (`TwoStreamFeatureExtractor.extract`: one trunk pass, both heads, a batch
of frames in one traced graph) does more work per frame than VGG-16 without top: the
trunk stops at conv5_2, but each head has its own conv5_3, the action head a 1024-filter
CAM convolution, and both heads fc6-fc8. The FLOPs of both are counted analytically
(`_common.flops_*`); the target is that ours reaches >= 0.9x the GFLOP/s of
`keras.applications.VGG16(include_top=False)` at the same input size and batch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 0.9


def run(args):
    import keras
    import tensorflow as tf

    spec = args.spec
    with C.device_scope(args.device):
        frames = C.network_frames(spec, spec.frames)
        extractor = C.build_extractor(spec)
        if spec.width == 1.0:
            vgg = keras.applications.VGG16(
                include_top=False, weights=None, input_shape=(spec.image,) * 2 + (3,)
            )
        else:  # keras' VGG16 has no width factor: the same layout, scaled
            vgg = _scaled_vgg16(spec)
        vgg_fn = tf.function(lambda x: vgg(x, training=False), jit_compile=False)
        batches = [
            tf.constant(frames[i : i + spec.batch])
            for i in range(0, len(frames), spec.batch)
        ]

        def ours():
            extractor.extract(frames, batch_size=spec.batch)

        def bare():
            for batch in batches:
                vgg_fn(batch).numpy()

        times = C.alternate({"ours": ours, "bare": bare}, args.repeats)
    f_ours, f_bare = C.flops_two_stream(spec), C.flops_bare_vgg16(spec)
    n = len(frames)
    gflops_ours = [C.gflop(f_ours) * n / t for t in times["ours"]]
    gflops_bare = [C.gflop(f_bare) * n / t for t in times["bare"]]
    values = C.ratios(gflops_ours, gflops_bare)
    fps_ratio = C.ratios(times["bare"], times["ours"])
    row = C.Row(
        key="1",
        what="both feature streams per frame (one trunk pass, both heads, batch "
        f"{spec.batch})",
        against=f"bare Keras VGG-16 (no top) forward, {spec.image}px, batch {spec.batch}",
        target=f">= {TARGET}x its GFLOP/s",
        values=values,
        met=C.at_least(values, TARGET),
        detail=(
            f"FLOPs/frame: ours {C.gflop(f_ours):.2f} G, VGG-16 no top "
            f"{C.gflop(f_bare):.2f} G (ours/VGG = {f_ours / f_bare:.3f}, so equal "
            f"efficiency gives {f_bare / f_ours:.2f}x its frames/s). GFLOP/s: ours "
            f"{C.fmt_spread(gflops_ours, 0)}, VGG-16 {C.fmt_spread(gflops_bare, 0)}; "
            f"frames/s: ours {C.fmt_spread([n / t for t in times['ours']], 1)}, "
            f"VGG-16 {C.fmt_spread([n / t for t in times['bare']], 1)} "
            f"(frames/s ratio {C.fmt_spread(fps_ratio)})."
        ),
        size=spec.name,
        load=C.load(),
    )
    del extractor, vgg
    C.cleanup()
    return [row]


def _scaled_vgg16(spec):
    """Keras' VGG-16 no-top layout at `spec.width` (for the cpu/tiny sizes)."""
    import keras

    from msl_keras.models.vgg16_trunk import VGG16_BLOCKS, scaled_filters

    inputs = keras.Input((spec.image, spec.image, 3))
    x = inputs
    for block, convs, filters in VGG16_BLOCKS:
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                scaled_filters(filters, spec.width),
                3,
                padding="same",
                activation="relu",
                name=f"block{block}_conv{conv}",
            )(x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
