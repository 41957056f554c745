"""Tiny synthetic feature runs for the LSTM-stage tests: a FeatureStore, no CNN.

`make_feature_run(tmp_path)` writes a run directory whose fold "split1" has a feature store
of random, class-dependent features (so a few SGD epochs learn something), and returns the
config, the `DatasetIndex` and the `RunDirectory`.
"""

import numpy as np

from msl_keras.config import apply_overrides, get_preset
from msl_keras.data.feature_store import FeatureStore, StoreSettings
from msl_keras.data.records import ClipRecord
from msl_keras.runs import RunDirectory
from msl_keras.pipeline.dataset_index import DatasetIndex, Fold

FOLD = "split1"


def tiny_config(tmp_path, **overrides):
    settings = {
        "output_dir": str(tmp_path / "runs"),
        "data.num_steps": 6,
        "cnn.fc_units": 8,
        "lstm.units": 8,
        "lstm.dropout": 0.0,
        "lstm.epochs": 2,
        "lstm.batch_size": 8,
        "lstm.learning_rate": 0.5,
        "eval.top_k": 2,
    }
    settings.update(overrides)
    return apply_overrides(get_preset("demo"), settings)


def store_settings(config, num_classes, fold=FOLD, context_dim=None):
    return StoreSettings(
        dataset=config.data.dataset,
        split=fold,
        T=config.data.num_steps,
        frame_selection=config.data.frame_selection,
        observed_ratio=config.data.observed_ratio,
        input_size=(config.cnn.input_size, config.cnn.input_size),
        preprocessing="vgg16_caffe",
        extractor_fingerprint="synthetic",
        cam_class=config.cnn.cam_class,
        context_dim=context_dim or config.cnn.fc_units,
        action_dim=config.cnn.fc_units,
        num_classes=num_classes,
        dtype="float32",
    )


def make_feature_run(
    tmp_path,
    config=None,
    num_classes=3,
    counts=(("train", 12), ("validation", 6), ("test", 6)),
    context_dim=None,
    seed=0,
    clip_frames=None,
):
    """Writes a run with a synthetic store; returns `(config, index, run)`.

    Each clip's n stored steps show every other frame of a `2n - 1`-frame clip (so its
    last step is its last frame), or, with `clip_frames`, the first n frames of a
    `clip_frames`-frame clip (the "first" selection of a long clip).
    """
    config = config or tiny_config(tmp_path)
    rng = np.random.default_rng(seed)
    class_names = [f"class{k}" for k in range(num_classes)]
    records = []
    for role, count in counts:
        for i in range(count):
            label = i % num_classes
            clip_id = f"{role}_{i:02d}"
            records.append(
                ClipRecord(
                    clip_id,
                    f"/nowhere/{clip_id}.avi",
                    label,
                    class_names[label],
                    f"{role}_g{i // num_classes}",
                    role,
                )
            )
    index = DatasetIndex(
        dataset=config.data.dataset,
        root="/nowhere",
        class_names=class_names,
        folds=[Fold(FOLD, records)],
    )
    run = RunDirectory.create(config)
    settings = store_settings(config, num_classes, context_dim=context_dim)
    T = config.data.num_steps
    context_centers = rng.normal(size=(num_classes, settings.context_dim))
    action_centers = rng.normal(size=(num_classes, settings.action_dim))
    with FeatureStore.create(run.store_path(FOLD), settings, class_names) as store:
        for record in records:
            n = int(rng.integers(2, T + 1))
            context = context_centers[record.label] + rng.normal(
                size=(n, settings.context_dim)
            )
            action = action_centers[record.label] + rng.normal(
                size=(n, settings.action_dim)
            )
            if clip_frames is None:
                frame_indices, num_frames = np.arange(n) * 2, 2 * n - 1
            else:
                frame_indices, num_frames = np.arange(n), clip_frames
            store.append(
                record.clip_id, context, action, record.label, frame_indices, num_frames
            )
    return config, index, run
