"""The compute dtype of a model: Keras dtype policies on its layers, weights float32.

`cnn.compute_dtype` (trunk, heads) and `lstm.compute_dtype` (the LSTMs) name one of
`COMPUTE_DTYPES`: `"float32"`, `"bfloat16"` (policy `"mixed_bfloat16"`) or `"float16"`
(`"mixed_float16"`). Variables stay float32 in every policy, so trained weights lose
nothing and the switch is reversible. Layers whose output is a softmax keep
`"float32"` (Keras' mixed-precision guide): the losses, the CAM class choice and the
pooling read float32 probabilities. `Model.compile` wraps the optimizer in a
`LossScaleOptimizer` by itself when the model's policy is `"mixed_float16"`.
"""

import keras

from msl_keras.config import COMPUTE_DTYPES

POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def set_compute_dtype(model, compute_dtype):
    """Gives `model` (a model or layer, built or not) and every layer inside it the
    policy of `compute_dtype`; returns `model`.

    >>> set_compute_dtype(head, "bfloat16")
    >>> head.fc6.compute_dtype, head.fc6.variable_dtype  # ("bfloat16", "float32")
    """
    if compute_dtype not in POLICIES:
        raise ValueError(
            f"`compute_dtype` must be one of {COMPUTE_DTYPES}. "
            f"Received: compute_dtype={compute_dtype!r}"
        )
    policy = POLICIES[compute_dtype]
    softmax = keras.activations.softmax
    for layer in model._flatten_layers(include_self=True):
        is_softmax = getattr(layer, "activation", None) is softmax
        layer.dtype_policy = "float32" if is_softmax else policy
    return model
