"""The HDF5 feature store between the CNN stage and the LSTM stage.

Extraction (or feature import) writes the context- and action-aware fc7 features of
each clip's (at most T) selected frames; LSTM training and evaluation read them back.
One file holds the clips of ONE `StoreSettings`: it is resumed only with equal
settings, and mixing stores made otherwise raises `FeatureStoreMismatchError` listing
the keys that differ.

Layout (schema version 1, `SCHEMA_VERSION`); a "row" is one clip:

```
/                      attrs: format="msl_keras.FeatureStore", schema_version,
                              msl_keras_version, created (ISO 8601, UTC),
                              settings (json of StoreSettings), class_names (json)
/context       (rows, T, Dc)  settings.dtype, one chunk per row, zero on padded steps
/action        (rows, T, Da)  settings.dtype, one chunk per row, zero on padded steps
/labels        (rows,)        int64 class index
/lengths       (rows,)        int32 valid steps n; steps n..T-1 are padding (masked)
/clip_ids      (rows,)        utf-8 strings
/frame_indices (rows, T)      int32 frame of the clip each step shows, -1 on padding
/num_frames    (rows,)        int64 frames in the whole clip (for accuracy vs ratio)
/complete      (rows,)        uint8 1 once the row is fully written
/failed        (k,)           utf-8 json {"clip_id", "reason"}: clips that could not be
                              decoded; extraction goes on and lists them at the end
```

A single-stream store (features imported for a one-stream LSTM, `data.imported`) has
`context_dim` or `action_dim` None and no `/context` or `/action` dataset.

Crash safety: `append` writes and flushes the row's data, then sets `complete[row] = 1`
and flushes again. A killed process leaves rows flagged 0: they never read as data and
the next `append` overwrites them, so a resumed extraction has no duplicates and no
half-written rows. A kill inside HDF5's own flush can still damage the file; opening it
then raises `FeatureStoreError` saying to delete it. (`flush` hands the data to the
operating system: this covers a killed process, not a power cut.)
"""

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

import msl_keras
from msl_keras.config import COMPUTE_DTYPES, FRAME_SELECTIONS
from msl_keras.errors import (
    ConfigError,
    FeatureStoreError,
    FeatureStoreMismatchError,
    listing,
)

