"""A disk cache of the frozen VGG-16 trunk's conv5_2 maps, one row per (clip, frame, view).

The paper trains the context- and action-aware heads on single frames on top of a trunk
that is never trained (Sec. 3.2.1, 4.2). Its output for a given input frame is therefore
fixed: `pipeline/head_training.py` computes it once per sampled frame and augmented view and
trains both heads, for every epoch and every fold of a protocol, from this cache.

One HDF5 file per cache fingerprint, `<run>/trunk_cache/<fingerprint>.h5`; the fingerprint
hashes everything that decides the cached values: the trunk's weights, the input size,
the preprocessing, the augmentation ranges and the seed the per-frame augmentation
parameters are drawn from. Inside:

```
maps        (rows, h, w, C) float16, one chunk per row; h = w = input_size / 16
keys        (rows,) str     "<clip_id>|<frame index>|<view>" (view "plain" or "aug<k>")
clip_ids    (clips,) str    clips whose decoded frame count is known
num_frames  (clips,) int64
attrs       fingerprint, settings (JSON)
```

Rows are appended (maps first, keys last): a run killed while writing leaves at most a
few maps rows without a key, which the next open drops, so the cache stays valid.
"""

import json
from pathlib import Path

import h5py
import numpy as np

from msl_keras.errors import MslKerasError

_STR = h5py.string_dtype("utf-8")
# float16 holds conv5_2 activations (ReLU outputs, far below 65504) at ~3 significant
# digits, half the disk and page cache of float32.
MAP_DTYPE = np.float16


def cache_key(clip_id, frame, view):
    """Row key of one (clip, frame index, view): `"<clip_id>|<frame>|<view>"`."""
    return f"{clip_id}|{int(frame)}|{view}"


class TrunkCache:
    """Append-only store of trunk outputs, keyed by `cache_key`.

    Args:
        path: the `.h5` file (created with its folder if missing).
        fingerprint: str, identifies the trunk and input settings; an existing file with
            another fingerprint is refused.
        map_shape: `(h, w, C)` of one conv5_2 map.
        settings: dict written as the file's `settings` attribute (for people reading
            the file; only `fingerprint` is checked).

    Use as a context manager, or call `close()`.
    """

    def __init__(self, path, fingerprint, map_shape, settings=None):
        self.path = Path(path)
        self.fingerprint = str(fingerprint)
        self.map_shape = tuple(int(d) for d in map_shape)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = h5py.File(self.path, "a")
        except OSError as error:
            raise MslKerasError(
                f"Cannot open the trunk cache '{self.path}': {error}. If another process "
                "is training on this run, wait for it; otherwise delete the file (it is "
                "recomputed)."
            ) from error
        f = self._file
        if "maps" not in f:
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["settings"] = json.dumps(settings or {}, sort_keys=True)
            f.create_dataset(
                "maps",
                shape=(0,) + self.map_shape,
                maxshape=(None,) + self.map_shape,
                dtype=MAP_DTYPE,
                chunks=(1,) + self.map_shape,
            )
            f.create_dataset(
                "keys", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,)
            )
            f.create_dataset(
                "clip_ids", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(1024,)
            )
            f.create_dataset(
                "num_frames",
                shape=(0,),
                maxshape=(None,),
                dtype="int64",
                chunks=(1024,),
            )
        else:
            found = f.attrs.get("fingerprint")
            found_shape = tuple(f["maps"].shape[1:])
            if found != self.fingerprint or found_shape != self.map_shape:
                self._file.close()
                raise MslKerasError(
                    f"Trunk cache '{self.path}' holds fingerprint {found!r} and maps "
                    f"{found_shape}; expected {self.fingerprint!r} and {self.map_shape}. "
                    "Delete the file (it is recomputed)."
                )
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["keys"][:]]
        if f["maps"].shape[0] != len(keys):  # an interrupted append: drop the tail
            f["maps"].resize(len(keys), axis=0)
        self._rows = {key: row for row, key in enumerate(keys)}
        clip_ids = [c.decode() if isinstance(c, bytes) else c for c in f["clip_ids"][:]]
        counts = f["num_frames"][: len(clip_ids)]
        self._num_frames = dict(zip(clip_ids, (int(n) for n in counts)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._file:
            self._file.close()

    def __len__(self):
        return len(self._rows)

    def __contains__(self, key):
        return key in self._rows

    def row(self, key):
        """The row of `key` (KeyError when absent)."""
        return self._rows[key]

    def rows(self, keys):
        """int64 rows `(len(keys),)` of present keys."""
        return np.fromiter(
            (self._rows[k] for k in keys), dtype=np.int64, count=len(keys)
        )

    def num_frames(self, clip_id):
        """Decoded frame count recorded for `clip_id`, or None."""
        return self._num_frames.get(clip_id)

    def set_num_frames(self, clip_id, count):
        if clip_id in self._num_frames:
            return
        f = self._file
        n = f["clip_ids"].shape[0]
        f["num_frames"].resize(n + 1, axis=0)
        f["num_frames"][n] = int(count)
        f["clip_ids"].resize(n + 1, axis=0)
        f["clip_ids"][n] = clip_id
        self._num_frames[clip_id] = int(count)

    def add(self, keys, maps):
        """Appends `maps` `(n, h, w, C)` under `keys` (n,); keys already present are skipped."""
        maps = np.asarray(maps)
        if maps.shape[1:] != self.map_shape or len(keys) != len(maps):
            raise ValueError(
                f"TrunkCache.add expects {len(keys)} maps of shape {self.map_shape}. "
                f"Received: maps.shape={maps.shape}"
            )
        new = [i for i, k in enumerate(keys) if k not in self._rows]
        if not new:
            return
        values = maps[new].astype(MAP_DTYPE)
        if not np.all(np.isfinite(values)):
            raise MslKerasError(
                "The trunk produced non-finite conv5_2 values (NaN, or above float16's "
                "65504): check the trunk weights and the preprocessing."
            )
        f = self._file
        start = f["keys"].shape[0]
        f["maps"].resize(start + len(new), axis=0)
        f["maps"][start:] = values
        f["keys"].resize(start + len(new), axis=0)
        f["keys"][start:] = [keys[i] for i in new]
        f.flush()
        for offset, i in enumerate(new):
            self._rows[keys[i]] = start + offset

    def read(self, rows):
        """float32 maps `(len(rows), h, w, C)` of the given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0,) + self.map_shape, np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)
        block = self._file["maps"][unique]  # h5py wants increasing indices
        return block[inverse].astype(np.float32)

    def nbytes(self, count):
        """Bytes that `count` rows take in memory as float32."""
        return int(count) * int(np.prod(self.map_shape)) * 4
