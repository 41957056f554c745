"""The context-aware sub-model: VGG-16 from conv5_3 to the classifier (Sec. 3.2.1)."""

import keras

from msl_keras.models import fast_ops
from msl_keras.models.vgg16_trunk import (
    HEAD_CONVOLUTION, load_vgg16_weights, resolve_weights, vgg16_conv, vgg16_filters,
)  # fmt: skip


class VGG16Head(keras.Model):
    """What both heads share: their own `block5_conv3`, then VGG-16's `block5_pool`,
    fc6, fc7 and a softmax fc8 (arguments: `ContextAwareHead`). A subclass makes its
    layers before `make_top`: the order layers are made in fixes their random start."""

    def __init__(
        self, num_classes, fc_units, width, dropout, conv5_3, input_scale, name,
        **kwargs,
    ):  # fmt: skip
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.fc_units = int(fc_units)
        self.width = float(width)
        self.dropout = float(dropout)
        self.conv5_3 = bool(conv5_3)
        self.input_scale = float(input_scale)
        if self.conv5_3:
            channels = vgg16_filters(HEAD_CONVOLUTION, self.width)
            self.block5_conv3 = vgg16_conv(HEAD_CONVOLUTION, channels)
        else:  # the trunk already ends at conv5_3 (`cnn.frozen_conv5_3`)
            self.block5_conv3 = keras.layers.Identity(name=HEAD_CONVOLUTION)

    def make_top(self, weights):
        """Makes block5_pool to fc8; starts conv5_3 from `weights` (fc6-fc8 random)."""
        self.block5_pool = keras.layers.MaxPooling2D(2, name="block5_pool")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc6 = fast_ops.Dense(self.fc_units, activation="relu", name="fc6")
        self.dropout6 = keras.layers.Dropout(self.dropout, name="dropout6")
        self.fc7 = fast_ops.Dense(self.fc_units, activation="relu", name="fc7")
        self.dropout7 = keras.layers.Dropout(self.dropout, name="dropout7")
        self.fc8 = fast_ops.Dense(self.num_classes, activation="softmax", name="fc8")
        weights_path = resolve_weights(weights, self.width)
        if weights_path is not None and self.conv5_3:  # conv5_2 has as many filters
            self.block5_conv3.build((None, None, None, self.block5_conv3.filters))
            load_vgg16_weights(self, weights_path, layer_names=["block5_conv3"])

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.conv5_3 and self.block5_conv3.built:  # weights loaded: check the input
            expected = self.block5_conv3.kernel.shape[2]
            if input_shape[-1] != expected:
                raise ValueError(
                    f"{self.name} expects conv5_2 maps with {expected} channels. "
                    f"Received: input_shape={input_shape}"
                )
        else:
            self.block5_conv3.build(input_shape)
        conv5_3 = self.block5_conv3.compute_output_shape(input_shape)
        pooled = self.block5_pool.compute_output_shape(conv5_3)
        self.fc6.build(self.flatten.compute_output_shape(pooled))
        self.fc7.build((None, self.fc_units))
        self.fc8.build((None, self.fc_units))

    def top(self, maps, training=None):
        """block5_pool to fc8 on `(b, h, w, C)` maps: `(fc7 (b, fc_units), probs)`."""
        x = self.flatten(self.block5_pool(maps))
        x = self.dropout6(self.fc6(x), training=training)
        fc7 = self.fc7(x)
        return fc7, self.fc8(self.dropout7(fc7, training=training))

    def get_config(self):
        keys = ("num_classes", "fc_units", "width", "dropout", "conv5_3", "input_scale")
        return {**super().get_config(), **{k: getattr(self, k) for k in keys}}


@keras.saving.register_keras_serializable(package="msl_keras")
class ContextAwareHead(VGG16Head):
    """Context-aware stream: `block5_conv3 -> block5_pool -> fc6 -> fc7 -> fc8`.

    VGG-16's top with its own conv5_3 and a `num_classes`-way softmax, trained with
    cross-entropy on single frames; its fc7 is the context-aware feature fed to the
    first LSTM stage.

    Args:
        fc_units: units of fc6 and fc7 (4096 as in VGG-16).
        width: the trunk's width factor (conv5_3: `round(512 * width)` filters).
        dropout: the rate after fc6 and fc7.
        weights: `None`, `"imagenet"` or a path: where `block5_conv3` starts from
            (`load_vgg16_weights`); fc6-fc8 start random.
        conv5_3: the head has its own `block5_conv3` (the paper); False for a trunk
            that ends at conv5_3 (`VGG16Trunk(include_conv5_3=True)`).
        input_scale: a fixed factor on the input maps (`cnn.scale_head_inputs`, README).

    Call: conv5_2 maps `(batch, h, w, round(512 * width))` -> `(batch, N)` softmax.

    >>> ContextAwareHead(num_classes=101).features(conv5_2).shape  # (batch, 4096)
    """

    def __init__(
        self, num_classes, fc_units=4096, width=1.0, dropout=0.5, weights=None,
        conv5_3=True, input_scale=1.0, name="context_head", **kwargs,
    ):  # fmt: skip
        super().__init__(
            num_classes, fc_units, width, dropout, conv5_3, input_scale, name, **kwargs
        )
        self.make_top(weights)

    def endpoints(self, inputs, training=None):
        """`{"conv5_3": (b, h, w, C), "fc7": (b, fc_units), "probs": (b, N)}`."""
        conv5_3 = self.block5_conv3(inputs * self.input_scale)
        fc7, probs = self.top(conv5_3, training=training)
        return {"conv5_3": conv5_3, "fc7": fc7, "probs": probs}

    def call(self, inputs, training=None):
        return self.endpoints(inputs, training=training)["probs"]

    def features(self, inputs):
        """Context-aware feature: fc7 `(batch, fc_units)`, inference mode."""
        return self.endpoints(inputs, training=False)["fc7"]

    def activation_maps(self, inputs):
        """`{"conv5_3": (b, h, w, C)}` for a Fig. 7 visualisation."""
        return {"conv5_3": self.block5_conv3(inputs * self.input_scale)}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)
