"""One trunk pass feeding both streams: per-frame context- and action-aware features."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.precision import check_compute_dtype, set_compute_dtype
from msl_keras.models.vgg16_trunk import VGG16Trunk, resolve_weights


@keras.saving.register_keras_serializable(package="msl_keras")
class TwoStreamFeatureExtractor(keras.Model):
    """The two-stream network of Fig. 3: shared VGG-16 trunk, context and action heads.

    Each frame goes through the trunk once (conv5_2); both heads read that output.
    The context-aware feature is the context head's fc7, the action-aware feature the
    action head's fc7 (Sec. 3.2.1).

    Args:
        trunk: a `VGG16Trunk` (or any model mapping frames to conv5_2 maps).
        context_head: a `ContextAwareHead`.
        action_head: an `ActionAwareHead`.
        compute_dtype: `"float32"` (default), `"bfloat16"` or `"float16"`: the
            precision the convolutions and matmuls run in (`set_compute_dtype`); the
            weights stay float32 and the features come out as float32 either way.
        name: model name.

    Call arguments:
        frames: `(batch, height, width, 3)` float32 frames, preprocessed (Keras VGG-16
            "caffe" mode), or `{"frames": ..., "labels": (batch,)}` when the action
            head uses `cam_class="oracle"`.

    Returns:
        `{"context": (batch, Dc), "action": (batch, Da), "cam_scores": (batch, N),
        "context_probs": (batch, N), "action_probs": (batch, N)}`.

    Example:

    >>> extractor = build_feature_extractor(num_classes=101, weights="imagenet")
    >>> out = extractor.extract(frames)  # numpy arrays, one trunk pass
    >>> out["context"].shape, out["action"].shape  # (n, 4096), (n, 4096)
    """

    def __init__(
        self,
        trunk,
        context_head,
        action_head,
        compute_dtype="float32",
        name="feature_extractor",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.trunk = trunk
        self.context_head = context_head
        self.action_head = action_head
        self._extract_fns = {}
        self.compute_dtype_name = "float32"
        if compute_dtype != "float32":
            self.set_compute_dtype(compute_dtype)

    def set_compute_dtype(self, compute_dtype):
        """Runs the trunk and both heads in `"float32"`, `"bfloat16"` or `"float16"`.

        Every layer gets the Keras policy of `compute_dtype`
        (`msl_keras.models.precision.set_compute_dtype`): variables stay float32
        (nothing is lost from trained weights, and the switch is reversible),
        activations and matmuls run in the lower precision (bfloat16: 8 bits of
        mantissa, float32 accumulation on CPUs with AVX512-BF16 / AMX and on GPUs).
        Extraction runs about 2x faster on such CPUs and much faster on tensor-core
        GPUs; the features differ from float32 by about 1% (relative), and the CAM's
        arg-max class can flip where two classes score within that margin (RESULTS.md
        measures both with trained heads). Use float32 to reproduce numbers exactly.

        Args:
            compute_dtype: one of `precision.COMPUTE_DTYPES`.
        """
        check_compute_dtype(compute_dtype)
        for model in (self.trunk, self.context_head, self.action_head):
            set_compute_dtype(model, compute_dtype)
        self.compute_dtype_name = compute_dtype
        self._extract_fns = {}  # traced for the previous dtype

    @property
    def context_dim(self):
        """Size `Dc` of the context-aware feature (the context head's fc7)."""
        return self.context_head.fc_units

    @property
    def action_dim(self):
        """Size `Da` of the action-aware feature (the action head's fc7)."""
        return self.action_head.fc_units

    @property
    def num_classes(self):
        return self.context_head.num_classes

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["frames"]
        if not self.trunk.built:
            self.trunk.build(input_shape)
        maps = self.trunk.compute_output_shape(input_shape)
        if not self.context_head.built:
            self.context_head.build(maps)
        if not self.action_head.built:
            self.action_head.build(maps)
        self.built = True

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
        if self.compute_dtype_name != "float32":
            outputs = {k: ops.cast(v, "float32") for k, v in outputs.items()}
        return outputs

    def _extract_fn(self, with_labels, from_maps=False):
        """A tf.function with a fixed signature (any batch size): traced once."""
        # String keys: a SavedModel export walks this dict, and only saves str keys.
        key = ("maps" if from_maps else "frames") + ("_and_labels" if with_labels else "")
        if key not in self._extract_fns:
            model = self.trunk
            shape = tuple(model.output_shape[1:] if from_maps else model.input_shape[1:])
            inputs_spec = tf.TensorSpec((None,) + shape, tf.float32)

            def features(inputs, labels=None):
                if from_maps:
                    return self.heads(inputs, labels=labels, training=False)
                if labels is None:
                    return self(inputs, training=False)
                return self({"frames": inputs, "labels": labels}, training=False)

            if with_labels:
                extract_fn = features
                signature = [inputs_spec, tf.TensorSpec((None,), tf.int32)]
            else:

                def extract_fn(inputs):
                    return features(inputs)

                signature = [inputs_spec]
            self._extract_fns[key] = tf.function(
                extract_fn, input_signature=signature, reduce_retracing=True
            )
        return self._extract_fns[key]

    def extract(self, frames, labels=None, batch_size=32, from_maps=False):
        """Features of many frames, in batches of `batch_size`, as numpy arrays.

        Args:
            frames: `(n, height, width, 3)` preprocessed float32 frames, or with
                `from_maps=True` the trunk's conv5_2 maps of them `(n, h, w, C)` (e.g.
                from the trunk cache; the trunk is then skipped).
            labels: `(n,)` int true classes; only used (and required) when the action
                head has `cam_class="oracle"`.
            batch_size: frames per trunk pass.
            from_maps: bool, see `frames`.

        Returns:
            dict of numpy float32 arrays, keys as `call`: `"context"` (n, Dc),
            `"action"` (n, Da), `"cam_scores"` (n, N), `"context_probs"` (n, N),
            `"action_probs"` (n, N).
        """
        frames = np.asarray(frames, dtype=np.float32)
        oracle = self.action_head.cam_class == "oracle"
        if oracle and labels is None:
            raise ValueError(
                "The action head uses cam_class='oracle': pass extract(frames, "
                "labels=...) or build it with cam_class='predicted'."
            )
        if not self.built:
            self.build((None,) + tuple(self.trunk.input_shape[1:]))
        fn = self._extract_fn(oracle, from_maps)
        chunks = []
        for start in range(0, len(frames), batch_size):
            batch = tf.constant(frames[start : start + batch_size])
            if oracle:
                lab = tf.constant(
                    np.asarray(labels)[start : start + batch_size], tf.int32
                )
                out = fn(batch, lab)
            else:
                out = fn(batch)
            chunks.append({k: v.numpy() for k, v in out.items()})
        if not chunks:
            n = self.num_classes
            dims = {"context": self.context_dim, "action": self.action_dim}
            return {
                k: np.zeros((0, dims.get(k, n)), np.float32)
                for k in (
                    "context",
                    "action",
                    "cam_scores",
                    "context_probs",
                    "action_probs",
                )
            }
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "trunk": keras.saving.serialize_keras_object(self.trunk),
                "context_head": keras.saving.serialize_keras_object(self.context_head),
                "action_head": keras.saving.serialize_keras_object(self.action_head),
                "compute_dtype": self.compute_dtype_name,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("trunk", "context_head", "action_head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def build_feature_extractor(
    num_classes,
    input_shape=(224, 224, 3),
    width=1.0,
    fc_units=4096,
    cam_filters=1024,
    weights=None,
    cam_class="predicted",
    top_k=3,
    cam_normalization="max",
    dropout=0.5,
    compute_dtype="float32",
):
    """Builds trunk + both heads, the trunk and each head's conv5_3 from `weights`.

    Args:
        num_classes: int, number of actions.
        input_shape: `(height, width, 3)` of the preprocessed frames.
        width: float, VGG-16 width factor (1.0 for the paper and ImageNet weights).
        fc_units: units of fc6/fc7 in both heads (feature sizes `Dc = Da`).
        cam_filters: filters of the action head's CAM convolution.
        weights: `None`, `"imagenet"` or an `.h5` path, read once for trunk and heads.
        cam_class, top_k, cam_normalization: see `ActionAwareHead`.
        dropout: dropout after fc6 and fc7 in both heads.
        compute_dtype: `"float32"`, `"bfloat16"` or `"float16"`, see
            `TwoStreamFeatureExtractor.set_compute_dtype`.

    Returns:
        A built `TwoStreamFeatureExtractor`.
    """
    path = resolve_weights(weights, width)  # fetched (ImageNet) once for all three parts
    trunk = VGG16Trunk(input_shape=input_shape, width=width, weights=path)
    context_head = ContextAwareHead(
        num_classes, fc_units=fc_units, width=width, dropout=dropout, weights=path
    )
    action_head = ActionAwareHead(
        num_classes,
        fc_units=fc_units,
        cam_filters=cam_filters,
        width=width,
        dropout=dropout,
        cam_class=cam_class,
        top_k=top_k,
        cam_normalization=cam_normalization,
        weights=path,
    )
    extractor = TwoStreamFeatureExtractor(
        trunk, context_head, action_head, compute_dtype=compute_dtype
    )
    extractor.build((None,) + tuple(input_shape))
    return extractor
