"""The authors' per-video `.npy` features, imported into a `FeatureStore`.

The original code wrote one folder tree per stream (context-aware, action-aware):

```
<stream_dir>/train/feature_<clip>.npy   (T, D) float array, one row per frame
<stream_dir>/train/label_<clip>.npy     the clip's label (`decode_original_label`)
<stream_dir>/val/...                    the same for its "val" clips (the test split)
```

Clips are paired by `<clip>` across the two stream folders; when both hold a label
file, they must agree. `OriginalFeatureSource` reads the tree as a
`msl_keras.data.imported` feature source (one `.npy` per clip and stream).

Zero rows: a clip the original failed to decode kept the all-zero rows it was
preallocated with (defect #1, `_ZERO_ROWS_EXPLANATION`), which cannot be told apart
from padding of a short clip, so `import_original_features` refuses clips with any
all-zero row unless `allow_zero_rows=True`.

The layout has no frame numbers: an imported clip of n rows gets `frame_indices`
0..n-1 and `num_frames` n (each row is taken as one frame, the clip as a whole).
"""

from pathlib import Path

import numpy as np

from msl_keras.data.feature_store import (
    FeatureStore,
    StoreSettings,
    writing_new_store,
)
from msl_keras.data.imported import NpyClips, load_npy
from msl_keras.errors import ConfigError, DatasetError, FeatureStoreError, listing

SUBSETS = ("train", "val")
_PREFIX, _LABEL_PREFIX, _SUFFIX = "feature_", "label_", ".npy"
_ZERO_ROWS_EXPLANATION = (
    "The original code wrote all-zero rows silently when it could not decode a frame "
    "(it unpacked `frame, ret = cap.read()` swapped, inside a bare try/except), so these "
    "rows are most likely failed decodes, not features. Re-extract these clips with "
    "msl_keras (`msl-keras extract`), or, if you know the zero rows are padding of clips "
    "shorter than T, pass allow_zero_rows=True (--allow-zero-rows): trailing zero rows "
    "then become masked padding, other zero rows are kept as data, and clips with no "
    "non-zero row are recorded as failed."
)


def decode_original_label(array, where="label"):
    """`(label, N)` held by one label file of the original layout (N None for a scalar).

    The original wrote a `(T, N)` array of one-hot rows, one per frame; all-zero rows
    (frames it never wrote) are ignored and the others must agree. A one-hot `(N,)`
    vector or a scalar integer `()` are accepted too. `where` names the file in errors.

    Raises:
        DatasetError: anything else (not one-hot, rows that disagree, no label row).
    """
    a = np.asarray(array)
    if a.dtype.kind not in "fiub":
        raise DatasetError(
            f"{where}: a label must be numeric. Received dtype {a.dtype}"
        )
    if a.ndim == 0:
        value = a.item()
        if float(value) != int(value) or int(value) < 0:
            raise DatasetError(
                f"{where}: a scalar label must be a class index >= 0. Received: {value!r}"
            )
        return int(value), None
    if a.ndim == 1:
        rows = a[None, :]
    elif a.ndim == 2:
        rows = a[a.any(axis=1)]
        if rows.shape[0] == 0:
            raise DatasetError(
                f"{where}: every label row is zero, so the clip has no label (the original "
                "code left label rows zero when decoding failed)."
            )
    else:
        raise DatasetError(
            f"{where}: a label must be a scalar, (N,) one-hot or (T, N) one-hot rows. "
            f"Received shape {a.shape}"
        )
    one_hot = np.all((rows == 0) | (rows == 1), axis=1) & (rows.sum(axis=1) == 1)
    if not one_hot.all():
        raise DatasetError(
            f"{where}: label rows must be one-hot (a single 1, zeros elsewhere). "
            f"Received a row {rows[~one_hot][0].tolist()}"
        )
    labels = np.unique(rows.argmax(axis=1))
    if labels.size != 1:
        raise DatasetError(
            f"{where}: the per-frame label rows name different classes {labels.tolist()}; "
            "a clip has one label."
        )
    return int(labels[0]), int(a.shape[-1])


