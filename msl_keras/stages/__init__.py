"""The pipeline's stages, as plain functions taking a `Config` (the CLI only calls them).

`prepare` -> `train_cnn` -> `extract` (or `extract` per shard, then `merge_shards`) ->
`train_lstm` -> `evaluate`; `predict_video` streams a video through a trained run.
Features made elsewhere take `import_features` in place of `train_cnn` and `extract`.

The functions share their modules' names: after this import, the attribute
`msl_keras.stages.extract` is the FUNCTION (and `import msl_keras.stages.extract as m`
gives the function too). Reach a module itself with
`importlib.import_module("msl_keras.stages.extract")`, e.g. to patch it in a test.
"""

from msl_keras.runs import RunDirectory
from msl_keras.stages.evaluate import evaluate
from msl_keras.stages.extract import extract, merge_shards
from msl_keras.stages.import_features import import_features
from msl_keras.stages.predict import predict_from_run_dir, predict_video
from msl_keras.stages.prepare import DatasetIndex, Fold, describe, prepare
from msl_keras.stages.train_cnn import (
    build_trunk,
    load_extractor,
    load_heads,
    train_cnn,
)
from msl_keras.stages.train_lstm import load_lstm, train_lstm
from msl_keras.stages.run import run_all, run_fold  # noqa: E402  (uses the stages above)
from msl_keras.stages.demo import demo  # noqa: E402

__all__ = [
    "DatasetIndex",
    "Fold",
    "RunDirectory",
    "build_trunk",
    "demo",
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
    "run_all",
    "run_fold",
    "train_cnn",
    "train_lstm",
]
