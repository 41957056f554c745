"""Test helper: tiny VGG-16 weight files in Keras' legacy HDF5 layout (no-top or with top)."""

import h5py
import numpy as np

from msl_keras.models.vgg16_trunk import vgg16_convolutions

LAYERS = [name for name, _ in vgg16_convolutions()]


def random_vgg16_arrays(width, seed=0):
    """{layer_name: [kernel (3, 3, in, out), bias (out,)]} for block1_conv1..block5_conv3."""
    rng = np.random.default_rng(seed)
    arrays, channels = {}, 3
    for name, out in vgg16_convolutions(width):
        arrays[name] = [
            rng.normal(0, 0.1, (3, 3, channels, out)).astype("float32"),
            rng.normal(0, 0.1, (out,)).astype("float32"),
        ]
        channels = out
    return arrays


def random_top_arrays(flat, fc_units, classes=5, seed=1):
    """{"fc1": [(flat, fc_units), (fc_units,)], "fc2": ..., "predictions": ...}: the
    top of a with-top VGG-16 file, for `flat` = 7 * 7 * 512 at 224x224 and width 1."""
    rng = np.random.default_rng(seed)
    shapes = {"fc1": (flat, fc_units), "fc2": (fc_units, fc_units)}
    shapes["predictions"] = (fc_units, classes)
    return {
        name: [
            rng.normal(0, 0.1, shape).astype("float32"),
            rng.normal(0, 0.1, shape[1:]).astype("float32"),
        ]
        for name, shape in shapes.items()
    }


def write_legacy_vgg16_h5(path, arrays, under_model_weights=False):
    """Writes `arrays` like Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`:
    root attribute `layer_names` (with weightless input and pool layers), a group per
    layer with attribute `weight_names` ("block1_conv1_W_1:0", ...), datasets at those
    (nested) paths. With `fc1` in `arrays`, like the with-top file
    `vgg16_weights_tf_dim_ordering_tf_kernels.h5` (flatten, fc1, fc2, predictions)."""
    names = ["input_1"]
    for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        names += [f"block{block}_conv{c}" for c in range(1, convs + 1)]
        names.append(f"block{block}_pool")
    if "fc1" in arrays:
        names += ["flatten", "fc1", "fc2", "predictions"]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        root.attrs["layer_names"] = [n.encode("utf8") for n in names]
        root.attrs["backend"] = b"tensorflow"
        for name in names:
            group = root.create_group(name)
            weight_names = []
            if name in arrays:
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
                for weight_name, value in zip(weight_names, arrays[name]):
                    group.create_dataset(weight_name, data=value)
            group.attrs["weight_names"] = [n.encode("utf8") for n in weight_names]
    return path
