"""SGD with momentum and decoupled weight decay, each variable updated in ONE fused pass."""

import keras


def _make_fused_update():
    """The XLA-compiled update `v <- v - lr * wd * v + m`, `m <- momentum * m - lr * g`."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def update(variable, momentum_buffer, gradient, learning_rate, momentum, decay):
        m = momentum * momentum_buffer - learning_rate * gradient
        momentum_buffer.assign(m)
        variable.assign(variable - (learning_rate * decay) * variable + m)

    return update


@keras.saving.register_keras_serializable(package="msl_keras")
class FusedSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (momentum, decoupled `weight_decay`) with fused updates.

    Keras' SGD updates a variable in separate element-wise passes over memory (decay,
    momentum, update, each with its temporaries). For the paper's networks the
    parameters are large (fc6 of each head: 103M weights; the MS-LSTM: 117M), the
    passes are memory-bound and cost more than they compute: on a 2-core CPU the
    update of fc6 + fc7 takes 261 ms with `keras.optimizers.SGD` and 71 ms fused
    (`benchmarks/`, BENCHMARKS.md). Here, with the TensorFlow backend, each
    variable's decay, momentum and update run as one XLA-compiled kernel that reads
    the variable, its momentum and its gradient once and writes the first two once.

    The arithmetic is Keras SGD's, in the same order: `v -= lr * wd * v` (variables
    excluded with `exclude_from_weight_decay` skip it), `m = momentum * m - lr * g`,
    `v += m`; results equal `keras.optimizers.SGD` up to float rounding. Other
    backends, `nesterov=True` and `momentum=0` use Keras' own update.

    Args: as `keras.optimizers.SGD`.

    Example:

    >>> model.compile(optimizer=FusedSGD(0.001, momentum=0.9, weight_decay=5e-4), ...)
    """

    def _fused(self):
        return (
            keras.backend.backend() == "tensorflow"
            and self.momentum != 0
            and not self.nesterov
        )

    def _apply_weight_decay(self, variables):
        if not self._fused():
            return super()._apply_weight_decay(variables)
        # Folded into `update_step`.

    def update_step(self, gradient, variable, learning_rate):
        if not self._fused():
            return super().update_step(gradient, variable, learning_rate)
        from keras import ops

        dtype = variable.dtype
        momentum_buffer = self.momentums[self._get_variable_index(variable)]
        decay = 0.0
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = self.weight_decay
        # One traced function per optimizer (its traces refer to its variables).
        if "_msl_fused_update" not in self.__dict__:
            self.__dict__["_msl_fused_update"] = _make_fused_update()
        self.__dict__["_msl_fused_update"](
            variable,
            momentum_buffer.value,
            ops.cast(gradient, dtype),
            ops.cast(learning_rate, dtype),
            ops.cast(self.momentum, dtype),
            ops.cast(decay, dtype),
        )
