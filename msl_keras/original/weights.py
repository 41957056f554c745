"""Weights saved by the authors' original scripts, loaded into msl_keras' models.

Its scripts saved their three models with Keras 2's `model.save_weights("....h5")`: root
attribute `layer_names` lists the layers in order, each layer's group has an attribute
`weight_names`. Its layers mostly carry Keras' default names (`conv2d_1`, `dense_2`:
the number counts the layers of that type made so far in the session) and no layer type
is stored, so layers are recognised by their weights (4-D kernel and bias: convolution;
2-D kernel and bias: dense; kernel, recurrent kernel and bias: LSTM) and mapped BY
ORDER within each type (the creation order of the default names, else file order).
docs/original-code.md (section 2) tables what each of its files loads into.

Conversions: Keras 2's LSTM gate order (i, f, c, o) is Keras 3's; Keras 1 files (12
arrays per LSTM, gates i, c, f, o) are reordered, Theano-backend convolution kernels
flipped (Theano convolves, TensorFlow correlates), channels-first kernels `(out, in,
kh, kw)` transposed, and stage 2's input kernel rows swapped (the original read
`[action, stage-1 hidden]`, msl_keras `[stage-1 hidden, action]`).

Every load returns a `WeightsImportReport`; a file of another architecture raises
`WeightsError` naming the file and what was found in it.

Example:

>>> result = import_original_weights("context_aware_vgg16_final.h5", out="ctx.keras")
>>> print(result.report)            # what loaded, what did not
>>> trunk, head = result.models["trunk"], result.models["context_head"]
"""

import collections
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
_KIND_WORDS = {
    "conv": "convolution(s)",
    "dense": "dense layer(s)",
    "lstm": "LSTM(s)",
    "other": "other layer(s)",
}

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
_NO_MASKED_PATH = (
    "the original has no masked path (Eq. 3) and no fc6-fc8 in its action model: its "
    "action-aware feature was the 1024-d pooled cam_conv output (defect 3). Train the "
    "head (train-cnn) before extracting action-aware features with it."
)


@dataclasses.dataclass
class WeightsImportReport:
    """What a load of an original weights file did.

    Attributes:
        path: the file.
        kind: `"context"`, `"action"` or `"ms_lstm"`.
        keras_version, backend: as recorded in the file ("" when absent).
        loaded: one dict per weight group loaded: `{"file": layer in the file, "ours":
            "<model>/<layer>", "shapes": [...], "note": conversion applied or ""}`.
        not_loaded: our layers left at their initial values: `{"ours", "why"}`.
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


@dataclasses.dataclass
class OriginalLayer:
    """One layer of a Keras 1/2 weights file, its arrays in Keras 2 TensorFlow layout.

    `kind` is `"conv"`, `"dense"`, `"lstm"` or `"other"`; `conversion` names what was
    done to reach that layout ("" for nothing).
    """

    name: str
    arrays: list
    kind: str
    conversion: str = ""


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
        """`"13 convolution(s), 3 dense layer(s)"`: what the file holds (messages)."""
        counts = collections.Counter(layer.kind for layer in self.layers)
        parts = [f"{counts[k]} {word}" for k, word in _KIND_WORDS.items() if counts[k]]
        others = [layer.name for layer in self.layers if layer.kind == "other"]
        if others:
            parts.append(f"unknown: {', '.join(others[:5])}")
        return ", ".join(parts) or "no layer with weights"


def _read_attribute_list(group, name):
    """A string-list attribute (the original's models are far below the 64 KB that
    makes Keras split one into chunks `name0`, `name1`, ...)."""
    values = group.attrs.get(name, [])
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _attribute_text(group, name):
    value = group.attrs.get(name, b"")
    if isinstance(value, bytes):
        value = value.decode("utf8", "replace")
    return str(value)


def _classify(arrays, backend):
    """`(arrays in Keras 2 TensorFlow layout, kind, conversion)` of one layer."""
    ranks = [a.ndim for a in arrays]
    if len(arrays) == 12 and set(ranks) <= {1, 2}:
        # Keras 1: W, U, b per gate, gates i, c, f, o -> kernel, recurrent kernel,
        # bias with the gates i, f, c, o.
        lstm = [
            np.concatenate([arrays[3 * gate + k] for gate in (0, 2, 1, 3)], axis=-1)
            for k in range(3)
        ]
        return lstm, "lstm", "Keras 1 LSTM gates i,c,f,o -> i,f,c,o"
    if ranks == [2, 2, 1]:
        gates = 4 * arrays[1].shape[0]
        if arrays[0].shape[1] == arrays[1].shape[1] == arrays[2].shape[0] == gates:
            return arrays, "lstm", ""
    if ranks == [4, 1]:
        if backend == "theano":
            # Theano convolves (flipped kernel), TensorFlow correlates: Keras'
            # conv_utils.convert_kernel flips the spatial axes.
            kernel = np.ascontiguousarray(arrays[0][::-1, ::-1])
            return [kernel, arrays[1]], "conv", "Theano kernel flipped"
        return arrays, "conv", ""
    if ranks == [2, 1] and arrays[0].shape[1] == arrays[1].shape[0]:
        return arrays, "dense", ""
    return arrays, "other", ""


def read_original_weights(path):
    """The `OriginalWeightsFile` of a Keras 1/2 `save_weights` (or `model.save`) file.

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
        if "layer_names" not in root.attrs:
            if "model_weights" not in root:
                raise WeightsError(
                    f"'{path}' is not a Keras 1/2 weights file: it has no 'layer_names' "
                    "attribute. (Files msl_keras writes, .keras and .weights.h5, load "
                    "with keras.saving.load_model / model.load_weights.)"
                )
            root = root["model_weights"]
        backend = _attribute_text(root, "backend") or _attribute_text(file, "backend")
        version = _attribute_text(root, "keras_version") or _attribute_text(
            file, "keras_version"
        )
        layers = []
        try:
            for name in _read_attribute_list(root, "layer_names"):
                weight_names = _read_attribute_list(root[name], "weight_names")
                if weight_names:
                    arrays = [np.asarray(root[name][w]) for w in weight_names]
                    layers.append(OriginalLayer(name, *_classify(arrays, backend)))
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


