"""Stage 2: train the context- and action-aware heads on frames (paper Sec. 3.2.1, 4.2).

Both heads sit on the shared VGG-16 trunk (up to conv5_2), which keeps its ImageNet
weights: "the shared part is not trained end to end". The heads are trained on single
frames with cross-entropy and SGD (lr 0.001, momentum 0.9, weight decay 0.0005, batch
32: `config.cnn`) on the paper's augmentation (flip, rotation, aspect crop, channel
shift, colour jitter; `msl_keras.data.augment`).

Because the trunk is frozen, its conv5_2 output for a given input frame never changes.
This stage therefore computes it ONCE per sampled frame and augmented view and stores it
in `<run>/trunk_cache/` (`msl_keras.data.trunk_cache`); both heads, every epoch, and
every fold of a protocol (UT-Interaction's 10 leave-one-sequence-out folds share their
clips) train from that cache:

- Training clips contribute `cnn.frames_per_clip` frames spread uniformly over the clip
  (`select_frames(..., "uniform")`), each in `cnn.augment_views` augmented copies
  ("views", each drawn from its own stateless seed: `trunk_cache.view_seed`). An epoch
  visits every view of every frame once, in a new order; the randomness of the paper's
  on-line augmentation is traded for a fixed set of `augment_views` draws per frame.
- Validation clips contribute the same frames without augmentation (view "plain"),
  resized to `cnn.input_size` as at extraction; each head's epoch with the lowest
  validation loss is chosen. `data.model_selection="holdout"` keeps that epoch's
  weights. `"refit"` builds both heads again from the same seed and trains each on the
  training AND validation clips (the latter in the training views too) for exactly its
  chosen number of epochs, and keeps those. Without validation clips the last epoch is
  kept. The test clips are never read.
- Every frame goes through `msl_keras.data.preprocessing.preprocess_frames`, the one
  function extraction and predict also use.

Written to `<run>/<fold>/cnn/`: `context_head.keras`, `action_head.keras`,
`history_context.csv`, `history_action.csv` (epochs counted from 1; with "refit" also
`history_<head>_refit.csv`), `cnn_info.json` (trunk fingerprint, which layer started
from which weights (`"initialisation"`, also printed), model selection, best epochs,
validation scores, frames fitted on, classes, and the `data`, `cnn` and `seed`
settings: a later call reuses the heads only when its settings are the same). With
`cnn.weights=None` the random trunk is saved once as `<run>/trunk.weights.h5`, so
extraction in another process uses the same one.

The heads' conv5_3, fc6 and fc7 start from VGG-16's block5_conv3, fc1 and fc2 where a
with-top file is given and the shapes match (`cnn.top_weights`, `resolve_top_weights`):
the paper fine-tunes VGG-16 "from conv5-3 up to the last fully-connected layer" and
replaces only the classifier. fc6 matches only at 224x224 input with fc 4096.

The action-aware head trains on both its outputs, `"cam"` (the CAM branch's own
classifier) and `"action"` (the masked path, Eq. 3), see `ActionAwareHead`.
"""

import csv
import json
import logging
import warnings
from pathlib import Path

import keras
import numpy as np

from msl_keras import weight_decay
from msl_keras.callbacks import EpochCSVLogger
from msl_keras.data.feature_store import weights_fingerprint
from msl_keras.data.trunk_cache import (
    PLAIN_VIEW,
    CachedMapsDataset,
    cache_key,
    fill_cache,
    frame_samples,
    open_trunk_cache,
    views_of,
)
from msl_keras.errors import MslKerasError
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.precision import set_compute_dtype
from msl_keras.models.vgg16_trunk import (
    load_top_weights,
    resolve_top_weights,
    resolve_weights,
    weights_source,
)
from msl_keras.runs import (
    ACTION_HEAD_FILENAME,
    CONTEXT_HEAD_FILENAME,
    FEATURE_PARTS,
    INFO_FILENAME,
    build_trunk,
    check_same_settings,
    resolve_run,
)
from msl_keras.seeding import set_seed

logger = logging.getLogger(__name__)

# Maps of the rows a head trains on are read into memory when they fit in this; larger
# caches are read batch by batch from the HDF5 file.
IN_MEMORY_BYTES = 2 * 1024**3


def _optimizer(cnn, model):
    """SGD of the paper, weight decay as `cnn.weight_decay_mode` (`msl_keras.weight_decay`)."""
    return weight_decay.sgd(
        model,
        cnn.learning_rate,
        cnn.momentum,
        cnn.weight_decay,
        mode=cnn.weight_decay_mode,
    )


