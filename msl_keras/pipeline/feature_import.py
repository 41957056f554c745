"""Stage 3 for features made elsewhere: write the fold's `FeatureStore` from them.

With `data.dataset="imported"`, `data.root` holds the user's features (layout in
`msl_keras.data.imported`) and `import_features` takes the place of `train_cnn` and
`extract`. Each clip gives at most `T = data.num_steps` rows, chosen by
`data.frame_selection` as extraction chooses frames; a context-only input makes a
single-stream store. No frame went through our trunk: the store says
`preprocessing="imported"`, `cam_class="none"`, `input_size=(1, 1)`, and its
`extractor_fingerprint` is the sha1 of the input's files.
"""

import logging
from pathlib import Path

import numpy as np

from msl_keras.data.feature_store import (
    FeatureStore,
    StoreSettings,
    writing_new_store,
)
from msl_keras.data.imported import FeatureSource
from msl_keras.data.video import select_frames
from msl_keras.errors import ConfigError, FeatureStoreError
from msl_keras.runs import resolve_run

logger = logging.getLogger(__name__)

DATASET = "imported"


def import_features(config, index, fold, run=None, overwrite=False, verbose="auto"):
    """Writes the store of `fold` (a name or `Fold` of `index`) from `data.root`.

    `run` is a `RunDirectory`, a run folder, or None (`RunDirectory.create(config)`);
    `verbose` follows Keras (0 silent; 1, 2 or "auto" log what was written). A store
    already imported from the same input with the same settings is kept as it is.
    Returns the store's `Path`.

    Raises:
        ConfigError: another dataset than "imported".
        DatasetError: bad input (naming the file and what to change).
        FeatureStoreError: a store of other features or settings, without `overwrite`.
    """
    if config.data.dataset != DATASET:
        raise ConfigError(
            "import_features reads features made elsewhere: it needs "
            f"data.dataset='{DATASET}' (e.g. --preset imported). Received: "
            f"data.dataset={config.data.dataset!r}; extract features of videos with the "
            "extract stage instead."
        )
    run = resolve_run(config, run)
    fold = index.fold(fold)
    path = run.store_path(fold.name)
    data = config.data
    with FeatureSource.open(data.root) as source:
        dims = source.dims()
        settings = StoreSettings(
            dataset=DATASET,
            split=fold.name,
            T=data.num_steps,
            frame_selection=data.frame_selection,
            observed_ratio=data.observed_ratio,
            input_size=(1, 1),
            preprocessing="imported",
            extractor_fingerprint=source.fingerprint(),
            cam_class="none",
            context_dim=dims.get("context"),
            action_dim=dims.get("action"),
            num_classes=len(source.class_names),
            dtype=config.cnn.store_dtype,
        )
        if Path(path).exists():
            with FeatureStore.open(path) as existing:
                differences = existing.settings.differences(settings)
                same = not differences and len(existing) == len(fold.records)
            if same:
                if verbose:
                    logger.info(f"import_features: '{path}' already holds these features.")
                return path
            if not overwrite:
                raise FeatureStoreError(
                    f"'{path}' holds features imported with other settings or from "
                    f"other files ({', '.join(differences) or 'other clips'} differ). "
                    "Pass overwrite=True (--overwrite) to import again, or remove it."
                )
            Path(path).unlink()
        row_of = {clip_id: row for row, clip_id in enumerate(source.clip_ids)}
        with writing_new_store(path, settings, source.class_names) as store:
            for record in fold.records:
                clip = source.clip(row_of[record.clip_id])
                n = clip["frame_indices"].shape[0]
                keep = select_frames(
                    n, settings.T, settings.frame_selection, settings.observed_ratio
                )
                store._append(
                    record.clip_id,
                    clip["context"][keep] if "context" in clip else None,
                    clip["action"][keep] if "action" in clip else None,
                    record.label,
                    clip["frame_indices"][keep].astype(np.int32),
                    clip["num_frames"],
                    durable=False,
                )
    if verbose:
        dims = ", ".join(f"{s} {settings.dim(s)}" for s in settings.streams)
        logger.info(
            f"import_features: {len(fold.records)} clips of fold '{fold.name}' ({dims} "
            f"features, T={settings.T}) -> {path}"
        )
    return path