def _vgg_convs(file):
    """The file's VGG-16 convolutions `{vgg name: layer}` and the other convolutions.

    Convolutions named like keras.applications' VGG-16 map by name; if none is, the
    first 14 (13 for the trunk + conv5_3) map by order."""
    convs = file.of_kind("conv")
    named = {layer.name: layer for layer in convs if layer.name in dict(VGG16_CONVS)}
    if named:
        return named, [layer for layer in convs if layer.name not in named]
    count = len(VGG16_CONVS)
    return dict(zip(dict(VGG16_CONVS), convs[:count])), convs[count:]


def detect_original_kind(path_or_file):
    """`"context"`, `"action"` or `"ms_lstm"`: which of the original's models a file holds.

    Context: VGG-16's 13 convolutions and 3 dense layers. Action: the 13 VGG-16
    convolutions, one more and 1 dense layer. MS-LSTM: 2 LSTMs and 2 dense layers.

    Raises:
        WeightsError: none of these (naming the file and what it holds).
    """
    file = _as_file(path_or_file)
    counts = collections.Counter(layer.kind for layer in file.layers)
    if counts == {"dense": 2, "lstm": 2}:
        return "ms_lstm"
    if set(counts) <= {"conv", "dense"}:
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


def _assign(report, file, layer, target, label, arrays=None, note="", shown=None):
    """Sets `target` (a layer, or one variable) to `arrays` (default: the file layer's)
    and reports it; a channels-first kernel is transposed, other shapes that differ
    raise `WeightsError` naming the file. `shown`: the array whose shape is reported."""
    variables = [target] if isinstance(target, keras.Variable) else target.weights
    expected = [tuple(int(d) for d in v.shape) for v in variables]
    arrays = list(layer.arrays if arrays is None else arrays)
    fit = ""
    if (
        len(arrays) == len(expected)
        and arrays[0].ndim == 4
        and tuple(arrays[0].shape) != expected[0]
        and np.transpose(arrays[0], (2, 3, 1, 0)).shape == expected[0]
    ):
        arrays[0] = np.transpose(arrays[0], (2, 3, 1, 0))  # -> (kh, kw, in, out)
        fit = "channels-first kernel transposed"
    found = [tuple(a.shape) for a in arrays]
    if found != expected:
        raise WeightsError(
            f"Layer '{layer.name}' of '{file.path}' has weight shapes {found}, but "
            f"{label} needs {expected}. The file was made for another architecture, "
            "width, input size or number of classes than the model it is loaded into."
        )
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    report.loaded.append(
        {
            "file": layer.name,
            "ours": label,
            "shapes": [list(a.shape) for a in (arrays if shown is None else [shown])],
            "note": "; ".join(n for n in (layer.conversion, fit, note) if n),
        }
    )


