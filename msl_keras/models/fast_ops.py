"""Dense and LSTM layers whose backward pass avoids TensorFlow's slow transposed MatMul.

TensorFlow's gradient of `y = a @ w` computes `da = dy @ w^T` with a
`MatMul(transpose_b=True)`, which on this project's CPU (TF 2.21, oneDNN on or off) runs
5-6x slower than the same product as an einsum (fc6's input gradient at batch 32: 309 ms
vs 60 ms). `matmul` has the same forward product and a custom gradient made of einsums:
an MS-LSTM training step at the paper's size runs about 1.5x faster, a head-training
step ~1.2x (BENCHMARKS.md, item 2).
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


class Dense(keras.layers.Dense):
    """`keras.layers.Dense` on `(batch, features)` inputs with the fast gradient; other
    ranks, LoRA and quantized layers run Keras' own `call`. Named `Dense` on purpose:
    Keras files a layer's weights under its class name (`layers/dense/vars/0`)."""

    def call(self, inputs, training=None):
        if len(inputs.shape) != 2 or self.lora_enabled or self.quantization_mode:
            return super().call(inputs, training=training)
        x = matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


class FastLSTMCell(keras.layers.LSTMCell):
    """`keras.layers.LSTMCell` (fused gates, `implementation=2`) with the fast gradient;
    with dropout active or `implementation=1`, Keras' own step runs.

        [z_i, z_f, z_c, z_o] = x_t W + h_{t-1} U + b
        c_t = sigma(z_f) * c_{t-1} + sigma(z_i) * tanh(z_c)
        h_t = sigma(z_o) * tanh(c_t)
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
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=1)
        sigma, tanh = self.recurrent_activation, self.activation
        c = sigma(z_f) * c_tm1 + sigma(z_i) * tanh(z_c)
        h = sigma(z_o) * tanh(c)
        return h, [h, c]


def lstm_layer(units, name):
    """`keras.layers.LSTM(units, return_sequences=True)` with a `FastLSTMCell` inside:
    config and variables are `keras.layers.LSTM`'s, and Keras runs cuDNN where a GPU
    is visible (on the cell's variables, not its step), the cell's step elsewhere."""
    layer = keras.layers.LSTM(units, return_sequences=True, name=name)
    # The LSTM takes no cell argument: replace its cell by the same one (same config,
    # dtype policy included) with the fast step. The replaced one is unbuilt: it never
    # makes variables, so nothing saves or trains it.
    layer.cell = FastLSTMCell.from_config(layer.cell.get_config())
    return layer
