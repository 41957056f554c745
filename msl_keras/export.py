"""Export the streaming model: one frame in, the anticipated class out (SavedModel, TFLite).

The exported graph is `models.StreamingStep.graph`, the one predict runs: it takes one
uint8 RGB frame of any size (resized and preprocessed inside, with `preprocess_frames`)
plus what the stream carries between frames, and returns the pooled probabilities, the
anticipated class and the carry for the next frame. Its signature, `serve`:

    inputs:  frame (H, W, 3) uint8, state (S, units) float32, prob_sum (N,) float32,
             count () float32                                (zeros at the first frame)
    outputs: pooled (N,), anticipated () int32, probs (N,), stage1 (N,),
             state, prob_sum, count                          (feed back at the next frame)

`S` is 4 for the MS-LSTM (`[h1, c1, h2, c2]`), 2 for a single-stage LSTM (`[h, c]`).
Next to the model, `streaming.json` records the class names, input size, training T
and the shapes above, so a program on another machine needs nothing of this package.

What the graph computes in (`streaming.json`: `"compute_dtype": {"cnn": ..., "lstm":
...}`): the SavedModel keeps the models' dtype policies, the trunk and heads in the run's
`cnn.compute_dtype` and the LSTM step in `lstm.compute_dtype`; the TFLite files compute
in float32 whatever those are (TFLite's built-in kernels take no bfloat16 or float16
activations: the converter refuses such a graph), the float16 variant storing its
weights in float16. Inputs and outputs are the uint8 and float32 tensors above.

Use from Python (the TFLite interpreter is part of TensorFlow):

    runner = tf.lite.Interpreter("streaming_float32.tflite").get_signature_runner("serve")
    carry = {"state": np.zeros((4, units), "float32"),
             "prob_sum": np.zeros(N, "float32"), "count": np.float32(0)}
    for frame in frames:  # (H, W, 3) uint8 RGB
        out = runner(frame=frame, **carry)
        carry = {k: out[k] for k in carry}
        print(out["anticipated"], out["pooled"].max())
"""

import json
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from msl_keras.errors import ConfigError
from msl_keras.models.precision import set_compute_dtype

SIGNATURE = "serve"
FORMATS = ("saved_model", "tflite")
# TFLite variants: the name suffix and how the weights are stored.
TFLITE_WEIGHTS = ("float32", "float16")
METADATA_FILENAME = "streaming.json"


def export_saved_model(stream, path):
    """Writes `stream` (a `StreamingStep`) as a SavedModel with the `serve` signature.

    Returns:
        `Path` of the SavedModel folder.
    """
    archive = keras.export.ExportArchive()
    archive.track(stream.extractor)
    archive.track(stream.lstm)
    archive.add_endpoint(
        SIGNATURE, stream.graph, input_signature=list(stream.input_signature.values())
    )
    archive.write_out(str(path), verbose=False)
    return Path(path)


def convert_to_tflite(saved_model, path, weights="float32"):
    """Converts an exported SavedModel to a TFLite file.

    Args:
        saved_model: the folder `export_saved_model` wrote.
        path: the `.tflite` file to write.
        weights: `"float32"` (the same numbers as the SavedModel up to float
            reassociation) or `"float16"` (weights stored in float16, half the file,
            dequantised to float32 when loaded: compute stays float32).

    Returns:
        `Path` of the written file.
    """
    if weights not in TFLITE_WEIGHTS:
        raise ValueError(
            f"weights must be one of {TFLITE_WEIGHTS}. Received: weights={weights!r}"
        )
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
    """Exports a `StreamingStep` into the folder `out`.

    Args:
        stream: the `StreamingStep` to export.
        out: the output folder (created; must not hold an earlier export).
        format: `"saved_model"` (`out` is the SavedModel folder) or `"tflite"`
            (`out/streaming_float32.tflite` and `out/streaming_float16.tflite`).
        metadata: optional dict added to `streaming.json` (class names, training T).

    Returns:
        dict `name -> Path` of what was written (`saved_model` or the two TFLite files,
        and `metadata`).
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}. Received: {format!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"'{out}' is not empty: choose a new --out folder or delete this one."
        )
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    compute_dtype = {
        "cnn": stream.extractor.compute_dtype_name,
        "lstm": stream.lstm.compute_dtype,
    }
    if format == "saved_model":
        written["saved_model"] = export_saved_model(stream, out)
    else:
        staging = Path(tempfile.mkdtemp(prefix="msl_keras_export_"))
        try:
            stream.extractor.set_compute_dtype("float32")
            set_compute_dtype(stream.lstm, "float32")
            saved = export_saved_model(stream, staging / "saved_model")
            for weights in TFLITE_WEIGHTS:
                written[f"tflite_{weights}"] = convert_to_tflite(
                    saved, out / f"streaming_{weights}.tflite", weights
                )
        finally:
            stream.extractor.set_compute_dtype(compute_dtype["cnn"])
            set_compute_dtype(stream.lstm, compute_dtype["lstm"])
            shutil.rmtree(staging, ignore_errors=True)
        compute_dtype = {"cnn": "float32", "lstm": "float32"}
    info = {
        "signature": SIGNATURE,
        "input_size": list(stream.input_size),
        "num_classes": stream.num_classes,
        "model": "ms_lstm" if stream.multi_stage else "single_stage",
        "inputs": {
            k: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
            for k, spec in stream.input_signature.items()
        },
        "outputs": [
            "pooled", "anticipated", "probs", "stage1", "state", "prob_sum", "count"
        ],  # fmt: skip
        "carry": ["state", "prob_sum", "count"],
        "compute_dtype": compute_dtype,
        "files": {k: p.name for k, p in written.items()},
        **(metadata or {}),
    }
    written["metadata"] = out / METADATA_FILENAME
    written["metadata"].write_text(json.dumps(info, indent=2) + "\n")
    return written


def export_from_run_dir(
    run_dir, out, format="saved_model", fold=None, lstm=None, print_fn=print
):
    """Exports the streaming model of a trained run folder (`msl-keras export` calls it).

    Args:
        run_dir, fold, lstm: the trained models (`pipeline.prediction.load_trained_run`).
        out, format: as `export_streaming`.
        print_fn: one line per file written (None: silent).

    Returns:
        dict `name -> Path` of what was written.
    """
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
