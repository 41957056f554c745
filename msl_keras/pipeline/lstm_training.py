"""Stage 4: train the multi-stage LSTM (or a one-stream baseline) on a fold's stored features.

`train_lstm(config, index, fold)` reads the fold's `FeatureStore`, builds the model named by
`config.lstm.model` ("ms_lstm": `MultiStageLSTM`, paper Sec. 3.2.2; "context" / "action":
`SingleStageLSTM`, Table 4) inside `get_strategy(config.strategy).scope()`, and fits it with
SGD (lr, momentum: paper Sec. 4.2) on the TRAIN clips with `get_loss(config.lstm.loss)` on
every output; Keras adds the outputs' losses, which is Eq. 4:
`L_o = mean_i (L_c,i + L_a,i)`.

After every epoch `fit`'s validation pass measures the mean anticipation accuracy over
steps (`metrics.AnticipationAccuracy`: temporal average pooling, stage 2) on the
VALIDATION clips: model selection never sees the test clips (the original code's defect
#9). `data.model_selection` says what the score picks: "holdout" keeps the best epoch as
`best.keras` (`keras.callbacks.ModelCheckpoint`); "refit" takes its epoch number E, builds
the model again from the same seed and trains it on the train AND validation clips for
exactly E epochs (`refit/`), which becomes `best.keras`. Epochs count from 1 everywhere
(`best_epoch`, the `epoch` column of `history.csv`, the progress lines). The LSTM folder
`<run>/<fold>/lstm/<config.lstm_run_name()>/` receives:

```
config.json    the resolved config       best.keras   the model `evaluate` scores
last.keras     model + optimizer state   history.csv  one row per epoch
training.json  {"epochs_done", "best", "best_epoch", "model_selection", "trained_on"},
               written when the fit is done
backup/        `keras.callbacks.BackupAndRestore`'s, while a fit is under way
tensorboard/   TensorBoard logs
refit/         ("refit" only) last.keras, training.json {"epochs", "trained_on", ...},
               history.csv, backup/, tensorboard/
```

Resume: with `resume=True` an interrupted fit restores its `backup/` (weights and
optimizer momentum) and continues at the epoch after the last one backed up (in either
phase of "refit"); a finished one (its `training.json` is written) returns at once. Only a
folder whose `config.json` holds the same settings is resumed (every setting but `name`,
`output_dir` and `strategy`; the folder's name hashes the lstm, eval and seed ones, the
run directory's the data and cnn ones, but a run folder passed explicitly may hold
another config's); another one is refused with the differing keys, and its `config.json`
is never rewritten. The clip order of a resumed run's later epochs may differ from an
uninterrupted run's.

Example:

>>> index = prepare(config)
>>> best = train_lstm(config, index, "split1")
>>> model = load_lstm(best)
"""

import csv
import json
import logging
import os
import shutil
import warnings

import keras
import numpy as np

from msl_keras import weight_decay
from msl_keras.callbacks import EpochCSVLogger
from msl_keras.config import save_config
from msl_keras.data.pipelines import sequence_dataset
from msl_keras.distribute import describe_strategy, get_strategy
from msl_keras.errors import FeatureStoreError
from msl_keras.losses import get_loss
from msl_keras.metrics import AnticipationAccuracy
from msl_keras.models.ms_lstm import lstm_from_config
from msl_keras.runs import (
    BEST_FILENAME,
    CONFIG_FILENAME,
    LAST_FILENAME,
    RECORD_FILENAME,
    REFIT_DIRNAME,
    check_same_settings,
    fold_name,
    read_fold_features,
    resolve_run,
)
from msl_keras.seeding import set_seed

BACKUP_DIRNAME = "backup"
HISTORY_FILENAME = "history.csv"

logger = logging.getLogger(__name__)


def _warn_missing(missing, path):
    for role, ids in missing.items():
        if ids:
            shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
            warnings.warn(
                f"{len(ids)} {role} clips are not in the feature store '{path}' (their "
                f"extraction failed or has not run) and are left out: {shown}",
                stacklevel=3,
            )


