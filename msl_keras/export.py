"""Export the streaming model (SavedModel, TFLite): one frame in, the class out.

The graph is `models.StreamingStep.graph`, the one predict runs (README "Export the
streaming model"). Its signature, `serve`:

    inputs:  frame (H, W, 3) uint8, state (S, units) float32, prob_sum (N,) float32,
             count () float32                             (zeros at the first frame)
    outputs: pooled (N,), anticipated () int32, probs (N,), stage1 (N,),
             state, prob_sum, count                       (fed back at the next frame)

`S` is 4 for the MS-LSTM (`[h1, c1, h2, c2]`), 2 for a single-stage LSTM (`[h, c]`).
`streaming.json` beside the model records the class names, input size, training T, the
shapes above and the compute dtypes: the run's in the SavedModel, float32 in the TFLite
files (TFLite's built-in kernels take no bfloat16 or float16 activations). In Python:

    interpreter = tf.lite.Interpreter("streaming_float32.tflite")
    runner = interpreter.get_signature_runner("serve")
    carry = {"state": np.zeros((4, units), "float32"),
             "prob_sum": np.zeros(N, "float32"), "count": np.float32(0)}
    for frame in frames:  # (H, W, 3) uint8 RGB
        out = runner(frame=frame, **carry)
        carry = {k: out[k] for k in carry}
        print(out["anticipated"], out["pooled"].max())
"""

import json
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from msl_keras.config import EXPORT_FORMATS as FORMATS
from msl_keras.errors import ConfigError, check_choice
from msl_keras.models.precision import set_compute_dtype

SIGNATURE = "serve"
TFLITE_WEIGHTS = ("float32", "float16")  # TFLite variants: how the weights are stored


def export_saved_model(stream, path):
    """Writes `stream` (a `StreamingStep`) as a SavedModel folder `path`; its `Path`."""
    archive = keras.export.ExportArchive()
    archive.track(stream.extractor)
    archive.track(stream.lstm)
    archive.add_endpoint(
        SIGNATURE, stream.graph, input_signature=list(stream.input_signature.values())
    )
    archive.write_out(str(path), verbose=False)
    return Path(path)


def convert_to_tflite(saved_model, path, weights="float32"):
    """Converts the SavedModel folder `saved_model` to a TFLite file `path`; its `Path`.

    `weights`: `"float32"` (the SavedModel's numbers up to float reassociation) or
    `"float16"` (stored in float16, half the file, dequantised to float32 when loaded).
    """
    check_choice("weights", weights, TFLITE_WEIGHTS)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE]
    )
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    path = Path(path)
    path.write_bytes(converter.convert())
    return path


def export_streaming(stream, out, format="saved_model", metadata=None):
    """Exports the `StreamingStep` `stream` into the new or empty folder `out`.

    `format`: `"saved_model"` (`out` is the SavedModel folder) or `"tflite"`
    (`out/streaming_float32.tflite` and `out/streaming_float16.tflite`). `metadata`:
    optional dict added to `streaming.json` (class names, training T). Returns `name ->
    Path` of what was written (`saved_model` or the two TFLite files, and `metadata`).
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}. Received: {format!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"'{out}' is not empty: choose a new --out folder or delete this one."
        )
    out.mkdir(parents=True, exist_ok=True)
    cnn_dtype = stream.extractor.compute_dtype_name
    lstm_dtype = stream.lstm.compute_dtype
    if format == "saved_model":
        written = {"saved_model": export_saved_model(stream, out)}
        compute_dtype = {"cnn": cnn_dtype, "lstm": lstm_dtype}
    else:
        written, compute_dtype = {}, {"cnn": "float32", "lstm": "float32"}
        with tempfile.TemporaryDirectory(prefix="msl_keras_export_") as staging:
            try:
                stream.extractor.set_compute_dtype("float32")
                set_compute_dtype(stream.lstm, "float32")
                saved = export_saved_model(stream, Path(staging, "saved_model"))
                for weights in TFLITE_WEIGHTS:
                    written[f"tflite_{weights}"] = convert_to_tflite(
                        saved, out / f"streaming_{weights}.tflite", weights
                    )
            finally:
                stream.extractor.set_compute_dtype(cnn_dtype)
                set_compute_dtype(stream.lstm, lstm_dtype)
    info = {
        "signature": SIGNATURE,
        "input_size": list(stream.input_size),
        "num_classes": stream.num_classes,
        "model": "ms_lstm" if stream.multi_stage else "single_stage",
        "inputs": {
            k: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
            for k, spec in stream.input_signature.items()
        },
        "outputs": "pooled anticipated probs stage1 state prob_sum count".split(),
        "carry": ["state", "prob_sum", "count"],
        "compute_dtype": compute_dtype,
        "files": {k: p.name for k, p in written.items()},
        **(metadata or {}),
    }
    written["metadata"] = out / "streaming.json"
    written["metadata"].write_text(json.dumps(info, indent=2) + "\n")
    return written


def export_from_run_dir(
    run_dir, out, format="saved_model", fold=None, lstm=None, print_fn=print
):
    """`export_streaming` of a trained run folder's models (`msl-keras export`), picked
    as `pipeline.prediction.load_trained_run` does; `print_fn` (None: silent) gets one
    line per file written."""
    from msl_keras.pipeline.prediction import load_trained_run

    loaded = load_trained_run(run_dir, fold, lstm, print_fn)
    config = loaded["config"]
    metadata = {
        "class_names": loaded["class_names"],
        "trained_steps": int(config.data.num_steps),
        "frame_selection": config.data.frame_selection,
        "run": str(Path(run_dir).name),
        "fold": loaded["fold"],
        "lstm": loaded["lstm"],
    }
    written = export_streaming(loaded["stream"], out, format, metadata)
    if print_fn is not None:
        for name, path in written.items():
            print_fn(f"wrote {name}: {path}")
    return written
