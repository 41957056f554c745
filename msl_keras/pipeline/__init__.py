"""The pipeline: plain functions taking a `Config`, one module each (the CLI's steps).

`prepare` (`dataset_index`) -> `train_cnn` (`head_training`) -> `extract` (`extraction`;
or per shard, then `merge_shards`) -> `train_lstm` (`lstm_training`) -> `evaluate`
(`evaluation`); `predict_video` (`prediction`) streams a video through a trained run;
`import_features` (`feature_import`) replaces `train_cnn` and `extract` for features
made elsewhere. No module here imports another: what one step reads back from another
is in `msl_keras.runs` (its loaders are re-exported here for notebooks).
"""

from msl_keras.pipeline.dataset_index import DatasetIndex, Fold, describe, prepare
from msl_keras.pipeline.evaluation import evaluate
from msl_keras.pipeline.extraction import extract, merge_shards
from msl_keras.pipeline.feature_import import import_features
from msl_keras.pipeline.head_training import train_cnn
from msl_keras.pipeline.lstm_training import train_lstm
from msl_keras.pipeline.prediction import predict_from_run_dir, predict_video
from msl_keras.runs import (
    RunDirectory, build_trunk, load_extractor, load_heads, load_lstm,
)  # fmt: skip

__all__ = [
    "DatasetIndex", "Fold", "RunDirectory", "build_trunk", "describe", "evaluate",
    "extract", "import_features", "load_extractor", "load_heads", "load_lstm",
    "merge_shards", "predict_from_run_dir", "predict_video", "prepare", "train_cnn",
    "train_lstm",
]  # fmt: skip
