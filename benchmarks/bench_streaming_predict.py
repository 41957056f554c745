"""Row 6: streaming predict per frame vs two-stream extraction of one frame.

    /work/venv/bin/python benchmarks/bench_streaming_predict.py --size paper

Row 6: `stages.predict.StreamingAnticipator.update(frame)`, what `predict_video` runs for
every new frame: preprocessing, trunk + both heads at batch 1, ONE step of the MS-LSTM
with its state kept, the running temporal average pooling. Row 6b: the same work with
`models.StreamingStep`, which traces the extractor and the LSTM step into one graph.
Against: the same frame's preprocessing and two-stream extraction at batch 1
(`TwoStreamFeatureExtractor.extract(x, batch_size=1)`): the LSTM step and the pooling
must add at most 10%. The three are interleaved frame by frame.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 1.1


def run(args):
    import numpy as np

    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.layers.temporal_average_pooling import StreamingAveragePooling
    from msl_keras.models.streaming import StreamingStep
    from msl_keras.stages.predict import StreamingAnticipator

    spec = args.spec
    count = 16
    frames = C.video_frames(spec, count)
    size = (spec.image, spec.image)
    with C.device_scope(args.device):
        extractor = C.build_extractor(spec)
        model = C.build_lstm(spec)
        anticipator = StreamingAnticipator(extractor, model, spec.image)
        fused = StreamingStep(extractor, model)
        state = {}

        def reset():
            anticipator.reset()
            state.update(states=fused.initial_state(1), pooling=StreamingAveragePooling())

        def fused_update(frame):
            x = preprocess_frames(np.asarray(frame)[None], size)
            out, state["states"] = fused.step(x, state["states"])
            return state["pooling"].update(np.asarray(out["probs"], np.float64)[0])

        def extract_only(frame):
            x = preprocess_frames(np.asarray(frame)[None], size)
            extractor.extract(np.asarray(x), batch_size=1)

        steps = {
            "stream": anticipator.update,
            "fused": fused_update,
            "extract": extract_only,
        }
        reset()
        for fn in steps.values():  # trace
            fn(frames[0])
        # Interleaved frame by frame (the load of a shared machine changes by the
        # second), the order rotating from frame to frame.
        times = {name: [] for name in steps}
        names = list(steps)
        for _ in range(args.repeats):
            reset()
            spent = dict.fromkeys(steps, 0.0)
            for i, frame in enumerate(frames):
                for name in names[i % 3 :] + names[: i % 3]:
                    start = C.clock()
                    steps[name](frame)
                    spent[name] += C.clock() - start
            for name, seconds in spent.items():
                times[name].append(seconds)
        lstm_only = _lstm_step_time(model, spec, count)
    per = lambda ts: [1e3 * t / count for t in ts]  # noqa: E731
    rows = []
    for key, name, what in (
        ("6", "stream", "streaming predict per frame (stages.predict "
         "StreamingAnticipator: trunk + heads, then one MS-LSTM step, pooling)"),
        ("6b", "fused", "same with models.StreamingStep (extractor and LSTM step in "
         "one graph)"),
    ):  # fmt: skip
        values = C.ratios(times[name], times["extract"])
        rows.append(
            C.Row(
                key=key,
                what=what,
                against="two-stream extraction of one frame at batch 1",
                target=f"<= {TARGET:g}x",
                values=values,
                met=C.at_most(values, TARGET),
                detail=(
                    f"ms/frame: {C.fmt_spread(per(times[name]), 1)}, extraction "
                    f"{C.fmt_spread(per(times['extract']), 1)}; the MS-LSTM step "
                    f"alone {1e3 * lstm_only:.1f} ms with its weights in cache "
                    f"({spec.units} units, {count} frames per repeat)."
                ),
                size=spec.name,
                load=C.load(),
            )
        )
    del extractor, model, anticipator, fused
    C.cleanup()
    return rows


def _lstm_step_time(model, spec, count):
    """Median time of `MultiStageLSTM.step` at batch 1, called back to back."""
    import statistics

    import numpy as np

    x = np.zeros((1, spec.fc_units), np.float32)
    states = model.initial_state(1)
    model.step(x, x, states)
    times = []
    for _ in range(count):
        start = C.clock()
        p1, p2, states = model.step(x, x, states)
        np.asarray(p2)
        times.append(C.clock() - start)
    return statistics.median(times)


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
