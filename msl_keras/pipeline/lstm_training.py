"""Stage 4: train the multi-stage LSTM (or a one-stream baseline) on a fold's features.

`config.lstm.model` (`MultiStageLSTM`, Sec. 3.2.2, or a `SingleStageLSTM`, Table 4)
is fitted with SGD (Sec. 4.2) on the TRAIN clips, `get_loss(lstm.loss)` on every output
summed (Eq. 4), scored after each epoch on the VALIDATION clips, never the test clips
(the original's defect #9): "holdout" keeps the best epoch as `best.keras`; "refit"
trains the same seed on train AND validation for that many epochs (`refit/`), which
becomes `best.keras`. `<run>/<fold>/lstm/<lstm_run_name()>/` holds:

```
config.json    the resolved config       best.keras   the model `evaluate` scores
last.keras     model + optimizer state   history.csv  one row per epoch
training.json  {"epochs_done", "best", "best_epoch", "model_selection", "trained_on"}
backup/        BackupAndRestore's, mid-fit   tensorboard/ TensorBoard logs
refit/         ("refit" only) last.keras, training.json (+ "epochs"), history.csv, ...
```

`config.checkpoints="every_epoch"` backs up after each epoch and writes `best.keras` at
each improvement: an interrupted fit resumes. "end_of_fit" (a GPU, where those writes
cost more than the epochs) keeps the best weights in memory (`EarlyStopping`) and
writes once at the end: an interrupted fit starts over.
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
from msl_keras.distribute import get_strategy
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
    """Builds (not compiles) the LSTM of `config.lstm.model` for these input sizes."""
    model = lstm_from_config(config.lstm, num_classes)
    dims = {"context": context_dim, "action": action_dim}
    model.build({s: (None, None, dims[s]) for s in model.input_streams})
    return model


def compile_lstm(model, config):
    """Compiled as the module docstring says, `AnticipationAccuracy` on the last output.
    `jit_compile=False` as "auto" resolves it: no XLA on a CPU, none on cuDNN's LSTM."""
    lstm = config.lstm
    outputs = model.stage_names
    model.compile(
        optimizer=weight_decay.sgd(
            model, lstm.learning_rate, lstm.momentum, lstm.weight_decay,
            lstm.weight_decay_mode,
        ),  # fmt: skip
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

    `run`: a `RunDirectory`, a folder, or None. `resume=False` starts over, removing
    the folder's models, backups and histories. `return_model=True` returns
    `(path, model)`: the model when it holds the weights just written to `best.keras`,
    else None (the fit had already finished, or "every_epoch" kept an earlier epoch);
    with `config.reuse_models` the next fit of the same settings reuses that object.

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
                f"(failed or not extracted) and are left out: {shown}", stacklevel=2
            )
    train, validation = arrays["train"], arrays["validation"]
    if train is None:
        raise FeatureStoreError(
            f"Fold '{name}' has no training clip in '{store}'. Extract its features."
        )
    if validation is None:
        warnings.warn(
            f"Fold '{name}' has no validation clip: best.keras is the last epoch. "
            "Set data.validation_fraction > 0 to select on validation.", stacklevel=2
        )
    lstm_dir = run.lstm_dir(name)
    config_path = lstm_dir / CONFIG_FILENAME
    if resume and config_path.is_file():  # resume only a folder of the same settings
        check_same_settings(
            config_path, config, None, what=f"The LSTM folder '{lstm_dir}'", remedy=(
                "Use another output_dir, or resume=False (CLI: --no-resume) to start "
                "it over, or the settings it was made with."
            ),
        )
    else:
        lstm_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            files = BEST_FILENAME, LAST_FILENAME, RECORD_FILENAME, HISTORY_FILENAME
            for stale in files:
                (lstm_dir / stale).unlink(missing_ok=True)
            for stale in (BACKUP_DIRNAME, REFIT_DIRNAME):
                shutil.rmtree(lstm_dir / stale, ignore_errors=True)
        save_config(config, config_path)
    best_path = lstm_dir / BEST_FILENAME
    scheme = config.data.model_selection
    refit = scheme == "refit" and validation is not None
    n_train = len(train["labels"])
    n_validation = 0 if validation is None else len(validation["labels"])
    if verbose:
        logger.info(
            f"train_lstm: {config.lstm.model}, {config.lstm.loss} loss, fold '{name}': "
            f"{n_train} train / {n_validation} validation clips, '{scheme}'"
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
        logger.info(f"train_lstm: refit on train + validation for {epochs} epochs")
    both = {key: np.concatenate([train[key], validation[key]]) for key in train}
    trained_on = {"train": n_train, "validation": n_validation}
    _, model = fit(
        refit_dir, both, None, epochs, None,
        {"model_selection": scheme, "epochs": epochs, "trained_on": trained_on},
    )
    if model is not None or not best_path.is_file():
        shutil.copyfile(refit_dir / LAST_FILENAME, best_path)
    return (best_path, model) if return_model else best_path


def selection_monitor(model):
    """The selection score's logged name: Keras prefixes its output's name when the
    model has several (the MS-LSTM's stage 2)."""
    prefix = f"{model.stage_names[-1]}_" if len(model.stage_names) > 1 else ""
    return f"val_{prefix}anticipation_accuracy"


def _fit_phase(
    config, strategy, settings, num_classes, verbose,
    directory, train, validation, epochs, best_path, record,
):  # fmt: skip
    """Fits one LSTM in `directory` on the `FeatureStore.read()` dict `train`, scoring
    `validation` (or None) after each epoch, keeping the best in `best_path` (or None).
    Returns `(record, model)`: `record` as written to `training.json` (`best_epoch`
    1-based), model None when the phase had already finished.

    "every_epoch" callbacks run `ModelCheckpoint`, CSV row, `BackupAndRestore` at an
    epoch's end. The backup holds model and optimizer only, so a resume starts
    `ModelCheckpoint.best` from `history.csv`'s best; `training.json` (written after
    the model, before the backup is deleted) marks a finished phase. A kill between
    the row and the backup logs that epoch twice (`_history` keeps its last row).
    """
    record_path = directory / RECORD_FILENAME
    if record_path.is_file():
        if verbose:
            logger.info(f"train_lstm: already trained in '{directory}'.")
        return json.loads(record_path.read_text()), None
    history_path = directory / HISTORY_FILENAME
    set_seed(config.seed)
    dims = settings.context_dim, settings.action_dim
    model = _fresh_lstm(config, strategy, num_classes, dims)
    monitor = selection_monitor(model)
    if verbose:
        logger.info(
            f"train_lstm: {len(train['labels'])} clips, {epochs} epochs, "
            f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"
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
        dataset(train, shuffle=True), validation_data=scored, epochs=epochs,
        callbacks=callbacks, verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, by seed
    )  # fmt: skip
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


# `config.reuse_models`: {settings: (compiled model, [(variable, value when built)])},
# kept for the life of the process.
_BUILT = {}


def _fresh_lstm(config, strategy, num_classes, dims):
    """The compiled LSTM of `config` as a new build gives it after `set_seed`, with its
    optimizer built. With `config.reuse_models`, the one built for the same settings
    earlier in this process, every variable (weights, dropout seed states, optimizer
    slots and step count) set back to its value when built: the same model, without
    building it again or tracing its train, test and predict functions again (at paper
    size on a GPU, ~13 s a fold: RESULTS.md, "Table 2 at paper scale on one GPU")."""
    key = (config.lstm, config.seed, num_classes, dims, id(strategy))
    if config.reuse_models and key in _BUILT:
        model, initial = _BUILT[key]
        for variable, value in initial:
            variable.assign(value)
        return model
    with strategy.scope():
        model = compile_lstm(build_lstm(config, num_classes, *dims), config)
        # BackupAndRestore builds an unbuilt optimizer outside the strategy's scope
        # before restoring into it; built here, its variables are the strategy's.
        model.optimizer.build(model.trainable_variables)
    if config.reuse_models:
        state = model.variables + model.optimizer.variables
        _BUILT[key] = model, [(v, keras.ops.convert_to_numpy(v)) for v in state]
    return model


def _history(path):
    """A CSV history's rows, one per epoch (the last logged for it), in order."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    return [rows[epoch] for epoch in sorted(rows)]


def _best(rows, monitor):
    """`(epoch, score)` of the first row with the top `monitor`, or `(None, None)`."""
    scored = [(float(r[monitor]), -int(r["epoch"])) for r in rows if r.get(monitor)]
    score, epoch = max(scored, default=(None, None))
    return (None if epoch is None else -epoch), score
