"""The authors' per-frame feature extraction, reimplemented for the speed benchmark.

What their code did for every frame of every clip (docs/original-code.md):

1. decode one frame, resize it and subtract the mean on the host (batch of 1);
2. run the context-aware model, a FULL VGG-16 (conv1_1 .. fc8), and keep fc7;
3. run the action-aware model, a SECOND full VGG-16 conv stack with its own weights
   plus the CAM convolution (1024 filters), global average pool and classifier, and
   fetch conv5_3, the CAM maps and the class scores to the host;
4. build the class activation map with a Python loop over the 1,024 CAM channels,
   `cam += w[l, k] * f[:, :, l]`, in numpy;
5. mask conv5_3 with ReLU(cam) in numpy and run the action model's pool5 -> fc6 -> fc7
   on it (a third model call), keep fc7.

Two differences, both in the original's favour: the CAM's class k is the model's own
prediction (theirs used the true label, a leak, not a speed matter) and every model
call is `predict_on_batch` (theirs called `predict`, whose per-call overhead in Keras 3
is larger still). The defects that only change numbers (zero-padded 14x14 average pool,
swapped `cap.read()`) are not reproduced. `OriginalExtractor.from_extractor(ours)`
copies our `TwoStreamFeatureExtractor`'s weights, so only the scheme differs.
"""

import cv2
import keras
import numpy as np

from msl_keras.data.preprocessing import IMAGENET_MEAN_BGR
from msl_keras.models.vgg16_trunk import VGG16_BLOCKS, scaled_filters

FC = ("block5_conv3", "fc6", "fc7", "fc8")  # what a head copies into a model's top


def _conv_stack(x, width):
    """VGG-16 conv1_1 .. conv5_3 (no pool5), Keras' layer names."""
    for block, convs, filters in VGG16_BLOCKS:
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                scaled_filters(filters, width),
                3,
                padding="same",
                activation="relu",
                name=f"block{block}_conv{conv}",
            )(x)
        if block < 5:
            x = keras.layers.MaxPooling2D(2, 2, name=f"block{block}_pool")(x)
    return x


def _fc_top(x, fc_units, num_classes):
    """pool5 -> flatten -> fc6 -> fc7 (-> fc8): returns (fc7, probs)."""
    x = keras.layers.MaxPooling2D(2, 2, name="block5_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc6")(x)
    fc7 = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="fc8")(fc7)
    return fc7, probs


class OriginalExtractor:
    """Per-frame, two-model feature extraction as the authors' code did it.

    Args:
        image: input side (224).
        width: VGG-16 width factor.
        fc_units: fc6/fc7 units of both models.
        cam_filters: filters of the CAM convolution (1024).
        num_classes: N.

    `extract(frames uint8 (n, H, W, 3))` -> `{"context": (n, fc), "action": (n, fc)}`.
    """

    def __init__(self, image, width, fc_units, cam_filters, num_classes):
        self.image = int(image)
        self.cam_filters = int(cam_filters)
        shape = (self.image, self.image, 3)

        # The context-aware model: a whole VGG-16 with its fc layers.
        inputs = keras.Input(shape)
        fc7, probs = _fc_top(_conv_stack(inputs, width), fc_units, num_classes)
        self.context_model = keras.Model(inputs, [fc7, probs], name="context_vgg16")

        # The action-aware model: a second whole conv stack + the CAM branch.
        inputs = keras.Input(shape)
        conv5_3 = _conv_stack(inputs, width)
        cam_maps = keras.layers.Conv2D(
            cam_filters, 3, padding="same", activation="relu", name="cam_conv"
        )(conv5_3)
        pooled = keras.layers.GlobalAveragePooling2D(name="cam_pool")(cam_maps)
        scores = keras.layers.Dense(num_classes, name="cam_classifier")(pooled)
        self.action_conv_model = keras.Model(
            inputs, [conv5_3, cam_maps, scores], name="action_vgg16"
        )
        # ... and its fc part, run on the masked conv5_3.
        masked = keras.Input(conv5_3.shape[1:])
        fc7, probs = _fc_top(masked, fc_units, num_classes)
        self.action_fc_model = keras.Model(masked, [fc7, probs], name="action_fc")
        self.cam_weights = self.action_conv_model.get_layer("cam_classifier").kernel

    @classmethod
    def from_extractor(cls, extractor):
        """The original scheme holding the weights of a `TwoStreamFeatureExtractor`:
        the trunk's weights go into both conv stacks, each head's conv5_3, fc6-fc8 (and
        the CAM branch) into its model."""
        head_a, head_c = extractor.action_head, extractor.context_head
        original = cls(
            extractor.trunk.image_shape[0],
            extractor.trunk.width,
            head_c.fc_units,
            head_a.cam_filters,
            head_c.num_classes,
        )
        copies = [
            (layer, model)
            for layer in extractor.trunk.layers
            if layer.weights
            for model in (original.context_model, original.action_conv_model)
        ]
        copies += [(getattr(head_c, name), original.context_model) for name in FC]
        copies += [
            (getattr(head_a, name), original.action_conv_model)
            for name in ("block5_conv3", "cam_conv", "cam_classifier")
        ]
        copies += [(getattr(head_a, name), original.action_fc_model) for name in FC[1:]]
        for layer, model in copies:
            model.get_layer(layer.name).set_weights(layer.get_weights())
        return original

    def preprocess(self, frame):
        """One uint8 RGB frame -> (1, S, S, 3) BGR mean-subtracted, with OpenCV."""
        x = cv2.resize(frame, (self.image, self.image), interpolation=cv2.INTER_LINEAR)
        x = x[..., ::-1].astype(np.float32) - np.asarray(IMAGENET_MEAN_BGR, np.float32)
        return x[None]

    def class_activation_map(self, cam_maps, k):
        """Eq. 2 the original way: a Python loop over the CAM channels."""
        weights = np.asarray(self.cam_weights)
        cam = np.zeros(cam_maps.shape[:2], dtype=np.float32)
        for channel in range(self.cam_filters):
            cam += weights[channel, k] * cam_maps[:, :, channel]
        return cam

    def features(self, x):
        """fc7 of both models for one preprocessed frame `(1, S, S, 3)`."""
        context, _ = self.context_model.predict_on_batch(x)
        conv5_3, cam_maps, scores = self.action_conv_model.predict_on_batch(x)
        k = int(np.argmax(scores[0]))
        cam = self.class_activation_map(cam_maps[0], k)
        masked = conv5_3 * np.maximum(cam, 0.0)[None, :, :, None]
        action, _ = self.action_fc_model.predict_on_batch(masked)
        return context[0], action[0]

    def extract(self, frames):
        context, action = zip(*(self.features(self.preprocess(f)) for f in frames))
        return {"context": np.stack(context), "action": np.stack(action)}
