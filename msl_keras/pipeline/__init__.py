"""The pipeline: plain functions taking a `Config`, one module each (the CLI only calls them).

`prepare` (`dataset_index`) -> `train_cnn` (`head_training`) -> `extract` (`extraction`;
or per shard, then `merge_shards`) -> `train_lstm` (`lstm_training`) -> `evaluate`
(`evaluation`); `predict_video` (`prediction`) streams a video through a trained run.
Features made elsewhere take `import_features` (`feature_import`) in place of `train_cnn`
and `extract`. `msl_keras.orchestrator` runs them all on every fold; `msl_keras.demo`
runs them on generated clips.

Each module is named for what it holds and each function for what it does, so
`msl_keras.pipeline.extraction` is a module and `msl_keras.pipeline.extract` a function.
("Stage" is kept for the MS-LSTM's two stages.) No module here imports another: what one
step reads back from another's output (the models of a run, a fold's features, the
trunk cache) is in the library, `msl_keras.runs` and `msl_keras.data.trunk_cache`; the
loaders are re-exported here for notebooks.
"""

from msl_keras.pipeline.dataset_index import DatasetIndex, Fold, describe, prepare
from msl_keras.pipeline.evaluation import evaluate
from msl_keras.pipeline.extraction import extract, merge_shards
from msl_keras.pipeline.feature_import import import_features
from msl_keras.pipeline.head_training import train_cnn
from msl_keras.pipeline.lstm_training import train_lstm
from msl_keras.pipeline.prediction import predict_from_run_dir, predict_video
from msl_keras.runs import (
    RunDirectory,
    build_trunk,
    load_extractor,
    load_heads,
    load_lstm,
)

__all__ = [
    "DatasetIndex",
    "Fold",
    "RunDirectory",
    "build_trunk",
    "describe",
    "evaluate",
    "extract",
    "import_features",
    "load_extractor",
    "load_heads",
    "load_lstm",
    "merge_shards",
    "predict_from_run_dir",
    "predict_video",
    "prepare",
    "train_cnn",
    "train_lstm",
]