SCHEMA_VERSION = 1
FORMAT_NAME = "msl_keras.FeatureStore"
DTYPES = ("float16", "float32")
COMPRESSIONS = ("gzip", "lzf", None)
STREAMS = ("context", "action")
# The per-clip datasets after the streams; `complete` is written last.
ROW_DATASETS = (
    "labels", "lengths", "clip_ids", "frame_indices", "num_frames", "complete"
)
# The per-clip datasets `read` returns besides the streams, in their dtypes.
INDEX_DTYPES = {
    "labels": np.int64,
    "lengths": np.int32,
    "frame_indices": np.int32,
    "num_frames": np.int64,
}
_DELETE_ADVICE = (
    "Delete the file and run the extraction again: it starts a new store and "
    "recomputes every clip."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What must be equal for the features of two clips to be mixed in one store.

    Args:
        split: the split or fold name (an int split is stored as its string, "1").
        T: the most steps (frames) stored per clip (the paper: 50).
        frame_selection: "first" (the first T frames) or "uniform" (T frames spread
            over the observed part, the first `observed_ratio` in (0, 1] of the clip).
        input_size: (height, width) of the frames fed to the trunk.
        extractor_fingerprint: `weights_fingerprint` of the CNN that made the features.
        cam_class: the class whose CAM masked the action stream ("predicted", ...).
        context_dim, action_dim: Dc and Da, the fc7 sizes of the context- and
            action-aware heads; None: a single-stream store without that stream.
        dtype: storage precision, "float16" (half the bytes) or "float32".
        compute_dtype: the precision the CNN computed the features in; stores written
            before it was recorded read as "float32", the only one they could use.
    """

    dataset: str
    split: str
    T: int
    frame_selection: str
    observed_ratio: float
    input_size: tuple
    preprocessing: str
    extractor_fingerprint: str
    cam_class: str
    context_dim: int | None
    action_dim: int | None
    num_classes: int
    dtype: str = "float16"
    compute_dtype: str = "float32"

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        if _is_int(self.split):
            put("split", str(int(self.split)))
        for key in (
            "dataset", "split", "preprocessing", "extractor_fingerprint", "cam_class"
        ):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise _settings_error(key, "a non-empty string", value)
        for key in ("T", "num_classes", "context_dim", "action_dim"):
            if key in ("T", "num_classes") or getattr(self, key) is not None:
                put(key, _positive_int(key, getattr(self, key)))
        if self.context_dim is None and self.action_dim is None:
            raise ConfigError(
                "StoreSettings needs at least one stream: context_dim or action_dim. "
                "Received: context_dim=None, action_dim=None"
            )
        ratio = self.observed_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)):
            raise _settings_error("observed_ratio", "a number in (0, 1]", ratio)
        if not 0.0 < float(ratio) <= 1.0:
            raise _settings_error("observed_ratio", "in (0, 1]", ratio)
        put("observed_ratio", float(ratio))
        size = (self.input_size,) * 2 if _is_int(self.input_size) else self.input_size
        try:
            size = tuple(_positive_int("input_size", v) for v in size)
        except (TypeError, ConfigError):
            size = ()
        if len(size) != 2:
            raise _settings_error(
                "input_size", "(height, width) of positive ints", self.input_size
            )
        put("input_size", size)
        if isinstance(self.dtype, (type, np.dtype)):
            put("dtype", np.dtype(self.dtype).name)
        for key, choices in (
            ("frame_selection", FRAME_SELECTIONS),
            ("dtype", DTYPES),
            ("compute_dtype", COMPUTE_DTYPES),
        ):
            if getattr(self, key) not in choices:
                raise _settings_error(key, f"one of {choices}", getattr(self, key))

    @property
    def streams(self):
        """The streams the store holds: `("context", "action")`, or one of them."""
        return tuple(s for s in STREAMS if self.dim(s) is not None)

    def dim(self, stream):
        """The feature size of `stream` ("context" or "action"); None when absent."""
        return self.context_dim if stream == "context" else self.action_dim

    def to_dict(self):
        """The settings as a JSON-ready dict (input_size as a list)."""
        return {**dataclasses.asdict(self), "input_size": list(self.input_size)}

    @classmethod
    def from_dict(cls, mapping):
        """Inverse of `to_dict`; unknown or missing keys raise `ConfigError`."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ConfigError(
                f"Unknown StoreSettings keys: {unknown}. Valid keys: {names}."
            )
        return cls(**mapping)

    def replace(self, **changes):
        """A copy with some fields changed (checked like `from_dict`)."""
        return StoreSettings.from_dict({**self.to_dict(), **changes})

    def differences(self, other):
        """`{key: (self's value, other's value)}` for every field that differs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _settings_error(key, what, value):
    return ConfigError(f"StoreSettings.{key} must be {what}. Received: {key}={value!r}")


def _positive_int(key, value):
    if not _is_int(value) or value < 1:
        raise _settings_error(key, "a positive integer", value)
    return int(value)


def weights_fingerprint(weights):
    """A stable sha1 (40 hex digits) over weight values: which CNN made the features.

    `weights` is a Keras model or layer, a list of numpy arrays, or a list mixing both
    (e.g. trunk and two heads). The digest covers each array's dtype, shape and
    little-endian bytes, in order, not the variable names (Keras numbers them per
    session), so the same weights give the same fingerprint in every process.
    """
    digest = hashlib.sha1()
    arrays = _weight_arrays(weights)
    digest.update(f"{len(arrays)};".encode())
    for array in arrays:
        array = np.asarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _weight_arrays(obj):
    if hasattr(obj, "get_weights"):
        return [np.asarray(w) for w in obj.get_weights()]
    if isinstance(obj, (list, tuple)):
        return [array for item in obj for array in _weight_arrays(item)]
    array = np.asarray(obj) if not isinstance(obj, (str, bytes, dict)) else None
    if array is None or array.dtype.kind not in "biufc":
        raise ConfigError(
            "weights_fingerprint takes a Keras model or layer (or an object with "
            "get_weights()), or a list of numeric arrays. "
            f"Received: {type(obj).__name__}"
        )
    return [array]


def _open_h5(path, mode):
    path = Path(path)
    if not path.is_file():
        raise FeatureStoreError(
            f"No feature store at '{path}': "
            + ("it is not a file" if path.exists() else "the file does not exist")
            + ". Run the extraction stage to create it, or check the path."
        )
    try:
        return h5py.File(path, mode)
    except OSError as error:
        if "unable to lock file" in str(error).lower():
            raise FeatureStoreError(
                f"Cannot open feature store '{path}': another process holds it open "
                f"(an extraction still running?). Wait for it or stop it. ({error})"
            ) from None
        raise FeatureStoreError(
            f"Feature store '{path}' is not a readable HDF5 file ({error}); it is "
            f"truncated or damaged (a crash or a full disk). {_DELETE_ADVICE}"
        ) from None


class FeatureStore:
    """One HDF5 file of per-clip two-stream features (layout in the module docstring).

    Make one with `create`, `open` or `open_or_create` (resume); use it as a context
    manager or `close()` it.

    Example:

    ```python
    with FeatureStore.open_or_create("features.h5", settings, class_names) as store:
        done = set(store.completed_ids())
        for clip in clips:
            if clip.clip_id not in done:
                store.append(clip.clip_id, context, action, clip.label, indices, n)
        arrays = store.read()  # {"context": (clips, T, Dc) float32, ...}
    ```

    Attributes:
        path, mode: the file, and "r" (read only) or "a" (append).
        settings: the `StoreSettings` it was made with.
        class_names: list of N class names (index = label).
        info: the other root attrs (msl_keras_version, schema_version, created, ...).
    """

    def __init__(self, path, mode="r"):
        if mode not in ("r", "a"):
            raise ConfigError(
                f"FeatureStore mode must be 'r' or 'a'. Received: mode={mode!r}"
            )
        self._file = _open_h5(path, "r" if mode == "r" else "r+")
        self.path, self.mode = Path(path), mode
        try:
            self._load_index()
        except Exception:
            self._file.close()
            raise

    @classmethod
    def create(cls, path, settings, class_names, compression="gzip"):
        """Creates a new, empty store at `path` (an existing file is an error).

        Args:
            class_names: N class names (N = settings.num_classes).
            compression: "gzip" (level 4, with byte shuffle), "lzf" or None.
        """
        if not isinstance(settings, StoreSettings):
            raise ConfigError(
                "FeatureStore.create needs a StoreSettings. "
                f"Received: settings={type(settings).__name__}"
            )
        if compression not in COMPRESSIONS:
            raise ConfigError(
                f"compression must be one of {COMPRESSIONS}. "
                f"Received: compression={compression!r}"
            )
        class_names = [str(n) for n in class_names]
        if len(class_names) != settings.num_classes:
            raise ConfigError(
                f"class_names must list num_classes={settings.num_classes} names. "
                f"Received: {len(class_names)} names"
            )
        path = Path(path)
        if path.exists():
            raise FeatureStoreError(
                f"Feature store '{path}' already exists: resume it with "
                "FeatureStore.open_or_create, or delete it (or pick another path)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with h5py.File(path, "w-") as file:
                _write_skeleton(file, settings, class_names, compression)
        except Exception:
            path.unlink(missing_ok=True)
            raise
        return cls(path, "a")

    @classmethod
    def open(cls, path, mode="r"):
        """Opens an existing store, "r" to read or "a" to append."""
        return cls(path, mode)

    @classmethod
    def open_or_create(cls, path, settings, class_names, compression="gzip"):
        """Resumes the store at `path` if made with `settings`, else creates it.

        Raises:
            FeatureStoreMismatchError: the file exists with other settings, listing
                each differing key with both values.
        """
        if not Path(path).exists():
            return cls.create(path, settings, class_names, compression=compression)
        store = cls(path, "a")
        differences = store.settings.differences(settings)
        if differences:
            store.close()
            raise FeatureStoreMismatchError(
                f"Feature store '{store.path}' was made with other settings than the "
                f"ones asked for:\n{_describe(differences, 'the store has', 'asked for')}"
                "\nDelete the file (or use another path) to extract with these "
                "settings, or run with the settings the store was made with."
            )
        if list(class_names) != store.class_names:
            warnings.warn(
                f"Feature store '{store.path}' was made with class names "
                f"{store.class_names}, not {list(class_names)}; its labels index the "
                "stored names.",
                stacklevel=2,
            )
        return store

    def _load_index(self):
        f, path = self._file, self.path
        try:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT_NAME:
                raise FeatureStoreError(
                    f"'{path}' is an HDF5 file but not an msl_keras feature store (its "
                    f"'format' attribute is {attrs.get('format')!r}, not "
                    f"{FORMAT_NAME!r}). Check the path."
                )
            schema = int(attrs["schema_version"])
            if schema > SCHEMA_VERSION:
                raise FeatureStoreError(
                    f"Feature store '{path}' has schema version {schema}, newer than "
                    f"this msl_keras reads ({SCHEMA_VERSION}). Upgrade msl_keras or "
                    "re-extract."
                )
            # A ConfigError is a ValueError: invalid settings read as a damaged file.
            self.settings = s = StoreSettings.from_dict(json.loads(attrs["settings"]))
            self.class_names = list(json.loads(attrs["class_names"]))
            self.info = {
                key: value.item() if isinstance(value, np.generic) else value
                for key, value in attrs.items()
                if key not in ("format", "settings", "class_names")
            }
            self._row_datasets = s.streams + ROW_DATASETS
            missing = [n for n in self._row_datasets + ("failed",) if n not in f]
            if missing:
                raise FeatureStoreError(
                    f"Feature store '{path}' lacks datasets {missing}; it is damaged. "
                    f"{_DELETE_ADVICE}"
                )
            tails = {stream: (s.T, s.dim(stream)) for stream in s.streams}
            for name, tail in {**tails, "frame_indices": (s.T,)}.items():
                if f[name].shape[1:] != tail:
                    raise FeatureStoreError(
                        f"Feature store '{path}': dataset '{name}' has shape "
                        f"{f[name].shape}, not (rows, {tail}) as its settings say. "
                        f"{_DELETE_ADVICE}"
                    )
            complete = np.asarray(f["complete"][:], dtype=np.uint8)
            # A crash may have persisted a resize of some datasets only: rows past the
            # shortest one are not complete.
            complete[min(f[name].shape[0] for name in self._row_datasets) :] = 0
            ids = list(f["clip_ids"].asstr()[: complete.shape[0]])
            ids += [""] * (complete.shape[0] - len(ids))
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise FeatureStoreError(
                f"Feature store '{path}' cannot be read ({type(error).__name__}: "
                f"{error}); it is damaged or not a store. {_DELETE_ADVICE}"
            ) from None
        self._complete, self._ids, self._slot_of = complete, ids, {}
        for slot in np.flatnonzero(complete):
            clip_id = ids[slot]
            if clip_id in self._slot_of:
                raise FeatureStoreError(
                    f"Feature store '{path}' holds clip '{clip_id}' twice (rows "
                    f"{self._slot_of[clip_id]} and {slot}); it was not written by "
                    f"FeatureStore.append. {_DELETE_ADVICE}"
                )
            self._slot_of[clip_id] = int(slot)

    def close(self):
        """Closes the file (idempotent)."""
        if not self.closed:
            self._file.close()

    @property
    def closed(self):
        return not self._file.id.valid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        """Number of complete clips."""
        return len(self._slot_of)

    def __contains__(self, clip_id):
        return clip_id in self._slot_of

    def __repr__(self):
        s = self.settings
        state = "closed" if self.closed else self.mode
        dims = ", ".join(f"{stream}_dim={s.dim(stream)}" for stream in s.streams)
        return (
            f"FeatureStore('{self.path}', {state}, {len(self)} clips, "
            f"dataset={s.dataset}, split={s.split}, T={s.T}, {dims}, dtype={s.dtype}, "
            f"compute_dtype={s.compute_dtype})"
        )

    def completed_ids(self):
        """Clip ids of the complete rows, in insertion (row) order."""
        return [self._ids[slot] for slot in sorted(self._slot_of.values())]

    def append(
        self, clip_id, context, action, label, frame_indices, num_frames, durable=True
    ):
        """Writes one clip as a row (returns its index); it counts once fully on disk.

        Args:
            clip_id: unique id of the clip (a clip already complete is refused).
            context, action: `(n, Dc)` and `(n, Da)` features of the n <= T selected
                frames, cast to `settings.dtype`; None for a stream the store lacks.
                Steps n..T-1 are stored as zeros and masked through `lengths`.
            label: class index in [0, N).
            frame_indices: `(n,)` frame of the clip each step shows (-1 on padding).
            num_frames: frames in the whole clip (> every frame index).
            durable: False skips the flushes (`writing_new_store` flushes at the end).

        Raises:
            FeatureStoreMismatchError: a feature size other than the settings'.
            FeatureStoreError: NaN/inf values, a duplicate clip id, a bad label or
                frame index (nothing is written).
        """
        self._require("append", write=True)
        clip_id = _check_clip_id(clip_id)
        if clip_id in self._slot_of:
            raise FeatureStoreError(
                f"Clip '{clip_id}' is already complete in feature store '{self.path}' "
                f"(row {self._slot_of[clip_id]}); skip the clips in "
                "store.completed_ids(), or delete the store to extract it again."
            )
        row = self._prepare_row(
            clip_id, context, action, label, frame_indices, num_frames
        )
        try:
            slot = self._claim_slot()
            self._write_row(slot, clip_id, row)
            if durable:
                self._file.flush()
            self._commit(slot, clip_id, durable)
        except OSError as error:
            raise FeatureStoreError(
                f"Could not write clip '{clip_id}' to feature store '{self.path}': "
                f"{error}. Free disk space (or fix the folder's permissions) and run "
                "again; finished clips are kept and the resume continues after them."
            ) from None
        return slot

    _append = append  # the name `writing_new_store`'s users call with durable=False

    def _prepare_row(self, clip_id, context, action, label, frame_indices, num_frames):
        """The checked row, padded to T steps in the stored dtypes."""
        s, where = self.settings, f"feature store '{self.path}'"
        arrays = {}
        for name, value in (("context", context), ("action", action)):
            dim = s.dim(name)
            if (dim is None) != (value is None):
                raise FeatureStoreMismatchError(
                    f"Clip '{clip_id}': {where} holds the {' and '.join(s.streams)} "
                    f"stream(s), but {name} features were "
                    f"{'given' if dim is None else 'not given'}. Pass None for a "
                    "stream the store does not hold."
                )
            if dim is None:
                continue
            array = np.asarray(value)
            if array.shape[1:] != (dim,) or array.dtype.kind not in "fiub":
                raise FeatureStoreMismatchError(
                    f"Clip '{clip_id}': {name} features have shape {array.shape} "
                    f"(dtype {array.dtype}), but {where} expects (steps <= {s.T}, "
                    f"{dim}) numbers ({name}_dim={dim}). Use a store made for this "
                    "extractor (another path), or the extractor the store was made with."
                )
            arrays[name] = array
        n = arrays[s.streams[0]].shape[0]
        if any(array.shape[0] != n for array in arrays.values()):
            raise FeatureStoreError(
                f"Clip '{clip_id}': context has {arrays['context'].shape[0]} steps but "
                f"action has {arrays['action'].shape[0]}; both describe the same frames."
            )
        if not 1 <= n <= s.T:
            raise FeatureStoreError(
                f"Clip '{clip_id}' has {n} steps; a row of {where} holds 1 to T={s.T} "
                "steps. Select at most T frames (data.video.select_frames); record "
                "clips without frames with store.record_failure(clip_id, reason)."
            )
        num_frames = _integer(num_frames, f"clip '{clip_id}': num_frames")
        if num_frames < 1:
            raise FeatureStoreError(
                f"Clip '{clip_id}': num_frames must be >= 1. Received: {num_frames}"
            )
        indices = np.asarray(frame_indices)
        if indices.shape != (n,) or indices.dtype.kind not in "iu":
            raise FeatureStoreError(
                f"Clip '{clip_id}': frame_indices must be ({n},) integers, one per "
                f"step. Received: shape {indices.shape}, dtype {indices.dtype}"
            )
        if indices.min() < 0 or indices.max() >= num_frames:
            raise FeatureStoreError(
                f"Clip '{clip_id}': frame_indices must lie in [0, num_frames="
                f"{num_frames}). Received: min {indices.min()}, max {indices.max()}"
            )
        label = _integer(label, f"clip '{clip_id}': label")
        if not 0 <= label < s.num_classes:
            raise FeatureStoreError(
                f"Clip '{clip_id}': label {label} is outside "
                f"[0, num_classes={s.num_classes})."
            )
        row = {}  # dataset name -> this clip's row of it
        for name, array in arrays.items():
            finite = np.isfinite(array).all(axis=1)
            if not finite.all():
                raise FeatureStoreError(
                    f"Clip '{clip_id}': {name} features hold NaN or inf at steps "
                    f"{np.flatnonzero(~finite).tolist()}; the clip was not stored. "
                    "Check the CNN weights and the decoded frames of this clip."
                )
            with np.errstate(over="ignore"):
                stored = array.astype(s.dtype)
            if not np.isfinite(stored).all():
                raise FeatureStoreError(
                    f"Clip '{clip_id}': {name} features exceed the range of {s.dtype} "
                    f"(largest magnitude {np.abs(array).max():.4g}); the clip was not "
                    "stored. Use a store with dtype='float32'."
                )
            row[name] = np.pad(stored, ((0, s.T - n), (0, 0)))
        indices = indices.astype(np.int32)
        row["frame_indices"] = np.pad(indices, (0, s.T - n), constant_values=-1)
        row["labels"], row["lengths"], row["num_frames"] = label, n, num_frames
        return row

    def _claim_slot(self):
        """The first incomplete row (left by a killed writer), else a new row."""
        free = np.flatnonzero(self._complete == 0)
        slot = int(free[0]) if free.size else int(self._complete.shape[0])
        for name in self._row_datasets:
            if self._file[name].shape[0] <= slot:
                self._file[name].resize(slot + 1, axis=0)
        if slot == self._complete.shape[0]:
            self._complete = np.append(self._complete, np.uint8(0))
            self._ids.append("")
        return slot

    def _write_row(self, slot, clip_id, row):
        for name, value in {**row, "clip_ids": clip_id}.items():
            self._file[name][slot] = value
        self._ids[slot] = clip_id

    def _commit(self, slot, clip_id, durable=True):
        """Marks a written row complete: the last write of `append`."""
        self._file["complete"][slot] = 1
        if durable:
            self._file.flush()
        self._complete[slot] = 1
        self._slot_of[clip_id] = slot

    def record_failure(self, clip_id, reason):
        """Lists a clip that could not be processed (e.g. a `VideoDecodeError`) in
        `failed()`, until it completes (a retry on resume)."""
        self._require("record_failure", write=True)
        clip_id = _check_clip_id(clip_id)
        if clip_id in self._slot_of:
            raise FeatureStoreError(
                f"Clip '{clip_id}' is complete in feature store '{self.path}'; it "
                "cannot also be recorded as failed."
            )
        dataset = self._file["failed"]
        try:
            dataset.resize(dataset.shape[0] + 1, axis=0)
            dataset[-1] = json.dumps({"clip_id": clip_id, "reason": str(reason)})
            self._file.flush()
        except OSError as error:
            raise FeatureStoreError(
                f"Could not record the failure of clip '{clip_id}' in '{self.path}': "
                f"{error}"
            ) from None

    def failed(self):
        """`{clip_id: reason}` of the recorded failures of clips not complete since."""
        result = {}
        for text in self._file["failed"].asstr()[:]:
            try:
                entry = json.loads(text)
                clip_id, reason = entry["clip_id"], entry["reason"]
            except (ValueError, KeyError, TypeError):
                continue  # an entry cut by a crash
            if clip_id not in self._slot_of:
                result[clip_id] = reason
        return result

    def _require(self, what, write=False):
        if self.closed:
            raise FeatureStoreError(
                f"Feature store '{self.path}' is closed; cannot {what}."
            )
        if write and self.mode != "a":
            raise FeatureStoreError(
                f"Feature store '{self.path}' is open read-only; open it with mode='a' "
                f"to {what}."
            )

    def read(self, clip_ids=None, dtype=np.float32):
        """Loads complete clips (`clip_ids`, in this order; None: all, in row order).

        Returns:
            dict with "context" `(clips, T, Dc)`, "action" `(clips, T, Da)` (`dtype`,
            zero on padded steps; only the store's streams), "labels" `(clips,)` int64,
            "lengths" `(clips,)` int32, "frame_indices" `(clips, T)` int32 (-1 on
            padding), "num_frames" `(clips,)` int64, "clip_ids" `(clips,)` str.

        Raises:
            FeatureStoreError: unknown or incomplete clip ids, NaN/inf values in the
                file (naming the file and the clips), or an unreadable file.
        """
        self._require("read")
        if clip_ids is None:
            clip_ids = self.completed_ids()
        clip_ids = [clip_ids] if isinstance(clip_ids, str) else list(clip_ids)
        missing = [c for c in clip_ids if c not in self._slot_of]
        if missing:
            raise FeatureStoreError(
                f"Feature store '{self.path}' has no complete clip "
                f"{listing(map(repr, missing))}. Extract them first (or check the "
                "ids; store.failed() lists clips that could not be decoded)."
            )
        slots = np.array([self._slot_of[c] for c in clip_ids], dtype=np.int64)
        s, f = self.settings, self._file
        out = {
            stream: np.zeros((len(slots), s.T, s.dim(stream)), dtype=dtype)
            for stream in s.streams
        }
        try:
            for name, kind in (
                ("labels", np.int64),
                ("lengths", np.int32),
                ("frame_indices", np.int32),
                ("num_frames", np.int64),
            ):
                rows = f[name][: self._complete.shape[0]]
                out[name] = np.asarray(rows, dtype=kind)[slots]
            # One read per clip (one HDF5 chunk each), not h5py fancy indexing: on
            # these (1, T, D) chunks it was 3.6x faster (1.13 s vs 0.31 s, a random
            # half of 256 clips x 50 x 1024 float16), and made the store read row (8b)
            # of benchmarks/bench_feature_store.py 2.6x faster at --size cpu (a5747b7).
            for name in s.streams:
                dataset, values = f[name], out[name]
                for row, slot in enumerate(slots):
                    values[row] = dataset[slot]
        except OSError as error:
            raise FeatureStoreError(
                f"Feature store '{self.path}' cannot be read ({error}); it is damaged. "
                f"{_DELETE_ADVICE}"
            ) from None
        finite = np.ones(len(slots), dtype=bool)
        for name in s.streams:
            finite &= np.isfinite(out[name]).all(axis=(1, 2))
        if not finite.all():
            raise FeatureStoreError(
                f"Feature store '{self.path}' holds NaN or inf features for clips "
                f"{listing(repr(self._ids[b]) for b in sorted(set(slots[~finite])))}. "
                "The file was changed or damaged after they were written (append "
                f"refuses such values). {_DELETE_ADVICE}"
            )
        out["clip_ids"] = np.array(clip_ids, dtype=str)
        return out

    def _raw_row(self, slot):
        """One complete row, unpadded, in the stored dtype (for merging)."""
        f = self._file
        n = int(f["lengths"][slot])
        return {
            **{name: f[name][slot][:n] if name in f else None for name in STREAMS},
            "label": int(f["labels"][slot]),
            "frame_indices": f["frame_indices"][slot][:n],
            "num_frames": int(f["num_frames"][slot]),
        }


def _write_skeleton(file, s, class_names, compression):
    filters = {}
    if compression is not None:
        filters = {"compression": compression, "shuffle": True}
        if compression == "gzip":
            filters["compression_opts"] = 4
    text = h5py.string_dtype("utf-8")
    # (name, shape of one row, rows per chunk, dtype, options)
    layout = [(name, (s.T, s.dim(name)), 1, s.dtype, filters) for name in s.streams]
    layout += [
        ("labels", (), 1024, "int64", {}),
        ("lengths", (), 1024, "int32", {}),
        ("num_frames", (), 1024, "int64", {}),
        ("complete", (), 1024, "uint8", {}),
        ("frame_indices", (s.T,), 64, "int32", {"fillvalue": -1}),
        ("clip_ids", (), 256, text, {}),
        ("failed", (), 256, text, {}),
    ]
    for name, row, chunk_rows, dtype, options in layout:
        file.create_dataset(
            name,
            shape=(0, *row),
            maxshape=(None, *row),
            chunks=(chunk_rows, *row),
            dtype=dtype,
            **options,
        )
    file.attrs["format"] = FORMAT_NAME
    file.attrs["schema_version"] = SCHEMA_VERSION
    file.attrs["msl_keras_version"] = msl_keras.__version__
    now = datetime.datetime.now(datetime.UTC)
    file.attrs["created"] = now.isoformat(timespec="seconds")
    file.attrs["settings"] = json.dumps(s.to_dict(), sort_keys=True)
    file.attrs["class_names"] = json.dumps(class_names)


def _check_clip_id(clip_id):
    if not isinstance(clip_id, str) or not clip_id:
        raise FeatureStoreError(
            f"A clip id must be a non-empty string. Received: clip_id={clip_id!r}"
        )
    return clip_id


def _integer(value, what):
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise FeatureStoreError(f"{what} must be one integer. Received: {value!r}")
    return int(array)


def _describe(differences, left, right):
    return "\n".join(
        f"  - {key}: {left} {a!r}, {right} {b!r}" for key, (a, b) in differences.items()
    )


def _settings_of(store_or_settings):
    """`(settings, how to name them in a message)` of a `FeatureStore` or settings."""
    if isinstance(store_or_settings, FeatureStore):
        return store_or_settings.settings, f"feature store '{store_or_settings.path}'"
    if isinstance(store_or_settings, StoreSettings):
        return store_or_settings, "the feature store"
    raise ConfigError(
        "Expected a FeatureStore or StoreSettings. "
        f"Received: {type(store_or_settings).__name__}"
    )


def check_compatible(store_settings, expected):
    """Raises unless `store_settings` (a `FeatureStore` or its `StoreSettings`) has
    the `expected` values, `{field: value}` (e.g. `{"T": 50, "dataset": "jhmdb"}`).

    Raises:
        ConfigError: a key that is not a `StoreSettings` field.
        FeatureStoreMismatchError: listing each differing field with both values.
    """
    settings, where = _settings_of(store_settings)
    differences = settings.differences(settings.replace(**dict(expected)))
    if differences:
        raise FeatureStoreMismatchError(
            f"{where[0].upper()}{where[1:]} was made with other settings than "
            f"expected:\n{_describe(differences, 'the store has', 'expected')}\n"
            "Re-extract the features with the expected settings (into another path), "
            "or run this stage with the settings the store was made with."
        )


def check_streams(store, streams):
    """Raises `FeatureStoreMismatchError` unless `store` (a `FeatureStore` or its
    `StoreSettings`) holds every stream a model reads, e.g. `("context", "action")`."""
    settings, where = _settings_of(store)
    if any(stream not in settings.streams for stream in streams):
        raise FeatureStoreMismatchError(
            f"The model reads the {' and '.join(streams)} stream(s), but {where} holds "
            f"only the {settings.streams[0]} stream (a single-stream store). Train a "
            f"one-stream LSTM of that stream (lstm.model={settings.streams[0]}), or "
            "import or extract the features of both streams."
        )


def check_model_inputs(store, context_dim=None, action_dim=None):
    """Raises `FeatureStoreMismatchError` unless a model's input sizes (None: stream
    not used) match the features of `store` (a `FeatureStore` or its `StoreSettings`)."""
    settings, where = _settings_of(store)
    sizes = {"context": context_dim, "action": action_dim}
    check_streams(settings, [stream for stream, dim in sizes.items() if dim])
    differences = {
        f"{stream}_dim": (settings.dim(stream), int(dim))
        for stream, dim in sizes.items()
        if dim is not None and int(dim) != settings.dim(stream)
    }
    if differences:
        raise FeatureStoreMismatchError(
            f"The model's input sizes do not match {where}:\n"
            f"{_describe(differences, 'the store holds', 'the model expects')}\n"
            "Re-extract the features with the CNN that matches this model, or build "
            "an LSTM for the store's sizes: "
            f"context_dim={settings.context_dim}, action_dim={settings.action_dim}."
        )


@contextlib.contextmanager
def writing_new_store(out_path, settings, class_names, compression="gzip"):
    """A new store that appears at `out_path` only once it is completely written.

    Yields a `FeatureStore` open for appending at `<out_path>.partial` (a stale one is
    replaced); when the block ends, the file is flushed, closed and renamed to
    `out_path`. An exception in the block closes and removes the partial file, so a
    failed import or merge never leaves a store that looks complete. Rows appended
    with `append(..., durable=False)` are made durable by the final flush.
    """
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".partial")
    partial.unlink(missing_ok=True)
    store = FeatureStore.create(partial, settings, class_names, compression=compression)
    try:
        yield store
        store._file.flush()
    except BaseException:
        store.close()
        partial.unlink(missing_ok=True)
        raise
    store.close()
    os.replace(partial, out_path)


def merge_stores(paths, out_path, order=None, compression="gzip"):
    """Merges the stores of parallel extraction shards into one new store.

    Args:
        paths: the shard stores: equal settings, disjoint clip ids.
        out_path: the merged store to write (must not exist), via `writing_new_store`.
        order: optional clip ids the merged rows follow; clips it does not name follow
            in shard order, names no shard holds (failed clips) are ignored. None:
            shard order, then row order within each shard.

    Returns:
        The merged `FeatureStore`, open read-only, with the shards' failure records.

    Raises:
        FeatureStoreMismatchError: shards with different settings (listing the keys).
        FeatureStoreError: a clip id in two shards (listing them), an existing output.
    """
    paths, out_path = [Path(p) for p in paths], Path(out_path)
    if not paths:
        raise ConfigError("merge_stores needs at least one store path. Received: []")
    if out_path.resolve() in {p.resolve() for p in paths}:
        raise FeatureStoreError(
            f"merge_stores: the output '{out_path}' is one of the inputs; write "
            "another file."
        )
    if out_path.exists():
        raise FeatureStoreError(
            f"merge_stores: '{out_path}' already exists; delete it or choose another "
            "path."
        )
    with contextlib.ExitStack() as opened:
        stores = [opened.enter_context(FeatureStore(path, "r")) for path in paths]
        first, holders = stores[0], {}  # clip id -> the stores holding it
        for store in stores:
            differences = first.settings.differences(store.settings)
            if differences:
                table = _describe(differences, f"{first.path} has", f"{store.path} has")
                raise FeatureStoreMismatchError(
                    f"Cannot merge '{store.path}' into '{first.path}': they were made "
                    f"with other settings:\n{table}\nOnly shards of one extraction "
                    "(same config) can be merged; re-extract the odd shard with the "
                    "others' settings."
                )
            if store.class_names != first.class_names:
                warnings.warn(
                    f"'{store.path}' lists other class names than '{first.path}'; the "
                    "merged store keeps the first's.",
                    stacklevel=2,
                )
            for clip_id in store.completed_ids():
                holders.setdefault(clip_id, []).append(store)
        overlap = {c: held for c, held in holders.items() if len(held) > 1}
        if overlap:
            details = "; ".join(
                f"'{c}' in {', '.join(str(store.path) for store in held)}"
                for c, held in list(overlap.items())[:20]
            )
            raise FeatureStoreError(
                f"merge_stores: {len(overlap)} clip ids are in more than one store: "
                f"{details}. Shards must hold disjoint clips; was a shard extracted "
                "twice with another shard count?"
            )
        sequence = list(holders)  # shard order, then row order
        if order is not None:
            rank = {clip_id: i for i, clip_id in enumerate(order)}
            sequence.sort(key=lambda clip_id: rank.get(clip_id, len(rank)))
        with writing_new_store(
            out_path, first.settings, first.class_names, compression
        ) as merged:
            merged._file.attrs["merged_from"] = json.dumps([str(p) for p in paths])
            for clip_id in sequence:
                store = holders[clip_id][0]
                row = store._raw_row(store._slot_of[clip_id])
                merged.append(clip_id, durable=False, **row)
            failed = {c: why for store in stores for c, why in store.failed().items()}
            for clip_id, reason in failed.items():
                if clip_id not in holders:
                    merged.record_failure(clip_id, reason)
    return FeatureStore(out_path, "r")
