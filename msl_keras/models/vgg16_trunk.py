"""The shared VGG-16 trunk up to conv5_2 (paper Sec. 3.2.1, Fig. 3), and the weight
loading of the trunk and the heads' conv5_3, fc6 and fc7 (`Model.load_weights`)."""

import os
from pathlib import Path

import h5py
import keras

from msl_keras.errors import WeightsError

KERAS_VGG16_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
VGG16_NOTOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
# The full model (with fc1, fc2 and the ImageNet classifier), for the heads' fc6 / fc7.
VGG16_TOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
VGG16_TOP_MD5 = "64373286793e3c8b2b4e3219cbf3544b"
# (head layer, Keras VGG-16 layer) started from a with-top file: the paper's heads are
# VGG-16 "from conv5-3 up to the last fully-connected layer", only fc8 replaced.
VGG16_HEAD_LAYERS = (("block5_conv3", "block5_conv3"), ("fc6", "fc1"), ("fc7", "fc2"))

# VGG-16 (configuration D): (block, number of 3x3 convolutions, filters at width 1); a
# 2x2 max-pool closes each block. The package's one copy.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
# Each head fine-tunes its own conv5_3: the trunk stops at conv5_2.
HEAD_CONVOLUTION = "block5_conv3"


def scaled_filters(filters, width):
    """Filters of a layer at `width` times VGG-16's size."""
    return max(1, round(filters * width))


def vgg16_convolutions(width=1.0):
    """`[(name, filters)]` of VGG-16's 13 convolutions in order, `block1_conv1` ...
    `block5_conv3` (Keras' names), with the filters at `width`."""
    return [
        (f"block{block}_conv{conv}", scaled_filters(filters, width))
        for block, convs, filters in VGG16_BLOCKS
        for conv in range(1, convs + 1)
    ]


def vgg16_filters(name, width=1.0):
    """Filters of VGG-16's convolution `name` (e.g. `"block5_conv3"`) at `width`."""
    return dict(vgg16_convolutions(width))[name]


def imagenet_weights_path(include_top=False):
    """Path of Keras' VGG-16 ImageNet file (no top, 58 MB; `include_top`: with fc1,
    fc2 and the classifier, 528 MB), fetched by `keras.utils.get_file` with Keras' URL
    and md5 (a file `keras.applications.VGG16` fetched is reused). WeightsError when
    it cannot be had (offline, wrong hash)."""
    if include_top:
        filename, md5, key = VGG16_TOP_FILENAME, VGG16_TOP_MD5, "cnn.top_weights"
    else:
        filename, md5, key = VGG16_NOTOP_FILENAME, VGG16_NOTOP_MD5, "weights"
    url = KERAS_VGG16_URL + filename
    try:
        return keras.utils.get_file(filename, url, cache_subdir="models", file_hash=md5)
    except Exception as error:  # get_file raises a bare Exception when offline.
        # get_file's folder: $KERAS_HOME, else ~/.keras (/tmp/.keras if ~ is read-only)
        home = os.path.expanduser("~")
        home = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
        folder = os.path.join(os.environ.get("KERAS_HOME") or home, "models") + os.sep
        raise WeightsError(
            f"Cannot get the ImageNet VGG-16 weights '{filename}' ({error}). Download "
            f"it from {url} into the folder '{folder}' ($KERAS_HOME/models/), or pass "
            f"{key}=<path to the file>, or {key}=None (random initialisation)."
        ) from error


def _layers_with_weights(path):
    """The layers of a Keras legacy-layout `.h5` file that hold weights: what
    `Model.load_weights(path, by_name=True)` can load, which it does not say itself."""
    try:
        with h5py.File(path, "r") as file:
            root = file["model_weights"] if "model_weights" in file else file
            return {name for name, group in root.items() if len(group)}
    except OSError as error:
        raise WeightsError(
            f"Cannot open weights file '{path}' as HDF5: {error}"
        ) from error