def _load_trunk(trunk, file, report):
    named, _ = _vgg_convs(file)
    for name in TRUNK_LAYERS:
        target = trunk.get_layer(name)
        _assign(report, file, named[name], target, f"{trunk.name}/{name}")
    report.notes.append(_TRUNK_NOTE)


def _load_context_head(head, file, report):
    named, _ = _vgg_convs(file)
    dense = file.of_kind("dense")
    targets = (head.block5_conv3, head.fc6, head.fc7, head.fc8)
    for layer, target in zip([named["block5_conv3"], *dense], targets):
        _assign(report, file, layer, target, f"{head.name}/{target.name}")
    report.notes.append(_PREPROCESSING_NOTE)


def _load_action_head(head, file, report, input_size=None):
    named, (cam_conv,) = _vgg_convs(file)
    (dense,) = file.of_kind("dense")
    for layer, target in (
        (named["block5_conv3"], head.block5_conv3),
        (cam_conv, head.cam_conv),
    ):
        _assign(report, file, layer, target, f"{head.name}/{target.name}")
    softmax = "the original's softmax is applied after it, as here"
    label = f"{head.name}/cam_classifier"
    _assign(report, file, dense, head.cam_classifier, label, note=softmax)
    report.not_loaded += [
        {"ours": f"{head.name}/{target.name}", "why": _NO_MASKED_PATH}
        for target in (head.fc6, head.fc7, head.fc8)
    ]
    size = int(input_size) if input_size else 224
    h = size // 16
    report.notes += [
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
        "CAM classes.",
        _PREPROCESSING_NOTE,
    ]


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


