"""Weights saved by the authors' original scripts, loaded into msl_keras' models.

The original code (mangalutsav/Multi-Stage-LSTM-for-Action-Anticipation) saved its three
models with Keras 2's `model.save_weights("....h5")`: an HDF5 file whose root attribute
`layer_names` lists the model's layers in order and whose group per layer has an attribute
`weight_names` (`conv2d_1/kernel:0`, ...). Layers it did not name carry Keras' default
names (`conv2d_1`, `dense_2`, `lstm_1`, `time_distributed_1`; the number counts the
layers of that type made so far in the session). No layer type is stored, so layers are
recognised by their weights (a 4-D kernel and a bias: a convolution; a 2-D kernel and a
bias: a dense layer; kernel, recurrent kernel and bias: an LSTM) and mapped BY ORDER
within each type (the creation order of the default names, else the file's order).

What its models hold and where each part goes:

| original file              | its layers, in order                        | msl_keras                        |
| -------------------------- | ------------------------------------------- | -------------------------------- |
| context-aware (`vgg_context`) | VGG-16 `block1_conv1` .. `block5_conv3`, dense x3 (4096, 4096, N) | `VGG16Trunk` (up to conv5_2) + `ContextAwareHead` (`block5_conv3`, fc6, fc7, fc8): everything |
| action-aware (`vgg_action`)  | VGG-16 up to `block5_conv3`, `conv2d` (3x3, 1024), dense (1024 -> N) | `VGG16Trunk` + `ActionAwareHead` `block5_conv3`, `cam_conv`, `cam_classifier`; NOT fc6-fc8 of the masked path (the original has none: its action feature was the 1024-d pooled `cam_conv` output, defect 3) |
| MS-LSTM (`MS_LSTM`)          | lstm, lstm, dense, dense (time-distributed)  | `MultiStageLSTM` stage1/stage2 LSTMs and classifiers, when its LSTMs ran over frames; the published code built them on `(4096, 50)` inputs (defect 5): their input kernels are `(50, 4 units)`, ours `(4096, 4 units)`, and nothing maps |

Layouts: Keras 2's LSTM stores `kernel (input, 4 units)`, `recurrent_kernel (units,
4 units)` and `bias (4 units,)` with the gates in the order i, f, c, o, as Keras 3's
`LSTMCell` (`z0..z3 = i, f, c, o`): they load unchanged. Keras 1 files (12 arrays per
LSTM, gates i, c, f, o) are reordered; a file saved with the Theano backend has its
convolution kernels flipped (Theano convolves, TensorFlow correlates); a channels-first
kernel `(out, in, kh, kw)` is transposed. Concatenation order differs in stage 2: the
original concatenated `[action, stage-1 hidden]`, msl_keras `[stage-1 hidden, action]`;
the rows of stage 2's input kernel are swapped to match.

Every load returns a `WeightsImportReport` that lists what was loaded, which of our
weights were not (left at their initial values) and why, which weights of the file were
not used, and the differences in behaviour that remain (recurrent activation, CAM
pooling, preprocessing the weights were fine-tuned on). A file of another architecture
raises `WeightsError` naming the file and what was found in it.

Example:

>>> result = import_original_weights("context_aware_vgg16_final.h5", out="ctx.keras")
>>> print(result.report)            # what loaded, what did not
>>> trunk, head = result.models["trunk"], result.models["context_head"]
"""

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np

from msl_keras.errors import WeightsError
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.ms_lstm import MultiStageLSTM
from msl_keras.models.vgg16_trunk import (
    HEAD_CONVOLUTION,
    VGG16Trunk,
    scaled_filters,
    vgg16_convolutions,
    write_vgg16_h5,
)

KINDS = ("context", "action", "ms_lstm")
# VGG-16's convolutions as keras.applications names them, and their filters at width 1.
VGG16_CONVS = vgg16_convolutions()
TRUNK_LAYERS = [name for name, _ in VGG16_CONVS if name != HEAD_CONVOLUTION]
ORIGINAL_TEMPORAL_LENGTH = 50  # its ms_lstm.py --temporal-length default
ORIGINAL_FEATURE_DIM = 4096  # its MS_LSTM(INPUT_DIM=4096)
_DEFAULT_NAME = re.compile(r"^(?P<prefix>[a-z_0-9]+?)_(?P<number>\d+)$")

_PREPROCESSING_NOTE = (
    "Its CNNs were fine-tuned on RGB frames scaled to [0, 1] (ImageDataGenerator "
    "rescale=1/255; featurewise centring was never fitted) but its extraction fed BGR "
    "mean-subtracted frames (defect 7). msl_keras feeds every model the Keras VGG-16 "
    "'caffe' preprocessing (BGR, ImageNet mean subtracted), so these weights see the "
    "inputs of the original's extraction, not those of its training."
)
_TRUNK_NOTE = (
    "The original fine-tuned the whole VGG-16 inside each of its two CNNs (no layer was "
    "frozen), so its context and action files hold two different trunks; msl_keras "
    "shares one trunk between the streams (the paper: the shared part is not trained "
    "end to end). The trunk returned here is this file's."
)


