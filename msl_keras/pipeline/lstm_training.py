"""Stage 4: train the multi-stage LSTM (or a one-stream baseline) on a fold's stored features.

`train_lstm(config, index, fold)` reads the fold's `FeatureStore`, builds the model named by
`config.lstm.model` ("ms_lstm": `MultiStageLSTM`, paper Sec. 3.2.2; "context" / "action":
`SingleStageLSTM`, Table 4) inside `get_strategy(config.strategy).scope()`, and fits it with
SGD (lr, momentum: paper Sec. 4.2) on the TRAIN clips with `get_loss(config.lstm.loss)` on
every output; Keras adds the outputs' losses, which is Eq. 4:
`L_o = mean_i (L_c,i + L_a,i)`.

After every epoch the mean anticipation accuracy over steps (temporal average pooling,
stage 2) is measured on the VALIDATION clips: model selection never sees the test clips
(the original code's defect #9). `data.model_selection` says what the score picks:
"holdout" saves the best epoch as `best.keras`; "refit" takes its epoch number E, builds
the model again from the same seed and trains it on the train AND validation clips for
exactly E epochs (`refit/`), which becomes `best.keras`. Epochs count from 1 everywhere
(`best_epoch`, the `epoch` column of `history.csv`, the progress lines). The LSTM folder
`<run>/<fold>/lstm/<config.lstm_run_name()>/` receives:

```
config.json   the resolved config        best.keras   the model `evaluate` scores
last.keras    model + optimizer state    state.json   {"epochs_done", "best", "best_epoch",
history.csv   one row per epoch                        "model_selection", "trained_on"}
tensorboard/  TensorBoard logs           refit/       ("refit" only) last.keras, state.json
                                                      {"epochs", "trained_on", ...},
                                                      history.csv, tensorboard/
```

Resume: with `resume=True` an interrupted run reloads `last.keras` (weights and optimizer
momentum) and continues at the epoch after the last one finished (in either phase of
"refit"); a finished run returns at once. Only a folder whose `config.json` holds the
same settings is resumed (every setting but `name`, `output_dir` and `strategy`; the
folder's name hashes the lstm, eval and seed ones, the run directory's the data and cnn
ones, but a run folder passed explicitly may hold another config's); another one is
refused with the differing keys, and its `config.json` is never rewritten. The clip order of a resumed
run's later epochs may differ from an uninterrupted run's.

Example:

>>> index = prepare(config)
>>> best = train_lstm(config, index, "split1")
>>> model = load_lstm(best)
"""

import shutil
import warnings

import keras
import numpy as np

from msl_keras import weight_decay
from msl_keras.callbacks import (
    EpochCheckpoint,
    EpochCSVLogger,
    ValidationAnticipationAccuracy,
)
from msl_keras.config import save_config
from msl_keras.data.feature_store import check_model_inputs
from msl_keras.data.pipelines import sequence_dataset
from msl_keras.distribute import describe_strategy, get_strategy
from msl_keras.errors import FeatureStoreError, WeightsError
from msl_keras.losses import get_loss
from msl_keras.models.ms_lstm import lstm_from_config
from msl_keras.runs import (
    BEST_FILENAME,
    CONFIG_FILENAME,
    REFIT_DIRNAME,
    check_same_settings,
    fold_name,
    load_lstm,
    read_fold_features,
    resolve_run,
)
from msl_keras.seeding import set_seed

