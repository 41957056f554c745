"""Stage 2: train the context- and action-aware heads on frames (paper Sec. 3.2.1, 4.2).

Both heads sit on the shared VGG-16 trunk (up to conv5_2), which keeps its ImageNet
weights: "the shared part is not trained end to end". The heads are trained on single
frames with cross-entropy and SGD (lr 0.001, momentum 0.9, weight decay 0.0005, batch
32: `config.cnn`) on the paper's augmentation (flip, rotation, aspect crop, channel
shift, colour jitter; `msl_keras.data.augment`).

Because the trunk is frozen, its conv5_2 output for a given input frame never changes.
This stage therefore computes it ONCE per sampled frame and augmented view and stores it
in `<run>/trunk_cache/` (`TrunkCache`); both heads, every epoch, and every fold of a
protocol (UT-Interaction's 10 leave-one-sequence-out folds share their clips) train from
that cache:

- Training clips contribute `cnn.frames_per_clip` frames spread uniformly over the clip
  (`select_frames(..., "uniform")`), each in `cnn.augment_views` augmented copies
  ("views"). View `k` of frame `f` of clip `c` has augmentation parameters drawn from the
  stateless seed `(config.seed, crc32("c|f|augk"))`, so the same view is the same image
  in every run and fold, and the cache can be keyed by `(clip, frame, view)`. An epoch
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
import hashlib
import json
import math
import time
import warnings
import zlib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from msl_keras import weight_decay
from msl_keras.callbacks import EpochCSVLogger
from msl_keras.data import augment as augment_ops
from msl_keras.data import preprocessing
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import count_frames, read_frames, select_frames
from msl_keras.errors import MslKerasError, VideoDecodeError, WeightsError
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.models.feature_extractor import TwoStreamFeatureExtractor
from msl_keras.models.precision import set_compute_dtype
from msl_keras.models.vgg16_trunk import (
    VGG16Trunk,
    load_top_weights,
    resolve_top_weights,
    resolve_weights,
    weights_source,
)
from msl_keras.runs import FEATURE_PARTS, check_same_settings, resolve_run
from msl_keras.seeding import set_seed
from msl_keras.data.trunk_cache import TrunkCache, cache_key

CONTEXT_HEAD_FILENAME = "context_head.keras"
ACTION_HEAD_FILENAME = "action_head.keras"
INFO_FILENAME = "cnn_info.json"
TRUNK_WEIGHTS_FILENAME = "trunk.weights.h5"
PLAIN_VIEW = "plain"
# Bump when the way cached inputs are made changes (sampling, augmentation order).
CACHE_VERSION = 1
# Maps of the rows a head trains on are read into memory when they fit in this; larger
# caches are read batch by batch from the HDF5 file.
IN_MEMORY_BYTES = 2 * 1024**3


def build_trunk(config, run=None):
    """The frozen VGG-16 trunk of `config.cnn`, up to conv5_2 (paper Fig. 3), or up to
    conv5_3 with `cnn.frozen_conv5_3`.

    Args:
        config: uses `cnn.input_size`, `cnn.width`, `cnn.weights` ("imagenet", a path to
            a Keras VGG-16 weights file, or None), `cnn.frozen_conv5_3` and `seed`.
        run: optional `RunDirectory` (or folder). With `cnn.weights=None` the random
            trunk is drawn from `config.seed`; when the run holds `trunk.weights.h5`
            (written by `train_cnn`), those weights are loaded instead.

    Returns:
        A `VGG16Trunk` with `trainable=False` computing in `cnn.compute_dtype`, output
        `(batch, input_size / 16, input_size / 16, round(512 * width))`.
    """
    cnn = config.cnn
    size = int(cnn.input_size)
    if size % 16:
        raise MslKerasError(
            f"cnn.input_size must be divisible by 16 (VGG-16 pools 4 times before "
            f"conv5_2). Received: cnn.input_size={size}"
        )
    set_seed(config.seed)
    trunk = VGG16Trunk(
        input_shape=(size, size, 3),
        width=cnn.width,
        weights=cnn.weights,
        include_conv5_3=cnn.frozen_conv5_3,
    )
    trunk.trainable = False
    set_compute_dtype(trunk, cnn.compute_dtype)
    if cnn.weights is None and run is not None:
        path = resolve_run(config, run).root / TRUNK_WEIGHTS_FILENAME
        if path.is_file():
            trunk.load_weights(path)
    return trunk


def trunk_fingerprint(trunk):
    """sha1 (16 hex digits) of the trunk's weight values and shapes."""
    digest = hashlib.sha1()
    for weight in trunk.weights:
        value = np.ascontiguousarray(
            keras.ops.convert_to_numpy(weight), dtype=np.float32
        )
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def augmentation_config(config):
    """The paper's augmentation ranges with the output size of `config.cnn.input_size`."""
    size = int(config.cnn.input_size)
    return augment_ops.AugmentationConfig(output_size=(size, size))


