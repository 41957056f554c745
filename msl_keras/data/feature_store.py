"""The HDF5 store of each clip's fc7 features, between the CNN and the LSTM stages.

One file holds the clips of ONE `StoreSettings`: it is resumed only with equal
settings; mixing stores made otherwise raises `FeatureStoreMismatchError`.

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

A single-stream store (imported for a one-stream LSTM) lacks `/context` or `/action`.

Crash safety: `append` flushes the row's data, then sets and flushes `complete[row]`.
Rows a killed process leaves flagged 0 never read as data and the next `append` reuses
them, so a resume has no duplicates and no half-written rows. A kill inside HDF5's own
flush can still damage the file (opening it then says to delete it); `flush` covers a
killed process, not a power cut.
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
_DELETE_ADVICE = "Delete the file and run the extraction again (a new store)."


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What must be equal for the features of two clips to be mixed in one store.

    `split` is stored as a string (split 1: "1"); `T` is the most steps per clip (the
    paper: 50), picked by `frame_selection` ("first" or "uniform") among the first
    `observed_ratio` in (0, 1] of the clip; `extractor_fingerprint` is the CNN's
    `weights_fingerprint`; `context_dim`, `action_dim` are Dc, Da (None: no such
    stream); `dtype` is the storage precision, `compute_dtype` the CNN's.
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
                put(key, positive_int(f"StoreSettings.{key}", getattr(self, key)))
        if self.context_dim is None and self.action_dim is None:
            raise ConfigError(
                "StoreSettings needs at least one stream: context_dim or action_dim."
            )
        ratio = self.observed_ratio
        number = _is_int(ratio) or isinstance(ratio, (float, np.floating))
        if not number or not 0.0 < float(ratio) <= 1.0:
            raise _settings_error("observed_ratio", "a number in (0, 1]", ratio)
        put("observed_ratio", float(ratio))
        size = (self.input_size,) * 2 if _is_int(self.input_size) else self.input_size
        try:
            size = tuple(positive_int("input_size", v) for v in size)
        except (TypeError, ConfigError):
            size = ()
        if len(size) != 2:
            raise _settings_error(
                "input_size", "(height, width) of positive ints", self.input_size
            )
        put("input_size", size)
        if isinstance(self.dtype, (type, np.dtype)):  # np.float16 -> "float16"
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
            raise ConfigError(f"Unknown StoreSettings keys: {unknown}. Valid: {names}.")
        return cls(**mapping)

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


def positive_int(name, value):
    """`value` as an int; a `ConfigError` unless it is an int >= 1 (not a bool)."""
    if not _is_int(value) or value < 1:
        raise ConfigError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    return int(value)


def weights_fingerprint(weights):
    """A stable sha1 (40 hex digits) over the dtype, shape and little-endian bytes of
    each array of `weights` (Keras models, layers or arrays, or a list of them), in
    order: which CNN made the features (not the variable names: Keras numbers them)."""
    digest = hashlib.sha1()
    arrays = _weight_arrays(weights)
    digest.update(f"{len(arrays)};".encode())
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _weight_arrays(obj):
    if hasattr(obj, "get_weights"):
        return [np.asarray(w) for w in obj.get_weights()]
    if isinstance(obj, (list, tuple)):
        return [array for item in obj for array in _weight_arrays(item)]
    array = np.asarray(obj)
    if array.dtype.kind not in "biufc":
        raise ConfigError(
            "weights_fingerprint takes a Keras model or layer, or a list of numeric "
            f"arrays. Received: {type(obj).__name__}"
        )
    return [array]


class FeatureStore(contextlib.AbstractContextManager):
    """One HDF5 file of per-clip features (layout in the module docstring); made by
    `create`, `open` or `open_or_create` (resume); a context manager.

    ```python
    with FeatureStore.open_or_create("features.h5", settings, class_names) as store:
        if clip_id not in store:
            store.append(clip_id, context, action, label, frame_indices, num_frames)
        arrays = store.read()  # {"context": (clips, T, Dc) float32, ...}
    ```

    `mode` is "r" or "a" (append); `class_names[label]` names a class; `info` holds
    the other root attrs (msl_keras_version, schema_version, created, ...).
    """

    def __init__(self, path, mode="r"):
        if mode not in ("r", "a"):
            raise ConfigError(
                f"FeatureStore mode must be 'r' or 'a'. Received: mode={mode!r}"
            )
        self.path, self.mode = Path(path), mode
        if not self.path.is_file():
            what = "is not a file" if self.path.exists() else "does not exist"
            raise FeatureStoreError(
                f"No feature store at '{self.path}': it {what}. Run the extraction "
                "stage to create it, or check the path."
            )
        try:
            self._file = h5py.File(self.path, "r" if mode == "r" else "r+")
        except OSError as error:
            if "unable to lock file" in str(error).lower():
                raise self._error(
                    f"cannot be opened: another process holds it open (an extraction "
                    f"still running?). Wait for it or stop it. ({error})"
                ) from None
            raise self._error(
                f"is not a readable HDF5 file, truncated or damaged ({error}).", True
            ) from None
        try:
            self._load_index()
        except Exception:
            self._file.close()
            raise

    def _error(self, text, damaged=False):
        """A `FeatureStoreError` naming this file (`damaged`: saying to delete it)."""
        advice = f" {_DELETE_ADVICE}" if damaged else ""
        return FeatureStoreError(f"Feature store '{self.path}' {text}{advice}")

    @classmethod
    def create(cls, path, settings, class_names, compression="gzip"):
        """A new, empty store at `path` (not an existing file), open to append;
        `compression`: "gzip" (level 4, with byte shuffle), "lzf" or None."""
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
        """Resumes the store at `path` if made with `settings`, else creates it; a
        `FeatureStoreMismatchError` lists the differences if it has other settings."""
        if not Path(path).exists():
            return cls.create(path, settings, class_names, compression=compression)
        store = cls(path, "a")
        differences = store.settings.differences(settings)
        if differences:
            store.close()
            table = _describe(differences, "the store has", "asked for")
            raise FeatureStoreMismatchError(
                f"Feature store '{store.path}' was made with other settings than the "
                f"ones asked for:\n{table}\nDelete the file (or use another path) to "
                "extract with these settings, or run with the store's settings."
            )
        if list(class_names) != store.class_names:
            warnings.warn(
                f"Feature store '{store.path}' labels index its own class names "
                f"{store.class_names}, not {list(class_names)}.",
                stacklevel=2,
            )
        return store

    def _load_index(self):
        f = self._file
        try:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT_NAME:
                raise FeatureStoreError(
                    f"'{self.path}' is an HDF5 file but not an msl_keras feature store "
                    f"(its 'format' is {attrs.get('format')!r}). Check the path."
                )
            schema = int(attrs["schema_version"])
            if schema > SCHEMA_VERSION:
                raise self._error(
                    f"has schema version {schema}, newer than this msl_keras reads "
                    f"({SCHEMA_VERSION}). Upgrade msl_keras."
                )
            # Invalid settings raise a ConfigError, a ValueError: a damaged file.
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
                raise self._error(f"lacks datasets {missing}.", damaged=True)
            tails = {stream: (s.T, s.dim(stream)) for stream in s.streams}
            for name, tail in {**tails, "frame_indices": (s.T,)}.items():
                shape = f[name].shape
                if shape[1:] != tail:
                    raise self._error(
                        f"has {name} of shape {shape}, not (rows, {tail}).", True
                    )
            complete = np.asarray(f["complete"][:], dtype=np.uint8)
            # A crash may have persisted a resize of some datasets only: rows past the
            # shortest one are not complete.
            complete[min(f[name].shape[0] for name in self._row_datasets) :] = 0
            ids = list(f["clip_ids"].asstr()[: complete.shape[0]])
            ids += [""] * (complete.shape[0] - len(ids))
        except (OSError, KeyError, ValueError, TypeError) as error:
            what = f"{type(error).__name__}: {error}"
            raise self._error(f"cannot be read ({what}).", damaged=True) from None
        self._complete, self._ids, self._slot_of = complete, ids, {}
        for slot in np.flatnonzero(complete):
            if ids[slot] in self._slot_of:
                raise self._error(f"holds clip '{ids[slot]}' twice.", damaged=True)
            self._slot_of[ids[slot]] = int(slot)

    def close(self):
        """Closes the file (idempotent: h5py closes a closed file as a no-op)."""
        self._file.close()

    @property
    def closed(self):
        return not self._file.id.valid

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

        `context`, `action`: `(n, Dc)`, `(n, Da)` features of the n <= T selected
        frames (None for a stream the store lacks), zero-padded to T steps;
        `frame_indices` `(n,)`: the frame each step shows, in [0, `num_frames`);
        `durable=False` skips the flushes (`writing_new_store` flushes at the end).
        A feature size other than the settings' raises `FeatureStoreMismatchError`;
        NaN/inf, a complete clip id, a bad label or frame index `FeatureStoreError`
        (nothing is written).
        """
        self._require("append", write=True)
        if _check_clip_id(clip_id) in self._slot_of:
            raise FeatureStoreError(
                f"Clip '{clip_id}' is already complete in feature store '{self.path}'."
            )
        row = self._prepare_row(
            clip_id, context, action, label, frame_indices, num_frames
        )
        # The first incomplete row (left by a killed writer), else a new row.
        free = np.flatnonzero(self._complete == 0)
        slot = int(free[0]) if free.size else int(self._complete.shape[0])
        try:
            for name in self._row_datasets:
                if self._file[name].shape[0] <= slot:
                    self._file[name].resize(slot + 1, axis=0)
            if slot == self._complete.shape[0]:
                self._complete = np.append(self._complete, np.uint8(0))
                self._ids.append("")
            self._write_row(slot, clip_id, row)
            if durable:
                self._file.flush()
            self._commit(slot, clip_id, durable)
        except OSError as error:
            raise self._error(
                f"could not take clip '{clip_id}': {error}. Free disk space (or fix "
                "the folder's permissions) and run again to resume."
            ) from None
        return slot

    def _prepare_row(self, clip_id, context, action, label, frame_indices, num_frames):
        """The checked row, padded to T steps in the stored dtypes."""
        s, bad = self.settings, functools.partial(_clip_error, clip_id)
        arrays = {}
        for name, value in (("context", context), ("action", action)):
            dim = s.dim(name)
            if (dim is None) != (value is None):
                given = "given" if dim is None else "not given"
                raise bad(
                    f"{name} features were {given}, but feature store '{self.path}' "
                    f"holds the {' and '.join(s.streams)} stream(s).",
                    FeatureStoreMismatchError,
                )
            if dim is None:
                continue
            array = np.asarray(value)
            if array.shape[1:] != (dim,) or array.dtype.kind not in "fiub":
                raise bad(
                    f"{name} features have shape {array.shape} (dtype {array.dtype}), "
                    f"not (steps <= {s.T}, {dim}) ({name}_dim={dim}) of '{self.path}': "
                    "use a store made for this extractor.",
                    FeatureStoreMismatchError,
                )
            arrays[name] = array
        n = arrays[s.streams[0]].shape[0]
        if any(array.shape[0] != n for array in arrays.values()):
            steps = [arrays[name].shape[0] for name in STREAMS]
            raise bad(f"context has {steps[0]} steps but action has {steps[1]}.")
        if not 1 <= n <= s.T:
            raise bad(
                f"{n} steps, but a row holds 1 to T={s.T} (data.video.select_frames; "
                "store.record_failure lists a clip without frames)."
            )
        num_frames = _integer(num_frames, "num_frames", bad)
        indices = np.asarray(frame_indices)
        if indices.shape != (n,) or indices.dtype.kind not in "iu":
            raise bad(
                f"frame_indices must be ({n},) integers, one per step. Received: "
                f"shape {indices.shape}, dtype {indices.dtype}"
            )
        if indices.min() < 0 or indices.max() >= num_frames:  # also num_frames < 1
            raise bad(
                f"frame_indices must lie in [0, num_frames={num_frames}). Received: "
                f"min {indices.min()}, max {indices.max()}"
            )
        label = _integer(label, "label", bad)
        if not 0 <= label < s.num_classes:
            raise bad(f"label {label} is outside [0, num_classes={s.num_classes}).")
        row = {}  # dataset name -> this clip's row of it
        for name, array in arrays.items():
            finite = np.isfinite(array).all(axis=1)
            if not finite.all():
                raise bad(
                    f"{name} features hold NaN or inf at steps "
                    f"{np.flatnonzero(~finite).tolist()}; check the CNN weights and "
                    "the decoded frames of this clip."
                )
            with np.errstate(over="ignore"):
                stored = array.astype(s.dtype)
            if not np.isfinite(stored).all():
                raise bad(
                    f"{name} features exceed the range of {s.dtype} (largest magnitude "
                    f"{np.abs(array).max():.4g}); use a store with dtype='float32'."
                )
            row[name] = np.pad(stored, ((0, s.T - n), (0, 0)))
        indices = indices.astype(np.int32)
        row["frame_indices"] = np.pad(indices, (0, s.T - n), constant_values=-1)
        row["labels"], row["lengths"], row["num_frames"] = label, n, num_frames
        return row

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
        if _check_clip_id(clip_id) in self._slot_of:
            raise _clip_error(clip_id, f"complete in '{self.path}', so not failed.")
        dataset = self._file["failed"]
        try:
            dataset.resize(dataset.shape[0] + 1, axis=0)
            dataset[-1] = json.dumps({"clip_id": clip_id, "reason": str(reason)})
            self._file.flush()
        except OSError as error:
            raise self._error(f"could not record clip '{clip_id}': {error}") from None

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
            raise self._error(f"is closed; cannot {what}.")
        if write and self.mode != "a":
            raise self._error(f"is open read-only; open it with mode='a' to {what}.")

    def read(self, clip_ids=None, dtype=np.float32):
        """The clips' rows (`clip_ids`, in this order; None: all, in row order) of the
        datasets of the module docstring, the streams `(clips, T, D)` in `dtype`.

        A `FeatureStoreError` names unknown or incomplete clips or clips with NaN/inf
        values, or says the file is unreadable.
        """
        self._require("read")
        if clip_ids is None:
            clip_ids = self.completed_ids()
        clip_ids = [clip_ids] if isinstance(clip_ids, str) else list(clip_ids)
        missing = [c for c in clip_ids if c not in self._slot_of]
        if missing:
            raise self._error(
                f"has no complete clip {listing(map(repr, missing))}. Extract them "
                "first (store.failed() lists the clips that could not be decoded)."
            )
        slots = np.array([self._slot_of[c] for c in clip_ids], dtype=np.int64)
        s, f = self.settings, self._file
        out = {
            stream: np.zeros((len(slots), s.T, s.dim(stream)), dtype=dtype)
            for stream in s.streams
        }
        try:
            for name in ("labels", "lengths", "frame_indices", "num_frames"):
                out[name] = f[name][: len(self._complete)][slots]  # stored int32/64
            # One read per clip (one chunk each): 3.6x faster than h5py fancy indexing
            # (benchmarks/bench_feature_store.py row 8b: 2.6x at --size cpu).
            for name in s.streams:
                dataset, values = f[name], out[name]
                for row, slot in enumerate(slots):
                    values[row] = dataset[slot]
        except OSError as error:
            raise self._error(f"cannot be read ({error}).", damaged=True) from None
        finite = np.all([np.isfinite(out[n]).all(axis=(1, 2)) for n in s.streams], 0)
        if not finite.all():
            bad = listing(repr(self._ids[b]) for b in sorted(set(slots[~finite])))
            raise self._error(f"holds NaN or inf features for {bad}.", damaged=True)
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
    filters = {"compression": compression, "shuffle": True} if compression else {}
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
    for name, row, chunk, dtype, opts in layout:
        file.create_dataset(
            name, (0, *row), dtype, maxshape=(None, *row), chunks=(chunk, *row), **opts
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
        raise FeatureStoreError(f"A clip id must be a non-empty str, not {clip_id!r}.")
    return clip_id


def _clip_error(clip_id, text, error=FeatureStoreError):
    return error(f"Clip '{clip_id}': {text}")


def _integer(value, what, bad):
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise bad(f"{what} must be one integer. Received: {value!r}")
    return int(array)


def _describe(differences, left, right):
    return "\n".join(
        f"  - {key}: {left} {a!r}, {right} {b!r}" for key, (a, b) in differences.items()
    )


def _settings_of(store):
    """`(settings, how a message names the store)` of a store or its `StoreSettings`."""
    if isinstance(store, FeatureStore):
        return store.settings, f"feature store '{store.path}'"
    if isinstance(store, StoreSettings):
        return store, "the feature store"
    name = type(store).__name__
    raise ConfigError(f"Expected a FeatureStore or StoreSettings. Received: {name}")


def check_compatible(store_settings, expected):
    """A `FeatureStoreMismatchError` listing each differing field unless
    `store_settings` (a store or its `StoreSettings`) has the `expected` values,
    `{field: value}` (e.g. `{"T": 50}`); `ConfigError` for an unknown field."""
    settings, where = _settings_of(store_settings)
    wanted = StoreSettings.from_dict({**settings.to_dict(), **dict(expected)})
    differences = settings.differences(wanted)
    if differences:
        raise FeatureStoreMismatchError(
            f"{where[0].upper()}{where[1:]} was made with other settings than "
            f"expected:\n{_describe(differences, 'the store has', 'expected')}\n"
            "Re-extract the features (into another path), or run with its settings."
        )


def check_streams(store, streams):
    """Raises `FeatureStoreMismatchError` unless `store` (a `FeatureStore` or its
    `StoreSettings`) holds every stream a model reads, e.g. `("context", "action")`."""
    settings, where = _settings_of(store)
    if any(stream not in settings.streams for stream in streams):
        raise FeatureStoreMismatchError(
            f"The model reads the {' and '.join(streams)} stream(s), but {where} holds "
            f"only the {settings.streams[0]} stream. Train a one-stream LSTM of it "
            f"(lstm.model={settings.streams[0]}), or import or extract both streams."
        )


def check_model_inputs(store, context_dim=None, action_dim=None):
    """Raises `FeatureStoreMismatchError` unless a model's input sizes (None: stream
    not used) match the features of `store` (a store or its `StoreSettings`)."""
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
            "Re-extract the features with this model's CNN, or build an LSTM for "
            f"context_dim={settings.context_dim}, action_dim={settings.action_dim}."
        )


