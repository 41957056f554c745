"""Models: VGG-16 trunk, context- and action-aware heads, extractor, LSTMs."""

from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.feature_extractor import (
    TwoStreamFeatureExtractor, build_feature_extractor,
)  # fmt: skip
from msl_keras.models.ms_lstm import MultiStageLSTM, SingleStageLSTM
from msl_keras.models.streaming import StreamingStep
from msl_keras.models.vgg16_trunk import (
    VGG16_NOTOP_FILENAME, VGG16Trunk, imagenet_weights_path, load_top_weights,
    load_vgg16_weights, resolve_top_weights,
)  # fmt: skip

__all__ = [
    "VGG16_NOTOP_FILENAME", "ActionAwareHead", "ContextAwareHead", "MultiStageLSTM",
    "SingleStageLSTM", "StreamingStep", "TwoStreamFeatureExtractor", "VGG16Trunk",
    "build_feature_extractor", "imagenet_weights_path", "load_top_weights",
    "load_vgg16_weights", "resolve_top_weights",
]  # fmt: skip
