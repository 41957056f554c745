"""Stage 4: train the multi-stage LSTM (or a one-stream baseline) on a fold's stored features.

The model of `config.lstm.model` ("ms_lstm": `MultiStageLSTM`, Sec. 3.2.2; "context" /
"action": `SingleStageLSTM`, Table 4) is fitted with SGD (Sec. 4.2) on the TRAIN clips,
`get_loss(lstm.loss)` on every output; Keras adds them: Eq. 4,
`L_o = mean_i (L_c,i + L_a,i)`. After each epoch `fit` scores the anticipation accuracy
(`metrics.AnticipationAccuracy`) on the VALIDATION clips, never the test clips (the
original code's defect #9): "holdout" keeps the best epoch as `best.keras`; "refit"
trains a model of the same seed on the train AND validation clips for that many epochs
(`refit/`), which becomes `best.keras`. Epochs count from 1. The LSTM folder
`<run>/<fold>/lstm/<lstm_run_name()>/` holds:

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

`config.checkpoints="every_epoch"` backs up the weights and optimizer momenta after each
epoch and writes `best.keras` at each improvement: an interrupted fit resumes after its
last backup. "end_of_fit" (a GPU, where those writes cost more than the epochs) keeps
the best epoch's weights in memory (`EarlyStopping(restore_best_weights=True)`, never
stopping) and writes one file at the end (`best.keras` for a selecting fit, else
`last.keras`): an interrupted fit starts over. A finished fit returns at once; a folder
whose `config.json` holds other settings (but `PLACEMENT_KEYS`) is refused, naming them.
"""

import csv
import functools
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
from msl_keras.runs import (  # fmt: skip
    BEST_FILENAME, CONFIG_FILENAME, LAST_FILENAME, RECORD_FILENAME, REFIT_DIRNAME,
    check_same_settings, fold_name, read_fold_features, resolve_run,
)
from msl_keras.seeding import set_seed

BACKUP_DIRNAME = "backup"
HISTORY_FILENAME = "history.csv"

logger = logging.getLogger(__name__)


def build_lstm(config, num_classes, context_dim, action_dim):
    """Builds (not compiles) the LSTM of `config.lstm.model` for these input sizes, in
    `strategy.scope()` when training with a distribution strategy."""
    model = lstm_from_config(config.lstm, num_classes)
    dims = {"context": context_dim, "action": action_dim}
    model.build({s: (None, None, dims[s]) for s in model.input_streams})
    return model


def compile_lstm(model, config):
    """SGD (lr, momentum, weight decay as `lstm.weight_decay_mode`) and
    `get_loss(lstm.loss)` on each output of the built `model` (summed with weight 1:
    Eq. 4), `AnticipationAccuracy` on the last one. A float16 model gets Keras'
    `LossScaleOptimizer` from `compile` itself.

    `jit_compile=False` says what Keras' "auto" resolves to for these models anyway: no
    XLA on a CPU, and on a GPU the LSTM layers run cuDNN's fused kernel, which XLA
    cannot compile (Keras then turns XLA off for the model)."""
    lstm = config.lstm
    outputs = model.stage_names
    optimizer = weight_decay.sgd(
        model, lstm.learning_rate, lstm.momentum, lstm.weight_decay,
        lstm.weight_decay_mode,
    )  # fmt: skip
    model.compile(
        optimizer=optimizer,
        loss={name: get_loss(lstm.loss) for name in outputs},
        metrics={outputs[-1]: [AnticipationAccuracy()]},
        jit_compile=False,
    )
    return model


