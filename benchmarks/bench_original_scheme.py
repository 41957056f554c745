"""Row 2: both feature streams per frame vs the original per-frame scheme.

    python benchmarks/bench_original_scheme.py --size paper

Ours: the extract stage's path, `preprocess_frames` on the clip's decoded frames, then
`TwoStreamFeatureExtractor.extract` (one trunk pass, both heads, batches of 32, CAM
inside the graph). The original (`msl_keras.original.scheme.OriginalExtractor`, reimplemented, own
code): per frame, OpenCV preprocessing, two full VGG-16 models at batch 1, a Python loop
over the 1,024 CAM channels, a third call for the action fc layers. The original is given
our weights, so the benchmark also checks that both produce the same features. Target:
ours >= 5x faster per frame. Row 2b: ours with `compute_dtype="bfloat16"`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 5.0


def run(args):
    import numpy as np

    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.original.scheme import OriginalExtractor

    spec = args.spec
    size = (spec.image, spec.image)
    with C.device_scope(args.device):
        frames = C.video_frames(spec, spec.frames)
        few = frames[: spec.original_frames]
        # The original code masks with the unscaled ReLU(M_k): compare like with like.
        extractor = C.build_extractor(spec, cam_normalization=None)
        original = OriginalExtractor.from_extractor(extractor)

        # Same features from the same preprocessed input (up to float32 summation
        # order; OpenCV rounds its resize to uint8, so the inputs are shared here).
        inputs = np.asarray(preprocess_frames(few, size))
        ours_out = extractor.extract(inputs)
        pairs = [original.features(x[None]) for x in inputs]
        orig_out = {
            "context": np.stack([c for c, _ in pairs]),
            "action": np.stack([a for _, a in pairs]),
        }
        error = max(
            float(
                np.max(np.abs(ours_out[k] - orig_out[k]))
                / max(1e-12, float(np.max(np.abs(ours_out[k]))))
            )
            for k in ("context", "action")
        )
        if error > 1e-3:  # a speed ratio between two different computations means nothing
            raise AssertionError(
                f"ours and the original scheme give different features (max relative "
                f"difference {error:.1e}): the comparison is not like with like."
            )

        # The same extractor computing in bfloat16 (weights shared, still float32).
        fast = C.build_extractor(spec, cam_normalization=None)
        fast.set_weights(extractor.get_weights())
        fast.set_compute_dtype("bfloat16")
        fast_out = fast.extract(inputs)
        bf16_error = max(
            float(
                np.max(np.abs(ours_out[k] - fast_out[k]))
                / max(1e-12, float(np.max(np.abs(ours_out[k]))))
            )
            for k in ("context",)
        )
        agree = float(
            np.mean(
                ours_out["cam_scores"].argmax(-1) == fast_out["cam_scores"].argmax(-1)
            )
        )

        def ours(model=extractor):
            model.extract(
                np.asarray(preprocess_frames(frames, size)), batch_size=spec.batch
            )

        def theirs():
            original.extract(few)

        times = C.alternate(
            {"ours": ours, "bf16": lambda: ours(fast), "theirs": theirs},
            args.repeats,
        )
    per_frame_ours = [t / len(frames) for t in times["ours"]]
    per_frame_bf16 = [t / len(frames) for t in times["bf16"]]
    per_frame_theirs = [t / len(few) for t in times["theirs"]]
    values = C.ratios(per_frame_theirs, per_frame_ours)
    values_bf16 = C.ratios(per_frame_theirs, per_frame_bf16)
    flop_ratio = C.flops_original(spec) / C.flops_two_stream(spec)
    row = C.Row(
        key="2",
        what=f"both feature streams per frame (ours, batch {spec.batch})",
        against="the original per-frame scheme (batch 1, two full VGG-16 models, "
        f"Python loop over {spec.cam_filters} CAM channels), reimplemented",
        target=f">= {TARGET:g}x faster",
        values=values,
        met=C.at_least(values, TARGET),
        detail=(
            f"ms/frame: ours {C.fmt_spread([1e3 * t for t in per_frame_ours], 1)}, "
            f"original {C.fmt_spread([1e3 * t for t in per_frame_theirs], 1)} "
            f"(ours on {len(frames)} frames, original on {len(few)}). FLOPs/frame: "
            f"original {C.gflop(C.flops_original(spec)):.2f} G vs ours "
            f"{C.gflop(C.flops_two_stream(spec)):.2f} G ({flop_ratio:.2f}x). Same "
            f"features: max relative difference {error:.1e}."
        ),
        size=spec.name,
        load=C.load(),
    )
    row_bf16 = C.Row(
        key="2b",
        what=f"same, ours computing in bfloat16 (compute_dtype='bfloat16', batch "
        f"{spec.batch})",
        against="the original per-frame scheme in float32, as above",
        target=f">= {TARGET:g}x faster",
        values=values_bf16,
        met=C.at_least(values_bf16, TARGET),
        detail=(
            f"ms/frame: ours in bfloat16 "
            f"{C.fmt_spread([1e3 * t for t in per_frame_bf16], 1)} (float32 speed-up "
            f"{C.fmt_spread(C.ratios(per_frame_ours, per_frame_bf16))}x). Features vs "
            f"float32: max relative difference of the context feature {bf16_error:.1e}; "
            f"the CAM's arg-max class agrees on {100 * agree:.0f}% of the "
            f"{len(few)} frames (random weights: near-tied scores)."
        ),
        size=spec.name,
        load=C.load(),
    )
    del extractor, original, fast
    C.cleanup()
    return [row, row_bf16]


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
