"""One trunk pass feeding both streams: per-frame context- and action-aware features."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.precision import set_compute_dtype
from msl_keras.models.vgg16_trunk import VGG16Trunk, resolve_weights

# The outputs of `call` and `extract`.
OUTPUTS = ("context", "action", "cam_scores", "context_probs", "action_probs")
PARTS = ("trunk", "context_head", "action_head")


@keras.saving.register_keras_serializable(package="msl_keras")
class TwoStreamFeatureExtractor(keras.Model):
    """The two-stream network of Fig. 3: shared VGG-16 trunk, context and action heads.

    Each frame goes through the trunk (a `VGG16Trunk` or any model mapping frames to
    conv5_2 maps) once; both heads read its output, and their fc7 are the context- and
    action-aware features (Sec. 3.2.1). `compute_dtype`: see `set_compute_dtype`; the
    outputs are float32 either way.

    Call: `(batch, height, width, 3)` preprocessed float32 frames, or `{"frames": ...,
    "labels": (batch,)}` for an action head with `cam_class="oracle"` ->
    `{"context": (batch, Dc), "action": (batch, Da), "cam_scores": (batch, N),
    "context_probs": (batch, N), "action_probs": (batch, N)}`.

    >>> build_feature_extractor(101, weights="imagenet").extract(frames)["context"]
    """

    def __init__(
        self, trunk, context_head, action_head, compute_dtype="float32",
        name="feature_extractor", **kwargs,
    ):  # fmt: skip
        super().__init__(name=name, **kwargs)
        self.trunk = trunk
        self.context_head = context_head
        self.action_head = action_head
        self.context_dim = context_head.fc_units  # Dc
        self.action_dim = action_head.fc_units  # Da
        self.num_classes = context_head.num_classes
        self._extract_fns = {}
        self.compute_dtype_name = "float32"
        if compute_dtype != "float32":
            self.set_compute_dtype(compute_dtype)

    def set_compute_dtype(self, compute_dtype):
        """Runs the trunk and both heads in `"float32"`, `"bfloat16"` or `"float16"`
        (variables stay float32). bfloat16 extraction runs about 2x faster on CPUs
        with AVX512-BF16 / AMX; the features differ from float32 by about 1% and the
        CAM's arg-max class can flip where two classes score within that margin
        (RESULTS.md). Use float32 to reproduce numbers exactly."""
        for part in PARTS:
            set_compute_dtype(getattr(self, part), compute_dtype)
        self.compute_dtype_name = compute_dtype
        self._extract_fns = {}  # traced for the previous dtype

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["frames"]
        if not self.trunk.built:
            self.trunk.build(input_shape)
        maps = self.trunk.compute_output_shape(input_shape)
        for head in (self.context_head, self.action_head):
            if not head.built:
                head.build(maps)

    def call(self, inputs, training=None):
        labels = None
        if isinstance(inputs, dict):
            labels = inputs.get("labels")
            inputs = inputs["frames"]
        maps = self.trunk(inputs, training=training)  # (b, H/16, W/16, C), once
        return self.heads(maps, labels=labels, training=training)

    def heads(self, maps, labels=None, training=None):
        """Both heads on conv5_2 maps `(b, H/16, W/16, C)`; the outputs of `call`."""
        context = self.context_head.endpoints(maps, training=training)
        action = self.action_head.endpoints(maps, labels=labels, training=training)
        outputs = {
            "context": context["fc7"],
            "action": action["fc7"],
            "cam_scores": action["cam_scores"],
            "context_probs": context["probs"],
            "action_probs": action["probs"],
        }
        return {k: ops.cast(v, "float32") for k, v in outputs.items()}  # any dtype

    def _extract_fn(self, with_labels, from_maps=False):
        """A tf.function with a fixed signature (any batch size): traced once."""
        # String keys: a SavedModel export walks this dict, and only saves str keys.
        key = "maps" if from_maps else "frames"
        key += "_and_labels" if with_labels else ""
        if key not in self._extract_fns:
            shape = self.trunk.output_shape if from_maps else self.trunk.input_shape
            signature = [tf.TensorSpec((None,) + tuple(shape[1:]), tf.float32)]
            signature += [tf.TensorSpec((None,), tf.int32)] if with_labels else []

            def features(inputs, labels=None):
                if from_maps:
                    return self.heads(inputs, labels=labels, training=False)
                if labels is not None:
                    inputs = {"frames": inputs, "labels": labels}
                return self(inputs, training=False)

            self._extract_fns[key] = tf.function(features, input_signature=signature)
        return self._extract_fns[key]

    def extract(self, frames, labels=None, batch_size=32, from_maps=False):
        """The outputs of `call` for `(n, height, width, 3)` preprocessed `frames`, or
        with `from_maps` their conv5_2 maps `(n, h, w, C)` (the trunk is skipped), as
        numpy float32 `(n, ...)`. `labels`: `(n,)` true classes, for `"oracle"` only."""
        frames = np.asarray(frames, dtype=np.float32)
        oracle = self.action_head.cam_class == "oracle"
        if oracle and labels is None:
            raise ValueError(
                "The action head uses cam_class='oracle': pass extract(frames, "
                "labels=...) or build it with cam_class='predicted'."
            )
        if not self.built:
            self.build((None,) + tuple(self.trunk.input_shape[1:]))
        if not len(frames):
            dims = {"context": self.context_dim, "action": self.action_dim}
            return {
                k: np.zeros((0, dims.get(k, self.num_classes)), np.float32)
                for k in OUTPUTS
            }
        fn = self._extract_fn(oracle, from_maps)
        arrays = [frames, np.asarray(labels).astype(np.int32)] if oracle else [frames]
        # Not `self.predict`: on 320 frames of a width-1/4 trunk (same runs) it gave the
        # same numbers in 0.9-1.3x this loop's time, and 2-3x with oracle labels.
        chunks = [
            fn(*[tf.constant(a[start : start + batch_size]) for a in arrays])
            for start in range(0, len(frames), batch_size)
        ]
        return {k: np.concatenate([c[k].numpy() for c in chunks]) for k in chunks[0]}

    def get_config(self):
        config = super().get_config()
        for part in PARTS:
            config[part] = keras.saving.serialize_keras_object(getattr(self, part))
        return {**config, "compute_dtype": self.compute_dtype_name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in PARTS:
            config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)


def build_feature_extractor(
    num_classes, input_shape=(224, 224, 3), width=1.0, fc_units=4096, cam_filters=1024,
    weights=None, cam_class="predicted", top_k=3, cam_normalization="max", dropout=0.5,
    compute_dtype="float32",
):  # fmt: skip
    """A built `TwoStreamFeatureExtractor`: the trunk and each head's conv5_3 start
    from `weights` (`None`, `"imagenet"` or an `.h5` path, read once); the other
    arguments are `VGG16Trunk`'s, the heads' (both get `fc_units`, `Dc = Da`, and
    `dropout`) and the extractor's."""
    path = resolve_weights(weights, width)  # fetched (ImageNet) once for all three
    trunk = VGG16Trunk(input_shape=input_shape, width=width, weights=path)
    shared = dict(fc_units=fc_units, width=width, dropout=dropout, weights=path)
    context_head = ContextAwareHead(num_classes, **shared)
    action_head = ActionAwareHead(
        num_classes, cam_filters=cam_filters, cam_class=cam_class, top_k=top_k,
        cam_normalization=cam_normalization, **shared,
    )  # fmt: skip
    extractor = TwoStreamFeatureExtractor(
        trunk, context_head, action_head, compute_dtype=compute_dtype
    )
    extractor.build((None,) + tuple(input_shape))
    return extractor
