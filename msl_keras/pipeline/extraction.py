"""Stage 3: per-frame context- and action-aware features of every clip (Sec. 3.2.1).

The T frames of every clip of a fold (train, validation and test alike) pass ONCE
through the trunk that both trained heads read (`TwoStreamFeatureExtractor`); their fc7
outputs go to the fold's `FeatureStore`. With `cnn.extract_from_cache` the trunk's maps
come from the run's trunk cache, so folds sharing clips run the trunk once per frame.
"""

import contextlib
import itertools
import logging
import time

import keras

from msl_keras.data.feature_store import (
    FeatureStore, StoreSettings, merge_stores, weights_fingerprint,
)  # fmt: skip
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.trunk_cache import cached_num_frames, open_trunk_cache, plain_maps
from msl_keras.data.video import read_clip, select_frames
from msl_keras.errors import (
    FeatureStoreError, FeatureStoreMismatchError, MslKerasError, VideoDecodeError,
)  # fmt: skip
from msl_keras.runs import check_shard, fold_name, load_extractor, resolve_run

logger = logging.getLogger(__name__)


def store_settings(config, fold, extractor, num_classes):
    """The `StoreSettings` of the features `extractor` makes for `fold` and `config`."""
    data, cnn, size = config.data, config.cnn, int(config.cnn.input_size)
    cam_class = cnn.cam_class
    if cam_class == "top_k":
        cam_class = f"top_k{extractor.action_head.top_k}"
    heads = [extractor.trunk, extractor.context_head, extractor.action_head]
    return StoreSettings(
        dataset=data.dataset, split=fold_name(fold), T=int(data.num_steps),
        frame_selection=data.frame_selection, observed_ratio=float(data.observed_ratio),
        input_size=(size, size), preprocessing="vgg16_caffe",
        extractor_fingerprint=weights_fingerprint(heads), cam_class=cam_class,
        context_dim=int(extractor.context_dim), action_dim=int(extractor.action_dim),
        num_classes=int(num_classes), dtype=cnn.store_dtype,
        compute_dtype=extractor.compute_dtype_name,
    )  # fmt: skip


def extract(
    config, index, fold, run=None, shard=(0, 1), verbose="auto", extractor=None
):
    """Writes the features of every clip of `fold` (or of one shard of it) to its store
    (`<run>/<fold>/features/<fold>.h5`) and returns its `Path`. Clips already there are
    skipped; one that does not decode (or yields non-finite features) is recorded as
    failed, logged, and retried by the next call.

    Args:
        run: `RunDirectory` or folder holding the fold's trained heads (`train_cnn`).
        shard: `(i, n)` extracts `records[i::n]` into `<fold>.shard-i-of-n.h5` (one
            process per GPU or machine; `merge_shards` joins them); `(0, 1)` the store.
        verbose: 0 silent, 1 or "auto" a progress bar over the clips, 2 one line at the
            end; 1 and 2 also log the summary and the failed clips.
        extractor: a `TwoStreamFeatureExtractor` to use instead of `load_extractor`.

    Raises `WeightsError` when the fold's heads are missing (run `train_cnn` first),
    `FeatureStoreMismatchError` when the store exists with other settings.
    """
    run, fold = resolve_run(config, run), index.fold(fold)
    shard_index, shard_count = check_shard(shard)
    records = fold.records[shard_index::shard_count]
    path = run.store_path(fold, (shard_index, shard_count) if shard_count > 1 else None)
    if extractor is None:
        extractor = load_extractor(config, run, fold)
    settings = store_settings(config, fold, extractor, index.num_classes)
    data, T, size = config.data, int(config.data.num_steps), int(config.cnn.input_size)
    oracle = extractor.action_head.cam_class == "oracle"
    cache = runner = None
    if config.cnn.extract_from_cache:
        cache, runner = open_trunk_cache(config, run, extractor.trunk)

    def features_of(record):
        """`(context, action, frame indices, frame count)` of one clip."""
        mode, ratio = data.frame_selection, data.observed_ratio
        if cache is None:
            frames, indices, num_frames = read_clip(record.path, T, mode, ratio)
            inputs = preprocess_frames(frames, (size, size))
        else:
            num_frames = cached_num_frames(cache, record)
            indices = select_frames(num_frames, T, mode, ratio)
            inputs = plain_maps(config, cache, runner, record, indices)
        out = extractor.extract(
            inputs, labels=[record.label] * len(indices) if oracle else None,
            batch_size=max(1, int(config.cnn.batch_size)), from_maps=cache is not None,
        )  # fmt: skip
        return out["context"], out["action"], indices, num_frames

    with (
        cache if cache is not None else contextlib.nullcontext(),
        FeatureStore.open_or_create(path, settings, index.class_names) as store,
    ):
        done = set(store.completed_ids())
        todo = [r for r in records if r.clip_id not in done]
        if verbose:
            part = f" shard {shard_index + 1}/{shard_count}" if shard_count > 1 else ""
            logger.info(
                f"extract {fold.name}{part}: {len(records)} clips, "
                f"{len(records) - len(todo)} already done, {len(todo)} to go -> {path}"
            )
        started = time.time()
        progbar = keras.utils.Progbar(
            len(todo), verbose=1 if verbose == "auto" else verbose, unit_name="clip"
        )
        for record in todo:
            clip_start = time.time()
            try:
                context, action, indices, n = features_of(record)
                store.append(record.clip_id, context, action, record.label, indices, n)
            except FeatureStoreMismatchError:
                raise
            except (VideoDecodeError, FeatureStoreError) as error:
                store.record_failure(record.clip_id, str(error))
                progbar.add(1)
                continue
            seconds = max(time.time() - clip_start, 1e-6)
            progbar.add(1, values=[("frames/s", len(indices) / seconds)])
        failed, stored = store.failed(), len(store)
    if verbose:
        logger.info(
            f"extract {fold.name}: {stored} clips in {path} "
            f"({time.time() - started:.1f} s for {len(todo)})"
        )
        if failed:
            logger.warning(
                f"{len(failed)} clip(s) failed and are not in the store (run extract "
                "again to retry them):\n"
                + "\n".join(f"  {clip}: {reason}" for clip, reason in failed.items())
            )
    return path


def merge_shards(config, fold, run=None, num_shards=None):
    """Merges the `num_shards` stores `<fold>.shard-i-of-n.h5` into the fold's store and
    returns its `Path`; a `Fold` keeps its record order, a fold name interleaves the
    shards back. Raises `MslKerasError` for a missing shard or an existing merged store
    (`merge_stores`), `FeatureStoreMismatchError` for shards of other settings."""
    run = resolve_run(config, run)
    if num_shards is None or int(num_shards) < 1:
        raise MslKerasError(
            "merge_shards needs the shard count used at extraction. Received: "
            f"num_shards={num_shards!r}"
        )
    n = int(num_shards)
    paths = [run.store_path(fold, shard=(i, n)) for i in range(n)]
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise MslKerasError(
            f"Cannot merge fold '{fold_name(fold)}': shard store(s) missing: "
            f"{', '.join(missing)}. Run extract with shard=(i, {n}) for each first."
        )
    if getattr(fold, "records", None) is not None:
        order = [r.clip_id for r in fold.records]
    else:  # shard i holds records[i::n]: one clip of each shard in turn
        lists = []
        for p in paths:
            with FeatureStore.open(p) as store:
                lists.append(store.completed_ids())
        rounds = itertools.zip_longest(*lists)
        order = [i for ids in rounds for i in ids if i is not None]
    out = run.store_path(fold)
    merge_stores(paths, out, order=order).close()
    return out
