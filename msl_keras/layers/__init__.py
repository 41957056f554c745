"""Layers: the class activation map (Eq. 2) and temporal average pooling."""

from msl_keras.layers.class_activation_map import ClassActivationMap
from msl_keras.layers.temporal_average_pooling import TemporalAveragePooling

__all__ = ["ClassActivationMap", "TemporalAveragePooling"]