def build_lstm(config, num_classes, context_dim, action_dim):
    """Builds (not compiles) the LSTM of `config.lstm.model` for the given input sizes.

    Call it inside `strategy.scope()` when training with a distribution strategy.
    """
    model = lstm_from_config(config.lstm, num_classes)
    dims = {"context": context_dim, "action": action_dim}
    model.build({s: (None, None, dims[s]) for s in model.input_streams})
    return model


def compile_lstm(model, config):
    """SGD(lr, momentum[, weight decay]) and `get_loss(config.lstm.loss)` on each output,
    `metrics.AnticipationAccuracy` on the last one (the model's prediction).

    Keras sums the outputs' losses with weight 1: Eq. 4, `L_c + L_a` per clip. Weight
    decay as `lstm.weight_decay_mode` (`msl_keras.weight_decay`); `model` must be built.
    A model computing in float16 (`lstm.compute_dtype`) gets the SGD wrapped in Keras'
    `LossScaleOptimizer` by `compile` itself (the model's policy is "mixed_float16").
    """
    lstm = config.lstm
    optimizer = weight_decay.sgd(
        model,
        lstm.learning_rate,
        lstm.momentum,
        lstm.weight_decay,
        mode=lstm.weight_decay_mode,
    )
    outputs = model.stage_names
    losses = {name: get_loss(lstm.loss) for name in outputs}
    metrics = {outputs[-1]: [AnticipationAccuracy()]}
    model.compile(optimizer=optimizer, loss=losses, metrics=metrics)
    return model


def train_lstm(config, index, fold, run=None, resume=True, verbose="auto"):
    """Trains the LSTM of `config` on fold `fold`; returns the path of `best.keras`.

    With `data.model_selection="holdout"` the LSTM trains on the TRAIN clips and
    `best.keras` is its epoch with the best validation anticipation accuracy. With
    `"refit"` that run only chooses the number of epochs E; a second model, built from
    the same seed, then trains on the TRAIN and VALIDATION clips for exactly E epochs
    (in `<lstm dir>/refit/`) and is saved as `best.keras`. The test clips are never read.

    Args:
        config: the run's `Config` (uses `lstm`, `data.num_steps`,
            `data.model_selection`, `cnn.fc_units`, `seed`, `strategy`).
        index: the `DatasetIndex` from `prepare` (roles of the clips, class names).
        fold: a fold name or `Fold` of `index`.
        run: a `RunDirectory`, a run folder, or None (`RunDirectory.create(config)`).
        resume: continue an interrupted run from its backup; it is only resumed when the
            folder's `config.json` holds the same settings as `config` (all but `name`,
            `output_dir` and `strategy`). False starts over, removing the folder's
            earlier models, backups and histories and replacing its `config.json`.
        verbose: Keras' convention: 0 silent, 1 progress bar, 2 one line per epoch,
            "auto" 1. Messages go to `logging` (logger `msl_keras.pipeline...`).

    Returns:
        `Path` of `best.keras` (the last epoch when the fold has no validation clip, with
        a warning; then "refit" has nothing to choose and trains once, on the train clips).

    Raises:
        ConfigError: `resume=True` and the LSTM folder was made with other settings (the
            message lists each differing key, stored -> asked for).
        FeatureStoreError: no store, or no training clip in it.
        FeatureStoreMismatchError: a store made with other settings or feature sizes
            than the config.
    """
    run = resolve_run(config, run)
    # First, before any other TensorFlow op (a model's constructor makes its dropout
    # seeds): MultiWorkerMirroredStrategy can only start then. Both fits use it.
    strategy = get_strategy(config.strategy)
    fold = index.fold(fold)
    name = fold_name(fold)
    num_classes = len(index.class_names)
    settings, _, arrays, missing = read_fold_features(
        config, index, fold, run, ("train", "validation")
    )
    _warn_missing(missing, run.store_path(name))
    train, validation = arrays["train"], arrays["validation"]
    if train is None:
        raise FeatureStoreError(
            f"Fold '{name}' has no training clip in '{run.store_path(name)}'. Extract the "
            "fold's features first."
        )
    if validation is None:
        warnings.warn(
            f"Fold '{name}' has no validation clip: no model selection; best.keras will be "
            "the last epoch. Set data.validation_fraction > 0 to select on validation.",
            stacklevel=2,
        )

    lstm_dir = run.lstm_dir(name)
    _claim_lstm_dir(lstm_dir, config, resume)
    best_path = lstm_dir / BEST_FILENAME
    scheme = config.data.model_selection
    refit = scheme == "refit" and validation is not None
    n_train = len(train["labels"])
    n_validation = 0 if validation is None else len(validation["labels"])
    if verbose:
        logger.info(
            f"train_lstm: {config.lstm.model} ({config.lstm.loss} loss) on fold '{name}': "
            f"{n_train} train / {n_validation} validation clips, model selection "
            f"'{scheme}'"
        )
    fit = dict(
        config=config,
        strategy=strategy,
        settings=settings,
        num_classes=num_classes,
        verbose=verbose,
    )
    record, _ = _fit_phase(
        directory=lstm_dir,
        train=train,
        validation=validation,
        epochs=config.lstm.epochs,
        best_path=None if refit else best_path,
        record={"model_selection": scheme, "trained_on": {"train": n_train}},
        **fit,
    )
    if not refit:
        if not best_path.is_file():  # no validation clip: the last epoch
            shutil.copyfile(lstm_dir / LAST_FILENAME, best_path)
        return best_path

    epochs = int(record["best_epoch"])
    refit_dir = lstm_dir / REFIT_DIRNAME
    refit_dir.mkdir(exist_ok=True)
    if verbose:
        logger.info(
            f"train_lstm: refit on {n_train} train + {n_validation} validation clips for "
            f"{epochs} epochs (the best of {config.lstm.epochs} on validation)"
        )
    _, trained = _fit_phase(
        directory=refit_dir,
        train={key: np.concatenate([train[key], validation[key]]) for key in train},
        validation=None,
        epochs=epochs,
        best_path=None,
        record={
            "model_selection": scheme,
            "epochs": epochs,
            "trained_on": {"train": n_train, "validation": n_validation},
        },
        **fit,
    )
    if trained or not best_path.is_file():
        shutil.copyfile(refit_dir / LAST_FILENAME, best_path)
    return best_path