def input_scale(source, rows):
    """1 / RMS of the maps at `rows` of `source` (an array or a `TrunkCache`), from at
    most 1024 rows spread over them (1.0 when they are all zero)."""
    rows = np.asarray(rows)[:: max(1, len(rows) // 1024)]
    maps = source[rows] if isinstance(source, np.ndarray) else source.read(rows)
    rms = float(np.sqrt(np.mean(np.square(maps, dtype=np.float64))))
    return 1.0 / rms if rms > 0 else 1.0


def _build_heads(config, num_classes, map_shape, scale=1.0):
    """Both heads, built and compiled, and `initialisation`: which of their layers
    started from what (`{"context_head": {layer: text}, "action_head": ...}`).
    `scale`: the heads' `input_scale`."""
    cnn = config.cnn
    weights = resolve_weights(cnn.weights, cnn.width)  # fetched once for both heads
    set_seed(config.seed)
    context = ContextAwareHead(
        num_classes,
        fc_units=cnn.fc_units,
        width=cnn.width,
        dropout=cnn.dropout,
        weights=weights,
        conv5_3=not cnn.frozen_conv5_3,
        input_scale=scale,
    )
    with warnings.catch_warnings():
        # cam_class="oracle" on TRAINING frames uses their labels, which is no leak.
        warnings.simplefilter("ignore", UserWarning)
        action = ActionAwareHead(
            num_classes,
            fc_units=cnn.fc_units,
            cam_filters=cnn.cam_filters,
            width=cnn.width,
            dropout=cnn.dropout,
            cam_class=cnn.cam_class,
            top_k=min(cnn.top_k, num_classes),
            cam_normalization=cnn.cam_normalization,
            weights=weights,
            conv5_3=not cnn.frozen_conv5_3,
            input_scale=scale,
        )
    set_compute_dtype(context, cnn.compute_dtype)  # float16 compiles with loss scaling
    set_compute_dtype(action, cnn.compute_dtype)
    context.build((None,) + tuple(map_shape))
    action.build((None,) + tuple(map_shape))
    top, top_source = resolve_top_weights(cnn.top_weights, cnn.weights)
    # Which of conv5_3 / fc6 / fc7 come from the with-top file is decided per layer.
    conv5_3 = "random"
    if cnn.frozen_conv5_3:
        conv5_3 = "none: the trunk ends at block5_conv3 (cnn.frozen_conv5_3)"
    elif weights is not None:
        conv5_3 = f"block5_conv3 of {weights_source(cnn.weights)}"
    initial = {"block5_conv3": conv5_3, "fc6": "random", "fc7": "random"}
    initialisation = {
        f"trunk (block1_conv1 to block5_conv{2 + cnn.frozen_conv5_3})": weights_source(
            cnn.weights
        ),
        "top_weights": top_source,
    }
    for head, others in (
        (context, ("fc8",)),
        (action, ("cam_conv", "cam_classifier", "fc8")),
    ):
        initialisation[head.name] = {
            **load_top_weights(head, top, top_source, initial),
            **{name: "random" for name in others},
        }
    context.compile(
        optimizer=_optimizer(cnn, context),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    action.compile(
        optimizer=_optimizer(cnn, action),
        loss={"cam": "categorical_crossentropy", "action": "categorical_crossentropy"},
        metrics={"cam": ["accuracy"], "action": ["accuracy"]},
    )
    return context, action, initialisation


def _fit(model, train, validation, epochs, history_path, verbose, monitor="val_loss"):
    """Fits `epochs` epochs; with `validation`, restores the epoch that `monitor` picks:
    the lowest `"val_loss"`, or the highest of an accuracy (`"val_accuracy"`, the action
    head's `"val_action_accuracy"`; the first epoch of a tie).

    Returns:
        `{"best_epoch": the epoch kept, counted from 1, **its logged values}`.
    """
    callbacks = [EpochCSVLogger(str(history_path))]
    best = None
    if validation is not None:
        best = keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode="min" if monitor == "val_loss" else "max",
            patience=epochs + 1,
            restore_best_weights=True,
        )
        callbacks.append(best)
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    logs = history.history
    epoch = (
        int(best.best_epoch)
        if best is not None and best.best_epoch is not None
        else (len(logs["loss"]) - 1)
    )
    return {"best_epoch": epoch + 1, **{k: float(v[epoch]) for k, v in logs.items()}}


def _selection_monitor(selection, head):
    """The `fit` log key of `cnn.selection` for `head` ("context" or "action")."""
    if selection == "val_loss":
        return "val_loss"
    return "val_accuracy" if head == "context" else "val_action_accuracy"


def _heads_exist(cnn_dir):
    return all(
        (cnn_dir / name).is_file()
        for name in (CONTEXT_HEAD_FILENAME, ACTION_HEAD_FILENAME, INFO_FILENAME)
    )


def train_cnn(config, index, fold, run=None, overwrite=False, verbose="auto"):
    """Trains both heads of one fold from the trunk cache (see the module docstring).

    Args:
        config: a `Config`; uses `cnn.*`, `seed`.
        index: the `DatasetIndex` from `prepare(config)`.
        fold: a `Fold` or a fold name of `index`.
        run: `RunDirectory` or folder; default `RunDirectory.create(config)`.
        overwrite: retrain when the fold's heads are already saved (otherwise they are
            kept and their `cnn_info.json` returned, with `"skipped": True`).
        verbose: Keras' convention for `fit` (0 silent, 1 progress bar, 2 one line per
            epoch, "auto" 1); 0 also silences the per-clip cache lines and the messages
            (`logging`).

    Returns:
        dict: paths `"context_head"`, `"action_head"`, `"history_context"`,
        `"history_action"`, `"trunk_cache"`; `"context"` / `"action"` (best epoch,
        counted from 1, and its logged losses and accuracies; with "refit" also
        `"refit"`: the epochs trained on all training clips and the last epoch's logs);
        `"model_selection"`; `"train_frames"`, `"validation_frames"` and `"fit_frames"`
        (the frames the saved heads were trained on); `"trunk_fingerprint"`;
        `"trunk_frames_computed"` (maps computed by this call) and
        `"trunk_frames_reused"` (maps read from the cache); `"failed_clips"`
        `[(clip_id, reason)]` of clips that did not decode (left out); `"skipped"`.

    Raises:
        ConfigError: the fold's heads exist, were made with other `data`, `cnn` or
            `seed` settings, and `overwrite` is False (the message lists them).
        MslKerasError: the fold has no training clip that decodes.
    """
    run = resolve_run(config, run)
    fold = index.fold(fold)
    cnn_dir = run.cnn_dir(fold)
    if _heads_exist(cnn_dir) and not overwrite:
        check_same_settings(
            run.cnn_info_path(fold),
            config,
            FEATURE_PARTS,
            what=f"The heads in '{cnn_dir}'",
            remedy=(
                "They are not reused. Use another output_dir (or run folder) for these "
                "settings, or pass overwrite=True to retrain the heads here (the fold's "
                "features must then be extracted again)."
            ),
        )
        return {**run.read_cnn_info(fold), "skipped": True}
    cnn_dir.mkdir(parents=True, exist_ok=True)

    trunk = build_trunk(config, run)
    trunk_fp = weights_fingerprint(trunk)
    if config.cnn.weights is None and not run.trunk_weights_path.is_file():
        trunk.save_weights(run.trunk_weights_path)
    cache, runner = open_trunk_cache(config, run, trunk)
    cache_path = cache.path
    num_classes = index.num_classes
    train_records = fold.by_role("train")
    validation_records = fold.by_role("validation")
    show = bool(verbose)
    refit = config.data.model_selection == "refit"
    train_views = views_of(config)
    # "refit" trains on the validation clips too at the end, in the training views.
    val_views = list(dict.fromkeys([PLAIN_VIEW] + (train_views if refit else [])))

    with cache:
        train_samples, failed = frame_samples(
            train_records, config, cache, train_views
        )
        val_samples, val_failed = frame_samples(
            validation_records, config, cache, val_views
        )
        failed += val_failed
        computed, fill_failed = fill_cache(
            train_samples + val_samples, config, cache, runner, progress=show
        )
        failed += fill_failed
        failed_ids = {clip_id for clip_id, _ in failed}

        def table(samples, views):
            keys, labels = [], []
            for record, frames, _ in samples:
                if record.clip_id in failed_ids:
                    continue
                for f in frames:
                    for v in views:
                        keys.append(cache_key(record.clip_id, f, v))
                        labels.append(record.label)
            return cache.rows(keys), np.asarray(labels, np.int64)

        train_rows, train_labels = table(train_samples, train_views)
        val_rows, val_labels = table(val_samples, [PLAIN_VIEW])
        refit = refit and len(val_rows) > 0
        extra_rows, extra_labels = table(val_samples if refit else [], train_views)
        if len(train_rows) == 0:
            raise MslKerasError(
                f"Fold '{fold.name}' has no training clip that decodes "
                f"({len(train_records)} listed, failed: {failed[:5]}). Check the dataset "
                "with `prepare` / `describe`."
            )
        parts = [train_rows, val_rows, extra_rows]
        unique, inverse = np.unique(np.concatenate(parts), return_inverse=True)
        reused = len(unique) - computed
        if failed and show:
            logger.warning(
                f"train_cnn: {len(failed_ids)} clip(s) did not decode and were left out: "
                + ", ".join(sorted(failed_ids))
            )

        # Small caches are read once into memory; large ones batch by batch.
        if cache.nbytes(len(unique)) <= IN_MEMORY_BYTES:
            source = cache.read(unique)
            train_rows, val_rows, extra_rows = np.split(
                inverse, np.cumsum([len(p) for p in parts])[:-1]
            )
        else:
            source = cache

        scale = input_scale(source, train_rows) if config.cnn.scale_head_inputs else 1.0
        batch = int(config.cnn.batch_size)
        oracle = config.cnn.cam_class == "oracle"

        def dataset(rows, labels, outputs, shuffle):
            return CachedMapsDataset(
                source,
                rows,
                labels,
                num_classes,
                batch,
                outputs=outputs,
                shuffle=shuffle,
                seed=config.seed,
                oracle=oracle,
            )

        context, action, initialisation = _build_heads(
            config, num_classes, runner.map_shape, scale
        )
        if show:
            logger.info(
                "train_cnn: initial weights: " + json.dumps(initialisation, indent=2)
            )
        results = {}
        for name, model in (("context", context), ("action", action)):
            validation = None
            if len(val_rows):
                validation = dataset(val_rows, val_labels, name, shuffle=False)
            results[name] = _fit(
                model,
                dataset(train_rows, train_labels, name, shuffle=True),
                validation,
                int(config.cnn.epochs),
                cnn_dir / f"history_{name}.csv",
                verbose,
                monitor=_selection_monitor(config.cnn.selection, name),
            )
        fit_rows = train_rows
        if refit:
            # The same seed builds the same initial heads; they now train on every
            # training clip for the epochs chosen on validation, and are the ones saved.
            fit_rows = np.concatenate([train_rows, extra_rows])
            fit_labels = np.concatenate([train_labels, extra_labels])
            context, action, _ = _build_heads(
                config, num_classes, runner.map_shape, scale
            )
            for name, model in (("context", context), ("action", action)):
                epochs = results[name]["best_epoch"]
                logs = _fit(
                    model,
                    dataset(fit_rows, fit_labels, name, shuffle=True),
                    None,
                    epochs,
                    cnn_dir / f"history_{name}_refit.csv",
                    verbose,
                )
                logs.pop("best_epoch")
                results[name]["refit"] = {"epochs": epochs, **logs}

    context.save(cnn_dir / CONTEXT_HEAD_FILENAME)
    action.save(cnn_dir / ACTION_HEAD_FILENAME)
    info = {
        "fold": fold.name,
        "context_head": str(cnn_dir / CONTEXT_HEAD_FILENAME),
        "action_head": str(cnn_dir / ACTION_HEAD_FILENAME),
        "history_context": str(cnn_dir / "history_context.csv"),
        "history_action": str(cnn_dir / "history_action.csv"),
        "trunk_cache": str(cache_path),
        "trunk_fingerprint": trunk_fp,
        "initialisation": initialisation,
        "class_names": list(index.class_names),
        "context": results["context"],
        "action": results["action"],
        "model_selection": config.data.model_selection,
        "input_scale": scale,
        "train_frames": len(train_rows),
        "validation_frames": len(val_rows),
        "fit_frames": len(fit_rows),
        "trunk_frames_computed": int(computed),
        "trunk_frames_reused": int(reused),
        "failed_clips": [list(item) for item in failed],
        # What made the heads: a later call reuses them only with the same settings.
        **{part: config.to_dict()[part] for part in FEATURE_PARTS},
    }
    run.cnn_info_path(fold).write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "skipped": False}


def read_history(path):
    """A head's CSV history as `{column: [float, ...]}`."""
    with open(Path(path), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