def train_lstm(
    config, index, fold, run=None, resume=True, verbose="auto", return_model=False
):
    """Trains the LSTM of `config` on `fold` of `index`; returns `best.keras`'s `Path`
    (the last epoch, with a warning, when the fold has no validation clip).

    `run`: a `RunDirectory`, a folder, or None (`RunDirectory.create(config)`).
    `resume=False` starts over, removing the folder's models, backups and histories.
    `verbose`: Keras' (0, 1, 2, "auto"); messages go to `logging`.
    `return_model=True` returns `(path, model)`: the trained model when it holds the
    weights just written to `best.keras` (so `evaluate` need not load them again), else
    None (the fit had already finished, or "every_epoch" kept an earlier best epoch).

    Raises:
        ConfigError: `resume=True` and the LSTM folder was made with other settings.
        FeatureStoreError: no store, or no training clip in it.
        FeatureStoreMismatchError: a store made with other settings or feature sizes.
    """
    run = resolve_run(config, run)
    # First, before any other TensorFlow op (a model's constructor makes its dropout
    # seeds): MultiWorkerMirroredStrategy can only start then. Both fits use it.
    strategy = get_strategy(config.strategy)
    fold = index.fold(fold)
    name = fold_name(fold)
    store = run.store_path(name)
    settings, _, arrays, missing = read_fold_features(
        config, index, fold, run, ("train", "validation")
    )
    for role, ids in missing.items():
        if ids:
            shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
            warnings.warn(
                f"{len(ids)} {role} clips are not in the feature store '{store}' "
                f"(their extraction failed or has not run) and are left out: {shown}",
                stacklevel=2,
            )
    train, validation = arrays["train"], arrays["validation"]
    if train is None:
        raise FeatureStoreError(
            f"Fold '{name}' has no training clip in '{store}'. Extract the fold's "
            "features first."
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
    fit = functools.partial(
        _fit_phase, config, strategy, settings, len(index.class_names), verbose
    )
    record, model = fit(
        lstm_dir, train, validation, config.lstm.epochs, None if refit else best_path,
        {"model_selection": scheme, "trained_on": {"train": n_train}},
    )
    if not refit:
        written = validation is not None and config.checkpoints == "end_of_fit"
        if not best_path.is_file():  # no validation clip: the last epoch
            shutil.copyfile(lstm_dir / LAST_FILENAME, best_path)
            written = True
        return (best_path, model if written else None) if return_model else best_path

    del model  # the refit trains another: one in memory at a time
    epochs = int(record["best_epoch"])
    refit_dir = lstm_dir / REFIT_DIRNAME
    refit_dir.mkdir(exist_ok=True)
    if verbose:
        logger.info(
            f"train_lstm: refit on {n_train} train + {n_validation} validation clips for "
            f"{epochs} epochs (the best of {config.lstm.epochs} on validation)"
        )
    both = {key: np.concatenate([train[key], validation[key]]) for key in train}
    trained_on = {"train": n_train, "validation": n_validation}
    _, model = fit(
        refit_dir, both, None, epochs, None,
        {"model_selection": scheme, "epochs": epochs, "trained_on": trained_on},
    )
    if model is not None or not best_path.is_file():
        shutil.copyfile(refit_dir / LAST_FILENAME, best_path)
    return (best_path, model) if return_model else best_path


def _claim_lstm_dir(lstm_dir, config, resume):
    """Makes the LSTM folder ours: resumes only one made with the same settings."""
    config_path = lstm_dir / CONFIG_FILENAME
    if resume and config_path.is_file():
        check_same_settings(
            config_path, config, None, what=f"The LSTM folder '{lstm_dir}'", remedy=(
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
    """The logged name of the selection score: Keras prefixes a metric with its output's
    name when the model has several (the MS-LSTM's stage 2)."""
    if len(model.stage_names) > 1:
        return f"val_{model.stage_names[-1]}_anticipation_accuracy"
    return "val_anticipation_accuracy"


def _fit_phase(
    config, strategy, settings, num_classes, verbose,
    directory, train, validation, epochs, best_path, record,
):  # fmt: skip
    """Fits one LSTM in `directory` on the `FeatureStore.read()` dict `train`, scoring
    `validation` (or None) after each epoch, keeping the best in `best_path` (or None).

    With "every_epoch" the callbacks run in this order at an epoch's end:
    `ModelCheckpoint`, the CSV row, `BackupAndRestore`. That backup keeps the model and
    optimizer only, so a resume starts `ModelCheckpoint.best` from `history.csv`'s best
    (`initial_value_threshold`), and as Keras deletes it at the end of `fit`, a
    finished phase is marked by `training.json` (written after the model, before the
    backup is deleted). A kill between the row and the backup only logs that epoch
    twice (`_history` keeps its last row); one during a save leaves the epoch before's.

    Returns:
        `(record, model)`: `record` with `epochs_done` and, with validation clips,
        the 1-based `best_epoch` and its score `best` (as written to `training.json`);
        the fitted model as saved, or None when the phase had already finished.
    """
    record_path = directory / RECORD_FILENAME
    if record_path.is_file():
        if verbose:
            logger.info(f"train_lstm: already trained in '{directory}'.")
        return json.loads(record_path.read_text()), None
    history_path = directory / HISTORY_FILENAME
    set_seed(config.seed)
    with strategy.scope():
        dims = settings.context_dim, settings.action_dim
        model = build_lstm(config, num_classes, *dims)
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
    dataset = functools.partial(
        sequence_dataset, num_classes=num_classes, batch_size=config.lstm.batch_size,
        seed=config.seed, streams=model.input_streams, outputs=model.stage_names,
    )
    selecting = validation is not None and best_path is not None
    every_epoch = config.checkpoints == "every_epoch"
    if not every_epoch:  # the fit starts over, and so does its history
        history_path.unlink(missing_ok=True)
    callbacks = [EpochCSVLogger(str(history_path), append=True)]
    if selecting and every_epoch:
        best = _best(_history(history_path), monitor)[1]
        callbacks.insert(0, keras.callbacks.ModelCheckpoint(
            best_path, monitor=monitor, mode="max", save_best_only=True,
            initial_value_threshold=best, verbose=1 if verbose else 0,
        ))  # fmt: skip
    elif selecting:  # patience > epochs: it never stops, it restores the best epoch
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor, mode="max", patience=epochs + 1, restore_best_weights=True
        ))  # fmt: skip
    if every_epoch:  # deleted once the model and training.json exist
        callbacks.append(keras.callbacks.BackupAndRestore(
            str(directory / BACKUP_DIRNAME), double_checkpoint=True,
            delete_checkpoint=False,
        ))  # fmt: skip
    callbacks.append(keras.callbacks.TensorBoard(
        log_dir=str(directory / "tensorboard"), write_graph=False, profile_batch=0
    ))  # fmt: skip
    scored = None if validation is None else dataset(validation, shuffle=False)
    model.fit(
        dataset(train, shuffle=True),
        validation_data=scored,
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, by seed
        verbose=verbose,
    )
    path = best_path if selecting and not every_epoch else directory / LAST_FILENAME
    tmp = path.with_name(path.stem + ".tmp.keras")  # a kill never leaves half a file
    model.save(tmp)
    os.replace(tmp, path)
    rows = _history(history_path)
    record = {**record, "epochs_done": len(rows)}
    if validation is not None:
        record["best_epoch"], record["best"] = _best(rows, monitor)
    tmp = record_path.with_name(record_path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, record_path)
    shutil.rmtree(directory / BACKUP_DIRNAME, ignore_errors=True)
    return record, model


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