def _load_transposed(model, file, report, context_dim, allow_partial):
    """The shape-compatible part of a MS-LSTM whose LSTMs ran over the feature axis
    (its stage-1 input size is its temporal length); returns the report's caveat."""
    lstm1, lstm2 = file.of_kind("lstm")
    units = lstm1.arrays[1].shape[0]
    rows1 = lstm1.arrays[0].shape[0]
    why_kernel = (
        "the original built its MS-LSTM on inputs of shape (D, T) = (feature size, "
        f"{rows1}) instead of (T, D) (defect 5): its LSTMs ran over the feature "
        f"positions with the {rows1} frames as the input of each step, so its input "
        f"kernels are ({rows1}, {4 * units}) where frames of {context_dim}-d features "
        f"need ({context_dim}, {4 * units}). There is no mapping between the two."
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
    hidden_rows = lstm2.arrays[0][-units:]
    hidden = "stage2_lstm/kernel[:units] (stage-1 hidden rows)"
    kernel2 = keras.ops.convert_to_numpy(cell2.kernel).copy()
    kernel2[:units] = hidden_rows  # its action rows have no counterpart
    (_, recurrent1, bias1), (_, recurrent2, bias2) = lstm1.arrays, lstm2.arrays
    pieces = (
        ("stage1_lstm/recurrent_kernel", lstm1, cell1.recurrent_kernel, recurrent1),
        ("stage1_lstm/bias", lstm1, cell1.bias, bias1),
        (hidden, lstm2, cell2.kernel, kernel2),
        ("stage2_lstm/recurrent_kernel", lstm2, cell2.recurrent_kernel, recurrent2),
        ("stage2_lstm/bias", lstm2, cell2.bias, bias2),
    )
    for name, layer, variable, value in pieces:
        shown = hidden_rows if variable is cell2.kernel else None
        label = f"{model.name}/{name}"
        _assign(report, file, layer, variable, label, [value], caveat, shown)
    report.not_loaded += [
        {"ours": f"{model.name}/{part}", "why": why_kernel}
        for part in ("stage1_lstm/kernel", "stage2_lstm/kernel[units:] (action rows)")
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
    return caveat


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
    units = lstm1.arrays[1].shape[0]
    rows1, rows2 = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0]
    cell1, cell2 = model.stage1_lstm.cell, model.stage2_lstm.cell
    if context_dim is None:
        context_dim = cell1.kernel.shape[0]
    if action_dim is None:
        action_dim = cell2.kernel.shape[0] - model.units
    context_dim, action_dim = int(context_dim), int(action_dim)
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
    note = ""
    if transposed:
        note = _load_transposed(model, file, report, context_dim, allow_partial)
    else:
        # Original stage-2 input [action, hidden1] -> ours [hidden1, action].
        kernel = lstm2.arrays[0]
        kernel2 = np.concatenate([kernel[file_action_rows:], kernel[:file_action_rows]])
        _assign(report, file, lstm1, cell1, f"{model.name}/stage1_lstm")
        _assign(
            report, file, lstm2, cell2, f"{model.name}/stage2_lstm",
            arrays=[kernel2, *lstm2.arrays[1:]],
            note="input rows reordered: original [action, hidden1] -> ours [hidden1, "
            "action]",
        )  # fmt: skip
    classifiers = (model.stage1_classifier, model.stage2_classifier)
    for layer, target in zip(file.of_kind("dense"), classifiers):
        _assign(report, file, layer, target, f"{model.name}/{target.name}", note=note)


def load_original_weights(model, path_or_file, kind="auto", **options):
    """Loads an original weights file into one of our (built) models; returns the
    `WeightsImportReport`.

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

    Raises:
        WeightsError: a file of another architecture or kind, shapes that differ from
            the model's (width, classes, units), or a transposed MS-LSTM without
            `allow_partial`.
    """
    file = _as_file(path_or_file)
    kind = _check_kind(file, kind)
    if not model.built:
        raise WeightsError(
            f"Build '{model.name}' before loading original weights into it (call it on "
            "an input or call model.build(input_shape))."
        )
    report = WeightsImportReport(file.path, kind, file.keras_version, file.backend)
    loaders = (
        (MultiStageLSTM, ("ms_lstm",), _load_ms_lstm, options),
        (VGG16Trunk, ("context", "action"), _load_trunk, {}),
        (ContextAwareHead, ("context",), _load_context_head, {}),
        (ActionAwareHead, ("action",), _load_action_head, options),
    )
    for model_class, kinds, load, load_options in loaders:
        if isinstance(model, model_class):
            if kind not in kinds:
                raise WeightsError(
                    f"'{file.path}' holds the original's {kind} model; a "
                    f"{type(model).__name__} loads from its {' or '.join(kinds)} model."
                )
            load(model, file, report, **load_options)
            return report
    raise WeightsError(
        f"Original weights load into a VGG16Trunk, ContextAwareHead, ActionAwareHead "
        f"or MultiStageLSTM. Received a {type(model).__name__} ('{model.name}')."
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
    """`(models by role, WeightsImportReport)`: our models built with the sizes an
    original file implies, and loaded from it.

    Args:
        input_size: frame size of the CNNs (default: 224, or inferred from the context
            model's fc6).
        fc_units: fc6/fc7 units of our action head's masked path (not in the file).
        context_dim, action_dim: feature sizes the MS-LSTM reads (default: its own,
            or 4096 for a transposed one, the original's INPUT_DIM).
        Others: as `load_original_weights`.
    """
    file = _as_file(path_or_file)
    kind = _check_kind(file, kind)
    dense = file.of_kind("dense")
    if kind == "ms_lstm":
        lstm1, lstm2 = file.of_kind("lstm")
        units = int(lstm1.arrays[1].shape[0])
        rows1, rows2 = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0]
        if rows1 == temporal_length and context_dim != rows1:  # transposed
            context_dim = context_dim or ORIGINAL_FEATURE_DIM
            action_dim = action_dim or ORIGINAL_FEATURE_DIM
        else:
            context_dim = context_dim or rows1
            action_dim = action_dim or rows2 - units
        num_classes = int(dense[0].arrays[0].shape[1])
        model = MultiStageLSTM(num_classes, units=units, dropout=0.5)
        model.build(
            {"context": (None, None, context_dim), "action": (None, None, action_dim)}
        )
        report = load_original_weights(
            model, file, kind, context_dim=context_dim, action_dim=action_dim,
            temporal_length=temporal_length, allow_partial=allow_partial,
        )  # fmt: skip
        return {"ms_lstm": model}, report

    named, others = _vgg_convs(file)
    channels = named["block5_conv3"].arrays[0].shape[-1]
    width = channels / 512
    for name, filters in VGG16_CONVS:
        if named[name].arrays[0].shape[-1] != scaled_filters(filters, width):
            raise WeightsError(
                f"'{file.path}': {name} has {named[name].arrays[0].shape[-1]} filters "
                f"where VGG-16 at width {width:g} has {scaled_filters(filters, width)}: "
                "not a VGG-16 of the original's models."
            )
    if kind == "context":
        rows = dense[0].arrays[0].shape[0]
        side = round(np.sqrt(rows / channels)) if rows % channels == 0 else 0
        if side < 1 or side * side * channels != rows:
            raise WeightsError(
                f"'{file.path}': fc6 reads {rows} values, which is not (s/32)^2 x "
                f"{channels} channels for any input size s: not the original's context "
                "model."
            )
        if input_size is not None and int(input_size) != 32 * side:
            raise WeightsError(
                f"'{file.path}': its fc6 was made for {32 * side}x{32 * side} frames, "
                f"not input_size={input_size}."
            )
        input_size = 32 * side
    size = int(input_size or 224)
    trunk = VGG16Trunk(input_shape=(size, size, 3), width=width)
    report = load_original_weights(trunk, file, kind)
    if kind == "context":
        role, options = "context_head", {}
        num_classes = int(dense[2].arrays[0].shape[1])
        fc6_units = int(dense[0].arrays[0].shape[1])
        head = ContextAwareHead(num_classes, fc6_units, width=width, dropout=0.5)
    else:
        role, options = "action_head", {"input_size": size}
        num_classes = int(dense[0].arrays[0].shape[1])
        cam_filters = int(others[0].arrays[0].shape[-1])
        head = ActionAwareHead(
            num_classes, fc_units, cam_filters, width=width, dropout=0.5
        )
    head.build((None, size // 16, size // 16, channels))
    head_report = load_original_weights(head, file, kind, **options)
    for key in ("loaded", "not_loaded", "unused", "notes"):
        getattr(report, key).extend(getattr(head_report, key))
    return {"trunk": trunk, role: head}, report


def import_original_weights(path, kind="auto", out=None, overwrite=False, **options):
    """Builds our models from an original weights file, loads it, optionally saves them
    (`msl-keras import-original-weights`).

    Args:
        path: the `.h5` file saved by the original scripts.
        kind: `"auto"` (detected from the file) or one of `KINDS`.
        out: where to write, ending in `.keras` (the whole model) or `.weights.h5`:
            the MS-LSTM, or the context/action head; for a CNN file the trunk and
            conv5_3 also go to `<out base>.vgg16.h5` (Keras' legacy VGG-16 layout:
            use it as `--set cnn.weights=<that file>`). The report goes to
            `<out base>.import.json`. None writes nothing.
        overwrite: replace existing output files.
        **options: see `build_from_original` (`input_size`, `fc_units`,
            `context_dim`, `action_dim`, `temporal_length`, `allow_partial`).

    Returns:
        `ImportedWeights`.

    Raises:
        WeightsError: as `load_original_weights`; an output that exists (without
            `overwrite`) or with another suffix.
    """
    file = read_original_weights(path)
    kind = _check_kind(file, kind)
    files = {}
    if out is not None:
        out = Path(out)
        keras_weights = out.name.endswith(".weights.h5")
        if not (keras_weights or out.suffix == ".keras"):
            raise WeightsError(
                f"Output '{out}' must end in .keras (whole model) or .weights.h5 (weights)."
            )
        base = out.name[: -len(".weights.h5")] if keras_weights else out.stem
        files = {"model": out, "report": out.with_name(base + ".import.json")}
        if kind != "ms_lstm":
            files["vgg16"] = out.with_name(base + ".vgg16.h5")
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
        head = models.get("context_head") or models.get("action_head")
        main = models.get("ms_lstm") or head
        if keras_weights:
            main.save_weights(out)
        else:
            main.save(out)
        if "vgg16" in files:
            trunk = models["trunk"]
            layers = {n: trunk.get_layer(n).get_weights() for n in TRUNK_LAYERS}
            layers["block5_conv3"] = head.block5_conv3.get_weights()
            write_vgg16_h5(files["vgg16"], layers)
        files["report"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return ImportedWeights(kind, models, report, {k: str(v) for k, v in files.items()})


def inspect_original_weights(path, kind="auto", **options):
    """The report of what would load, without raising on a transposed MS-LSTM.

    Builds and loads as `import_original_weights` with `allow_partial=True`; nothing is
    written. Raises `WeightsError` only for a file of another architecture.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        options = {**options, "allow_partial": True}
        _, report = build_from_original(path, kind, **options)
    return report
