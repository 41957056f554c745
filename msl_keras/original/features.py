"""The authors' per-video `.npy` features, imported into a `FeatureStore`.

The original code wrote one folder tree per stream (context-aware, action-aware):

```
<stream_dir>/train/feature_<clip>.npy   (T, D) float array, one row per frame
<stream_dir>/train/label_<clip>.npy     the clip's label (`decode_original_label`)
<stream_dir>/val/...                    the same for its "val" clips (the test split)
```

Clips are paired by `<clip>` across the two stream folders. The layout has no frame
numbers: a clip of n rows gets `frame_indices` 0..n-1 and `num_frames` n.
"""

from pathlib import Path

import numpy as np

from msl_keras.data.feature_store import FeatureStore, StoreSettings, writing_new_store
from msl_keras.data.imported import NpyClips, load_npy
from msl_keras.errors import ConfigError, DatasetError, FeatureStoreError, listing

SUBSETS = ("train", "val")
_PREFIX, _LABEL_PREFIX, _SUFFIX = "feature_", "label_", ".npy"
# Defect 1: a clip it failed to decode kept the all-zero rows it was preallocated
# with, which cannot be told apart from padding of a short clip.
_ZERO_ROWS_EXPLANATION = (
    "The original code wrote all-zero rows silently when it could not decode a frame, "
    "so these rows are most likely failed decodes, not features. Re-extract these "
    "clips with msl_keras (`msl-keras extract`), or, if the zero rows are padding of "
    "clips shorter than T, pass allow_zero_rows=True (--allow-zero-rows)."
)


def decode_original_label(array, where="label"):
    """`(label, N)` held by one label file of the original layout (N None for a scalar).

    The original wrote a `(T, N)` array of one-hot rows, one per frame; all-zero rows
    (frames it never wrote) are ignored and the others must agree. A one-hot `(N,)` or
    a scalar index are accepted too; anything else raises `DatasetError` at `where`.
    """
    a = np.asarray(array)
    numeric = a.dtype.kind in "fiub"
    bad_scalar = numeric and a.ndim == 0 and (float(a) != int(a) or int(a) < 0)
    if not numeric or a.ndim > 2 or bad_scalar:
        raise DatasetError(
            f"{where}: a label must be a class index >= 0, (N,) one-hot or (T, N) "
            f"one-hot rows. Received {a.dtype} {a.shape}: {a.ravel()[:8].tolist()}"
        )
    if a.ndim == 0:
        return int(a), None
    rows = a[None, :] if a.ndim == 1 else a[a.any(axis=1)]
    if rows.shape[0] == 0:
        raise DatasetError(f"{where}: every label row is zero: the clip has no label.")
    one_hot = np.all((rows == 0) | (rows == 1), axis=1) & (rows.sum(axis=1) == 1)
    if not one_hot.all():
        raise DatasetError(
            f"{where}: label rows must be one-hot (a single 1, zeros elsewhere). "
            f"Received a row {rows[~one_hot][0].tolist()}"
        )
    labels = np.unique(rows.argmax(axis=1))
    if labels.size != 1:
        raise DatasetError(
            f"{where}: the per-frame label rows name different classes "
            f"{labels.tolist()}; a clip has one label."
        )
    return int(labels[0]), int(a.shape[-1])


def _scan(stream_dir, subset):
    """`{clip: feature file}` of one subset folder ({} if there is none)."""
    files = sorted((Path(stream_dir) / subset).glob(f"{_PREFIX}*{_SUFFIX}"))
    return {p.name[len(_PREFIX) : -len(_SUFFIX)]: p for p in files}


def original_roles(stream_dir, subsets=SUBSETS):
    """`{clip: "train" | "val"}` from one stream folder of the original layout."""
    return {clip: subset for subset in subsets for clip in _scan(stream_dir, subset)}


def _read_label(clip, subset, *stream_dirs):
    """`(label, {one-hot widths})` of a clip from its label files (either or both)."""
    paths = [d / subset / f"{_LABEL_PREFIX}{clip}{_SUFFIX}" for d in stream_dirs]
    decoded = {
        path: decode_original_label(load_npy(path), where=str(path))
        for path in paths
        if path.is_file()
    }
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
    return labels.pop(), {width for _, width in decoded.values() if width is not None}


