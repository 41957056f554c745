"""Stage 3: per-frame context- and action-aware features of every clip (paper Sec. 3.2.1).

For every clip of a fold (train, validation and test alike) the frames the LSTM will
see are chosen (`data.frame_selection`: the first T frames, the paper's "at most T = 50
frames", or T frames spread over the observed part `data.observed_ratio`), decoded,
preprocessed with the one preprocessing function, and passed ONCE through the trunk;
both trained heads read that output (`TwoStreamFeatureExtractor`). Their fc7 outputs,
`(n, Dc)` and `(n, Da)` with `n <= T`, are appended to the fold's `FeatureStore`
(`<run>/<fold>/features/<fold>.h5`), whose settings record T, the frame selection, the
preprocessing, the extractor's weights fingerprint, the CAM class, the dims, the store
dtype and the compute dtype (`cnn.compute_dtype`, the Keras policy of the trunk and
heads).
With `cnn.extract_from_cache` the trunk's output of each frame is read from the run's
trunk cache (`msl_keras.data.trunk_cache.plain_maps`) instead: the folds of a protocol
that share clips (UT-Interaction's 10 folds of a set) then run the trunk once per frame,
not once per fold.

- Resumable: clips already complete in the store are skipped; a killed run loses at
  most the clip it was writing.
- A clip that does not decode (or yields non-finite features) is recorded as failed in
  the store, the extraction goes on, and the failed clips are listed at the end;
  a resumed run retries them.
- Sharding: `shard=(i, n)` extracts `records[i::n]` into
  `<fold>.shard-i-of-n.h5`, e.g. one process per GPU or machine; `merge_shards` joins
  them into the fold's store.

Example:

>>> path = extract(config, index, "split1")
>>> with FeatureStore.open(path) as store:
...     arrays = store.read()  # {"context": (clips, T, Dc), "action": ..., ...}
"""

import contextlib
import logging
import time
from pathlib import Path

import keras

from msl_keras.data.feature_store import (
    FeatureStore,
    StoreSettings,
    merge_stores,
    weights_fingerprint,
)
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.trunk_cache import cached_num_frames, open_trunk_cache, plain_maps
from msl_keras.data.video import read_clip, select_frames
from msl_keras.errors import (
    FeatureStoreError,
    FeatureStoreMismatchError,
    MslKerasError,
    VideoDecodeError,
)
from msl_keras.runs import check_shard, fold_name, load_extractor, resolve_run

PREPROCESSING_NAME = "vgg16_caffe"

logger = logging.getLogger(__name__)


def store_settings(config, fold, extractor, num_classes):
    """The `StoreSettings` of the features `extractor` makes for `fold` under `config`."""
    cnn = config.cnn
    cam_class = cnn.cam_class
    if cam_class == "top_k":
        cam_class = f"top_k{extractor.action_head.top_k}"
    size = int(cnn.input_size)
    return StoreSettings(
        dataset=config.data.dataset,
        split=fold_name(fold),
        T=int(config.data.num_steps),
        frame_selection=config.data.frame_selection,
        observed_ratio=float(config.data.observed_ratio),
        input_size=(size, size),
        preprocessing=PREPROCESSING_NAME,
        extractor_fingerprint=weights_fingerprint(
            [extractor.trunk, extractor.context_head, extractor.action_head]
        ),
        cam_class=cam_class,
        context_dim=int(extractor.context_dim),
        action_dim=int(extractor.action_dim),
        num_classes=int(num_classes),
        dtype=cnn.store_dtype,
        compute_dtype=extractor.compute_dtype_name,
    )


