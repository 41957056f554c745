"""The authors' per-frame feature extraction, reimplemented for the speed benchmark.

Per frame, as their code did: host-side OpenCV preprocessing (batch of 1), a full
VGG-16 for the context fc7, a second VGG-16 conv stack with the CAM branch, the class
activation map as a Python loop over the CAM channels, and the masked conv5_3 through
a third model for the action fc7. In its favour: the CAM's class is the model's own
prediction (theirs: the true label) and every call is `predict_on_batch` (theirs:
`predict`, slower still). Defects that only change numbers are not reproduced.
"""

import cv2
import keras
import numpy as np

from msl_keras.data.preprocessing import IMAGENET_MEAN_BGR
from msl_keras.models.vgg16_trunk import VGG16Trunk, vgg16_conv

FC = ("block5_conv3", "fc6", "fc7", "fc8")  # what a head copies into a model's top


def _fc_top(x, fc_units, num_classes):
    """pool5 -> flatten -> fc6 -> fc7 (-> fc8): returns (fc7, probs)."""
    x = keras.layers.MaxPooling2D(2, 2, name="block5_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc6")(x)
    fc7 = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="fc8")(fc7)
    return fc7, probs


class OriginalExtractor:
    """Per-frame, two-model feature extraction as the authors' code did it (frames of
    side `image`, VGG-16 `width`, `fc_units` in fc6/fc7, `cam_filters` in the CAM conv):
    `extract(frames uint8 (n, H, W, 3))` -> `{"context": (n, fc), "action": (n, fc)}`.
    """

    def __init__(self, image, width, fc_units, cam_filters, num_classes):
        self.image = int(image)
        self.cam_filters = int(cam_filters)
        shape = (self.image, self.image, 3)

        # The context-aware model: a whole VGG-16 (conv1_1 .. conv5_3) with its fc
        # layers (a model on a trunk's input and output holds its layers, by name).
        stack = VGG16Trunk(shape, width, include_conv5_3=True)
        outputs = list(_fc_top(stack.output, fc_units, num_classes))
        self.context_model = keras.Model(stack.input, outputs, name="context_vgg16")

        # The action-aware model: a second whole conv stack + the CAM branch.
        stack = VGG16Trunk(shape, width, include_conv5_3=True)
        conv5_3 = stack.output
        cam_maps = vgg16_conv("cam_conv", cam_filters)(conv5_3)
        pooled = keras.layers.GlobalAveragePooling2D(name="cam_pool")(cam_maps)
        scores = keras.layers.Dense(num_classes, name="cam_classifier")(pooled)
        self.action_conv_model = keras.Model(
            stack.input, [conv5_3, cam_maps, scores], name="action_vgg16"
        )
        # ... and its fc part, run on the masked conv5_3.
        masked = keras.Input(conv5_3.shape[1:])
        fc7, probs = _fc_top(masked, fc_units, num_classes)
        self.action_fc_model = keras.Model(masked, [fc7, probs], name="action_fc")
        self.cam_weights = self.action_conv_model.get_layer("cam_classifier").kernel

    @classmethod
    def from_extractor(cls, extractor):
        """The original scheme holding the weights of a `TwoStreamFeatureExtractor`
        (the trunk's in both conv stacks)."""
        trunk, head_c = extractor.trunk, extractor.context_head
        head_a = extractor.action_head
        sizes = (trunk.image_shape[0], trunk.width, head_c.fc_units, head_a.cam_filters)
        original = cls(*sizes, head_c.num_classes)
        stacks = (original.context_model, original.action_conv_model)
        copies = [(layer, m) for layer in trunk.layers if layer.weights for m in stacks]
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