# --------------------------------------------------------------------------------------
# The report


@dataclasses.dataclass
class WeightsImportReport:
    """What a load of an original weights file did.

    Attributes:
        path: the file.
        kind: `"context"`, `"action"` or `"ms_lstm"`.
        keras_version, backend: as recorded in the file ("" when absent).
        loaded: one dict per weight group loaded: `{"file": layer in the file, "ours":
            "<model>/<layer>", "shapes": [...], "note": conversion applied or ""}`.
        not_loaded: our layers left at their initial values: `{"ours": ..., "why": ...}`.
        unused: layers of the file not loaded: `{"file": ..., "why": ...}`.
        notes: differences in behaviour that remain after loading.
    """

    path: str
    kind: str
    keras_version: str = ""
    backend: str = ""
    loaded: list = dataclasses.field(default_factory=list)
    not_loaded: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def complete(self):
        """True when every weight of our models came from the file."""
        return not self.not_loaded

    def to_dict(self):
        return {**dataclasses.asdict(self), "complete": self.complete}

    def __str__(self):
        lines = [
            (
                f"Original {self.kind} weights: {self.path} (Keras "
                f"{self.keras_version or '?'}, backend {self.backend or '?'})"
            ),
            f"  loaded ({len(self.loaded)}):",
        ]
        for item in self.loaded:
            shapes = ", ".join("x".join(map(str, s)) for s in item["shapes"])
            note = f"  [{item['note']}]" if item["note"] else ""
            lines.append(f"    {item['file']:<22} -> {item['ours']:<34} {shapes}{note}")
        lines.append(f"  not loaded, left at initial values ({len(self.not_loaded)}):")
        lines += [f"    {i['ours']}: {i['why']}" for i in self.not_loaded] or ["    -"]
        lines.append(f"  in the file but not used ({len(self.unused)}):")
        lines += [f"    {i['file']}: {i['why']}" for i in self.unused] or ["    -"]
        if self.notes:
            lines.append("  differences that remain:")
            lines += [f"    - {note}" for note in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Reading the file


@dataclasses.dataclass
class OriginalLayer:
    """One layer group of a Keras 1/2 weights file, its weights in Keras 2 layout.

    `kind` is `"conv"`, `"dense"`, `"lstm"` or `"other"`; `conversion` names what was
    done to reach the Keras 2 TensorFlow layout ("" for nothing).
    """

    name: str
    weight_names: tuple
    arrays: list
    kind: str
    conversion: str = ""

    @property
    def shapes(self):
        return [tuple(int(d) for d in a.shape) for a in self.arrays]


@dataclasses.dataclass
class OriginalWeightsFile:
    """The layers with weights of a Keras 1/2 `save_weights` file, in file order."""

    path: str
    layers: list
    keras_version: str = ""
    backend: str = ""

    def of_kind(self, kind):
        """Layers of one kind in creation order: by the number of Keras' default name
        (`dense_2` after `dense_1`) when every such layer has one, else file order."""
        layers = [layer for layer in self.layers if layer.kind == kind]
        numbered = [_DEFAULT_NAME.match(layer.name) for layer in layers]
        if layers and all(numbered) and len({m["prefix"] for m in numbered}) == 1:
            return sorted(
                layers, key=lambda layer: int(_DEFAULT_NAME.match(layer.name)["number"])
            )
        return layers

    def describe(self):
        """`"13 convolutions, 3 dense layers"`: what the file holds, for messages."""
        counts = {}
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
        words = {
            "conv": "convolution(s)",
            "dense": "dense layer(s)",
            "lstm": "LSTM(s)",
            "other": "other layer(s)",
        }
        parts = [f"{counts[k]} {words[k]}" for k in words if k in counts]
        others = [layer.name for layer in self.layers if layer.kind == "other"]
        if others:
            parts.append(f"unknown: {', '.join(others[:5])}")
        return ", ".join(parts) or "no layer with weights"


def _read_attribute_list(group, name):
    """A string-list attribute, joining the chunks `name0`, `name1`, ... Keras writes
    when it is longer than HDF5's 64 KB header limit."""
    if name in group.attrs:
        values = group.attrs[name]
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _attribute_text(group, name):
    value = group.attrs.get(name, b"")
    if isinstance(value, bytes):
        value = value.decode("utf8", "replace")
    return str(value)


def _keras1_lstm(arrays):
    """Keras 1's 12 LSTM arrays (W, U, b for gates i, c, f, o) -> kernel, recurrent
    kernel, bias with gates i, f, c, o."""
    order = (0, 2, 1, 3)  # i, c, f, o -> i, f, c, o
    w, u, b = arrays[0::3], arrays[1::3], arrays[2::3]
    return [
        np.concatenate([w[g] for g in order], axis=-1),
        np.concatenate([u[g] for g in order], axis=-1),
        np.concatenate([b[g] for g in order], axis=-1),
    ]


def _classify(name, weight_names, arrays, backend):
    shapes = [a.shape for a in arrays]
    if len(arrays) == 12 and all(len(s) in (1, 2) for s in shapes):
        return "lstm", _keras1_lstm(arrays), "Keras 1 LSTM gates i,c,f,o -> i,f,c,o"
    if len(arrays) == 3 and [len(s) for s in shapes] == [2, 2, 1]:
        units = shapes[1][0]
        if (
            shapes[1][1] == 4 * units
            and shapes[0][1] == 4 * units
            and shapes[2][0] == 4 * units
        ):
            return "lstm", list(arrays), ""
    if len(arrays) == 2 and len(shapes[0]) == 4 and len(shapes[1]) == 1:
        kernel, conversion = arrays[0], ""
        if backend == "theano":
            # Theano convolves (flipped kernel), TensorFlow correlates: Keras'
            # conv_utils.convert_kernel flips the spatial axes.
            kernel = np.ascontiguousarray(kernel[::-1, ::-1])
            conversion = "Theano kernel flipped"
        return "conv", [kernel, arrays[1]], conversion
    if (
        len(arrays) == 2
        and len(shapes[0]) == 2
        and len(shapes[1]) == 1
        and shapes[0][1] == shapes[1][0]
    ):
        return "dense", list(arrays), ""
    return "other", list(arrays), ""


def read_original_weights(path):
    """Reads a Keras 1/2 `save_weights` (or `model.save`) HDF5 file.

    Args:
        path: the `.h5` file written by the original scripts.

    Returns:
        `OriginalWeightsFile`: the layers that have weights, in file order, each with
        its kind (conv, dense, lstm, other) and its arrays in Keras 2 TensorFlow layout.

    Raises:
        WeightsError: the file is missing, not HDF5, or not in the Keras 1/2 layout.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(
            f"Weights file not found: '{path}'. Pass the .h5 file the original scripts "
            "saved (e.g. data/model_weights/context_aware_vgg16_final.h5)."
        )
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(
            f"Cannot open '{path}' as HDF5 ({error}). The original scripts saved weights "
            "with Keras' model.save_weights('<name>.h5'); pass such a file."
        ) from error
    with file:
        root = file
        if "layer_names" not in root.attrs and "layer_names0" not in root.attrs:
            if "model_weights" in root:
                root = root["model_weights"]
            else:
                raise WeightsError(
                    f"'{path}' is not a Keras 1/2 weights file: it has no 'layer_names' "
                    "attribute. (Files msl_keras writes, .keras and .weights.h5, load "
                    "with keras.saving.load_model / model.load_weights.)"
                )
        backend = _attribute_text(root, "backend") or _attribute_text(file, "backend")
        version = _attribute_text(root, "keras_version") or _attribute_text(
            file, "keras_version"
        )
        layers = []
        try:
            for name in _read_attribute_list(root, "layer_names"):
                group = root[name]
                weight_names = tuple(_read_attribute_list(group, "weight_names"))
                if not weight_names:
                    continue
                arrays = [np.asarray(group[w]) for w in weight_names]
                kind, arrays, conversion = _classify(
                    name, weight_names, arrays, backend
                )
                layers.append(
                    OriginalLayer(name, weight_names, arrays, kind, conversion)
                )
        except (KeyError, OSError, ValueError) as error:
            raise WeightsError(
                f"'{path}' is damaged: its layer list names weights it does not hold "
                f"({error}). Save the weights again with the original script."
            ) from error
    return OriginalWeightsFile(path, layers, keras_version=version, backend=backend)


def _as_file(path_or_file):
    if isinstance(path_or_file, OriginalWeightsFile):
        return path_or_file
    return read_original_weights(path_or_file)


# --------------------------------------------------------------------------------------
# Which model a file holds


def _vgg_convs(file):
    """The file's VGG-16 convolutions `{vgg name: layer}` and the other convolutions.

    Convolutions named like keras.applications' VGG-16 map by name; if none is, the
    first 14 (13 for the trunk + conv5_3) map by order."""
    convs = file.of_kind("conv")
    named = {layer.name: layer for layer in convs if layer.name in dict(VGG16_CONVS)}
    if named:
        others = [layer for layer in convs if layer.name not in named]
        return named, others
    count = len(VGG16_CONVS)
    return (
        {name: layer for (name, _), layer in zip(VGG16_CONVS, convs[:count])},
        convs[count:],
    )


def detect_original_kind(path_or_file):
    """`"context"`, `"action"` or `"ms_lstm"`: which of the original's models a file holds.

    Context: VGG-16's 13 convolutions and 3 dense layers. Action: 13 VGG-16 convolutions,
    one more convolution and 1 dense layer. MS-LSTM: 2 LSTMs and 2 dense layers.

    Raises:
        WeightsError: none of these (naming the file and what it holds).
    """
    file = _as_file(path_or_file)
    counts = {k: len(file.of_kind(k)) for k in ("conv", "dense", "lstm", "other")}
    if counts["other"] == 0:
        if counts == {"conv": 0, "dense": 2, "lstm": 2, "other": 0}:
            return "ms_lstm"
        if counts["lstm"] == 0:
            named, others = _vgg_convs(file)
            if len(named) == len(VGG16_CONVS):
                if not others and counts["dense"] == 3:
                    return "context"
                if len(others) == 1 and counts["dense"] == 1:
                    return "action"
    raise WeightsError(
        f"'{file.path}' is not a weights file of one of the original code's models. It "
        f"holds {file.describe()}. Expected: the context-aware model (VGG-16's 13 "
        "convolutions block1_conv1..block5_conv3 and 3 dense layers), the action-aware "
        "model (the 13 VGG-16 convolutions, one 3x3 convolution and 1 dense layer) or "
        "the MS-LSTM (2 LSTMs and 2 dense layers)."
    )


def _check_kind(file, kind):
    if kind not in KINDS + ("auto",):
        raise WeightsError(
            f"kind must be one of {KINDS} or 'auto'. Received: kind={kind!r}"
        )
    found = detect_original_kind(file)
    if kind != "auto" and found != kind:
        raise WeightsError(
            f"'{file.path}' holds the original's {found} model ({file.describe()}), not "
            f"its {kind} model. Pass kind='{found}' (or kind='auto')."
        )
    return found


# --------------------------------------------------------------------------------------
# Assigning arrays to our layers


def _fit_arrays(file, layer, target, arrays, label):
    """`arrays` reshaped to `target`'s weights (channels-first kernels transposed), or a
    WeightsError naming the file and the shapes."""
    expected = [tuple(int(d) for d in w.shape) for w in target.weights]
    arrays = list(arrays)
    note = ""
    if (
        len(arrays) == len(expected)
        and arrays
        and arrays[0].ndim == 4
        and tuple(arrays[0].shape) != expected[0]
        and tuple(np.transpose(arrays[0], (2, 3, 1, 0)).shape) == expected[0]
    ):
        arrays[0] = np.transpose(
            arrays[0], (2, 3, 1, 0)
        )  # (out, in, kh, kw) -> (kh, kw, in, out)
        note = "channels-first kernel transposed"
    found = [tuple(a.shape) for a in arrays]
    if found != expected:
        raise WeightsError(
            f"Layer '{layer.name}' of '{file.path}' has weight shapes {found}, but "
            f"{label} needs "
            f"{expected}. The file was made for another architecture, width, input size "
            "or number of classes than the model it is loaded into."
        )
    return arrays, note


def _assign(report, file, layer, target, label, arrays=None, note=""):
    arrays, fit_note = _fit_arrays(
        file, layer, target, layer.arrays if arrays is None else arrays, label
    )
    target.set_weights(arrays)
    notes = [n for n in (layer.conversion, fit_note, note) if n]
    report.loaded.append(
        {
            "file": layer.name,
            "ours": label,
            "shapes": [list(a.shape) for a in arrays],
            "note": "; ".join(notes),
        }
    )


def _new_report(file, kind):
    return WeightsImportReport(
        path=file.path,
        kind=kind,
        keras_version=file.keras_version,
        backend=file.backend,
    )


def _require_built(model):
    if not model.built:
        raise WeightsError(
            f"Build '{model.name}' before loading original weights into it (call it on "
            "an input or call model.build(input_shape))."
        )


def _load_trunk(trunk, file, report):
    named, _ = _vgg_convs(file)
    for name in TRUNK_LAYERS:
        _assign(
            report, file, named[name], trunk.get_layer(name), f"{trunk.name}/{name}"
        )


def _load_context_head(head, file, report):
    named, _ = _vgg_convs(file)
    _assign(
        report,
        file,
        named["block5_conv3"],
        head.block5_conv3,
        f"{head.name}/block5_conv3",
    )
    for layer, target in zip(file.of_kind("dense"), (head.fc6, head.fc7, head.fc8)):
        _assign(report, file, layer, target, f"{head.name}/{target.name}")
    report.notes.append(_PREPROCESSING_NOTE)


def _load_action_head(head, file, report, input_size=None):
    named, (cam_conv,) = _vgg_convs(file)
    (dense,) = file.of_kind("dense")
    _assign(
        report,
        file,
        named["block5_conv3"],
        head.block5_conv3,
        f"{head.name}/block5_conv3",
    )
    _assign(report, file, cam_conv, head.cam_conv, f"{head.name}/cam_conv")
    _assign(
        report,
        file,
        dense,
        head.cam_classifier,
        f"{head.name}/cam_classifier",
        note="the original's softmax is applied after it, as here",
    )
    for target in (head.fc6, head.fc7, head.fc8):
        report.not_loaded.append(
            {
                "ours": f"{head.name}/{target.name}",
                "why": (
                    "the original has no masked path (Eq. 3) and no fc6-fc8 in its "
                    "action model: its action-aware feature was the 1024-d pooled "
                    "cam_conv output (defect 3). Train the head (train-cnn) before "
                    "extracting action-aware features with it."
                ),
            }
        )
    size = int(input_size) if input_size else 224
    h = size // 16
    report.notes.append(
        "CAM pooling: the original zero-padded the cam_conv maps to "
        f"{h + 2}x{h + 2} and average-pooled {14}x{14} windows with stride 14 (defect 4); "
        + (
            f"at {size}x{size} input that is one window over the top-left 14x14 of the "
            f"padded map, i.e. the sum of the first {h - 1}x{h - 1} real positions (the "
            "last row and column are left out) divided by 196. "
            if h == 14
            else f"at {size}x{size} input the maps are {h}x{h}, so that is not one "
            "global window. "
        )
        + "msl_keras' cam_pool is a true global average over the maps the CAM is "
        "computed on, so the loaded cam_classifier gives slightly different scores and "
        "CAM classes."
    )
    report.notes.append(_PREPROCESSING_NOTE)


def _stage2_kernel_rows(kernel, action_rows):
    """Original stage-2 input `[action, hidden1]` -> ours `[hidden1, action]`."""
    return np.concatenate([kernel[action_rows:], kernel[:action_rows]], axis=0)


def _recurrent_activation_note(file):
    version = file.keras_version or "?"
    old = version.startswith("1") or re.match(r"^2\.[0-2]\.", version) is not None
    which = (
        "hard_sigmoid, clip(0.2 x + 0.5, 0, 1)"
        if old
        else "its Keras default (hard_sigmoid before Keras 2.3, sigmoid after)"
    )
    return (
        f"Recurrent activation: the original's LSTMs (Keras {version}) used {which}; "
        "msl_keras' LSTMs use sigmoid (Keras 3's default). The gates are computed from "
        "the same weights with another squashing function: outputs are close but not "
        "equal; fine-tune a few epochs (train-lstm) before comparing accuracies."
    )


def _load_ms_lstm(
    model,
    file,
    report,
    context_dim=None,
    action_dim=None,
    temporal_length=ORIGINAL_TEMPORAL_LENGTH,
    allow_partial=False,
):
    lstm1, lstm2 = file.of_kind("lstm")
    dense1, dense2 = file.of_kind("dense")
    units = lstm1.arrays[1].shape[0]
    rows1, rows2 = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0]
    our_context = int(model.stage1_lstm.cell.kernel.shape[0])
    our_action = int(model.stage2_lstm.cell.kernel.shape[0]) - model.units
    context_dim = our_context if context_dim is None else int(context_dim)
    action_dim = our_action if action_dim is None else int(action_dim)
    file_action_rows = rows2 - units
    transposed = rows1 != context_dim and rows1 == temporal_length
    if not transposed and (rows1 != context_dim or file_action_rows != action_dim):
        raise WeightsError(
            f"The MS-LSTM in '{file.path}' reads {rows1}-d (stage 1) and "
            f"{file_action_rows}-d (stage 2) inputs, but the model takes "
            f"{context_dim}-d context and {action_dim}-d action features. Build the "
            "MultiStageLSTM for the features the file was trained on, or pass "
            "temporal_length=<its --temporal-length> if its LSTMs ran over the feature "
            "axis (the published MS_LSTM did: defect 5)."
        )
    report.notes.append(_recurrent_activation_note(file))
    if transposed:
        why_kernel = (
            "the original built its MS-LSTM on inputs of shape (D, T) = (feature size, "
            f"{temporal_length}) instead of (T, D) (defect 5): its "
            f"LSTMs ran over the feature positions with the {temporal_length} frames as "
            f"the input of each step, so its input kernels are ({rows1}, {4 * units}) "
            f"where frames of {context_dim}-d features need ({context_dim}, "
            f"{4 * units}). There is no mapping between the two."
        )
        if not allow_partial:
            raise WeightsError(
                f"Cannot load the MS-LSTM of '{file.path}': {why_kernel} Retrain the "
                "MS-LSTM in msl_keras on your features (msl-keras import-original, then "
                "train-lstm). Pass allow_partial=True (--allow-partial) to load the "
                "shape-compatible weights anyway (recurrent kernels, biases, "
                "classifiers), which were trained for that transposed recurrence."
            )
        caveat = (
            "shape-compatible only: trained for the transposed recurrence over feature "
            "positions, not over frames"
        )
        cell1, cell2 = model.stage1_lstm.cell, model.stage2_lstm.cell
        hidden_rows = lstm2.arrays[0][rows2 - units :]
        kernel2 = keras.ops.convert_to_numpy(cell2.kernel).copy()
        kernel2[:units] = hidden_rows  # its action rows have no counterpart
        pieces = (
            (lstm1, cell1.recurrent_kernel, "stage1_lstm/recurrent_kernel", lstm1.arrays[1]),
            (lstm1, cell1.bias, "stage1_lstm/bias", lstm1.arrays[2]),
            (lstm2, cell2.kernel, "stage2_lstm/kernel[:units] (stage-1 hidden rows)", kernel2),
            (lstm2, cell2.recurrent_kernel, "stage2_lstm/recurrent_kernel", lstm2.arrays[1]),
            (lstm2, cell2.bias, "stage2_lstm/bias", lstm2.arrays[2]),
        )  # fmt: skip
        for layer, variable, label, value in pieces:
            shown = hidden_rows if variable is cell2.kernel else None
            _assign_partial(
                report, file, layer, variable, label, value, caveat, model, shown
            )
        for layer, target in (
            (dense1, model.stage1_classifier),
            (dense2, model.stage2_classifier),
        ):
            _assign(
                report, file, layer, target, f"{model.name}/{target.name}", note=caveat
            )
        report.not_loaded += [
            {"ours": f"{model.name}/stage1_lstm/kernel", "why": why_kernel},
            {
                "ours": f"{model.name}/stage2_lstm/kernel[units:] (action rows)",
                "why": why_kernel,
            },
        ]
        report.unused += [
            {
                "file": f"{lstm1.name}/kernel",
                "why": f"shape ({rows1}, {4 * units}): {why_kernel}",
            },
            {
                "file": f"{lstm2.name}/kernel[:{rows1}] (its input rows)",
                "why": "the same transposed input",
            },
        ]
        return
    _assign(report, file, lstm1, model.stage1_lstm.cell, f"{model.name}/stage1_lstm")
    kernel2 = _stage2_kernel_rows(lstm2.arrays[0], file_action_rows)
    _assign(
        report,
        file,
        lstm2,
        model.stage2_lstm.cell,
        f"{model.name}/stage2_lstm",
        arrays=[kernel2, lstm2.arrays[1], lstm2.arrays[2]],
        note="input rows reordered: original [action, hidden1] -> ours [hidden1, action]",
    )
    _assign(
        report, file, dense1, model.stage1_classifier, f"{model.name}/stage1_classifier"
    )
    _assign(
        report, file, dense2, model.stage2_classifier, f"{model.name}/stage2_classifier"
    )


def _assign_partial(
    report, file, layer, variable, label, value, note, model, shown=None
):
    value = np.asarray(value)
    if tuple(variable.shape) != tuple(value.shape):
        raise WeightsError(
            f"Layer '{layer.name}' of '{file.path}': {label} has shape "
            f"{tuple(value.shape)}, the model needs {tuple(variable.shape)} (another "
            "number of units?)."
        )
    variable.assign(value)
    report.loaded.append(
        {
            "file": layer.name,
            "ours": f"{model.name}/{label}",
            "shapes": [list((value if shown is None else shown).shape)],
            "note": note,
        }
    )


# --------------------------------------------------------------------------------------
# Public entry points


def load_original_weights(model, path_or_file, kind="auto", **options):
    """Loads an original weights file into one of our (built) models.

    Args:
        model: a built `VGG16Trunk` (from a context or action file),
            `ContextAwareHead` (context file), `ActionAwareHead` (action file) or
            `MultiStageLSTM` (MS-LSTM file).
        path_or_file: the `.h5` file, or what `read_original_weights` returned.
        kind: `"auto"` (detected) or the kind the file must be.
        **options: for a `MultiStageLSTM`: `context_dim`, `action_dim` (default: the
            model's), `temporal_length` (the original's `--temporal-length`, 50; a
            stage-1 input of that size marks the transposed MS-LSTM), `allow_partial`
            (load the shape-compatible part of a transposed MS-LSTM instead of raising).
            For an `ActionAwareHead`: `input_size` (for the pooling note).

    Returns:
        `WeightsImportReport`.

    Raises:
        WeightsError: a file of another architecture or kind, shapes that differ from
            the model's (width, classes, units), or a transposed MS-LSTM without
            `allow_partial`.
    """
    file = _as_file(path_or_file)
    kind = _check_kind(file, kind)
    _require_built(model)
    report = _new_report(file, kind)
    if isinstance(model, MultiStageLSTM):
        _need(kind, "ms_lstm", model, file)
        _load_ms_lstm(model, file, report, **options)
    elif isinstance(model, VGG16Trunk):
        _need(kind, ("context", "action"), model, file)
        _load_trunk(model, file, report)
        report.notes.append(_TRUNK_NOTE)
    elif isinstance(model, ContextAwareHead):
        _need(kind, "context", model, file)
        _load_context_head(model, file, report)
    elif isinstance(model, ActionAwareHead):
        _need(kind, "action", model, file)
        _load_action_head(model, file, report, **options)
    else:
        raise WeightsError(
            f"Original weights load into a VGG16Trunk, ContextAwareHead, ActionAwareHead "
            f"or MultiStageLSTM. Received a {type(model).__name__} ('{model.name}')."
        )
    return report


def _need(kind, wanted, model, file):
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    if kind not in wanted:
        raise WeightsError(
            f"'{file.path}' holds the original's {kind} model; a {type(model).__name__} "
            f"loads from its {' or '.join(wanted)} model."
        )


@dataclasses.dataclass
class ImportedWeights:
    """What `import_original_weights` built: `models` by role (`"trunk"`,
    `"context_head"`, `"action_head"`, `"ms_lstm"`), the `report`, and the `files`
    written (role -> path)."""

    kind: str
    models: dict
    report: WeightsImportReport
    files: dict


def _context_input_size(file, channels):
    rows = file.of_kind("dense")[0].arrays[0].shape[0]
    side = round(np.sqrt(rows / channels)) if rows % channels == 0 else 0
    if side < 1 or side * side * channels != rows:
        raise WeightsError(
            f"'{file.path}': fc6 reads {rows} values, which is not (s/32)^2 x "
            f"{channels} channels for any input size s: not the original's context model."
        )
    return 32 * side


def _width_of(file, path):
    named, _ = _vgg_convs(file)
    channels = named["block5_conv3"].arrays[0].shape[-1]
    width = channels / 512
    for name, filters in VGG16_CONVS:
        if named[name].arrays[0].shape[-1] != scaled_filters(filters, width):
            raise WeightsError(
                f"'{path}': {name} has {named[name].arrays[0].shape[-1]} filters where "
                f"VGG-16 at width {width:g} has {scaled_filters(filters, width)}: not a "
                "VGG-16 of the original's models."
            )
    return width, channels


def build_from_original(
    path_or_file,
    kind="auto",
    input_size=None,
    fc_units=4096,
    context_dim=None,
    action_dim=None,
    temporal_length=ORIGINAL_TEMPORAL_LENGTH,
    allow_partial=False,
):
    """Builds our models with the sizes an original file implies, and loads it.

    Args:
        path_or_file: the original `.h5` file.
        kind: `"auto"`, `"context"`, `"action"` or `"ms_lstm"`.
        input_size: frame size of the CNNs (default: 224, or inferred from the context
            model's fc6).
        fc_units: fc6/fc7 units of our action head's masked path (not in the file).
        context_dim, action_dim: feature sizes the MS-LSTM reads (default: its own,
            or 4096 for a transposed one, the original's INPUT_DIM).
        temporal_length, allow_partial: see `load_original_weights`.

    Returns:
        `(models dict, WeightsImportReport)`.
    """
    file = _as_file(path_or_file)
    kind = _check_kind(file, kind)
    if kind == "ms_lstm":
        lstm1, lstm2 = file.of_kind("lstm")
        units = int(lstm1.arrays[1].shape[0])
        num_classes = int(file.of_kind("dense")[0].arrays[0].shape[1])
        rows1, rows2 = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0]
        transposed = rows1 == temporal_length and context_dim != rows1
        if transposed:
            context_dim = context_dim or ORIGINAL_FEATURE_DIM
            action_dim = action_dim or ORIGINAL_FEATURE_DIM
        else:
            context_dim = context_dim or rows1
            action_dim = action_dim or rows2 - units
        model = MultiStageLSTM(num_classes, units=units, dropout=0.5)
        model.build(
            {"context": (None, None, context_dim), "action": (None, None, action_dim)}
        )
        report = load_original_weights(
            model, file, kind, context_dim=context_dim, action_dim=action_dim,
            temporal_length=temporal_length, allow_partial=allow_partial,
        )  # fmt: skip
        return {"ms_lstm": model}, report

    width, channels = _width_of(file, file.path)
    if kind == "context":
        inferred = _context_input_size(file, channels)
        if input_size is not None and int(input_size) != inferred:
            raise WeightsError(
                f"'{file.path}': its fc6 was made for {inferred}x{inferred} frames, not "
                f"input_size={input_size}."
            )
        input_size = inferred
    size = int(input_size or 224)
    trunk = VGG16Trunk(input_shape=(size, size, 3), width=width)
    maps = (None, size // 16, size // 16, channels)
    report = load_original_weights(trunk, file, kind)
    if kind == "context":
        dense = file.of_kind("dense")
        head = ContextAwareHead(
            int(dense[2].arrays[0].shape[1]),
            fc_units=int(dense[0].arrays[0].shape[1]),
            width=width,
            dropout=0.5,
        )
        head.build(maps)
        head_report = load_original_weights(head, file, kind)
        role = "context_head"
    else:
        _, (cam_conv,) = _vgg_convs(file)
        head = ActionAwareHead(
            int(file.of_kind("dense")[0].arrays[0].shape[1]),
            fc_units=fc_units,
            cam_filters=int(cam_conv.arrays[0].shape[-1]),
            width=width,
            dropout=0.5,
        )
        head.build(maps)
        head_report = load_original_weights(head, file, kind, input_size=size)
        role = "action_head"
    report.loaded += head_report.loaded
    report.not_loaded += head_report.not_loaded
    report.unused += head_report.unused
    report.notes += head_report.notes
    return {"trunk": trunk, role: head}, report


def write_vgg16_weights(path, trunk, head):
    """Writes the trunk's convolutions and the head's `block5_conv3` as a Keras legacy
    VGG-16 file (the layout of Keras' ImageNet no-top file), so that
    `--set cnn.weights=<path>` starts a run's trunk and both heads' conv5_3 from it."""
    layers = {name: trunk.get_layer(name).get_weights() for name in TRUNK_LAYERS}
    layers["block5_conv3"] = head.block5_conv3.get_weights()
    return write_vgg16_h5(path, layers)


def _save_model(model, path):
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        model.save_weights(path)
    elif path.suffix == ".keras":
        model.save(path)
    else:
        raise WeightsError(
            f"Output '{path}' must end in .keras (whole model) or .weights.h5 (weights)."
        )
    return path


def _base(path):
    name = path.name
    for suffix in (".weights.h5", ".keras"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def import_original_weights(path, kind="auto", out=None, overwrite=False, **options):
    """Builds our models from an original weights file, loads it, optionally saves them.

    The function the CLI calls (`msl-keras import-original-weights`).

    Args:
        path: the `.h5` file saved by the original scripts.
        kind: `"auto"` (detected from the file), `"context"`, `"action"` or
            `"ms_lstm"`.
        out: where to write, ending in `.keras` (the whole model) or `.weights.h5`:
            the MS-LSTM, or the context/action head; for a CNN file the trunk and
            conv5_3 also go to `<out base>.vgg16.h5` (Keras' legacy VGG-16 layout:
            use it as `--set cnn.weights=<that file>`). The report goes to
            `<out base>.import.json`. None writes nothing.
        overwrite: replace existing output files.
        **options: see `build_from_original` (`input_size`, `fc_units`,
            `context_dim`, `action_dim`, `temporal_length`, `allow_partial`).

    Returns:
        `ImportedWeights(kind, models, report, files)`.

    Raises:
        WeightsError: see `load_original_weights`; an output that exists (without
            `overwrite`) or with another suffix.
    """
    file = read_original_weights(path)
    kind = _check_kind(file, kind)
    files = {}
    if out is not None:
        out = Path(out)
        base = _base(out)
        files = {"model": out, "report": base.with_name(base.name + ".import.json")}
        if kind != "ms_lstm":
            files["vgg16"] = base.with_name(base.name + ".vgg16.h5")
        if not (out.name.endswith(".weights.h5") or out.suffix == ".keras"):
            raise WeightsError(
                f"Output '{out}' must end in .keras (whole model) or .weights.h5 (weights)."
            )
        existing = [str(p) for p in files.values() if p.exists()]
        if existing and not overwrite:
            raise WeightsError(
                f"Output file(s) exist: {', '.join(existing)}. Choose another --out or "
                "pass overwrite=True (--overwrite)."
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        models, report = build_from_original(file, kind, **options)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        main = (
            models.get("ms_lstm")
            or models.get("context_head")
            or models.get("action_head")
        )
        _save_model(main, files["model"])
        if "vgg16" in files:
            head = models.get("context_head") or models.get("action_head")
            write_vgg16_weights(files["vgg16"], models["trunk"], head)
        files["report"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return ImportedWeights(kind, models, report, {k: str(v) for k, v in files.items()})


def inspect_original_weights(path, kind="auto", **options):
    """The report of what would load, without raising on a transposed MS-LSTM.

    Builds and loads as `import_original_weights` with `allow_partial=True`; nothing is
    written. Raises `WeightsError` only for a file of another architecture.
    """
    options = {**options, "allow_partial": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, report = build_from_original(path, kind, **options)
    return report
