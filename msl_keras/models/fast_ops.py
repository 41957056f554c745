"""Dense and LSTM layers whose backward pass avoids TensorFlow's slow transposed MatMul.

The gradient TensorFlow registers for `y = a @ w` computes `da = dy @ w^T` with a
`MatMul(transpose_b=True)`. On this project's 2-core AVX-512 CPU (TF 2.21, oneDNN on or
off) that kernel runs at 21-33 GFLOP/s on the paper's shapes, against 110-155 GFLOP/s
for the same product written as an einsum (a batched matmul), e.g.:

| product (batch 32) | `MatMul(transpose_b)` | einsum |
| --- | --- | --- |
| fc6 input gradient, 4096 -> 25088 | 309 ms | 60 ms |
| LSTM recurrent gradient, 8192 -> 2048 | 49 ms | 7.7 ms |

`matmul` below has the same forward product and a custom gradient made of einsums;
`FastDense` and `FastLSTMCell` are `keras.layers.Dense` and `keras.layers.LSTMCell`
with their products replaced by it (same weights, same variable names, same numbers up
to float rounding). An MS-LSTM training step at the paper's size runs about 1.5x faster,
a head-training step ~1.2x (BENCHMARKS.md).
"""

import keras
import tensorflow as tf
from keras import ops


@tf.custom_gradient
def _matmul(a, w):
    def grad(dy):
        return tf.einsum("bo,io->bi", dy, w), tf.einsum("bi,bo->io", a, dy)

    return tf.matmul(a, w), grad


def matmul(a, w):
    """`a (batch, in) @ w (in, out)`, with the fast gradient."""
    return _matmul(a, tf.convert_to_tensor(w))


@keras.saving.register_keras_serializable(package="msl_keras")
class FastDense(keras.layers.Dense):
    """`keras.layers.Dense` on `(batch, features)` inputs with the fast gradient.

    Other ranks, LoRA and quantized layers use `keras.layers.Dense.call` unchanged.
    """

    def call(self, inputs, training=None):
        if (
            len(inputs.shape) != 2
            or self.lora_enabled
            or getattr(self, "quantization_mode", None)
        ):
            return super().call(inputs, training=training)
        x = matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


@keras.saving.register_keras_serializable(package="msl_keras")
class FastLSTMCell(keras.layers.LSTMCell):
    """`keras.layers.LSTMCell` (fused gates, `implementation=2`) with the fast gradient.

    With dropout or recurrent dropout active, or `implementation=1`, Keras' own step
    runs. Wrap it as `keras.layers.RNN(FastLSTMCell(units, name="lstm_cell"), ...)`:
    the variables are named as in `keras.layers.LSTM`.
    """

    def call(self, inputs, states, training=False):
        dropping = training and (
            0.0 < self.dropout < 1.0 or 0.0 < self.recurrent_dropout < 1.0
        )
        if self.implementation != 2 or dropping:
            return super().call(inputs, states, training=training)
        h_tm1, c_tm1 = states[0], states[1]
        z = ops.add(matmul(inputs, self.kernel), matmul(h_tm1, self.recurrent_kernel))
        if self.use_bias:
            z = ops.add(z, self.bias)
        c, o = self._compute_carry_and_output_fused(ops.split(z, 4, axis=1), c_tm1)
        h = o * self.activation(c)
        return h, [h, c]


def lstm_layer(units, name):
    """An LSTM over `(batch, time, features)` returning sequences, named `name`.

    On a machine with a GPU: `keras.layers.LSTM` (it uses cuDNN there). Otherwise:
    `keras.layers.RNN(FastLSTMCell)`, the same layer with the fast gradient. Both have
    the variables `<name>/lstm_cell/{kernel, recurrent_kernel, bias}`, so weights move
    between them.
    """
    if not tf.config.list_physical_devices("GPU"):
        return keras.layers.RNN(
            FastLSTMCell(units, name="lstm_cell"),
            return_sequences=True,
            name=name,
        )
    return keras.layers.LSTM(units, return_sequences=True, name=name)