def cache_settings(config, trunk_fp):
    """Everything that decides a cached map besides (clip, frame, view)."""
    return {
        "version": CACHE_VERSION,
        "trunk": trunk_fp,
        "input_size": int(config.cnn.input_size),
        "preprocessing": list(preprocessing.IMAGENET_MEAN_BGR),
        "augmentation": repr(augmentation_config(config)),
        "augment": bool(config.cnn.augment),
        "seed": int(config.seed),
        "compute_dtype": config.cnn.compute_dtype,
    }


def cache_fingerprint(settings):
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def views_of(config):
    """Names of the views a training frame is seen in: `aug0..` or `plain`."""
    if not config.cnn.augment:
        return [PLAIN_VIEW]
    return [f"aug{k}" for k in range(max(1, int(config.cnn.augment_views)))]


def view_seed(seed, clip_id, frame, view):
    """Stateless seed `(2,)` of one view's augmentation parameters."""
    return np.array(
        [
            int(seed) & 0x7FFFFFFF,
            zlib.crc32(cache_key(clip_id, frame, view).encode()) & 0x7FFFFFFF,
        ],
        dtype=np.int64,
    )


class TrunkRunner:
    """Runs the frozen trunk on batches of preprocessed frames, one traced tf.function.

    `frames_computed` counts the frames passed through the trunk.
    """

    def __init__(self, trunk, batch_size=32):
        self.trunk = trunk
        self.batch_size = int(batch_size)
        self.frames_computed = 0
        shape = tuple(trunk.input_shape[1:])
        self._fn = tf.function(
            lambda x: trunk(x, training=False),
            input_signature=[tf.TensorSpec((None,) + shape, tf.float32)],
        )

    def __call__(self, frames):
        """conv5_2 maps `(n, h, w, C)` (numpy float32) of frames `(n, S, S, 3)`."""
        frames = np.asarray(frames, np.float32)
        out = []
        for start in range(0, len(frames), self.batch_size):
            maps = self._fn(tf.constant(frames[start : start + self.batch_size]))
            out.append(np.asarray(maps, np.float32))  # the cache is float32
        self.frames_computed += len(frames)
        return (
            np.concatenate(out) if out else np.zeros((0,) + self.map_shape, np.float32)
        )

    @property
    def map_shape(self):
        return tuple(int(d) for d in self.trunk.output_shape[1:])


def open_trunk_cache(config, run, trunk):
    """`(TrunkCache, TrunkRunner)` of `trunk` under `config`: the run's cache file that
    `train_cnn` fills and `extract` (with `cnn.extract_from_cache`) reads."""
    runner = TrunkRunner(trunk, batch_size=max(config.cnn.batch_size, 32))
    settings = cache_settings(config, trunk_fingerprint(trunk))
    fingerprint = cache_fingerprint(settings)
    path = resolve_run(config, run).trunk_cache_dir / f"{fingerprint}.h5"
    return TrunkCache(path, fingerprint, runner.map_shape, settings), runner


def cached_num_frames(cache, record):
    """The decodable frame count of `record`, recorded in `cache` on first use."""
    num = cache.num_frames(record.clip_id)
    if num is None:
        num = count_frames(record.path)
        cache.set_num_frames(record.clip_id, num)
    return num


def plain_maps(config, cache, runner, record, frames):
    """conv5_2 maps `(n, h, w, C)` float32 of `frames` (n,) of `record` without
    augmentation (view "plain"), read from `cache`; missing ones are computed and added.

    Raises:
        VideoDecodeError: the clip does not decode.
    """
    _, failed = _fill_cache(
        [(record, frames, [PLAIN_VIEW])], config, cache, runner, progress=False
    )
    if failed:
        raise VideoDecodeError(failed[0][1])
    keys = [cache_key(record.clip_id, f, PLAIN_VIEW) for f in frames]
    return cache.read(cache.rows(keys))


def _frame_samples(records, config, cache, role_views):
    """[(record, frames (n,), views)] for every record, with frame counts from the cache."""
    samples, failed = [], []
    for record in records:
        try:
            num = cached_num_frames(cache, record)
        except VideoDecodeError as error:
            failed.append((record.clip_id, str(error)))
            continue
        frames = select_frames(num, int(config.cnn.frames_per_clip), mode="uniform")
        samples.append((record, frames, role_views))
    return samples, failed


