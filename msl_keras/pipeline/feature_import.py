"""Stage 3 for features made elsewhere: write the fold's `FeatureStore` from them.

With `data.dataset="imported"`, `data.root` holds the user's features (layout in
`msl_keras.data.imported`) and `import_features` takes the place of `train_cnn` and
`extract`: each clip gives at most `T = data.num_steps` rows, chosen as extraction
chooses frames; the store's `extractor_fingerprint` is the sha1 of the input's files.
"""

import logging

import numpy as np

from msl_keras.data.feature_store import FeatureStore, StoreSettings, writing_new_store
from msl_keras.data.imported import FeatureSource
from msl_keras.data.video import select_frames
from msl_keras.errors import ConfigError, FeatureStoreError
from msl_keras.runs import resolve_run

logger = logging.getLogger(__name__)

DATASET = "imported"


def import_features(config, index, fold, run=None, overwrite=False, verbose="auto"):
    """Writes the store of `fold` (a name or `Fold` of `index`) from `data.root` and
    returns its `Path` (a context-only input makes a single-stream store); `verbose` 0
    is silent, else what was written is logged. A store already imported from the same
    input with the same settings is kept as it is.

    Raises `ConfigError` for another dataset than "imported", `DatasetError` for bad
    input (naming the file and what to change), `FeatureStoreError` for a store of
    other features or settings without `overwrite`.
    """
    data = config.data
    if data.dataset != DATASET:
        raise ConfigError(
            f"import_features needs data.dataset='{DATASET}' (--preset imported). "
            f"Received: data.dataset={data.dataset!r}; videos go to the extract stage."
        )
    run, fold = resolve_run(config, run), index.fold(fold)
    path = run.store_path(fold.name)
    with FeatureSource.open(data.root) as source:
        dims = source.dims()
        settings = StoreSettings(
            dataset=DATASET, split=fold.name, T=data.num_steps,
            frame_selection=data.frame_selection, observed_ratio=data.observed_ratio,
            input_size=(1, 1), preprocessing="imported",
            extractor_fingerprint=source.fingerprint(), cam_class="none",
            context_dim=dims.get("context"), action_dim=dims.get("action"),
            num_classes=len(source.class_names), dtype=config.cnn.store_dtype,
        )  # fmt: skip
        if path.exists():
            with FeatureStore.open(path) as existing:
                differences = existing.settings.differences(settings)
                same = not differences and len(existing) == len(fold.records)
            if same and verbose:
                logger.info(f"import_features: '{path}' already holds these features.")
            if same:
                return path
            if not overwrite:
                raise FeatureStoreError(
                    f"'{path}' holds features imported with other settings or from "
                    f"other files ({', '.join(differences) or 'other clips'} differ). "
                    "Pass overwrite=True (--overwrite) to import again, or remove it."
                )
            path.unlink()
        row_of = {clip_id: row for row, clip_id in enumerate(source.clip_ids)}
        selection = (settings.T, settings.frame_selection, settings.observed_ratio)
        with writing_new_store(path, settings, source.class_names) as store:
            for record in fold.records:
                clip = source.clip(row_of[record.clip_id])
                keep = select_frames(len(clip["frame_indices"]), *selection)
                store.append(
                    record.clip_id,
                    clip["context"][keep] if "context" in clip else None,
                    clip["action"][keep] if "action" in clip else None,
                    record.label, clip["frame_indices"][keep].astype(np.int32),
                    clip["num_frames"], durable=False,
                )  # fmt: skip
    if verbose:
        dims = ", ".join(f"{s} {settings.dim(s)}" for s in settings.streams)
        logger.info(
            f"import_features: {len(fold.records)} clips of fold '{fold.name}' ({dims} "
            f"features, T={settings.T}) -> {path}"
        )
    return path
