"""Rows 6 and 6c: streaming predict per frame, in Keras and as the exported TFLite file.

    python benchmarks/bench_streaming_predict.py --size paper

Row 6: `models.StreamingStep.step(frame, ...)`, what `predict_video` runs for every new
frame (the one streaming path): preprocessing, trunk + both heads at batch 1, ONE step
of the MS-LSTM with its state kept, the running temporal average pooling, in one graph.
Against: the same frame's preprocessing and two-stream extraction at batch 1
(`TwoStreamFeatureExtractor.extract(x, batch_size=1)`): the LSTM step and the pooling
must add at most 10%.

Row 6c: the same step exported (`msl_keras.export`, float32 TFLite file) and run by
`tf.lite.Interpreter` with one thread per core, against the Keras step of row 6.
The steps are interleaved frame by frame.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 1.1


def run(args):
    import shutil
    import tempfile
    import warnings

    import numpy as np
    import tensorflow as tf

    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.export import convert_to_tflite, export_saved_model
    from msl_keras.models.streaming import StreamingStep

    spec = args.spec
    count = 16
    frames = C.video_frames(spec, count)
    size = (spec.image, spec.image)
    staging = tempfile.mkdtemp(prefix="bench_streaming_")
    with C.device_scope(args.device):
        extractor = C.build_extractor(spec)
        model = C.build_lstm(spec)
        stream = StreamingStep(extractor, model, spec.image)
        saved = export_saved_model(stream, os.path.join(staging, "saved_model"))
        tflite_path = convert_to_tflite(saved, os.path.join(staging, "step.tflite"))
        with warnings.catch_warnings():  # tf.lite.Interpreter's move to ai_edge_litert
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(
                model_path=str(tflite_path), num_threads=os.cpu_count()
            )
        runner = interpreter.get_signature_runner("serve")
        carries = {}

        def reset():
            carries["keras"] = stream.initial_carry()
            carries["tflite"] = {
                k: np.asarray(v) for k, v in stream.initial_carry().items()
            }

        def keras_step(frame):
            out = stream.step(frame, **carries["keras"])
            np.asarray(out["pooled"])
            carries["keras"] = {k: out[k] for k in carries["keras"]}

        def tflite_step(frame):
            out = runner(frame=frame, **carries["tflite"])
            carries["tflite"] = {k: out[k] for k in carries["tflite"]}

        def extract_only(frame):
            x = preprocess_frames(np.asarray(frame)[None], size)
            extractor.extract(np.asarray(x), batch_size=1)

        steps = {"stream": keras_step, "tflite": tflite_step, "extract": extract_only}
        reset()
        for fn in steps.values():  # trace, allocate
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
        megabytes = os.path.getsize(tflite_path) / 2**20
    shutil.rmtree(staging, ignore_errors=True)
    per = lambda ts: [1e3 * t / count for t in ts]  # noqa: E731
    stream_values = C.ratios(times["stream"], times["extract"])
    tflite_values = C.ratios(times["tflite"], times["stream"])
    rows = [
        C.Row(
            key="6",
            what="streaming predict per frame (models.StreamingStep, what predict runs: "
            "preprocessing, trunk + heads, one MS-LSTM step, pooling, one graph)",
            against="two-stream extraction of one frame at batch 1",
            target=f"<= {TARGET:g}x",
            values=stream_values,
            met=C.at_most(stream_values, TARGET),
            detail=(
                f"ms/frame: {C.fmt_spread(per(times['stream']), 1)}, extraction "
                f"{C.fmt_spread(per(times['extract']), 1)}; the MS-LSTM step "
                f"alone {1e3 * lstm_only:.1f} ms with its weights in cache "
                f"({spec.units} units, {count} frames per repeat)."
            ),
            size=spec.name,
            load=C.load(),
        ),
        C.Row(
            key="6c",
            what="the same step exported (msl_keras.export, float32 TFLite, "
            "tf.lite.Interpreter)",
            against="the Keras streaming step of row 6",
            target="reported (what the export costs or buys)",
            values=tflite_values,
            met=None,
            detail=(
                f"ms/frame: TFLite {C.fmt_spread(per(times['tflite']), 1)} "
                f"({os.cpu_count()} threads, {megabytes:.0f} MiB file), Keras "
                f"{C.fmt_spread(per(times['stream']), 1)}; both from uint8 "
                f"{spec.source[0]}x{spec.source[1]} frames."
            ),
            size=spec.name,
            load=C.load(),
        ),
    ]
    del extractor, model, stream, interpreter, runner
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
