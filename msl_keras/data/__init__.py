"""Data: dataset readers, video decoding, augmentation, pipelines and feature stores.

One module per idea; the TensorFlow-based ones (`preprocessing`, `augment`,
`pipelines`, `trunk_cache`) are imported from their modules directly.
"""

from msl_keras.data.feature_store import FeatureStore, StoreSettings, merge_stores
from msl_keras.data.generated import generate_dataset, read_generated
from msl_keras.data.jhmdb import read_jhmdb
from msl_keras.data.records import ClipRecord, by_role, carve_validation
from msl_keras.data.ucf101 import read_ucf101
from msl_keras.data.ut_interaction import read_ut_interaction, ut_interaction_folds
from msl_keras.data.video import count_frames, read_clip, read_frames, select_frames

__all__ = [
    "ClipRecord",
    "FeatureStore",
    "StoreSettings",
    "by_role",
    "carve_validation",
    "count_frames",
    "generate_dataset",
    "merge_stores",
    "read_clip",
    "read_frames",
    "read_generated",
    "read_jhmdb",
    "read_ucf101",
    "read_ut_interaction",
    "select_frames",
    "ut_interaction_folds",
]
