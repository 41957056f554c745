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


def make_random_trained_run(tmp_path, class_names=("wave", "jump", "clap"), num_steps=5):
    """A run folder laid out as if trained, with random weights: fast, for predict/export.

    The trunk, both heads (saved where `train_cnn` saves them, with its `cnn_info.json`)
    and an MS-LSTM (`run.lstm_dir(fold)/best.keras` and its `config.json`) at input 32, width 1/32, fc 8,
    8 units. The LSTM's classifiers are scaled up so the probabilities move from frame
    to frame (random small weights leave them near 1/N).

    Returns:
        `(config, run)`.
    """
    import json

    from msl_keras.config import save_config
    from msl_keras.models.action_head import ActionAwareHead
    from msl_keras.models.context_head import ContextAwareHead
    from msl_keras.models.ms_lstm import MultiStageLSTM
    from msl_keras import runs
    from msl_keras.data.feature_store import weights_fingerprint
    from tests.lstm_fixtures import FOLD
    from tests.lstm_fixtures import tiny_config as lstm_config

    num_classes = len(class_names)
    config = lstm_config(
        tmp_path,
        **{
            "data.num_steps": num_steps,
            "cnn.input_size": 32,
            "cnn.width": 1 / 32,
            "cnn.cam_filters": 4,
            "cnn.weights": None,
        },
    )
    run = runs.RunDirectory.create(config)
    trunk = runs.build_trunk(config)
    trunk.save_weights(run.trunk_weights_path)
    maps = (None,) + tuple(trunk.output_shape[1:])
    cnn = config.cnn
    context = ContextAwareHead(
        num_classes, fc_units=cnn.fc_units, width=cnn.width, dropout=0.0
    )
    action = ActionAwareHead(
        num_classes,
        fc_units=cnn.fc_units,
        cam_filters=cnn.cam_filters,
        width=cnn.width,
        dropout=0.0,
    )
    context.build(maps)
    action.build(maps)
    cnn_dir = run.cnn_dir(FOLD)
    cnn_dir.mkdir(parents=True)
    context.save(cnn_dir / runs.CONTEXT_HEAD_FILENAME)
    action.save(cnn_dir / runs.ACTION_HEAD_FILENAME)
    run.cnn_info_path(FOLD).write_text(
        json.dumps(
            {
                "class_names": list(class_names),
                "trunk_fingerprint": weights_fingerprint(trunk),
            }
        )
    )
    lstm = MultiStageLSTM(num_classes, units=8, dropout=0.0)
    lstm.build({"context": (None, None, 8), "action": (None, None, 8)})
    for classifier in (lstm.stage1_classifier, lstm.stage2_classifier):
        classifier.kernel.assign(classifier.kernel * 8.0)
    lstm_dir = run.lstm_dir(FOLD)
    lstm_dir.mkdir(parents=True)
    lstm.save(lstm_dir / "best.keras")
    save_config(config, lstm_dir / "config.json")
    return config, run
