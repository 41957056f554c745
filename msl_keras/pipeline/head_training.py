"""Stage 2: train the context- and action-aware heads on frames (paper Sec. 3.2.1, 4.2).

Both heads sit on the frozen VGG-16 trunk ("the shared part is not trained end to end")
and train on single frames with cross-entropy and the paper's SGD (`config.cnn`). The
frozen trunk's maps are computed once per frame and view into `<run>/trunk_cache/`
(`data.trunk_cache`): `cnn.frames_per_clip` frames of each training clip in
`cnn.augment_views` fixed augmented views, the same frames of the validation clips
unaugmented; the test clips are never read. Each head keeps its epoch of the best
validation score (`cnn.selection`; "last": its last epoch); "refit" then trains both
again from the same seed on training AND validation clips for that many epochs.
conv5_3, fc6 and fc7 start from `cnn.top_weights` where the shapes match (the paper
fine-tunes "from conv5-3 up to the last fully-connected layer"). Written to
`<run>/<fold>/cnn/`: the heads' `.keras`, `history_<head>[_refit].csv`, `cnn_info.json`;
with `cnn.weights=None` the random trunk goes to `<run>/trunk.weights.h5`.
"""

import json
import logging
import warnings

import keras
import numpy as np

from msl_keras import weight_decay
from msl_keras.callbacks import EpochCSVLogger
from msl_keras.data import trunk_cache
from msl_keras.data.feature_store import weights_fingerprint
from msl_keras.data.trunk_cache import PLAIN_VIEW, CachedMapsDataset
from msl_keras.errors import MslKerasError
from msl_keras.models import vgg16_trunk
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.precision import set_compute_dtype
from msl_keras.runs import (  # fmt: skip
    ACTION_HEAD_FILENAME, CONTEXT_HEAD_FILENAME, FEATURE_PARTS, INFO_FILENAME,
    build_trunk, check_same_settings, resolve_run,
)
from msl_keras.seeding import set_seed

logger = logging.getLogger(__name__)

# The maps the heads train on are read into memory up to this size, else batch by batch.
IN_MEMORY_BYTES = 2 * 1024**3


def _optimizer(cnn, model):
    return weight_decay.sgd(
        model, cnn.learning_rate, cnn.momentum, cnn.weight_decay, cnn.weight_decay_mode
    )


def _build_heads(config, num_classes, map_shape, scale=1.0):
    """Both heads, built and compiled, and `initialisation`: which of their layers
    started from what (`{"context_head": {layer: text}, "action_head": ...}`)."""
    cnn = config.cnn
    weights = vgg16_trunk.resolve_weights(cnn.weights, cnn.width)  # once for both
    source = vgg16_trunk.weights_source(cnn.weights)
    common = dict(
        fc_units=cnn.fc_units, width=cnn.width, dropout=cnn.dropout, weights=weights,
        conv5_3=not cnn.frozen_conv5_3, input_scale=scale,
    )  # fmt: skip
    set_seed(config.seed)
    context = ContextAwareHead(num_classes, **common)
    # cam_class="oracle" on TRAINING frames uses their labels, which is no leak.
    with warnings.catch_warnings():  # Python 3.10: no action= argument
        warnings.simplefilter("ignore", UserWarning)
        action = ActionAwareHead(
            num_classes, cam_filters=cnn.cam_filters, cam_class=cnn.cam_class,
            top_k=min(cnn.top_k, num_classes),
            cam_normalization=cnn.cam_normalization, **common,
        )  # fmt: skip
    for head in (context, action):
        set_compute_dtype(head, cnn.compute_dtype)  # float16 compiles with loss scaling
        head.build((None,) + tuple(map_shape))
    top, top_source = vgg16_trunk.resolve_top_weights(cnn.top_weights, cnn.weights)
    conv5_3 = "random" if weights is None else f"block5_conv3 of {source}"
    if cnn.frozen_conv5_3:
        conv5_3 = "none: the trunk ends at block5_conv3 (cnn.frozen_conv5_3)"
    initial = {"block5_conv3": conv5_3, "fc6": "random", "fc7": "random"}
    trunk = f"trunk (block1_conv1 to block5_conv{2 + cnn.frozen_conv5_3})"
    initialisation = {trunk: source, "top_weights": top_source}
    cam = ("cam_conv", "cam_classifier", "fc8")
    for head, others in ((context, ("fc8",)), (action, cam)):
        initialisation[head.name] = {
            **vgg16_trunk.load_top_weights(head, top, top_source, initial),
            **{name: "random" for name in others},
        }
    ce = "categorical_crossentropy"
    # No XLA: Keras' "auto" turns it on for these heads on a GPU, where each fold's new
    # heads would be compiled again, longer than their training takes at paper scale
    # (RESULTS.md, "Table 2 at paper scale"); on a CPU "auto" is already no XLA.
    context.compile(
        optimizer=_optimizer(cnn, context), loss=ce, metrics=["accuracy"],
        jit_compile=False,
    )  # fmt: skip
    action.compile(
        optimizer=_optimizer(cnn, action), loss={"cam": ce, "action": ce},
        metrics={"cam": ["accuracy"], "action": ["accuracy"]}, jit_compile=False,
    )  # fmt: skip
    return context, action, initialisation