@contextlib.contextmanager
def writing_new_store(out_path, settings, class_names, compression="gzip"):
    """Yields a new `FeatureStore` at `<out_path>.partial` (a stale one is replaced),
    flushed (making `append(..., durable=False)` durable) and renamed to `out_path`
    when the block ends; an exception closes and removes it."""
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


def merge_stores(paths, out_path, order=None):
    """Merges the stores of parallel extraction shards (`paths`: equal settings,
    disjoint clip ids) into a new store at `out_path`, returned open read-only.

    The rows follow `order` (clip ids; others follow in shard and row order); the
    shards' failure records are kept. Raises `FeatureStoreMismatchError` for shards
    with other settings and `FeatureStoreError` for a clip id in two shards.
    """
    paths, out_path = [Path(p) for p in paths], Path(out_path)
    if not paths:
        raise ConfigError("merge_stores needs at least one store path. Received: []")
    if out_path.exists():  # an input as the output, too
        raise FeatureStoreError(
            f"merge_stores: '{out_path}' already exists; write another file."
        )
    with contextlib.ExitStack() as opened:
        stores = [opened.enter_context(FeatureStore(path, "r")) for path in paths]
        first, holders = stores[0], {}  # clip id -> the stores holding it
        for store in stores:
            differences = first.settings.differences(store.settings)
            if differences:
                table = _describe(differences, f"{first.path} has", f"{store.path} has")
                raise FeatureStoreMismatchError(
                    f"Cannot merge '{store.path}' into '{first.path}', made with other "
                    f"settings:\n{table}\nRe-extract it with the others' config."
                )
            if store.class_names != first.class_names:
                text = f"'{store.path}' has other class names than '{first.path}'"
                warnings.warn(f"{text}: merged with the first's.", stacklevel=2)
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
                f"{details}. Was a shard extracted twice with another shard count?"
            )
        sequence = list(holders)  # shard order, then row order
        if order is not None:
            rank = {clip_id: i for i, clip_id in enumerate(order)}
            sequence.sort(key=lambda clip_id: rank.get(clip_id, len(rank)))
        with writing_new_store(out_path, first.settings, first.class_names) as merged:
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
