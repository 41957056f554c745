"""The compute dtype of a model: Keras dtype policies on its layers, weights float32.

`cnn.compute_dtype` (trunk, heads: extraction and head training) and
`lstm.compute_dtype` (the LSTMs) name one of `COMPUTE_DTYPES`; `set_compute_dtype`
gives every layer of a model the matching Keras policy:

| compute_dtype | Keras policy | variables | activations, matmuls |
| --- | --- | --- | --- |
| `"float32"` | `"float32"` | float32 | float32 |
| `"bfloat16"` | `"mixed_bfloat16"` | float32 | bfloat16 |
| `"float16"` | `"mixed_float16"` | float32 | float16 |

Layers whose output is a softmax keep `"float32"` (Keras' mixed-precision guide): the
probabilities the losses, the CAM class choice after them and the pooling read are
float32 whatever the rest computes in. The variables stay float32 in every policy, so
trained weights lose nothing and the switch is reversible. float16 training needs loss
scaling; `Model.compile` wraps the optimizer in `keras.optimizers.LossScaleOptimizer`
by itself when the model's own policy is `"mixed_float16"` (`auto_scale_loss=True`).

Example:

>>> head = ContextAwareHead(num_classes=6, fc_units=512)
>>> set_compute_dtype(head, "bfloat16")  # before build: variables made in float32
>>> head.fc6.compute_dtype, head.fc6.variable_dtype  # ("bfloat16", "float32")
"""

import keras

from msl_keras.config import COMPUTE_DTYPES

POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def check_compute_dtype(compute_dtype, key="compute_dtype"):
    """`compute_dtype` if it is one of `COMPUTE_DTYPES`, else a ValueError."""
    if compute_dtype not in POLICIES:
        raise ValueError(
            f"`{key}` must be one of {COMPUTE_DTYPES}. "
            f"Received: {key}={compute_dtype!r}"
        )
    return compute_dtype


def _is_softmax(layer):
    return getattr(layer, "activation", None) is keras.activations.softmax


def set_compute_dtype(model, compute_dtype):
    """Gives `model` and every layer inside it the policy of `compute_dtype`.

    Args:
        model: a Keras model or layer, built or not (its variables stay float32).
        compute_dtype: one of `COMPUTE_DTYPES`.

    Returns:
        `model`.
    """
    policy = POLICIES[check_compute_dtype(compute_dtype)]
    for layer in model._flatten_layers(include_self=True):
        layer.dtype_policy = "float32" if _is_softmax(layer) else policy
    return model