class OriginalFeatureSource(NpyClips):
    """The clips of the original layout, in subset order, then by id; `subsets` holds
    each clip's subfolder. `class_names` default to one per column of the one-hot label
    files (else to the largest label + 1)."""

    def __init__(self, context_dir, action_dir, subsets=SUBSETS, class_names=None):
        context_dir, action_dir = Path(context_dir), Path(action_dir)
        for folder in (context_dir, action_dir):
            if not folder.is_dir():
                raise DatasetError(f"'{folder}' is not a folder of the original layout")
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
            for clip in [c for c in ctx if c in act]:
                if clip in clips:
                    repeated.append(clip)
                clips[clip] = (subset, ctx[clip], act[clip])
        if context_only or action_only:
            raise DatasetError(
                f"Clips without a partner in the other stream: only in {context_dir}: "
                f"[{listing(context_only)}]; only in {action_dir}: "
                f"[{listing(action_only)}]."
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
        decoded = [
            _read_label(clip, subset, context_dir, action_dir)
            for clip, (subset, _, _) in clips.items()
        ]
        labels = np.asarray([label for label, _ in decoded], dtype=np.int64)
        widths = set().union(*(clip_widths for _, clip_widths in decoded))
        if len(widths) > 1:
            raise DatasetError(
                f"The one-hot label files have several widths {sorted(widths)}."
            )
        if class_names is None and widths:
            class_names = [f"class_{i}" for i in range(widths.pop())]
        ids = list(clips)
        self.subsets, context_files, action_files = map(list, zip(*clips.values()))
        files = {"context": context_files, "action": action_files}
        super().__init__(context_dir, files, ids, labels, ids, {}, class_names)
        self._check_table(f"'{context_dir}'")


def import_original_features(
    context_dir, action_dir, out_path, *, class_names=None, allow_zero_rows=False,
    subsets=SUBSETS, compression="gzip", **settings_overrides,
):  # fmt: skip
    """Imports the original code's per-video `.npy` features of `context_dir` and
    `action_dir` into a new `FeatureStore` (written to `out_path.partial`, renamed
    when complete; returned open read-only).

    Args:
        allow_zero_rows: accept clips with all-zero feature rows (by default refused,
            listed: `_ZERO_ROWS_EXPLANATION`): trailing rows zero in both streams
            become masked padding, other zero rows are kept as data, and clips with no
            non-zero row are recorded as failed (`FeatureStore.failed()`).
        subsets: which subfolders to import into this one store.
        **settings_overrides: `StoreSettings` fields, over the defaults below (T: the
            most rows of any clip; cam_class="oracle": the original masked with the
            true class, defect #2).
    """
    out_path = Path(out_path)
    if out_path.exists():
        raise FeatureStoreError(
            f"'{out_path}' already exists; delete it or choose another path."
        )
    source = OriginalFeatureSource(context_dir, action_dir, subsets, class_names)
    dims, lengths = source.shapes()
    num_classes = settings_overrides.pop("num_classes", len(source.class_names))
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    defaults = {
        "dataset": "original", "split": "original", "T": max(lengths),
        "frame_selection": "first", "observed_ratio": 1.0, "input_size": (224, 224),
        "preprocessing": "original", "extractor_fingerprint": "original",
        "cam_class": "oracle", "dtype": "float32", "num_classes": num_classes,
        "context_dim": dims["context"], "action_dim": dims["action"],
    }  # fmt: skip
    unknown = sorted(set(settings_overrides) - set(defaults))
    if unknown:
        raise ConfigError(
            f"Unknown settings {unknown}. StoreSettings fields: {sorted(defaults)}."
        )
    settings = StoreSettings(**{**defaults, **settings_overrides})

    zero_clips, too_long = [], []
    with writing_new_store(out_path, settings, class_names, compression) as store:
        for row, clip in enumerate(source.clip_ids):
            arrays = source.clip(row)
            context, action = arrays["context"], arrays["action"]
            zero_context, zero_action = ~context.any(axis=1), ~action.any(axis=1)
            if not allow_zero_rows:
                zeros = int((zero_context | zero_action).sum())
                if zeros:
                    where = f"{source.subsets[row]}/{clip}"
                    zero_clips.append(f"{where} ({zeros} of {len(context)} rows)")
                if zero_clips:
                    continue  # the import fails; keep scanning to list every such clip
            else:
                data = np.flatnonzero(~(zero_context & zero_action))
                if data.size == 0:
                    reason = "every feature row is zero: a failed decode"
                    store.record_failure(clip, reason)
                    continue
                context, action = context[: data[-1] + 1], action[: data[-1] + 1]
            n = context.shape[0]
            if n > settings.T:
                too_long.append(f"{clip} ({n} rows)")
                continue
            label, frames = int(source.labels[row]), np.arange(n, dtype=np.int32)
            store.append(clip, context, action, label, frames, n, durable=False)
        if zero_clips:
            raise DatasetError(
                f"{len(zero_clips)} clips have all-zero feature rows: "
                f"{listing(zero_clips)}. {_ZERO_ROWS_EXPLANATION} Nothing was written."
            )
        if too_long:
            raise DatasetError(
                f"Clips with more rows than T={settings.T}: {listing(too_long)}. Pass "
                "a larger T (or none). Nothing was written."
            )
    return FeatureStore(out_path, "r")