def _scan(stream_dir, subset):
    folder = Path(stream_dir) / subset
    if not folder.is_dir():
        return {}
    return {
        p.name[len(_PREFIX) : -len(_SUFFIX)]: p
        for p in sorted(folder.glob(f"{_PREFIX}*{_SUFFIX}"))
    }


def original_roles(stream_dir, subsets=SUBSETS):
    """`{clip: "train" | "val"}` from one stream folder of the original layout."""
    return {clip: subset for subset in subsets for clip in _scan(stream_dir, subset)}


def _read_label(paths, clip):
    decoded = {}
    for path in paths:
        if path.is_file():
            decoded[path] = decode_original_label(load_npy(path), where=str(path))
    if not decoded:
        raise DatasetError(
            f"Clip '{clip}' has no label file ({' or '.join(map(str, paths))})."
        )
    labels = {label for label, _ in decoded.values()}
    if len(labels) > 1:
        raise DatasetError(
            f"Clip '{clip}': its label files disagree: "
            + ", ".join(f"{p} says {v[0]}" for p, v in decoded.items())
        )
    widths = {width for _, width in decoded.values() if width is not None}
    return labels.pop(), widths


class OriginalFeatureSource(NpyClips):
    """The clips of the original layout (module docstring), in subset order, then by id.

    `subsets` holds each clip's subfolder ("train" or "val"); `class_names` default to
    one per column of the one-hot label files (else to the largest label + 1).

    Raises:
        DatasetError: missing folders, clips without a partner in the other stream
            or in several subsets (listed), bad labels.
    """

    def __init__(self, context_dir, action_dir, subsets=SUBSETS, class_names=None):
        context_dir, action_dir = Path(context_dir), Path(action_dir)
        for name, folder in (("context_dir", context_dir), ("action_dir", action_dir)):
            if not folder.is_dir():
                raise DatasetError(
                    f"{name} '{folder}' is not a folder of the original layout."
                )
        if any(s not in SUBSETS for s in subsets):
            raise ConfigError(
                f"subsets must be among {SUBSETS}. Received: subsets={subsets!r}"
            )
        clips = {}  # clip -> (subset, context path, action path)
        context_only, action_only, repeated = [], [], []
        for subset in subsets:
            ctx, act = _scan(context_dir, subset), _scan(action_dir, subset)
            context_only += [f"{subset}/{c}" for c in ctx if c not in act]
            action_only += [f"{subset}/{c}" for c in act if c not in ctx]
            for clip in ctx:
                if clip in act:
                    if clip in clips:
                        repeated.append(clip)
                    clips[clip] = (subset, ctx[clip], act[clip])
        if context_only or action_only:
            raise DatasetError(
                "Clips without a partner in the other stream: "
                f"only in {context_dir}: [{listing(context_only)}]; "
                f"only in {action_dir}: [{listing(action_only)}]. Each clip needs "
                "feature_<clip>.npy in both stream folders (same subset)."
            )
        if repeated:
            raise DatasetError(
                f"Clips found in more than one subset ({', '.join(subsets)}): "
                f"{listing(repeated)}; a clip id must be unique."
            )
        if not clips:
            raise DatasetError(
                f"No {_PREFIX}<clip>{_SUFFIX} files in {context_dir} and {action_dir} "
                f"under {', '.join(subsets)}/."
            )
        labels, widths = [], set()
        for clip, (subset, _, _) in clips.items():
            label_file = f"{subset}/{_LABEL_PREFIX}{clip}{_SUFFIX}"
            paths = [context_dir / label_file, action_dir / label_file]
            label, clip_widths = _read_label(paths, clip)
            labels.append(label)
            widths |= clip_widths
        if len(widths) > 1:
            raise DatasetError(
                f"The one-hot label files have several widths {sorted(widths)}."
            )
        if class_names is None and widths:
            class_names = [f"class_{i}" for i in range(widths.pop())]
        ids = list(clips)
        files = {
            "context": [clips[c][1] for c in ids],
            "action": [clips[c][2] for c in ids],
        }
        super().__init__(
            context_dir, files, ids, np.asarray(labels, dtype=np.int64), ids, {},
            class_names,
        )  # fmt: skip
        self.subsets = [clips[c][0] for c in ids]
        self._check_table(f"'{context_dir}'")


