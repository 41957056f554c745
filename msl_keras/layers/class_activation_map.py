"""Class activation maps (Zhou et al., CVPR 2016), as used by the paper's Eq. 2."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="msl_keras")
class ClassActivationMap(keras.layers.Layer):
    """Class activation map `M_k(x, y) = sum_l w_l^k f_l(x, y)` (paper Eq. 2).

    `f_l` are the maps of the last convolutional layer (the one that feeds the global
    average pool) and `w^k` is column `k` of the kernel of the linear classifier that
    follows the pool, so `S_k = sum_l w_l^k F_l` with `F_l` the pooled unit `l`. The
    classifier bias is not part of the map.

    The class is either given (`classes`, e.g. the true label) or chosen from the
    classifier's scores (`scores`): with `top_k=1` the map of the arg-max class is
    returned as is (it can be negative; the action-aware head applies the ReLU of Eq. 3);
    with `top_k>1` the maps of the `top_k` best-scored classes are summed after a ReLU,
    `sum_{k in top-k} ReLU(M_k)`, so no single wrong guess decides the mask.

    The layer has no weights of its own: the classifier kernel is passed in.

    Args:
        top_k: int >= 1, how many of the best-scored classes are combined when `scores`
            is given. Ignored when `classes` is given.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        feature_maps: `(batch, height, width, units)` activations `f_l(x, y)`.
        class_weights: `(units, num_classes)` classifier kernel `w_l^k`.
        classes: optional `(batch,)` integer class per sample.
        scores: optional `(batch, num_classes)` classifier scores (logits or
            probabilities; only their order is used). Exactly one of `classes` and
            `scores` must be given.

    Returns:
        `(batch, height, width)` map per sample.

    Example:

    >>> cam = ClassActivationMap(top_k=1)
    >>> maps = cam(f, classifier.kernel, scores=logits)  # (batch, 14, 14)
    """

    def __init__(self, top_k=1, **kwargs):
        super().__init__(**kwargs)
        if int(top_k) != top_k or top_k < 1:
            raise ValueError(
                f"`top_k` must be an integer >= 1. Received: top_k={top_k}"
            )
        self.top_k = int(top_k)

    def call(self, feature_maps, class_weights, classes=None, scores=None):
        if (classes is None) == (scores is None):
            raise ValueError(
                "Pass exactly one of `classes` (batch,) and `scores` (batch, num_classes) "
                f"to ClassActivationMap. Received: classes={classes}, scores={scores}"
            )
        feature_maps = ops.convert_to_tensor(feature_maps, dtype=self.compute_dtype)
        class_weights = ops.cast(class_weights, feature_maps.dtype)
        if classes is not None:
            classes = ops.cast(ops.reshape(classes, (-1,)), "int32")
            # (batch, units): the classifier column of each sample's class.
            weights = ops.transpose(ops.take(class_weights, classes, axis=1))
            return ops.einsum("bhwl,bl->bhw", feature_maps, weights)
        _, top = ops.top_k(scores, k=self.top_k, sorted=True)  # (batch, top_k)
        # (batch, top_k, units)
        weights = ops.transpose(ops.take(class_weights, top, axis=1), (1, 2, 0))
        maps = ops.einsum("bhwl,bkl->bhwk", feature_maps, weights)
        if self.top_k == 1:
            return maps[..., 0]
        return ops.sum(ops.relu(maps), axis=-1)

    def compute_output_shape(self, feature_maps_shape, *args, **kwargs):
        return tuple(feature_maps_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update({"top_k": self.top_k})
        return config