def _claim_lstm_dir(lstm_dir, config, resume):
    """Makes the LSTM folder ours: resumes only one made with the same settings."""
    config_path = lstm_dir / CONFIG_FILENAME
    if resume and config_path.is_file():
        check_same_settings(
            config_path,
            config,
            None,
            what=f"The LSTM folder '{lstm_dir}'",
            remedy=(
                "It is not resumed and its config.json is left as it is. To train with "
                "the new settings, use another output_dir (or run folder), or pass "
                "resume=False (CLI: --no-resume) to start this folder over; to resume "
                "it, use the settings it was made with."
            ),
        )
        return
    lstm_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for stale in (BEST_FILENAME, LAST_FILENAME, RECORD_FILENAME, HISTORY_FILENAME):
            (lstm_dir / stale).unlink(missing_ok=True)
        for stale in (BACKUP_DIRNAME, REFIT_DIRNAME):
            shutil.rmtree(lstm_dir / stale, ignore_errors=True)
    save_config(config, config_path)


def selection_monitor(model):
    """The logged name of the selection score, `metrics.AnticipationAccuracy` on the
    validation clips: Keras prefixes a metric with its output's name when the model has
    several outputs (the MS-LSTM scores its stage 2)."""
    if len(model.stage_names) > 1:
        return f"val_{model.stage_names[-1]}_anticipation_accuracy"
    return "val_anticipation_accuracy"