def import_original_features(
    context_dir,
    action_dir,
    out_path,
    *,
    class_names=None,
    allow_zero_rows=False,
    subsets=SUBSETS,
    compression="gzip",
    **settings_overrides,
):
    """Imports the original code's per-video `.npy` features into a new `FeatureStore`.

    Args:
        context_dir, action_dir: the two streams' folders (holding `train/`, `val/`).
        out_path: the store to write (must not exist; written to `out_path.partial`
            and renamed when complete).
        class_names: N class names; default "class_0".."class_{N-1}".
        allow_zero_rows: accept clips with all-zero feature rows: trailing rows zero
            in both streams become masked padding, other zero rows are kept as data,
            and clips with no non-zero row are recorded as failed
            (`FeatureStore.failed()`). By default they are refused, listed.
        subsets: which subfolders to import into this one store.
        compression: as in `FeatureStore.create`.
        **settings_overrides: `StoreSettings` fields, over the defaults below (T: the
            most rows of any clip; cam_class="oracle": the original masked with the
            true class, defect #2).

    Returns:
        The new store, open read-only (close it, or use `with`).

    Raises:
        DatasetError: as `OriginalFeatureSource`; unreadable files, all-zero rows,
            clips longer than T.
    """
    out_path = Path(out_path)
    if out_path.exists():
        raise FeatureStoreError(
            f"'{out_path}' already exists; delete it or choose another path to import into."
        )
    source = OriginalFeatureSource(context_dir, action_dir, subsets, class_names)
    dims, lengths = source.shapes()
    num_classes = settings_overrides.pop("num_classes", len(source.class_names))
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    defaults = {
        "dataset": "original",
        "split": "original",
        "T": max(lengths),
        "frame_selection": "first",
        "observed_ratio": 1.0,
        "input_size": (224, 224),
        "preprocessing": "original",
        "extractor_fingerprint": "original",
        "cam_class": "oracle",
        "context_dim": dims["context"],
        "action_dim": dims["action"],
        "num_classes": num_classes,
        "dtype": "float32",
    }
    unknown = sorted(set(settings_overrides) - set(defaults))
    if unknown:
        raise ConfigError(
            f"Unknown settings {unknown}. StoreSettings fields: {sorted(defaults)}."
        )
    settings = StoreSettings(**{**defaults, **settings_overrides})

    # Into <out>.partial; renamed once everything is in.
    zero_clips, too_long = [], []
    with writing_new_store(out_path, settings, class_names, compression) as store:
        for row, clip in enumerate(source.clip_ids):
            arrays = source.clip(row)
            context, action = arrays["context"], arrays["action"]
            zero_context, zero_action = ~context.any(axis=1), ~action.any(axis=1)
            if not allow_zero_rows:
                zeros = int((zero_context | zero_action).sum())
                if zeros:
                    zero_clips.append(
                        f"{source.subsets[row]}/{clip} ({zeros} of {len(context)} rows)"
                    )
                if zero_clips:
                    continue  # the import fails; keep scanning to list every such clip
            else:
                data = np.flatnonzero(~(zero_context & zero_action))
                if data.size == 0:
                    store.record_failure(
                        clip,
                        "every feature row is zero: the original code's silent decode "
                        "failure; re-extract this clip",
                    )
                    continue
                length = int(data[-1]) + 1
                context, action = context[:length], action[:length]
            n = context.shape[0]
            if n > settings.T:
                too_long.append(f"{clip} ({n} rows)")
                continue
            label, frames = int(source.labels[row]), np.arange(n, dtype=np.int32)
            store._append(clip, context, action, label, frames, n, durable=False)
        if zero_clips:
            raise DatasetError(
                f"{len(zero_clips)} clips have all-zero feature rows: "
                f"{listing(zero_clips)}. {_ZERO_ROWS_EXPLANATION} Nothing was written."
            )
        if too_long:
            raise DatasetError(
                f"Clips with more rows than T={settings.T}: {listing(too_long)}. Pass a "
                "larger T (or none: the longest clip's). Nothing was written."
            )
    return FeatureStore(out_path, "r")
