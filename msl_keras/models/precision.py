"""The compute dtype of a model (`cnn.compute_dtype`, `lstm.compute_dtype`, README):
Keras dtype policies on its layers. Variables stay float32 in every policy, so the
switch is reversible. Softmax layers keep `"float32"` (Keras' mixed-precision guide):
the losses, the CAM class choice and the pooling read float32 probabilities. Under
`"mixed_float16"`, `Model.compile` wraps the optimizer in a `LossScaleOptimizer`."""

import keras

from msl_keras.config import COMPUTE_DTYPES
from msl_keras.errors import check_choice

POLICIES = dict(float32="float32", bfloat16="mixed_bfloat16", float16="mixed_float16")


def set_compute_dtype(model, compute_dtype):
    """Gives `model` (a model or layer, built or not) and every layer inside it the
    policy of `compute_dtype`; returns `model`.

    >>> set_compute_dtype(head, "bfloat16")
    >>> head.fc6.compute_dtype, head.fc6.variable_dtype  # ("bfloat16", "float32")
    """
    check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
    for layer in model._flatten_layers(include_self=True):
        is_softmax = getattr(layer, "activation", None) is keras.activations.softmax
        layer.dtype_policy = "float32" if is_softmax else POLICIES[compute_dtype]
    return model