def _fill_cache(samples, config, cache, runner, progress=True):
    """Computes the trunk output of every (clip, frame, view) that is not cached yet.

    Decodes only the clips with missing rows, augments each view with its own seeded
    parameters, preprocesses, and runs the trunk in batches of `runner.batch_size`.

    Returns:
        (number of maps computed, failed [(clip_id, reason)]).
    """
    size = int(config.cnn.input_size)
    aug_config = augmentation_config(config)
    pending_keys, pending_frames, failed = [], [], []
    computed = 0
    started = time.time()

    def flush():
        nonlocal computed
        if pending_frames:
            maps = runner(np.stack(pending_frames))
            cache.add(list(pending_keys), maps)
            computed += len(pending_keys)
            pending_keys.clear()
            pending_frames.clear()

    todo = []
    for record, frames, views in samples:
        missing = [
            (int(f), v)
            for f in frames
            for v in views
            if cache_key(record.clip_id, f, v) not in cache
        ]
        if missing:
            todo.append((record, missing))
    for number, (record, missing) in enumerate(todo, 1):
        wanted = sorted({f for f, _ in missing})
        try:
            decoded = read_frames(record.path, wanted)
        except VideoDecodeError as error:
            failed.append((record.clip_id, str(error)))
            continue
        position = {f: i for i, f in enumerate(wanted)}
        plain = [(f, v) for f, v in missing if v == PLAIN_VIEW]
        augmented = [(f, v) for f, v in missing if v != PLAIN_VIEW]
        if plain:
            images = decoded[[position[f] for f, _ in plain]]
            pending_frames.extend(np.asarray(preprocess_frames(images, (size, size))))
            pending_keys.extend(cache_key(record.clip_id, f, v) for f, v in plain)
        if augmented:
            draws = [
                augment_ops.draw_augmentation(
                    view_seed(config.seed, record.clip_id, f, v), aug_config
                )
                for f, v in augmented
            ]
            params = {key: tf.stack([d[key] for d in draws]) for key in draws[0]}
            images = decoded[[position[f] for f, _ in augmented]]
            views = augment_ops.augment_frame(images, params, aug_config)
            pending_frames.extend(np.asarray(preprocess_frames(views, (size, size))))
            pending_keys.extend(cache_key(record.clip_id, f, v) for f, v in augmented)
        if len(pending_frames) >= runner.batch_size:
            flush()
        if progress:
            rate = (computed + len(pending_frames)) / max(time.time() - started, 1e-6)
            print(
                f"trunk cache [{number}/{len(todo)}] {record.clip_id}: {len(missing)} "
                f"frames ({rate:.1f} frames/s)",
                flush=True,
            )
    flush()
    return computed, failed


class CachedMapsDataset(keras.utils.PyDataset):
    """Batches of cached conv5_2 maps and one-hot labels for `fit`.

    Args:
        source: a `TrunkCache` or a float32 array of the maps.
        rows: int `(n,)` rows of `source`.
        labels: int `(n,)` classes.
        num_classes: N.
        batch_size: int.
        outputs: "context" -> `(maps, y)`; "action" -> `(maps, {"cam": y, "action": y})`
            (maps as `{"maps", "labels"}` when `oracle`).
        shuffle: reshuffle the order every epoch (from `seed`).
    """

    def __init__(
        self,
        source,
        rows,
        labels,
        num_classes,
        batch_size,
        outputs="context",
        shuffle=False,
        seed=0,
        oracle=False,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.source = source
        self.rows = np.asarray(rows, np.int64)
        self.labels = np.asarray(labels, np.int64)
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.outputs = outputs
        self.shuffle = shuffle
        self.oracle = oracle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.rows))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self):
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index):
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = self.rows[picked]
        if isinstance(self.source, np.ndarray):
            maps = self.source[rows]
        else:
            maps = self.source.read(rows)
        labels = self.labels[picked]
        y = np.eye(self.num_classes, dtype=np.float32)[labels]
        if self.outputs == "context":
            return maps, y
        x = {"maps": maps, "labels": labels.astype(np.int32)} if self.oracle else maps
        return x, {"cam": y, "action": y}

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)


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


def _fit(model, train, validation, epochs, history_path, verbose):
    """Fits `epochs` epochs; with `validation`, restores the epoch of lowest val_loss.

    Returns:
        `{"best_epoch": the epoch kept, counted from 1, **its logged values}`.
    """
    callbacks = [EpochCSVLogger(str(history_path))]
    best = None
    if validation is not None:
        best = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            mode="min",
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


def _heads_exist(cnn_dir):
    return all(
        (cnn_dir / name).is_file()
        for name in (CONTEXT_HEAD_FILENAME, ACTION_HEAD_FILENAME, INFO_FILENAME)
    )


