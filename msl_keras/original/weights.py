"""Weights saved by the authors' original scripts, loaded into msl_keras' models.

Its scripts saved Keras 1/2 `model.save_weights` files (root attribute `layer_names`,
each layer's group an attribute `weight_names`) with no layer type and mostly Keras'
default names (`conv2d_1`, `dense_2`), so layers are recognised by their weights and
mapped by order within each type (docs/original-code.md, section 2). Converted on the
way: Keras 1 LSTM gates, Theano kernels, channels-first kernels, and stage 2's input
rows (`[action, stage-1 hidden]` -> `[stage-1 hidden, action]`).

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
from msl_keras.models import ActionAwareHead, ContextAwareHead, MultiStageLSTM
from msl_keras.models.vgg16_trunk import (
    HEAD_CONVOLUTION,
    VGG16Trunk,
    vgg16_convolutions,
    write_vgg16_h5,
)

KINDS = ("context", "action", "ms_lstm")
VGG16_CONVS = [name for name, _ in vgg16_convolutions()]  # keras.applications' names
TRUNK_LAYERS = [name for name in VGG16_CONVS if name != HEAD_CONVOLUTION]
ORIGINAL_TEMPORAL_LENGTH = 50  # its ms_lstm.py --temporal-length default
ORIGINAL_FEATURE_DIM = 4096  # its MS_LSTM(INPUT_DIM=4096)
_DEFAULT_NAME = re.compile(r"^(?P<prefix>[a-z_0-9]+?)_(?P<number>\d+)$")
_KIND_WORDS = {"conv": "convolution(s)", "dense": "dense layer(s)", "lstm": "LSTM(s)"}

_PREPROCESSING_NOTE = (
    "Its CNNs were fine-tuned on RGB frames scaled to [0, 1] but its extraction fed "
    "BGR mean-subtracted frames (defect 7); msl_keras feeds every model the latter "
    "(Keras' VGG-16 'caffe' preprocessing), the inputs of its extraction."
)
_TRUNK_NOTE = (
    "The original fine-tuned a whole VGG-16 in each of its two CNNs, so its context "
    "and action files hold two different trunks; msl_keras shares one trunk between "
    "the streams. The trunk returned here is this file's."
)
_NO_MASKED_PATH = (
    "the original's action model has no masked path (Eq. 3) nor fc6-fc8 (defect 3): "
    "train the head (train-cnn) before extracting action-aware features with it."
)


@dataclasses.dataclass
class WeightsImportReport:
    """What a load of an original weights file did: `loaded`, one dict per weight
    group loaded (`{"file": its layer, "ours": "<model>/<layer>", "shapes": [...],
    "note": conversion applied or ""}`); `not_loaded`, our layers left at their initial
    values (`{"ours", "why"}`); `unused`, layers of the file not loaded (`{"file",
    "why"}`); `notes`, differences in behaviour that remain."""

    path: str
    kind: str  # one of KINDS
    keras_version: str = ""  # "" when the file does not say
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
        version = f"Keras {self.keras_version or '?'}, backend {self.backend or '?'}"
        lines = [f"Original {self.kind} weights: {self.path} ({version})"]
        lines.append(f"  loaded ({len(self.loaded)}):")
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
    """One layer of a Keras 1/2 weights file, its arrays in Keras 2 TensorFlow layout
    (`conversion`: what was done to reach it)."""

    name: str
    arrays: list
    kind: str  # "conv", "dense", "lstm" or "other"
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
            return [layers[i] for i in np.argsort([int(m["number"]) for m in numbered])]
        return layers

    def describe(self):
        """`"13 convolution(s), 3 dense layer(s)"`: what the file holds (messages)."""
        counts = collections.Counter(layer.kind for layer in self.layers)
        parts = [f"{counts[k]} {word}" for k, word in _KIND_WORDS.items() if counts[k]]
        others = [layer.name for layer in self.layers if layer.kind == "other"]
        if others:
            parts.append(f"{len(others)} other layer(s) ({', '.join(others[:5])})")
        return ", ".join(parts) or "no layer with weights"


def _text(value):
    return value.decode("utf8", "replace") if isinstance(value, bytes) else str(value)


def _classify(arrays, backend):
    """`(arrays in Keras 2 TensorFlow layout, kind, conversion)` of one layer."""
    ranks = [a.ndim for a in arrays]
    if len(arrays) == 12 and set(ranks) <= {1, 2}:
        # Keras 1: W, U, b of each gate i, c, f, o -> kernel, recurrent kernel, bias.
        i, c, f, o = (arrays[3 * gate : 3 * gate + 3] for gate in range(4))
        lstm = [np.concatenate(parts, axis=-1) for parts in zip(i, f, c, o)]
        return lstm, "lstm", "Keras 1 LSTM gates i,c,f,o -> i,f,c,o"
    if ranks == [2, 2, 1]:
        gates = 4 * arrays[1].shape[0]
        if arrays[0].shape[1] == arrays[1].shape[1] == arrays[2].shape[0] == gates:
            return arrays, "lstm", ""
    if ranks == [4, 1] and backend == "theano":
        # Keras' conv_utils.convert_kernel: flip the spatial axes.
        kernel = np.ascontiguousarray(arrays[0][::-1, ::-1])
        return [kernel, arrays[1]], "conv", "Theano kernel flipped"
    if ranks == [4, 1]:
        return arrays, "conv", ""
    if ranks == [2, 1] and arrays[0].shape[1] == arrays[1].shape[0]:
        return arrays, "dense", ""
    return arrays, "other", ""


def read_original_weights(path):
    """The `OriginalWeightsFile` of a Keras 1/2 `save_weights` (or `model.save`) file
    (an `OriginalWeightsFile` is returned as it is); `WeightsError` if the file is
    missing, not HDF5, or not in the Keras 1/2 layout."""
    if isinstance(path, OriginalWeightsFile):
        return path
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
            f"Cannot open '{path}' as HDF5 ({error}). Pass a file the original scripts "
            "saved with Keras' model.save_weights('<name>.h5')."
        ) from error
    with file:
        root = file if "layer_names" in file.attrs else file.get("model_weights")
        if root is None:
            raise WeightsError(
                f"'{path}' is not a Keras 1/2 weights file: it has no 'layer_names' "
                "attribute. (Files msl_keras writes load with keras.saving.load_model "
                "/ model.load_weights.)"
            )
        backend, version = (
            _text(root.attrs.get(key, b"")) or _text(file.attrs.get(key, b""))
            for key in ("backend", "keras_version")
        )
        layers = []
        try:
            # Keras splits a list attribute over 64 KB into chunks: far above these.
            for name in map(_text, root.attrs.get("layer_names", [])):
                weight_names = map(_text, root[name].attrs.get("weight_names", []))
                arrays = [np.asarray(root[name][w]) for w in weight_names]
                if arrays:
                    layers.append(OriginalLayer(name, *_classify(arrays, backend)))
        except (KeyError, OSError, ValueError) as error:
            raise WeightsError(
                f"'{path}' is damaged: its layer list names weights it does not hold "
                f"({error}). Save the weights again with the original script."
            ) from error
    return OriginalWeightsFile(path, layers, keras_version=version, backend=backend)


def _vgg_convs(file):
    """`({VGG-16 name: layer}, other convolutions)`: by keras.applications' names if
    any convolution has one, else the first 13 by order."""
    convs = file.of_kind("conv")
    named = {layer.name: layer for layer in convs if layer.name in VGG16_CONVS}
    if named:
        return named, [layer for layer in convs if layer.name not in named]
    return dict(zip(VGG16_CONVS, convs)), convs[len(VGG16_CONVS) :]


def detect_original_kind(path_or_file):
    """`"context"`, `"action"` or `"ms_lstm"`: which of the original's models a file
    holds; else `WeightsError` naming the file, what it holds and what each holds."""
    file = read_original_weights(path_or_file)
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
        f"'{file.path}' holds {file.describe()}: not one of the original code's "
        "models, the context-aware (VGG-16's 13 convolutions and 3 dense layers), "
        "action-aware (those 13, one more convolution and 1 dense layer) or MS-LSTM "
        "(2 LSTMs and 2 dense layers)."
    )


def _check_kind(file, kind):
    if kind not in KINDS + ("auto",):
        raise WeightsError(
            f"kind must be one of {KINDS} or 'auto'. Received: kind={kind!r}"
        )
    found = detect_original_kind(file)
    if kind != "auto" and found != kind:
        raise WeightsError(
            f"'{file.path}' holds the original's {found} model ({file.describe()}), "
            f"not its {kind} model. Pass kind='{found}' (or kind='auto')."
        )
    return found


def _assign(report, file, layer, target, label, arrays=None, note="", shown=None):
    """Sets `target` (a layer or one variable) to `arrays` (default: the layer's; a
    channels-first kernel is transposed) and reports it (with `shown`'s shape)."""
    variables = [target] if isinstance(target, keras.Variable) else target.weights
    expected = [tuple(v.shape) for v in variables]
    arrays = list(layer.arrays if arrays is None else arrays)
    fit = ""
    if arrays[0].ndim == 4 and arrays[0].shape != expected[0]:
        kernel = np.transpose(arrays[0], (2, 3, 1, 0))  # -> (kh, kw, in, out)
        if kernel.shape == expected[0]:
            arrays[0], fit = kernel, "channels-first kernel transposed"
    found = [a.shape for a in arrays]
    if found != expected:
        raise WeightsError(
            f"Layer '{layer.name}' of '{file.path}' has weight shapes {found}, but "
            f"{label} needs {expected}: the file was made for another architecture, "
            "width, input size or number of classes."
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
    layers = [named["block5_conv3"], *file.of_kind("dense")]
    for layer, target in zip(layers, (head.block5_conv3, head.fc6, head.fc7, head.fc8)):
        _assign(report, file, layer, target, f"{head.name}/{target.name}")
    report.notes.append(_PREPROCESSING_NOTE)


def _load_action_head(head, file, report, input_size=None):
    named, (cam_conv,) = _vgg_convs(file)
    softmax = "the original's softmax is applied after it, as here"
    layers = [named["block5_conv3"], cam_conv, *file.of_kind("dense")]
    targets = (head.block5_conv3, head.cam_conv, head.cam_classifier)
    for layer, target, note in zip(layers, targets, ("", "", softmax)):
        _assign(report, file, layer, target, f"{head.name}/{target.name}", note=note)
    report.not_loaded += [
        {"ours": f"{head.name}/{target.name}", "why": _NO_MASKED_PATH}
        for target in (head.fc6, head.fc7, head.fc8)
    ]
    size = int(input_size) if input_size else 224
    h = size // 16
    window = f"the sum of the first {h - 1}x{h - 1} real positions divided by 196"
    pooling = (
        f"CAM pooling: the original zero-padded the cam_conv maps to {h + 2}x{h + 2} "
        f"and average-pooled 14x14 windows with stride 14 (defect 4): at {size}x{size} "
        f"input {window if h == 14 else 'not one global window'}. msl_keras' cam_pool "
        "is a true global average: the loaded cam_classifier's scores differ a little."
    )
    report.notes += [pooling, _PREPROCESSING_NOTE]


def _load_transposed(model, file, report, context_dim, allow_partial):
    """The shape-compatible part of a MS-LSTM whose LSTMs ran over the feature axis
    (its stage-1 input size is its temporal length); returns the report's caveat."""
    lstm1, lstm2 = file.of_kind("lstm")
    units, rows1 = lstm1.arrays[1].shape[0], lstm1.arrays[0].shape[0]
    why_kernel = (
        f"the original's LSTMs ran over the feature axis of (D, T = {rows1}) inputs "
        f"(defect 5): their input kernels are ({rows1}, {4 * units}), ours for "
        f"{context_dim}-d features ({context_dim}, {4 * units}): no mapping between."
    )
    if not allow_partial:
        raise WeightsError(
            f"Cannot load the MS-LSTM of '{file.path}': {why_kernel} Retrain it "
            "(train-lstm), or pass allow_partial=True (--allow-partial) to load the "
            "shape-compatible weights (recurrent kernels, biases, classifiers) anyway."
        )
    caveat = "shape-compatible only: trained for the transposed recurrence"
    for layer, lstm in ((lstm1, model.stage1_lstm), (lstm2, model.stage2_lstm)):
        label, cell = f"{model.name}/{lstm.name}", lstm.cell
        if lstm is model.stage2_lstm:
            hidden = layer.arrays[0][-units:]
            kernel = keras.ops.convert_to_numpy(cell.kernel).copy()
            kernel[:units] = hidden  # its action rows have no counterpart
            rows = f"{label}/kernel[:units] (stage-1 hidden rows)"
            _assign(report, file, layer, cell.kernel, rows, [kernel], caveat, hidden)
        for part, value in zip(("recurrent_kernel", "bias"), layer.arrays[1:]):
            variable = getattr(cell, part)
            _assign(report, file, layer, variable, f"{label}/{part}", [value], caveat)
    report.not_loaded += [
        {"ours": f"{model.name}/{part}", "why": why_kernel}
        for part in ("stage1_lstm/kernel", "stage2_lstm/kernel[units:] (action rows)")
    ]
    input_rows = f"{lstm2.name}/kernel[:{rows1}] (its input rows)"
    report.unused += [
        {"file": f"{lstm1.name}/kernel", "why": why_kernel},
        {"file": input_rows, "why": "the same transposed input"},
    ]
    return caveat


def _load_ms_lstm(
    model, file, report, temporal_length=ORIGINAL_TEMPORAL_LENGTH, allow_partial=False
):
    lstm1, lstm2 = file.of_kind("lstm")
    units = lstm1.arrays[1].shape[0]
    rows1, action_rows = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0] - units
    context_dim, action_dim = model.input_dims["context"], model.input_dims["action"]
    transposed = rows1 != context_dim and rows1 == temporal_length
    if not transposed and (rows1 != context_dim or action_rows != action_dim):
        raise WeightsError(
            f"The MS-LSTM in '{file.path}' reads {rows1}-d (stage 1) and "
            f"{action_rows}-d (stage 2) inputs, but the model takes {context_dim}-d "
            f"context and {action_dim}-d action features. Build the MultiStageLSTM for "
            "the features the file was trained on, or pass temporal_length=<its "
            "--temporal-length> if its LSTMs ran over the feature axis (defect 5)."
        )
    version = file.keras_version or "?"
    old = version.startswith("1") or re.match(r"^2\.[0-2]\.", version)
    which = "hard_sigmoid" if old else "hard_sigmoid before Keras 2.3, sigmoid after"
    report.notes.append(
        f"Recurrent activation: the original's LSTMs (Keras {version}) used {which}, "
        "msl_keras' sigmoid: outputs are close, not equal; fine-tune (train-lstm) "
        "before comparing accuracies."
    )
    note = ""
    if transposed:
        note = _load_transposed(model, file, report, context_dim, allow_partial)
    else:
        arrays = [np.roll(lstm2.arrays[0], -action_rows, axis=0), *lstm2.arrays[1:]]
        reordered = "input rows reordered: [action, hidden1] -> [hidden1, action]"
        cell1, cell2 = model.stage1_lstm.cell, model.stage2_lstm.cell
        _assign(report, file, lstm1, cell1, f"{model.name}/stage1_lstm")
        label = f"{model.name}/stage2_lstm"
        _assign(report, file, lstm2, cell2, label, arrays, reordered)
    classifiers = (model.stage1_classifier, model.stage2_classifier)
    for layer, target in zip(file.of_kind("dense"), classifiers):
        _assign(report, file, layer, target, f"{model.name}/{target.name}", note=note)


def load_original_weights(model, path_or_file, kind="auto", **options):
    """Loads an original weights file (`kind`: `"auto"` or the kind it must be) into
    one of our built models (a `VGG16Trunk` from a context or action file,
    `ContextAwareHead`, `ActionAwareHead` or `MultiStageLSTM`); returns the
    `WeightsImportReport`.

    `**options`, for a `MultiStageLSTM`: `temporal_length` (the original's
    `--temporal-length`, 50: a stage-1 input of that size marks the transposed
    MS-LSTM), `allow_partial` (load the shape-compatible part of a transposed MS-LSTM
    instead of raising); for an `ActionAwareHead`: `input_size` (for the pooling note).

    Raises `WeightsError` for a file of another architecture or kind, other shapes
    than the model's, or a transposed MS-LSTM without `allow_partial`.
    """
    file = read_original_weights(path_or_file)
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
    """What `import_original_weights` built: `models` by role (trunk, context_head,
    action_head, ms_lstm), the `report` and the `files` written by role."""

    kind: str
    models: dict
    report: WeightsImportReport
    files: dict


def _build_models(
    file, kind, input_size=None, fc_units=4096, context_dim=None, action_dim=None,
    temporal_length=ORIGINAL_TEMPORAL_LENGTH, allow_partial=False,
):  # fmt: skip
    """`(models by role, WeightsImportReport)`: our models built with the sizes an
    original file (read, of checked `kind`) implies, and loaded from it."""
    dense = file.of_kind("dense")
    if kind == "ms_lstm":
        lstm1, lstm2 = file.of_kind("lstm")
        units = lstm1.arrays[1].shape[0]
        rows1, rows2 = lstm1.arrays[0].shape[0], lstm2.arrays[0].shape[0]
        if rows1 == temporal_length and context_dim != rows1:  # transposed (defect 5)
            rows1, rows2 = ORIGINAL_FEATURE_DIM, units + ORIGINAL_FEATURE_DIM
        context_dim, action_dim = context_dim or rows1, action_dim or rows2 - units
        model = MultiStageLSTM(dense[0].arrays[0].shape[1], units, dropout=0.5)
        model.build(
            {"context": (None, None, context_dim), "action": (None, None, action_dim)}
        )
        options = {"temporal_length": temporal_length, "allow_partial": allow_partial}
        report = load_original_weights(model, file, kind, **options)
        return {"ms_lstm": model}, report
    named, others = _vgg_convs(file)
    channels = named["block5_conv3"].arrays[0].shape[-1]
    width = channels / 512  # each layer's filters are checked as it loads
    if kind == "context":
        side = max(1, round(np.sqrt(dense[0].arrays[0].shape[0] / channels)))
        if input_size is not None and int(input_size) != 32 * side:
            raise WeightsError(
                f"'{file.path}': its fc6 was made for {32 * side}x{32 * side} frames, "
                f"not input_size={input_size}."
            )
        input_size = 32 * side  # fc6 reads (input_size / 32)^2 x channels values
    size = int(input_size or 224)
    trunk = VGG16Trunk(input_shape=(size, size, 3), width=width)
    report = load_original_weights(trunk, file, kind)
    if kind == "context":
        role, options = "context_head", {}
        fc6, fc8 = dense[0].arrays[0], dense[2].arrays[0]
        head = ContextAwareHead(fc8.shape[1], fc6.shape[1], width=width, dropout=0.5)
    else:
        role, options = "action_head", {"input_size": size}
        classes, cam_filters = dense[0].arrays[0].shape[1], others[0].arrays[0].shape[3]
        head = ActionAwareHead(classes, fc_units, cam_filters, width=width, dropout=0.5)
    head.build((None, size // 16, size // 16, channels))
    head_report = load_original_weights(head, file, kind, **options)
    for key in ("loaded", "not_loaded", "unused", "notes"):
        getattr(report, key).extend(getattr(head_report, key))
    return {"trunk": trunk, role: head}, report


def import_original_weights(path, kind="auto", out=None, overwrite=False, **options):
    """Builds our models from an original weights file (`kind`: `"auto"` or one of
    `KINDS`) and loads it (`msl-keras import-original-weights`); returns an
    `ImportedWeights`.

    Args:
        out: None (write nothing) or where to write the MS-LSTM or the context/action
            head, ending in `.keras` (the whole model) or `.weights.h5`. For a CNN file
            the trunk and conv5_3 also go to `<out base>.vgg16.h5` (Keras' VGG-16
            layout, for `--set cnn.weights=`); the report to `<out base>.import.json`.
        input_size: frame size of the CNNs (default: 224, or the context model's).
        fc_units: fc6/fc7 units of our action head's masked path (not in the file).
        context_dim, action_dim: feature sizes the MS-LSTM reads (default: its own,
            or 4096 for a transposed one, the original's INPUT_DIM).
        temporal_length, allow_partial: as `load_original_weights`.

    Raises `WeightsError` as `load_original_weights`, and for an output that exists
    (without `overwrite`) or has another suffix.
    """
    file = read_original_weights(path)
    kind = _check_kind(file, kind)
    files = {}
    if out is not None:
        out = Path(out)
        keras_weights = out.name.endswith(".weights.h5")
        if not (keras_weights or out.suffix == ".keras"):
            raise WeightsError(
                f"Output '{out}' must end in .keras (whole model) or .weights.h5 "
                "(weights)."
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
        models, report = _build_models(file, kind, **options)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        head = models.get("context_head") or models.get("action_head")
        main = models.get("ms_lstm") or head
        (main.save_weights if keras_weights else main.save)(out)
        if "vgg16" in files:
            trunk = models["trunk"]
            layers = {n: trunk.get_layer(n).get_weights() for n in TRUNK_LAYERS}
            layers["block5_conv3"] = head.block5_conv3.get_weights()
            write_vgg16_h5(files["vgg16"], layers)
        files["report"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return ImportedWeights(kind, models, report, {k: str(v) for k, v in files.items()})


def inspect_original_weights(path, kind="auto", **options):
    """What would load: `import_original_weights(..., allow_partial=True).report`."""
    options = {**options, "allow_partial": True}
    return import_original_weights(path, kind, **options).report
