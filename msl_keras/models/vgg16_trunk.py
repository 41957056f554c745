"""The shared VGG-16 part of the feature extractor, up to conv5_2 (paper Sec. 3.2.1, Fig. 3).

Also the weight loading used by the trunk and by the heads' `block5_conv3`: Keras' own
ImageNet no-top file, or any HDF5 file in the Keras legacy layout (Keras 2 and Keras 3
`model.save("x.h5")` / `save_weights_to_hdf5_group`), or a Keras 3 `.weights.h5` file
saved from a trunk.
"""

import os

import h5py
import keras
import numpy as np

from msl_keras.errors import WeightsError

VGG16_NOTOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    + VGG16_NOTOP_FILENAME
)
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"

# (block, number of 3x3 convolutions, filters at width 1). Block 5 stops at conv5_2:
# conv5_3 belongs to each head (the two streams fine-tune their own copy).
VGG16_TRUNK_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 2, 512))


def scaled_filters(filters, width):
    """Filters of a layer at `width` times VGG-16's size: `max(1, round(filters * width))`."""
    return max(1, round(filters * width))


def keras_home():
    """Keras' cache root: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` if `~` is read-only)."""
    if os.environ.get("KERAS_HOME"):
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def imagenet_weights_path():
    """Path of Keras' VGG-16 no-top ImageNet file, downloaded on first use.

    Uses `keras.utils.get_file` with Keras' own URL and md5, so a file that
    `keras.applications.VGG16(include_top=False)` already fetched is reused.

    Returns:
        The local path of `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (offline), or its
            hash does not match.
    """
    folder = os.path.join(keras_home(), "models")
    try:
        return keras.utils.get_file(
            VGG16_NOTOP_FILENAME,
            VGG16_NOTOP_URL,
            cache_subdir="models",
            file_hash=VGG16_NOTOP_MD5,
        )
    except Exception as error:  # get_file raises a bare Exception when offline.
        raise WeightsError(
            f"Cannot get the ImageNet VGG-16 weights '{VGG16_NOTOP_FILENAME}' "
            f"({error}). Download it from {VGG16_NOTOP_URL} into the folder "
            f"'{folder}{os.sep}' ($KERAS_HOME/models/), or pass weights=<path to the "
            "file>, or weights=None for random initialisation."
        ) from error


