"""The action-aware sub-model: conv5_3 masked by a class activation map (Eqs. 2-3)."""

import warnings

import keras
from keras import ops

from msl_keras.config import CAM_CLASSES, CAM_NORMALIZATIONS
from msl_keras.errors import check_choice
from msl_keras.layers.class_activation_map import ClassActivationMap
from msl_keras.models import fast_ops
from msl_keras.models.context_head import VGG16Head
from msl_keras.models.vgg16_trunk import vgg16_conv


@keras.saving.register_keras_serializable(package="msl_keras")
class ActionAwareHead(VGG16Head):
    """Action-aware stream: conv5_3 masked by a class activation map, then fc6-fc8.

    Two branches share the head's own `block5_conv3`:

    - CAM branch (Zhou et al. 2016): `cam_conv` (3x3, `cam_filters`, ReLU) -> global
      average pool -> `cam_classifier` (linear) -> softmax, output `"cam"`. The map
      `M_k(x, y) = sum_l w_l^k f_l(x, y)` (Eq. 2) reads the maps `f` of `cam_conv`
      (the ones the pool averages) and the kernel `w` of `cam_classifier`.
    - Masked path: `A_k = conv5_3 * mask` (Eq. 3, `mask = ReLU(M_k)` broadcast over
      the channels) -> `block5_pool` -> fc6 -> fc7 (the action-aware feature) -> fc8
      softmax, output `"action"`.

    What the paper leaves open (README, "Choices where the paper is silent"): the class
    `k` (`cam_class`: `"predicted"`, the arg-max of the CAM scores; `"top_k"`,
    `sum_{k in top_k} ReLU(M_k)`; `"oracle"`, the true label, which leaks the answer
    into test features and warns), the mask's scale (`cam_normalization`: `"max"`
    divides it by its per-frame maximum + eps, so `A_k` keeps conv5_3's scale; `None`
    as printed) and training: cross-entropy on both outputs, the mask a
    `stop_gradient` input, so the CAM branch learns from its own loss only.
    `cam_class` changes no weights. Other arguments: `ContextAwareHead`'s.

    Call: conv5_2 maps `(batch, h, w, round(512 * width))`, or `{"maps": ...,
    "labels": ...}` with `(batch,)` int or `(batch, N)` one-hot labels (needed with
    `"oracle"`, else ignored) -> `{"cam": (batch, N), "action": (batch, N)}`
    probabilities.

    >>> ActionAwareHead(num_classes=101).features(conv5_2)["fc7"].shape  # (b, 4096)
    """

    def __init__(
        self, num_classes, fc_units=4096, cam_filters=1024, width=1.0, dropout=0.5,
        cam_class="predicted", top_k=3, cam_normalization="max", weights=None,
        conv5_3=True, input_scale=1.0, name="action_head", **kwargs,
    ):  # fmt: skip
        check_choice("cam_class", cam_class, CAM_CLASSES)
        check_choice("cam_normalization", cam_normalization, CAM_NORMALIZATIONS)
        if cam_class == "top_k" and not 1 <= top_k <= num_classes:
            raise ValueError(
                f"`top_k` must be in [1, num_classes={num_classes}]. "
                f"Received: top_k={top_k}"
            )
        if cam_class == "oracle":
            warnings.warn(
                "ActionAwareHead(cam_class='oracle') builds the class activation map "
                "from the TRUE label: on test clips this leaks the answer into the "
                "action-aware features. Use cam_class='predicted' unless reproducing "
                "the authors' numbers.",
                stacklevel=2,
            )
        super().__init__(
            num_classes, fc_units, width, dropout, conv5_3, input_scale, name, **kwargs
        )
        self.cam_filters = int(cam_filters)
        self.cam_class = cam_class
        self.top_k = int(top_k)
        self.cam_normalization = cam_normalization
        self.cam_conv = vgg16_conv("cam_conv", self.cam_filters)
        self.cam_pool = keras.layers.GlobalAveragePooling2D(name="cam_pool")
        self.cam_classifier = fast_ops.Dense(self.num_classes, name="cam_classifier")
        self.cam_map = ClassActivationMap(
            top_k=self.top_k if cam_class == "top_k" else 1, name="cam_map"
        )
        self.make_top(weights)

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["maps"]
        super().build(input_shape)
        conv5_3 = self.block5_conv3.compute_output_shape(tuple(input_shape))
        self.cam_conv.build(conv5_3)
        self.cam_classifier.build((None, self.cam_filters))

    def _split_inputs(self, inputs, labels):
        if isinstance(inputs, dict):
            if "maps" not in inputs:
                raise ValueError(
                    f"{self.name} takes conv5_2 maps or a dict with keys 'maps' (and "
                    f"'labels'). Received keys: {sorted(inputs)}"
                )
            labels = inputs.get("labels", labels)
            inputs = inputs["maps"]
        if self.cam_class != "oracle":
            return inputs, None
        if labels is None:
            raise ValueError(
                f"{self.name} has cam_class='oracle': pass the true labels, "
                "{'maps': x, 'labels': y} or features(x, labels=y)."
            )
        labels = ops.convert_to_tensor(labels)
        if len(labels.shape) == 2:  # one-hot
            labels = ops.argmax(labels, axis=-1)
        return inputs, ops.cast(labels, "int32")

    def endpoints(self, inputs, labels=None, training=None):
        """Every intermediate output: `"conv5_3"` (b, h, w, C), `"cam_features"`
        (b, h, w, cam_filters), `"cam_scores"` `S_k` (b, N) and `"cam_probs"`, `"cam"`
        `M_k` (b, h, w), `"mask"` (b, h, w, gradient stopped), `"masked"` `A_k`
        (b, h, w, C), `"fc7"` (b, fc_units), `"probs"` (b, N)."""
        maps, labels = self._split_inputs(inputs, labels)
        conv5_3 = self.block5_conv3(maps * self.input_scale)
        cam_features = self.cam_conv(conv5_3)
        cam_scores = self.cam_classifier(self.cam_pool(cam_features))
        k = {"scores": cam_scores} if labels is None else {"classes": labels}
        cam = self.cam_map(cam_features, self.cam_classifier.kernel, **k)
        mask = ops.relu(cam)
        if self.cam_normalization == "max":
            peak = ops.max(mask, axis=(1, 2), keepdims=True)  # (b, 1, 1)
            mask = mask / (peak + keras.config.epsilon())
        mask = ops.stop_gradient(mask)  # a fixed input to the masked path ("Training")
        masked = conv5_3 * ops.expand_dims(mask, -1)  # Eq. 3, (b, h, w, C)
        fc7, probs = self.top(masked, training=training)
        return {
            "conv5_3": conv5_3, "cam_features": cam_features, "cam_scores": cam_scores,
            "cam_probs": ops.softmax(cam_scores, axis=-1), "cam": cam, "mask": mask,
            "masked": masked, "fc7": fc7, "probs": probs,
        }  # fmt: skip

    def call(self, inputs, training=None):
        out = self.endpoints(inputs, training=training)
        return {"cam": out["cam_probs"], "action": out["probs"]}

    def features(self, inputs, labels=None):
        """`"fc7"`, `"cam_scores"`, `"mask"` and `"probs"` of `endpoints`, inference."""
        out = self.endpoints(inputs, labels=labels, training=False)
        return {k: out[k] for k in ("fc7", "cam_scores", "mask", "probs")}

    def activation_maps(self, inputs, labels=None):
        """Maps for a Fig. 7 visualisation: `{"conv5_3": (b, h, w, C), "cam": M_k
        (b, h, w), "masked": A_k (b, h, w, C)}` (the paper averages over channels)."""
        out = self.endpoints(inputs, labels=labels, training=False)
        return {k: out[k] for k in ("conv5_3", "cam", "masked")}

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["maps"]
        shape = (input_shape[0], self.num_classes)
        return {"cam": shape, "action": shape}

    def get_config(self):
        keys = ("cam_filters", "cam_class", "top_k", "cam_normalization")
        return {**super().get_config(), **{k: getattr(self, k) for k in keys}}