def _fit(model, train, validation, epochs, history_path, verbose, monitor="val_loss"):
    """Fits `epochs` epochs; with `validation` and a `monitor`, restores the epoch it
    picks (the lowest "val_loss" or the highest accuracy; the first of a tie). With
    `monitor=None` the last epoch is kept and `validation` is only scored. Returns
    `{"best_epoch": the epoch kept, counted from 1, **its logged values}`."""
    callbacks = [EpochCSVLogger(str(history_path))]
    select = validation is not None and monitor is not None
    if select:
        mode = "min" if monitor == "val_loss" else "max"
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=epochs + 1, restore_best_weights=True
        ))  # fmt: skip
    logs = model.fit(
        train, validation_data=validation, epochs=epochs, callbacks=callbacks,
        verbose=verbose,
    ).history  # fmt: skip
    epoch = int(callbacks[-1].best_epoch) if select else len(logs["loss"]) - 1
    return {"best_epoch": epoch + 1, **{k: float(v[epoch]) for k, v in logs.items()}}


def train_cnn(config, index, fold, run=None, overwrite=False, verbose="auto"):
    """Trains both heads of one fold from the trunk cache (see the module docstring).

    Args:
        run: `RunDirectory` or folder; default `RunDirectory.create(config)`.
        overwrite: retrain when the fold's heads are already saved (otherwise they are
            kept and their `cnn_info.json` returned, with `"skipped": True`).
        verbose: Keras' `fit` convention; 0 also silences the cache and the log.

    Returns the `cnn_info.json` dict (`info` at the end of this function), `"skipped"`.

    Raises:
        ConfigError: the fold's heads exist, were made with other `data`, `cnn` or
            `seed` settings, and `overwrite` is False (the message lists them).
        MslKerasError: the fold has no training clip that decodes.
    """
    run = resolve_run(config, run)
    fold = index.fold(fold)
    cnn_dir = run.cnn_dir(fold)
    names = (CONTEXT_HEAD_FILENAME, ACTION_HEAD_FILENAME, INFO_FILENAME)
    if all((cnn_dir / name).is_file() for name in names) and not overwrite:
        check_same_settings(
            run.cnn_info_path(fold), config, FEATURE_PARTS,
            what=f"The heads in '{cnn_dir}'",
            remedy="They are not reused. Use another output_dir (or run folder) for "
            "these settings, or pass overwrite=True to retrain the heads here (the "
            "fold's features must then be extracted again).",
        )  # fmt: skip
        return {**run.read_cnn_info(fold), "skipped": True}
    cnn_dir.mkdir(parents=True, exist_ok=True)

    cnn = config.cnn
    trunk = build_trunk(config, run)
    if cnn.weights is None and not run.trunk_weights_path.is_file():
        trunk.save_weights(run.trunk_weights_path)
    cache, runner = trunk_cache.open_trunk_cache(config, run, trunk)
    num_classes = index.num_classes
    train_records = fold.by_role("train")
    refit = config.data.model_selection == "refit"
    train_views = trunk_cache.views_of(config)
    # "refit" trains on the validation clips too at the end, in the training views.
    val_views = list(dict.fromkeys([PLAIN_VIEW] + (train_views if refit else [])))

    with cache:
        samples = trunk_cache.frame_samples
        train_samples, failed = samples(train_records, config, cache, train_views)
        val_records = fold.by_role("validation")
        val_samples, val_failed = samples(val_records, config, cache, val_views)
        computed, fill_failed = trunk_cache.fill_cache(
            train_samples + val_samples, config, cache, runner, progress=bool(verbose)
        )
        failed += val_failed + fill_failed
        failed_ids = {clip_id for clip_id, _ in failed}

        def table(samples, views):
            keys, labels = [], []
            for record, frames, _ in samples:
                if record.clip_id not in failed_ids:
                    for f in frames:
                        for v in views:
                            keys.append(trunk_cache.cache_key(record.clip_id, f, v))
                            labels.append(record.label)
            return cache.rows(keys), np.asarray(labels, np.int64)

        train_rows, train_labels = table(train_samples, train_views)
        val_rows, val_labels = table(val_samples, [PLAIN_VIEW])
        refit = refit and len(val_rows) > 0
        extra_rows, extra_labels = table(val_samples if refit else [], train_views)
        if len(train_rows) == 0:
            raise MslKerasError(
                f"Fold '{fold.name}' has no training clip that decodes "
                f"({len(train_records)} listed, failed: {failed[:5]}). Check the "
                "dataset with `prepare` / `describe`."
            )
        parts = [train_rows, val_rows, extra_rows]
        unique, inverse = np.unique(np.concatenate(parts), return_inverse=True)
        if failed and verbose:
            logger.warning(
                f"train_cnn: {len(failed_ids)} clip(s) did not decode and were left "
                "out: " + ", ".join(sorted(failed_ids))
            )
        source = cache
        if cache.nbytes(len(unique)) <= IN_MEMORY_BYTES:
            source = cache.read(unique)
            train_rows, val_rows, extra_rows = np.split(
                inverse, np.cumsum([len(p) for p in parts])[:-1]
            )
        scale = 1.0
        if cnn.scale_head_inputs:  # 1 / RMS of at most 1024 training maps spread out
            rows = train_rows[:: max(1, len(train_rows) // 1024)]
            maps = source[rows] if isinstance(source, np.ndarray) else source.read(rows)
            rms = float(np.sqrt(np.mean(np.square(maps, dtype=np.float64))))
            scale = 1.0 / rms if rms > 0 else 1.0

        def dataset(rows, labels, outputs, shuffle):
            return CachedMapsDataset(
                source, rows, labels, num_classes, int(cnn.batch_size), outputs=outputs,
                shuffle=shuffle, seed=config.seed, oracle=cnn.cam_class == "oracle",
            )  # fmt: skip

        context, action, initialisation = _build_heads(
            config, num_classes, runner.map_shape, scale
        )
        if verbose:
            logger.info(
                "train_cnn: initial weights: " + json.dumps(initialisation, indent=2)
            )

        def fit_heads(heads, rows, labels, epochs=None, suffix=""):
            """Both heads on `rows`: `{head: epochs}`, or `cnn.epochs` picked on val."""
            results = {}
            for name, model in zip(("context", "action"), heads):
                validation = None
                if epochs is None and len(val_rows):
                    validation = dataset(val_rows, val_labels, name, shuffle=False)
                accuracy = "val_action_accuracy" if name == "action" else "val_accuracy"
                # "last" keeps the last epoch: no monitor, validation only scored.
                monitor = {"val_loss": "val_loss", "val_accuracy": accuracy}
                results[name] = _fit(
                    model, dataset(rows, labels, name, shuffle=True), validation,
                    epochs[name] if epochs else int(cnn.epochs),
                    cnn_dir / f"history_{name}{suffix}.csv", verbose,
                    monitor=monitor.get(cnn.selection),
                )  # fmt: skip
            return results

        results = fit_heads((context, action), train_rows, train_labels)
        fit_rows = train_rows
        if refit:
            # The same seed builds the same initial heads, the ones saved.
            fit_rows = np.concatenate([train_rows, extra_rows])
            fit_labels = np.concatenate([train_labels, extra_labels])
            heads = _build_heads(config, num_classes, runner.map_shape, scale)[:2]
            context, action = heads
            epochs = {name: result["best_epoch"] for name, result in results.items()}
            refits = fit_heads(heads, fit_rows, fit_labels, epochs, "_refit")
            for name, logs in refits.items():
                logs.pop("best_epoch")
                results[name]["refit"] = {"epochs": epochs[name], **logs}

    context.save(cnn_dir / CONTEXT_HEAD_FILENAME)
    action.save(cnn_dir / ACTION_HEAD_FILENAME)
    info = {
        "fold": fold.name,
        "context_head": str(cnn_dir / CONTEXT_HEAD_FILENAME),
        "action_head": str(cnn_dir / ACTION_HEAD_FILENAME),
        "history_context": str(cnn_dir / "history_context.csv"),
        "history_action": str(cnn_dir / "history_action.csv"),
        "trunk_cache": str(cache.path),
        "trunk_fingerprint": weights_fingerprint(trunk),
        "initialisation": initialisation,
        "class_names": list(index.class_names),
        **results,  # "context", "action": each head's kept epoch and logs
        "model_selection": config.data.model_selection,
        "input_scale": scale,
        "train_frames": len(train_rows),
        "validation_frames": len(val_rows),
        "fit_frames": len(fit_rows),
        "trunk_frames_computed": int(computed),
        "trunk_frames_reused": int(len(unique) - computed),
        "failed_clips": [list(item) for item in failed],
        # What made the heads: a later call reuses them only with the same settings.
        **{part: config.to_dict()[part] for part in FEATURE_PARTS},
    }
    run.cnn_info_path(fold).write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "skipped": False}
