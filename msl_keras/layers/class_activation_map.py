"""Class activation maps (Zhou et al., CVPR 2016), as used by the paper's Eq. 2."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="msl_keras")
class ClassActivationMap(keras.layers.Layer):
    """Class activation map `M_k(x, y) = sum_l w_l^k f_l(x, y)` (paper Eq. 2).

    `f_l` are the maps of the convolution that feeds the global average pool and `w^k`
    is column `k` of the kernel of the linear classifier after the pool (its bias is not
    part of the map; the layer has no weights). The class is given (`classes`, e.g. the
    true label) or chosen from the classifier's `scores`: with `top_k=1` the map of the
    arg-max class, as is (it can be negative; the action head applies the ReLU of Eq.
    3); with `top_k>1` `sum_{k in top-k} ReLU(M_k)`, so no single wrong guess decides.

    Call: `feature_maps` `(batch, height, width, units)` (`f_l(x, y)`), `class_weights`
    `(units, num_classes)` (`w_l^k`) and exactly one of `classes` `(batch,)` ints and
    `scores` `(batch, num_classes)` (only their order is used) -> `(batch, height,
    width)` maps.
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
                "Pass exactly one of `classes` (batch,) and `scores` "
                "(batch, num_classes) to ClassActivationMap. Received: "
                f"classes={classes}, scores={scores}"
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
        return {**super().get_config(), "top_k": self.top_k}