HISTORY_FILENAME = "history.csv"


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
    """SGD(lr, momentum[, weight decay]) and `get_loss(config.lstm.loss)` on each output.

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
    losses = {name: get_loss(lstm.loss) for name in model.stage_names}
    model.compile(optimizer=optimizer, loss=losses)
    return model


def train_lstm(config, index, fold, run=None, resume=True, verbose=2):
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
        resume: continue an interrupted run from its `last.keras`; it is only resumed
            when the folder's `config.json` holds the same settings as `config` (all but
            `name`, `output_dir` and `strategy`). False starts over, removing the
            folder's earlier checkpoints and replacing its `config.json`.
        verbose: Keras `fit` verbosity (2: one line per epoch).

    Returns:
        `Path` of `best.keras` (the last epoch when the fold has no validation clip, with
        a warning; then "refit" has nothing to choose and trains once, on the train clips).

    Raises:
        ConfigError: `resume=True` and the LSTM folder was made with other settings (the
            message lists each differing key, stored -> asked for).
        FeatureStoreError: no store, or no training clip in it.
        FeatureStoreMismatchError: a store made with other settings or feature sizes
            than the config (or than the checkpoint being resumed).
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
        print(
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
    state, _ = _fit_epochs(
        directory=lstm_dir,
        train=train,
        validation=validation,
        epochs=config.lstm.epochs,
        best_path=None if refit else best_path,
        info={"model_selection": scheme, "trained_on": {"train": n_train}},
        **fit,
    )
    if not refit:
        _ensure_best(best_path, lstm_dir / EpochCheckpoint.MODEL_FILENAME, validation)
        return best_path

    epochs = int(state["best_epoch"])
    refit_dir = lstm_dir / REFIT_DIRNAME
    refit_dir.mkdir(exist_ok=True)
    if verbose:
        print(
            f"train_lstm: refit on {n_train} train + {n_validation} validation clips for "
            f"{epochs} epochs (the best of {config.lstm.epochs} on validation)"
        )
    _, trained = _fit_epochs(
        directory=refit_dir,
        train={key: np.concatenate([train[key], validation[key]]) for key in train},
        validation=None,
        epochs=epochs,
        best_path=None,
        info={
            "model_selection": scheme,
            "epochs": epochs,
            "trained_on": {"train": n_train, "validation": n_validation},
        },
        **fit,
    )
    if trained or not best_path.is_file():
        shutil.copyfile(refit_dir / EpochCheckpoint.MODEL_FILENAME, best_path)
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
        for stale in (
            BEST_FILENAME,
            EpochCheckpoint.MODEL_FILENAME,
            EpochCheckpoint.STATE_FILENAME,
        ):
            (lstm_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(lstm_dir / REFIT_DIRNAME, ignore_errors=True)
    save_config(config, config_path)


def _fit_epochs(
    config,
    strategy,
    directory,
    train,
    validation,
    epochs,
    settings,
    num_classes,
    best_path,
    info,
    verbose,
):
    """Trains one LSTM in `directory` up to `epochs` epochs, resuming its `last.keras`.

    Args:
        strategy: the `tf.distribute` strategy whose scope builds the model.
        train: the `FeatureStore.read()` dict of the clips fitted on.
        validation: the dict of the clips scored after each epoch, or None.
        best_path: where the best validation epoch is saved, or None.
        info: entries written into `state.json` beside the epoch counts.

    Returns:
        `(state, trained)`: the folder's `state.json` dict after training, and False
        when it had already trained for `epochs` epochs (nothing was done).
    """
    state = EpochCheckpoint.read_state(directory)
    initial_epoch = 0 if state is None else int(state["epochs_done"])
    if initial_epoch >= epochs:
        if verbose:
            print(
                f"train_lstm: already trained for {initial_epoch} epochs in '{directory}'."
            )
        return state, False
    last_path = directory / EpochCheckpoint.MODEL_FILENAME
    set_seed(config.seed)
    with strategy.scope():
        model = build_lstm(
            config, num_classes, settings.context_dim, settings.action_dim
        )
        compile_lstm(model, config)
        if state is not None:
            _check_checkpoint_inputs(last_path, settings, config, num_classes)
            model.optimizer.build(model.trainable_variables)
            model.load_weights(last_path)
    if verbose:
        print(
            f"train_lstm: {len(train['labels'])} clips, {epochs} epochs, "
            f"{describe_strategy(strategy)}"
            + (f", resuming after epoch {initial_epoch}" if initial_epoch else "")
        )

    streams, outputs = model.input_streams, model.stage_names
    dataset = sequence_dataset(
        train,
        num_classes=num_classes,
        batch_size=config.lstm.batch_size,
        shuffle=True,
        seed=config.seed,
        streams=streams,
        outputs=outputs,
    )
    callbacks = []
    selection = None
    if validation is not None:
        selection = ValidationAnticipationAccuracy(
            {s: validation[s] for s in streams},
            validation["labels"],
            validation["lengths"],
            filepath=best_path,
            batch_size=config.lstm.batch_size,
            clip_ids=[str(c) for c in validation["clip_ids"]],
            initial_best=None if state is None else state.get("best"),
            initial_best_epoch=None if state is None else state.get("best_epoch"),
            verbose=1 if verbose else 0,
        )
        callbacks.append(selection)
    history_path = directory / HISTORY_FILENAME
    if initial_epoch > 0:
        _trim_history(history_path, initial_epoch)
    # The history row is written before the checkpoint: a run killed in between logs an
    # epoch it has not saved, and the resume drops that row (_trim_history) and redoes it.
    callbacks += [
        EpochCSVLogger(
            str(history_path), append=initial_epoch > 0 and history_path.is_file()
        ),
        EpochCheckpoint(directory, selection, info=info),
    ]
    tensorboard = _tensorboard(directory / "tensorboard")
    if tensorboard is not None:
        callbacks.append(tensorboard)
    validation_data = None
    if validation is not None:
        # val_loss for the history; the selection score is the callback's.
        validation_data = sequence_dataset(
            validation,
            num_classes=num_classes,
            batch_size=config.lstm.batch_size,
            shuffle=False,
            streams=streams,
            outputs=outputs,
        )
    model.fit(
        dataset,
        validation_data=validation_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, by seed
        verbose=verbose,
    )
    return EpochCheckpoint.read_state(directory), True


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


def _trim_history(path, epochs_done):
    """Keeps the rows of epochs `1 .. epochs_done` of a CSV history (for a resume)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [
        line
        for line in lines[1:]
        if line.strip() and int(line.split(",", 1)[0]) <= epochs_done
    ]
    path.write_text("".join(kept))


def _ensure_best(best_path, last_path, validation):
    """Without validation clips the last epoch is the model kept."""
    if (validation is None or not best_path.is_file()) and last_path.is_file():
        shutil.copyfile(last_path, best_path)


def _check_checkpoint_inputs(path, settings, config, num_classes):
    """Refuses to resume from a checkpoint made for other feature sizes."""
    try:
        saved = load_lstm(path)
    except Exception as error:  # a damaged file: start over would hide it
        raise WeightsError(
            f"Cannot resume from '{path}': {error}. Delete it (and state.json next to it) "
            "or pass resume=False to start over."
        ) from None
    dims = saved.input_dims
    check_model_inputs(
        settings, context_dim=dims.get("context"), action_dim=dims.get("action")
    )
    if saved.num_classes != num_classes:
        raise WeightsError(
            f"'{path}' predicts {saved.num_classes} classes, the dataset has {num_classes}. "
            "Pass resume=False to start over."
        )
