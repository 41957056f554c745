"""SGD with weight decay as Caffe does it (an L2 term in the gradient) or as Keras does.

"Weight decay 0.0005, momentum 0.9" (paper Sec. 4.2, VGG's Caffe solver) adds the
gradient of `wd / 2 * ||w||^2` to the loss gradient, inside momentum (mode `"l2"`):

    v <- momentum * v - lr * (dL/dw + wd * w)
    w <- w + v

Keras' `SGD(weight_decay=wd)` (mode `"decoupled"`) instead does `w <- w - lr * wd * w`
after each step, outside momentum: about 10x weaker at momentum 0.9. Biases are never
decayed (VGG's Caffe solver: `decay_mult: 0`). See README.md, "Weight decay".
"""

import keras

from msl_keras.config import WEIGHT_DECAY_MODES
from msl_keras.errors import check_choice


def sgd(model, learning_rate, momentum, weight_decay=0.0, mode="l2"):
    """A `keras.optimizers.SGD` for `model`, to pass to `model.compile`.

    In `"l2"` mode the BUILT `model`'s trainable non-bias variables get
    `keras.regularizers.L2(wd / 2)`: a training setting, not saved with the model, so
    apply it again after loading a model to train on. `weight_decay=0` means no decay.
    """
    check_choice("mode", mode, WEIGHT_DECAY_MODES)
    weight_decay = float(weight_decay)
    decoupled = mode == "decoupled" and weight_decay > 0
    if mode == "l2":
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        for variable in model.trainable_variables:
            if variable.path.split("/")[-1] != "bias":
                variable.regularizer = regularizer
    optimizer = keras.optimizers.SGD(
        learning_rate, momentum, weight_decay=weight_decay if decoupled else None
    )
    if decoupled:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer
