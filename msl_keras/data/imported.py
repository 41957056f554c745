"""Per-frame features made elsewhere (VGG-16 fc6/fc7, I3D, CLIP, ...): "imported" data.

A `FeatureSource` reads one input for `msl_keras.pipeline.feature_import`: a `.npz` or
`.h5` file of `(clips, T, D)` `context` and/or `action`, `labels` and `split<k>` roles,
or a folder of `clips.csv` and per-clip `.npy` files. README.md ("Bring your own
features") describes each field and its default.
"""

import collections
import contextlib
import csv
import hashlib
import re
from pathlib import Path

import h5py
import numpy as np

from msl_keras.data.records import ClipRecord, carve_validation
from msl_keras.errors import DatasetError, listing

STREAMS = ("context", "action")
FILE_SUFFIXES = (".npz", ".h5", ".hdf5")
SPLIT_ROLES = ("train", "validation", "test", "")  # "": not in this split
CLIPS_CSV = "clips.csv"
CLASSES_TXT = "classes.txt"
FRAME_INDICES = "frame_indices"
_SPLIT_NAME = re.compile(r"^split(\d+)$")
_FORMAT_HINT = "See the 'Bring your own features' section of the README for the layout."


class FeatureSource(contextlib.AbstractContextManager):
    """The clips of one input (a `.npz`, an `.h5`, or a folder of per-clip `.npy`).

    `open(path)` reads and checks the clip table (`labels` `(clips,)` int64, `splits`
    `{"split1": [role of each clip], ...}`, `streams` it holds, ...). A subclass reads
    the features: `dims()` -> `{stream: D}` (every clip checked), `clip(row)` ->
    `{stream: (n, D), "frame_indices": (n,) int, "num_frames": int}` (checked).
    """

    def __init__(self, path, clip_ids, labels, groups, splits, class_names, streams):
        self.path = Path(path)
        self.clip_ids = clip_ids
        self.labels = labels
        self.groups = groups
        self.splits = splits
        self.class_names = class_names
        self.streams = streams

    @classmethod
    def open(cls, path):
        """Opens `path` by its kind: a folder, or a `.npz` / `.h5` / `.hdf5` file."""
        path = Path(path)
        if path.is_dir():
            return _NpyFolder(path)
        if not path.exists() or path.suffix.lower() not in FILE_SUFFIXES:
            found = "is not a .npz or .h5 file" if path.exists() else "does not exist"
            raise DatasetError(
                f"No features at '{path}': it {found}. Point data.root (--root) at a "
                f".npz or .h5 file or at a folder holding {CLIPS_CSV}. {_FORMAT_HINT}"
            )
        return _ArrayFile(path)

    def __len__(self):
        return len(self.clip_ids)

    def record_path(self, row):
        """What a `ClipRecord.path` of clip `row` names (the file holding it)."""
        return str(self.path)

    def fingerprint(self):
        """sha1 over the bytes of the input's files: which features a store holds."""
        digest = hashlib.sha1()
        for file in self._files():
            digest.update(f"{file.relative_to(self.path.parent)};".encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
        return digest.hexdigest()

    def close(self):
        """Releases open files (idempotent)."""

    def __exit__(self, *exc):
        self.close()

    def _files(self):
        return [self.path]

    def _check_table(self, where):
        """Checks the clip table read by a subclass; `where` names its file."""
        ids, labels = self.clip_ids, self.labels
        if not ids:
            raise DatasetError(f"{where} holds no clip.")
        counts = collections.Counter(ids)
        bad = [repr(c) for c in counts if not c or "/" in c or counts[c] > 1]
        if bad:
            raise DatasetError(
                f"{where}: clip ids must be unique, non-empty and hold no '/'. "
                f"Received {listing(bad)}."
            )
        if self.class_names is None:
            self.class_names = [f"class_{i}" for i in range(int(labels.max()) + 1)]
        n = len(self.class_names)
        bad = np.flatnonzero((labels < 0) | (labels >= n))
        if bad.size:
            raise DatasetError(
                f"{where}: labels must lie in [0, {n}), one per class name (list "
                f"them all). Received {listing(f'{ids[i]}={labels[i]}' for i in bad)}."
            )
        for name, roles in self.splits.items():
            unknown = sorted({r for r in roles if r not in SPLIT_ROLES})
            if unknown:
                raise DatasetError(
                    f"{where}: split '{name}' names roles {unknown}; a clip's role is "
                    "one of 'train', 'validation', 'test', or '' (not in this split)."
                )


def load_npy(path, mmap=False):
    """One `.npy` array (memory-mapped with `mmap`); `DatasetError` if unreadable."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"Cannot read '{path}': {error}. Re-export it.") from None


def _as_strings(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _integers(array, where, what):
    array = np.asarray(array)
    whole = array.dtype.kind == "f" and np.all(np.mod(array, 1) == 0)
    if array.dtype.kind not in "iu" and not whole:
        raise DatasetError(
            f"{where}: '{what}' must hold integers. Received dtype {array.dtype}."
        )
    return array.astype(np.int64)


def _check_features(features, where, clip_id):
    for stream, array in features.items():
        if array.dtype.kind not in "fiu":
            raise DatasetError(f"{where}: '{stream}' is {array.dtype}, not numeric.")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            raise DatasetError(
                f"{where}: clip '{clip_id}' has NaN or inf {stream} features at steps "
                f"{listing(np.flatnonzero(~finite).tolist())}. Re-extract or drop it."
            )


def _frames(features, indices, num_frames, n, where, clip_id):
    """`features` with checked `frame_indices` `(n,)` and `num_frames` (or defaults)."""
    if indices is None:
        indices = np.arange(n, dtype=np.int64)
    indices = _integers(indices, where, "frame_indices")
    if indices.shape != (n,):
        raise DatasetError(
            f"{where}: clip '{clip_id}' has {n} feature rows but {indices.shape} frame "
            "indices; give one frame index per row."
        )
    if num_frames is None:
        num_frames = int(indices.max()) + 1
    if indices.min() < 0 or indices.max() >= num_frames:
        raise DatasetError(
            f"{where}: clip '{clip_id}': frame indices must lie in [0, num_frames="
            f"{num_frames}). Received min {indices.min()}, max {indices.max()}."
        )
    return {**features, "frame_indices": indices, "num_frames": int(num_frames)}


def _split_columns(names):
    """The `split<k>` names among `names`, in the order of k."""
    splits = [name for name in names if _SPLIT_NAME.match(name)]
    return sorted(splits, key=lambda name: (int(_SPLIT_NAME.match(name)[1]), name))


class _ArrayFile(FeatureSource):
    """A `.npz` or `.h5` file of `(clips, T, D)` arrays (module docstring)."""

    def __init__(self, path):
        self.path = path
        self._cache = {}
        try:
            if path.suffix.lower() == ".npz":
                self._handle = np.load(path, allow_pickle=False)
            else:
                self._handle = h5py.File(path, "r")
            self._keys = list(self._handle.keys())  # a .npz file is a Mapping too
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"Cannot read '{path}': {error}. Write it with numpy.savez or h5py."
            ) from None
        where = f"'{path}'"
        streams = tuple(s for s in STREAMS if s in self._keys)
        if not streams:
            raise DatasetError(
                f"{where} holds no (clips, T, D) 'context' or 'action' array (its "
                f"arrays: {listing(self._keys)}). {_FORMAT_HINT}"
            )
        if "labels" not in self._keys:
            raise DatasetError(
                f"{where} has no 'labels' array of (clips,) integer class indices."
            )
        shapes = {s: self._shape(s) for s in streams}
        for stream, shape in shapes.items():
            if len(shape) != 3:
                raise DatasetError(
                    f"{where}: '{stream}' must be (clips, T, D), with 'lengths' giving "
                    f"each clip's rows (or a folder). Received shape {shape}."
                )
        if len({shape[:2] for shape in shapes.values()}) != 1:
            raise DatasetError(
                f"{where}: 'context' is {shapes['context']} but 'action' is "
                f"{shapes['action']}; both streams need the same (clips, T)."
            )
        clips, steps = shapes[streams[0]][:2]
        labels = self._optional("labels", (clips,), integers=True)
        self._lengths = self._optional("lengths", (clips,), np.full(clips, steps), True)
        if clips and (self._lengths.min() < 1 or self._lengths.max() > steps):
            raise DatasetError(
                f"{where}: 'lengths' must lie in [1, T={steps}]. Received min "
                f"{self._lengths.min()}, max {self._lengths.max()}."
            )
        self._frame_indices = self._optional("frame_indices", (clips, steps))
        self._num_frames = self._optional("num_frames", (clips,), integers=True)
        default_ids = [f"clip_{i:05d}" for i in range(clips)]
        ids = _as_strings(self._optional("clip_ids", (clips,), default_ids))
        groups = _as_strings(self._optional("groups", (clips,), ids))
        splits = {
            key: _as_strings(self._optional(key, (clips,)))
            for key in _split_columns(self._keys)
        }
        names = self._optional("class_names", None)
        names = None if names is None else _as_strings(names)
        super().__init__(path, ids, labels, groups, splits, names, streams)
        self._check_table(where)

    def _shape(self, key):
        """The shape of array `key`, without reading (or decompressing) its data."""
        if isinstance(self._handle, h5py.File):
            return tuple(self._handle[key].shape)
        try:
            with self._handle.zip.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                header = np.lib.format.read_array_header_2_0
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0
                shape, _, _ = header(member)
        except (OSError, ValueError, KeyError):
            return tuple(self._array(key).shape)  # its own error if unreadable
        return tuple(shape)

    def _array(self, key):
        """The whole array `key` (cached: a .npz member is decompressed once)."""
        if key not in self._cache:
            try:
                value = self._handle[key]
                value = value[()] if isinstance(value, h5py.Dataset) else value
            except ValueError as error:  # object arrays, e.g. a ragged list
                raise DatasetError(
                    f"'{self.path}': array '{key}' cannot be read ({error}). Pad clips "
                    "of different lengths into one (clips, T, D) array with "
                    "'lengths', or write one .npy per clip into a folder."
                ) from None
            self._cache[key] = np.asarray(value)
        return self._cache[key]

    def _optional(self, key, shape, default=None, integers=False):
        """Array `key` of `shape` (int64 with `integers`), or `default` if absent."""
        if key not in self._keys:
            return default
        array = self._array(key)
        if shape is not None and array.shape != shape:
            raise DatasetError(
                f"'{self.path}': '{key}' must be {shape}. Received {array.shape}."
            )
        return _integers(array, f"'{self.path}'", key) if integers else array

    def dims(self):
        return {s: int(self._shape(s)[2]) for s in self.streams}

    def clip(self, row):
        n, where = int(self._lengths[row]), f"'{self.path}'"
        if isinstance(self._handle, h5py.File):
            features = {s: np.asarray(self._handle[s][row, :n]) for s in self.streams}
        else:
            features = {s: self._array(s)[row, :n] for s in self.streams}
        _check_features(features, where, self.clip_ids[row])
        indices = None if self._frame_indices is None else self._frame_indices[row, :n]
        num_frames = None if self._num_frames is None else int(self._num_frames[row])
        return _frames(features, indices, num_frames, n, where, self.clip_ids[row])

    def close(self):
        self._handle.close()
        self._cache.clear()


class NpyClips(FeatureSource):
    """Clips held as one `(n, D)` `.npy` per clip and stream (`files`: `{stream:
    [file of each clip]}`), optional `num_frames` and frame indices in `frames_dir`."""

    def __init__(
        self, path, files, clip_ids, labels, groups, splits, class_names,
        num_frames=None, frames_dir=None,
    ):  # fmt: skip
        super().__init__(
            path, clip_ids, labels, groups, splits, class_names, tuple(files)
        )
        self._paths = files
        self._num_frames = num_frames
        self._frames_dir = frames_dir

    def _frames_file(self, row):
        file = self._frames_dir and self._frames_dir / f"{self.clip_ids[row]}.npy"
        return file if file and file.is_file() else None

    def record_path(self, row):
        return str(self._paths[self.streams[0]][row])

    def _files(self):
        files = [file for stream in self.streams for file in self._paths[stream]]
        frames = (self._frames_file(row) for row in range(len(self)))
        return files + [file for file in frames if file is not None]

    def shapes(self):
        """`({stream: D}, [n of each clip])`, checking every file (headers only)."""
        found = {s: {} for s in self.streams}  # stream -> {D: first file with it}
        lengths = []
        for row in range(len(self)):
            rows = {}
            for stream in self.streams:
                file = self._paths[stream][row]
                array = load_npy(file, mmap=True)  # reads the header only
                if array.ndim != 2 or array.dtype.kind not in "fiu" or not len(array):
                    raise DatasetError(
                        f"'{file}' must be an (n, D) numeric array, n >= 1. Received "
                        f"shape {array.shape}, dtype {array.dtype}."
                    )
                found[stream].setdefault(array.shape[1], file)
                rows[file] = array.shape[0]
            if len(set(rows.values())) > 1:
                raise DatasetError(
                    f"Clip '{self.clip_ids[row]}': "
                    + " but ".join(f"'{file}' has {n} rows" for file, n in rows.items())
                    + "; both streams must describe the same frames."
                )
            lengths.append(rows[file])
        for stream, sizes in found.items():
            if len(sizes) > 1:
                raise DatasetError(
                    f"The {stream} features have several sizes: "
                    + ", ".join(f"{d} in '{file}'" for d, file in sizes.items())
                    + ". Every clip of a stream needs the same feature size D."
                )
        return {s: int(next(iter(found[s]))) for s in self.streams}, lengths

    def dims(self):
        return self.shapes()[0]

    def clip(self, row):
        clip_id = self.clip_ids[row]
        features = {}
        for stream in self.streams:
            file = self._paths[stream][row]
            features[stream] = load_npy(file)
            _check_features({stream: features[stream]}, f"'{file}'", clip_id)
        n = features[self.streams[0]].shape[0]
        indices_file = self._frames_file(row)
        indices = None if indices_file is None else load_npy(indices_file)
        num_frames = None if self._num_frames is None else self._num_frames[row]
        where = f"'{indices_file or self.path / CLIPS_CSV}'"
        return _frames(features, indices, num_frames, n, where, clip_id)


class _NpyFolder(NpyClips):
    """A folder with `clips.csv` and one `.npy` per clip and stream."""

    def __init__(self, folder):
        table = folder / CLIPS_CSV
        if not table.is_file():
            raise DatasetError(
                f"'{folder}' has no {CLIPS_CSV} (header 'clip_id,label[,group]"
                f"[,num_frames][,split1,...]', one line per clip). {_FORMAT_HINT}"
            )
        where = f"'{table}'"
        try:
            with open(table, newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, csv.Error, UnicodeDecodeError) as error:
            raise DatasetError(f"Cannot read {where}: {error}.") from None
        columns = list(rows[0]) if rows else []
        if "clip_id" not in columns or "label" not in columns:
            raise DatasetError(
                f"{where} needs a header with 'clip_id' and 'label' and one line per "
                f"clip. Received columns {columns} and {len(rows)} clip lines."
            )
        ids = [r["clip_id"].strip() for r in rows]
        labels = []
        for line, r in enumerate(rows, start=2):
            try:
                labels.append(int(r["label"]))
            except (TypeError, ValueError):
                raise DatasetError(
                    f"{where} line {line}: label must be an integer class index. "
                    f"Received {r['label']!r} for clip {r['clip_id']!r}."
                ) from None
        groups = [r["group"].strip() for r in rows] if "group" in columns else ids
        num_frames = None
        if "num_frames" in columns:
            counts = (r["num_frames"] for r in rows)
            num_frames = [int(count) if count else None for count in counts]
        splits = {c: [r[c].strip() for r in rows] for c in _split_columns(columns)}
        streams = [s for s in STREAMS if (folder / s).is_dir()]
        if not streams:
            raise DatasetError(
                f"'{folder}' has no 'context/' or 'action/' folder of per-clip .npy "
                f"files. {_FORMAT_HINT}"
            )
        files = {s: [folder / s / f"{c}.npy" for c in ids] for s in streams}
        for stream in streams:
            absent = [c for c, f in zip(ids, files[stream]) if not f.is_file()]
            if absent:
                raise DatasetError(
                    f"'{folder / stream}' has no .npy file for {len(absent)} clips of "
                    f"{CLIPS_CSV}: {listing(absent)}. Add them or leave them out."
                )
        names = None
        if (folder / CLASSES_TXT).is_file():
            lines = (folder / CLASSES_TXT).read_text().splitlines()
            names = [line.strip() for line in lines if line.strip()]
        super().__init__(
            folder, files, ids, np.asarray(labels, dtype=np.int64), groups, splits,
            names, num_frames, folder / FRAME_INDICES,
        )  # fmt: skip
        self._check_table(where)

    def _files(self):
        files = [self.path / CLIPS_CSV]
        if (self.path / CLASSES_TXT).is_file():
            files.append(self.path / CLASSES_TXT)
        return files + super()._files()


def imported_records(source, split=1, validation_fraction=0.1, seed=0):
    """The `ClipRecord`s of the clips in split `split<split>` of `source` (role ""
    left out), in input order, validation carved by `records.carve_validation`."""
    name = f"split{split}"
    if not source.splits:
        raise DatasetError(
            f"'{source.path}' defines no split: add a 'split1' array (or {CLIPS_CSV} "
            "column) giving each clip's role: 'train', 'validation', 'test' or ''."
        )
    if name not in source.splits:
        raise DatasetError(
            f"'{source.path}' has no split '{name}' (data.split={split}); it defines "
            f"{', '.join(source.splits)}. Set data.split to one of those numbers."
        )
    records = []
    for row, (clip_id, role) in enumerate(zip(source.clip_ids, source.splits[name])):
        if role:
            label, group = int(source.labels[row]), source.groups[row]
            path, class_name = source.record_path(row), source.class_names[label]
            records.append(ClipRecord(clip_id, path, label, class_name, group, role))
    return carve_validation(records, fraction=validation_fraction, seed=seed)