def _fit_phase(
    config,
    strategy,
    directory,
    train,
    validation,
    epochs,
    settings,
    num_classes,
    best_path,
    record,
    verbose,
):
    """Trains one LSTM in `directory` for `epochs` epochs, resuming its backup.

    Keras' callbacks do the work, in this order at each epoch's end:
    `ModelCheckpoint` saves `best_path` when the validation score improves, the CSV
    logger writes the epoch's row, and `BackupAndRestore` backs up the weights and
    optimizer state in `backup/`, from which an interrupted fit continues. Two pieces
    are ours, because `BackupAndRestore` keeps the model and optimizer only:
    `ModelCheckpoint.best` is not backed up, so a resume starts it from the best score in
    `history.csv` (`initial_value_threshold`); and Keras deletes the backup at the end of
    `fit`, after which a new call would start over, so the finished phase is marked by
    `training.json` (written after `last.keras`, before the backup is deleted). A kill
    between the row and the backup only logs that epoch twice (`_history` keeps its
    last row); a kill during a save leaves the backup of the epoch before.

    Args:
        strategy: the `tf.distribute` strategy whose scope builds the model.
        train: the `FeatureStore.read()` dict of the clips fitted on.
        validation: the dict of the clips scored after each epoch, or None.
        best_path: where the best validation epoch is saved, or None.
        record: entries written into `training.json` beside the epoch counts.

    Returns:
        `(record, trained)`: the folder's `training.json` dict (`epochs_done`, and with
        validation clips `best_epoch`, 1-based, and its score `best`), and False when the
        phase had already finished (nothing was done).
    """
    record_path = directory / RECORD_FILENAME
    if record_path.is_file():
        if verbose:
            logger.info(f"train_lstm: already trained in '{directory}'.")
        return json.loads(record_path.read_text()), False
    history_path = directory / HISTORY_FILENAME
    set_seed(config.seed)
    with strategy.scope():
        model = build_lstm(
            config, num_classes, settings.context_dim, settings.action_dim
        )
        compile_lstm(model, config)
        # BackupAndRestore builds an unbuilt optimizer outside the strategy's scope
        # before restoring into it; built here, its variables are the strategy's.
        model.optimizer.build(model.trainable_variables)
    monitor = selection_monitor(model)
    if verbose:
        logger.info(
            f"train_lstm: {len(train['labels'])} clips, {epochs} epochs, "
            f"{describe_strategy(strategy)}"
        )

    streams, outputs = model.input_streams, model.stage_names

    def dataset(arrays, shuffle):
        return sequence_dataset(
            arrays,
            num_classes=num_classes,
            batch_size=config.lstm.batch_size,
            shuffle=shuffle,
            seed=config.seed,
            streams=streams,
            outputs=outputs,
        )

    callbacks = []
    if validation is not None and best_path is not None:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                best_path,
                monitor=monitor,
                mode="max",
                save_best_only=True,
                initial_value_threshold=_best(_history(history_path), monitor)[1],
                verbose=1 if verbose else 0,
            )
        )
    callbacks += [
        EpochCSVLogger(str(history_path), append=True),
        keras.callbacks.BackupAndRestore(
            str(directory / BACKUP_DIRNAME),
            double_checkpoint=True,
            delete_checkpoint=False,  # deleted once last.keras and training.json exist
        ),
    ]
    tensorboard = _tensorboard(directory / "tensorboard")
    if tensorboard is not None:
        callbacks.append(tensorboard)
    model.fit(
        dataset(train, shuffle=True),
        validation_data=None if validation is None else dataset(validation, False),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, by seed
        verbose=verbose,
    )
    _atomic_save_model(model, directory / LAST_FILENAME)
    rows = _history(history_path)
    record = {**record, "epochs_done": len(rows)}
    if validation is not None:
        record["best_epoch"], record["best"] = _best(rows, monitor)
    tmp = record_path.with_name(record_path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, record_path)
    shutil.rmtree(directory / BACKUP_DIRNAME, ignore_errors=True)
    return record, True


def _atomic_save_model(model, path):
    """`model.save(path)` through a temporary file, so a kill never leaves half a file."""
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _history(path):
    """The rows of a CSV history, one per epoch (the last row logged for it), in order."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    return [rows[epoch] for epoch in sorted(rows)]


def _best(rows, monitor):
    """`(epoch, score)` of the first row with the highest `monitor`, or `(None, None)`."""
    scored = [(float(r[monitor]), -int(r["epoch"])) for r in rows if r.get(monitor)]
    if not scored:
        return None, None
    score, epoch = max(scored)
    return -epoch, score


def _tensorboard(log_dir):
    """A TensorBoard callback, or None (with a warning) when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        warnings.warn(
            "The tensorboard package is not installed: no TensorBoard logs "
            f"('{log_dir}'); history.csv has every epoch. `pip install tensorboard` to "
            "get them.",
            stacklevel=3,
        )
        return None
    return keras.callbacks.TensorBoard(
        log_dir=str(log_dir), write_graph=False, profile_batch=0
    )