def extract(
    config, index, fold, run=None, shard=(0, 1), verbose="auto", extractor=None
):
    """Writes the features of every clip of `fold` (or of one shard of it) to its store.

    Args:
        config: a `Config`; uses `data.num_steps` (T), `data.frame_selection`,
            `data.observed_ratio`, `cnn.input_size`, `cnn.cam_class`, `cnn.store_dtype`,
            `cnn.compute_dtype`, `cnn.batch_size` (frames per trunk pass),
            `cnn.extract_from_cache` (read the trunk's maps from the run's trunk cache,
            adding the missing ones).
        index: the `DatasetIndex` from `prepare`.
        fold: a `Fold` or fold name.
        run: `RunDirectory` or folder holding the fold's trained heads (`train_cnn`);
            default `RunDirectory.create(config)`.
        shard: `(i, n)`: extract `records[i::n]` into `<fold>.shard-i-of-n.h5`; `(0, 1)`
            writes the fold's store itself.
        verbose: Keras' convention: 0 silent, 1 a progress bar over the clips, 2 one
            line at the end, "auto" 1; with 1 or 2 the summary and the failed clips go
            to `logging`.
        extractor: a `TwoStreamFeatureExtractor` to use instead of `load_extractor`
            (e.g. one already in memory).

    Returns:
        `Path` of the store written.

    Raises:
        WeightsError: the fold's heads are missing (run `train_cnn` first).
        FeatureStoreMismatchError: the store exists with other settings.
    """
    run = resolve_run(config, run)
    fold = index.fold(fold)
    shard_index, shard_count = check_shard(shard)
    records = fold.records[shard_index::shard_count]
    path = run.store_path(
        fold, shard=None if shard_count == 1 else (shard_index, shard_count)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if extractor is None:
        extractor = load_extractor(config, run, fold)
    settings = store_settings(config, fold, extractor, index.num_classes)
    size = int(config.cnn.input_size)
    T = int(config.data.num_steps)
    oracle = extractor.action_head.cam_class == "oracle"
    batch_size = max(1, int(config.cnn.batch_size))

    cache = runner = None
    if config.cnn.extract_from_cache:
        cache, runner = open_trunk_cache(config, run, extractor.trunk)

    def features_of(record):
        """`(features, frame indices, frame count)` of one clip."""
        if cache is None:
            frames, indices, num_frames = read_clip(
                record.path,
                T,
                mode=config.data.frame_selection,
                observed_ratio=config.data.observed_ratio,
            )
            inputs, from_maps = preprocess_frames(frames, (size, size)), False
        else:
            num_frames = cached_num_frames(cache, record)
            indices = select_frames(
                num_frames,
                T,
                mode=config.data.frame_selection,
                observed_ratio=config.data.observed_ratio,
            )
            inputs = plain_maps(config, cache, runner, record, indices)
            from_maps = True
        labels = [record.label] * len(indices) if oracle else None
        out = extractor.extract(
            inputs, labels=labels, batch_size=batch_size, from_maps=from_maps
        )
        return out, indices, num_frames

    with cache or contextlib.nullcontext(), FeatureStore.open_or_create(
        path, settings, index.class_names
    ) as store:
        done = set(store.completed_ids())
        todo = [r for r in records if r.clip_id not in done]
        if verbose:
            logger.info(
                f"extract {fold.name}"
                + (f" shard {shard_index + 1}/{shard_count}" if shard_count > 1 else "")
                + f": {len(records)} clips, {len(records) - len(todo)} already done, "
                f"{len(todo)} to go -> {path}"
            )
        started = time.time()
        progbar = keras.utils.Progbar(
            len(todo), verbose=1 if verbose == "auto" else verbose, unit_name="clip"
        )
        for record in todo:
            clip_start = time.time()
            try:
                out, indices, num_frames = features_of(record)
                store.append(
                    record.clip_id,
                    out["context"],
                    out["action"],
                    record.label,
                    indices,
                    num_frames,
                )
            except FeatureStoreMismatchError:
                raise
            except (VideoDecodeError, FeatureStoreError) as error:
                store.record_failure(record.clip_id, str(error))
                progbar.add(1)
                continue
            seconds = max(time.time() - clip_start, 1e-6)
            progbar.add(1, values=[("frames/s", len(indices) / seconds)])
        failed = store.failed()
        stored = len(store)
    if verbose:
        logger.info(
            f"extract {fold.name}: {stored} clips in {path} "
            f"({time.time() - started:.1f} s for {len(todo)})"
        )
        if failed:
            logger.warning(
                f"{len(failed)} clip(s) failed and are not in the store (run extract "
                "again to retry them):\n"
                + "\n".join(f"  {clip_id}: {reason}" for clip_id, reason in failed.items())
            )
    return Path(path)


def merge_shards(config, fold, run=None, num_shards=None, remove_shards=False):
    """Merges the shard stores `<fold>.shard-i-of-n.h5` into the fold's store.

    Args:
        config: the `Config` the shards were extracted with.
        fold: a `Fold` (its record order is kept in the merged store) or a fold name
            (the shards are interleaved back, `records[i::n]` -> `records`).
        run: `RunDirectory` or folder; default `RunDirectory.create(config)`.
        num_shards: n; every shard 0..n-1 must exist.
        remove_shards: delete the shard files once the merged store is written.

    Returns:
        `Path` of the merged store.

    Raises:
        MslKerasError: a shard file is missing or the merged store already exists.
        FeatureStoreMismatchError: shards made with other settings.
    """
    run = resolve_run(config, run)
    if num_shards is None or int(num_shards) < 1:
        raise MslKerasError(
            f"merge_shards needs the shard count used at extraction. Received: "
            f"num_shards={num_shards!r}"
        )
    n = int(num_shards)
    paths = [run.store_path(fold, shard=(i, n)) for i in range(n)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MslKerasError(
            f"Cannot merge fold '{fold_name(fold)}': shard store(s) missing: "
            f"{', '.join(missing)}. Run extract with shard=(i, {n}) for each of them first."
        )
    out = run.store_path(fold)
    if out.exists():
        raise MslKerasError(
            f"'{out}' already exists; delete it to merge the shards again, or use it as it is."
        )
    records = getattr(fold, "records", None)
    if records is not None:
        order = [r.clip_id for r in records]
    else:
        order = _interleaved_ids(paths)
    merged = merge_stores(paths, out, order=order)
    merged.close()
    if remove_shards:
        for p in paths:
            Path(p).unlink()
    return Path(out)


def _interleaved_ids(paths):
    """Shard i holds records[i::n]: taking one clip from each shard in turn restores
    the fold's order."""
    lists = []
    for p in paths:
        with FeatureStore.open(p) as store:
            lists.append(store.completed_ids())
    order = []
    for j in range(max((len(ids) for ids in lists), default=0)):
        order.extend(ids[j] for ids in lists if j < len(ids))
    return order