def train_cnn(config, index, fold, run=None, overwrite=False, verbose=1):
    """Trains both heads of one fold from the trunk cache (see the module docstring).

    Args:
        config: a `Config`; uses `cnn.*`, `seed`.
        index: the `DatasetIndex` from `prepare(config)`.
        fold: a `Fold` or a fold name of `index`.
        run: `RunDirectory` or folder; default `RunDirectory.create(config)`.
        overwrite: retrain when the fold's heads are already saved (otherwise they are
            kept and their `cnn_info.json` returned, with `"skipped": True`).
        verbose: Keras `fit` verbosity; 0 also silences the per-clip cache lines.

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
            cnn_dir / INFO_FILENAME,
            config,
            FEATURE_PARTS,
            what=f"The heads in '{cnn_dir}'",
            remedy=(
                "They are not reused. Use another output_dir (or run folder) for these "
                "settings, or pass overwrite=True to retrain the heads here (the fold's "
                "features must then be extracted again)."
            ),
        )
        info = json.loads((cnn_dir / INFO_FILENAME).read_text())
        return {**info, "skipped": True}
    cnn_dir.mkdir(parents=True, exist_ok=True)

    trunk = build_trunk(config, run)
    trunk_fp = trunk_fingerprint(trunk)
    if config.cnn.weights is None:
        path = run.root / TRUNK_WEIGHTS_FILENAME
        if not path.is_file():
            trunk.save_weights(path)
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
        train_samples, failed = _frame_samples(
            train_records, config, cache, train_views
        )
        val_samples, val_failed = _frame_samples(
            validation_records, config, cache, val_views
        )
        failed += val_failed
        computed, fill_failed = _fill_cache(
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
            print(
                f"train_cnn: {len(failed_ids)} clip(s) did not decode and were left out: "
                + ", ".join(sorted(failed_ids)),
                flush=True,
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
            print(
                "train_cnn: initial weights: " + json.dumps(initialisation, indent=2),
                flush=True,
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
    (cnn_dir / INFO_FILENAME).write_text(json.dumps(info, indent=2) + "\n")
    return {**info, "skipped": False}


def load_heads(run, fold):
    """`(ContextAwareHead, ActionAwareHead)` saved by `train_cnn` for `fold`.

    Args:
        run: a `RunDirectory` (or a run folder).
        fold: a `Fold` or fold name.

    Raises:
        WeightsError: the heads are not there (run `train_cnn` first).
    """
    from msl_keras.runs import RunDirectory

    if not isinstance(run, RunDirectory):
        run = RunDirectory.open(run)
    cnn_dir = run.cnn_dir(fold)
    paths = [cnn_dir / CONTEXT_HEAD_FILENAME, cnn_dir / ACTION_HEAD_FILENAME]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise WeightsError(
            f"Trained heads not found: {', '.join(missing)}. Run the train-cnn stage for "
            f"fold '{getattr(fold, 'name', fold)}' first."
        )
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # an "oracle" head warns on rebuild
        context = keras.saving.load_model(paths[0], compile=False)
        action = keras.saving.load_model(paths[1], compile=False)
    return context, action


def load_extractor(config, run, fold):
    """The `TwoStreamFeatureExtractor` (trunk + trained heads) of `fold`.

    The action head uses `config.cnn.cam_class` / `top_k` (rebuilt with the trained
    weights when it was trained in another mode; "oracle" warns: label leakage).

    Raises:
        WeightsError: the heads are missing, or the trunk built from `config` is not the
            one the heads were trained on (other weights file, input size or width).
    """
    run = resolve_run(config, run)
    context, action = load_heads(run, fold)
    trunk = build_trunk(config, run)
    info_path = run.cnn_dir(fold) / INFO_FILENAME
    if info_path.is_file():
        trained_on = json.loads(info_path.read_text()).get("trunk_fingerprint")
        found = trunk_fingerprint(trunk)
        if trained_on and trained_on != found:
            raise WeightsError(
                f"The heads in '{run.cnn_dir(fold)}' were trained on trunk {trained_on}, but "
                f"config.cnn (weights={config.cnn.weights!r}, input_size="
                f"{config.cnn.input_size}, width={config.cnn.width}) builds trunk {found}. "
                "Use the config of that run."
            )
    cnn = config.cnn
    top_k = min(cnn.top_k, action.num_classes)
    if action.cam_class != cnn.cam_class or action.top_k != top_k:
        rebuilt = ActionAwareHead.from_config(
            {**action.get_config(), "cam_class": cnn.cam_class, "top_k": top_k}
        )
        rebuilt.build((None,) + tuple(trunk.output_shape[1:]))
        rebuilt.set_weights(action.get_weights())
        action = rebuilt
    extractor = TwoStreamFeatureExtractor(
        trunk, context, action, compute_dtype=cnn.compute_dtype
    )
    extractor.build((None,) + tuple(trunk.input_shape[1:]))
    return extractor


def read_history(path):
    """A head's CSV history as `{column: [float, ...]}`."""
    with open(Path(path), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
