"""Tiny generated clips and a tiny config shared by the stage tests (prepare, train_cnn, extract)."""

from msl_keras.config import apply_overrides, get_preset
from msl_keras.data.generated import generate_dataset

# 3 classes x 3 groups, one clip per class and group: 3 train, 3 validation, 3 test clips
# of 6-8 frames at 32x24.
TINY_DATASET = {
    "num_classes": 3,
    "clips_per_class": 3,
    "num_frames": 8,
    "frame_size": (32, 24),
    "num_groups": 3,
    "seed": 0,
}


def make_tiny_dataset(root):
    return generate_dataset(root, **TINY_DATASET)


def tiny_config(data_root, output_dir, **overrides):
    """The demo preset shrunk to input 32, width 1/32, fc 8, CAM 4 filters, T 6."""
    settings = {
        "data.root": str(data_root),
        "data.num_steps": 6,
        "cnn.input_size": 32,
        "cnn.width": 1 / 32,
        "cnn.fc_units": 8,
        "cnn.cam_filters": 4,
        "cnn.frames_per_clip": 3,
        "cnn.augment_views": 2,
        "cnn.epochs": 2,
        "cnn.batch_size": 8,
        "output_dir": str(output_dir),
    }
    settings.update(overrides)
    return apply_overrides(get_preset("demo"), settings)