def _read_attribute_list(group, name):
    """A string-list attribute, joining the chunks `name0`, `name1`, ... Keras writes."""
    if name in group.attrs:
        values = group.attrs[name]
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5_weights(path):
    """Reads per-layer weights from an HDF5 weights file, keyed by layer name.

    Understands the Keras legacy layout (root attribute `layer_names`, one group per
    layer with attribute `weight_names`; the weights may sit under a `model_weights`
    group, as in a full-model `.h5`) and the Keras 3 `.weights.h5` layout of a plain
    model (`layers/<group>/vars/<i>`, the layer name in the `vars` attribute `name`).

    Args:
        path: str or path-like, the `.h5` file.

    Returns:
        dict `{layer_name: [numpy arrays in the layer's weight order]}`; layers without
        weights (inputs, pools) are left out.

    Raises:
        WeightsError: the file is missing, not HDF5, or in neither layout.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(
            f"Weights file not found: '{path}'. Pass an existing .h5 file, "
            "weights='imagenet', or weights=None."
        )
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(
            f"Cannot open weights file '{path}' as HDF5: {error}"
        ) from error
    with file:
        root = file
        if "layer_names" not in root.attrs and "model_weights" in root:
            root = root["model_weights"]
        weights = {}
        if "layer_names" in root.attrs or "layer_names0" in root.attrs:
            for layer_name in _read_attribute_list(root, "layer_names"):
                group = root[layer_name]
                names = _read_attribute_list(group, "weight_names")
                if names:
                    weights[layer_name] = [np.asarray(group[n]) for n in names]
            return weights
        if "layers" in root:
            for group in root["layers"].values():
                variables = group.get("vars")
                if variables is None or len(variables) == 0:
                    continue
                layer_name = variables.attrs.get("name", group.name.split("/")[-1])
                if isinstance(layer_name, bytes):
                    layer_name = layer_name.decode("utf8")
                keys = sorted(variables.keys(), key=int)
                weights[str(layer_name)] = [np.asarray(variables[k]) for k in keys]
            return weights
    raise WeightsError(
        f"'{path}' is not a Keras weights file: it has neither the legacy attribute "
        "'layer_names' (at the root or under 'model_weights') nor a 'layers' group."
    )


def load_vgg16_weights(model, path_or_dict, layer_names=None):
    """Assigns VGG-16 weights to the layers of `model` by layer name.

    Args:
        model: a built Keras model (or layer) whose layers carry Keras' VGG-16 names.
        path_or_dict: an `.h5` file (see `read_keras_h5_weights`) or the dict it
            returns.
        layer_names: names to load; default: every layer of `model` that has weights.
            The heads pass `["block5_conv3"]` to start conv5_3 from the ImageNet file.

    Returns:
        The list of layer names loaded.

    Raises:
        WeightsError: a layer is missing from the file or its shapes differ (e.g. a
            width != 1 model against the ImageNet file).
    """
    if isinstance(path_or_dict, dict):
        source, arrays = "the given weights dict", path_or_dict
    else:
        source, arrays = (
            f"'{os.fspath(path_or_dict)}'",
            read_keras_h5_weights(path_or_dict),
        )
    if layer_names is None:
        layer_names = [layer.name for layer in model.layers if layer.weights]
    loaded = []
    for name in layer_names:
        try:
            layer = model.get_layer(name)
        except ValueError as error:
            raise WeightsError(
                f"Model '{model.name}' has no layer '{name}'."
            ) from error
        if name not in arrays:
            raise WeightsError(
                f"{source} has no weights for layer '{name}'. Layers in the file: "
                f"{sorted(arrays)}."
            )
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays[name]]
        if expected != found:
            raise WeightsError(
                f"Layer '{name}' of '{model.name}' has weight shapes {expected} but "
                f"{source} holds {found}. The file was made for another architecture "
                "or width (ImageNet weights need width=1.0); pass a matching file or "
                "weights=None."
            )
        layer.set_weights(arrays[name])
        loaded.append(name)
    return loaded


def resolve_weights(weights, width):
    """`None`, `"imagenet"`, a path or a weights dict -> `None`, a checked local path, or
    the dict unchanged (as returned by `read_keras_h5_weights`)."""
    if weights is None or isinstance(weights, dict):
        return weights
    if isinstance(weights, str) and weights == "imagenet":
        if width != 1.0:
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


@keras.saving.register_keras_serializable(package="msl_keras")
class VGG16Trunk(keras.Model):
    """VGG-16 from the input image up to conv5_2, shared by both streams (Fig. 3).

    Keras' layer names are kept (`block1_conv1` ... `block4_pool`, `block5_conv1`,
    `block5_conv2`) so ImageNet weights load by name. The paper keeps this part fixed
    at its ImageNet values; set `trainable=False` to freeze it.

    Args:
        input_shape: `(height, width, 3)` of the preprocessed frames; height and width
            divisible by 16.
        width: float, filters of every convolution are `max(1, round(filters * width))`
            (1.0 is VGG-16; small values give tiny test models).
        weights: `None` (random), `"imagenet"` (Keras' no-top file, width 1.0 only), a
            path to an `.h5` file with these layer names and shapes, or the dict
            `read_keras_h5_weights` returns.
        name: model name.

    Call arguments:
        frames: `(batch, height, width, 3)` float32 frames preprocessed as Keras' VGG-16
            expects ("caffe": BGR, ImageNet mean subtracted).

    Returns:
        conv5_2 activations `(batch, height / 16, width / 16, round(512 * width))`.

    Example:

    >>> trunk = VGG16Trunk(input_shape=(224, 224, 3), weights="imagenet")
    >>> trunk(frames).shape  # (batch, 14, 14, 512)
    """

    def __init__(
        self,
        input_shape=(224, 224, 3),
        width=1.0,
        weights=None,
        name="vgg16_trunk",
        **kwargs,
    ):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or any(
            d is not None and d % 16 for d in input_shape[:2]
        ):
            raise ValueError(
                "`input_shape` must be (height, width, channels) with height and width "
                f"divisible by 16. Received: input_shape={input_shape}"
            )
        if width <= 0:
            raise ValueError(f"`width` must be > 0. Received: width={width}")
        weights_path = resolve_weights(weights, width)

        inputs = keras.Input(shape=input_shape, name="frames")
        x = inputs
        for block, convs, filters in VGG16_TRUNK_BLOCKS:
            for conv in range(1, convs + 1):
                x = keras.layers.Conv2D(
                    scaled_filters(filters, width),
                    3,
                    padding="same",
                    activation="relu",
                    name=f"block{block}_conv{conv}",
                )(x)
            if block < 5:
                x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(
                    x
                )
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)

        self.image_shape = input_shape
        self.width = float(width)
        if weights_path is not None:
            load_vgg16_weights(self, weights_path)

    @property
    def output_channels(self):
        """Channels of conv5_2, `round(512 * width)`."""
        return scaled_filters(512, self.width)

    def get_config(self):
        # `weights` is left out: a saved model carries its own weights.
        return {
            "input_shape": self.image_shape,
            "width": self.width,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