def write_vgg16_h5(path, layers, **attributes):
    """Writes `{layer: [kernel (3, 3, in, out), bias (out,)]}` in the layout of Keras'
    VGG-16 no-top file, `attributes` (str, e.g. `source`) at its root; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [name.encode("utf8") for name in layers]
        tags = {"backend": "tensorflow", "keras_version": keras.__version__}
        for key, value in {**tags, **attributes}.items():
            file.attrs[key] = value.encode("utf8")
        for name, arrays in layers.items():
            group = file.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            for weight_name, value in zip(names, arrays):
                group.create_dataset(weight_name, data=value)
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
    return path


def load_vgg16_weights(model, path, layer_names=None):
    """Loads a VGG-16 `.h5` file into the layers of a built `model`; returns them.

    A Keras legacy-layout file (Keras' ImageNet files, `model.save("x.h5")`, the
    converters' output) loads by layer name, a Keras 3 `.weights.h5` file by structure
    (only into a model built like the one that saved it). `layer_names`: the layers the
    file must hold (default: every layer of `model` with weights). WeightsError when
    the file is missing or not HDF5, lacks a layer, or its shapes differ.
    """
    path = resolve_weights(path, width=None)
    if layer_names is None:
        layer_names = [layer.name for layer in model.layers if layer.weights]
    keras3 = path.endswith(".weights.h5")
    if not keras3:
        in_file = _layers_with_weights(path)
        absent = [name for name in layer_names if name not in in_file]
        if absent:
            raise WeightsError(
                f"'{path}' has no weights for layer '{absent[0]}' (missing: {absent}). "
                f"Layers in the file: {sorted(in_file)}."
            )
    try:
        model.load_weights(path, **({} if keras3 else {"by_name": True}))
    except ValueError as error:
        hint = (
            " (a Keras 3 .weights.h5 file loads only into a model built like the one "
            "that saved it; save it with model.save('x.h5') to load it by layer name)"
        )
        raise WeightsError(
            f"'{path}' does not fit '{model.name}': {error}. The file was made for "
            "another architecture or width (ImageNet weights need width=1.0); pass a "
            f"matching file{hint if keras3 else ''} or weights=None."
        ) from error
    return list(layer_names)


def resolve_weights(weights, width):
    """`None`, `"imagenet"` (needs `width` 1.0, or None: not checked) or a path ->
    `None` or a checked local path (str)."""
    if weights is None:
        return None
    if weights == "imagenet":
        if width not in (None, 1.0):
            raise WeightsError(
                "ImageNet VGG-16 weights exist only for width=1.0. Received: "
                f"width={width}. Pass weights=None or weights=<path> to a file made "
                "for this width."
            )
        return imagenet_weights_path()
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise WeightsError(
            f"Weights file not found: '{path}'. Pass an existing .h5 file, "
            "weights='imagenet', or weights=None."
        )
    return path


def resolve_top_weights(top_weights, weights):
    """`(file or None, where it came from or why there is none)`: where the heads'
    conv5_3, fc6 and fc7 start from (`VGG16_HEAD_LAYERS`).

    `top_weights`: `"auto"` (Keras' with-top ImageNet file when the trunk's `weights`
    are `"imagenet"`, the trunk's own file when it holds `fc1` and `fc2`, else
    nothing), `"imagenet"`, a path to a legacy-layout VGG-16 file with `fc1` / `fc2`,
    or `None`. WeightsError when the file cannot be had or is no HDF5 file.
    """
    if top_weights is None:
        return None, "none (cnn.top_weights=None)"
    if top_weights == "auto":
        if weights is None:
            return None, "none (random trunk)"
        if weights != "imagenet":
            path = resolve_weights(weights, None)
            if {"fc1", "fc2"} <= _layers_with_weights(path):
                return path, weights_source(weights)
            return None, "none (the trunk's weights file has no fc1 / fc2)"
        top_weights = "imagenet"
    if top_weights == "imagenet":
        path = imagenet_weights_path(include_top=True)
        return path, f"ImageNet VGG-16 with top ('{path}')"
    path = resolve_weights(top_weights, None)
    _layers_with_weights(path)  # an error now if it is no HDF5 file
    return path, weights_source(top_weights)


def weights_source(weights):
    """A short text naming a `weights` argument (random, Keras' ImageNet, a path)."""
    if weights is None:
        return "random initialisation"
    if weights == "imagenet":
        return "ImageNet VGG-16 (Keras, no top)"
    return f"'{os.fspath(weights)}'"


def load_top_weights(head, path, source, initial):
    """Starts a built head's conv5_3, fc6 and fc7 from the block5_conv3, fc1 and fc2
    of `path` (`resolve_top_weights`' file and `source`; None: nothing loads), each
    layer only where its shapes fit. `initial`: `{head layer: what it holds now}`,
    e.g. `{"fc6": "random", ...}`. Returns `{head layer: what it holds after}`, e.g.
    `"fc1 of <source>"` or `"random (fc1 of <source> does not fit fc6: ...)"`."""
    report = dict(initial)
    if path is None:
        return report
    in_file = _layers_with_weights(path)
    for ours, theirs in VGG16_HEAD_LAYERS:
        layer = head.get_layer(ours)
        if not layer.weights:  # an Identity conv5_3 (cnn.frozen_conv5_3)
            continue
        if theirs not in in_file:
            report[ours] += f" ({theirs} of {source}: no weights)"
            continue
        # "zeros": the copy's start is overwritten at once (random fc6 costs seconds).
        config = {**layer.get_config(), "name": theirs, "kernel_initializer": "zeros"}
        copy = layer.__class__.from_config(config)
        kernel_shape = layer.kernel.shape  # Dense (in, out), Conv2D (3, 3, in, out)
        inputs = keras.Input((None,) * (len(kernel_shape) - 2) + (kernel_shape[-2],))
        try:
            keras.Model(inputs, copy(inputs)).load_weights(path, by_name=True)
        except ValueError as error:
            report[ours] += (
                f" ({theirs} of {source} does not fit {ours}: {error}; fc6 needs "
                "224x224 input and fc_units=4096, fc7 fc_units=4096, conv5_3 width=1)"
            )
        else:
            layer.set_weights(copy.get_weights())
            report[ours] = f"{theirs} of {source}"
    return report


def vgg16_conv(name, filters):
    """VGG-16's 3x3 same-padded ReLU convolution, under Keras' layer `name`."""
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)


@keras.saving.register_keras_serializable(package="msl_keras")
class VGG16Trunk(keras.Model):
    """VGG-16 from the input image up to conv5_2, shared by both streams (Fig. 3).

    Keras' layer names (`block1_conv1` ... `block5_conv2`) let ImageNet weights load by
    name. The paper keeps this part fixed: `trainable=False` freezes it.

    Args:
        input_shape: `(height, width, 3)`, height and width divisible by 16.
        width: every convolution has `max(1, round(filters * width))` filters.
        weights: `None`, `"imagenet"` (width 1.0 only) or an `.h5` path with these
            layer names and shapes (`load_vgg16_weights`).
        include_conv5_3: end at `block5_conv3`, for heads with `conv5_3=False`.

    Call: `(batch, height, width, 3)` float32 frames preprocessed as Keras' VGG-16
    expects ("caffe": BGR, mean subtracted) -> conv5_2 (or conv5_3) activations
    `(batch, height / 16, width / 16, round(512 * width))`.
    """

    def __init__(
        self, input_shape=(224, 224, 3), width=1.0, weights=None, include_conv5_3=False,
        name="vgg16_trunk", **kwargs,
    ):  # fmt: skip
        input_shape = tuple(input_shape)
        spatial = [d for d in input_shape[:2] if d is not None]
        if len(input_shape) != 3 or any(d % 16 for d in spatial):
            raise ValueError(
                "`input_shape` must be (height, width, channels) with height and width "
                f"divisible by 16. Received: input_shape={input_shape}"
            )
        if width <= 0:
            raise ValueError(f"`width` must be > 0. Received: width={width}")
        weights_path = resolve_weights(weights, width)

        x = inputs = keras.Input(shape=input_shape, name="frames")
        for block, convs, filters in VGG16_BLOCKS:
            for conv in range(1, convs + 1):
                conv_name = f"block{block}_conv{conv}"
                if conv_name == HEAD_CONVOLUTION and not include_conv5_3:
                    break
                x = vgg16_conv(conv_name, scaled_filters(filters, width))(x)
            if block < 5:
                x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)

        self.image_shape = input_shape
        self.width = float(width)
        self.include_conv5_3 = bool(include_conv5_3)
        if weights_path is not None:
            load_vgg16_weights(self, weights_path)

    def get_config(self):
        # `weights` is left out: a saved model carries its own weights.
        keys = ("width", "include_conv5_3", "name", "trainable")
        return {"input_shape": self.image_shape, **{k: getattr(self, k) for k in keys}}
