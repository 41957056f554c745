"""SGD with weight decay in the Caffe reading (an L2 term in the gradient) or Keras' own.

"Weight decay 0.0005, momentum 0.9" (paper Sec. 4.2, VGG's Caffe solver) means the
gradient of `wd / 2 * ||w||^2` added to the loss gradient, inside momentum:

    v <- momentum * v - lr * (dL/dw + wd * w)
    w <- w + v

Keras' `SGD(weight_decay=wd)` instead shrinks the weights outside momentum,
`w <- w - lr * wd * w` after each step, which at momentum 0.9 is about 10x weaker in the
long run (the L2 term is amplified by `1 / (1 - momentum)`, the decoupled one is not).

`WEIGHT_DECAY_MODES`:

- `"l2"` (the default of the configs): every kernel gets `keras.regularizers.L2(wd / 2)`,
  so Keras adds `wd / 2 * sum(w^2)` to the training loss (and to the logged `loss`) and
  `wd * w` to the gradient.
- `"decoupled"`: Keras' `weight_decay` argument.

Biases are never decayed, as in VGG's Caffe solver (`decay_mult: 0` on biases).
"""

import keras

from msl_keras.config import WEIGHT_DECAY_MODES


def _is_bias(variable):
    return variable.path.split("/")[-1] == "bias"


def sgd(model, learning_rate, momentum, weight_decay=0.0, mode="l2"):
    """A `keras.optimizers.SGD` for `model`, with weight decay in `mode` (module docstring).

    Args:
        model: a BUILT Keras model; in `"l2"` mode its trainable non-bias variables get an
            L2 regularizer (a training setting: not saved with the model, so apply it again
            after loading a model to train on).
        learning_rate, momentum: SGD settings.
        weight_decay: float >= 0; 0 means no decay.
        mode: `"l2"` or `"decoupled"`.

    Returns:
        The optimizer, to pass to `model.compile`.
    """
    if mode not in WEIGHT_DECAY_MODES:
        raise ValueError(
            f"`mode` must be one of {WEIGHT_DECAY_MODES}. Received: mode={mode!r}"
        )
    weight_decay = float(weight_decay)
    decoupled = mode == "decoupled" and weight_decay > 0
    if mode == "l2":
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        for variable in model.trainable_variables:
            if not _is_bias(variable):
                variable.regularizer = regularizer
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate,
        momentum=momentum,
        weight_decay=weight_decay if decoupled else None,
    )
    if decoupled:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer
