"""The frozen VGG-16 trunk's conv5_2 maps of every (clip, frame, view), computed once.

The paper never trains the trunk (Sec. 3.2.1, 4.2), so its output for a frame is fixed:
`fill_cache` computes it once per sampled frame and augmented view; `train_cnn` trains
both heads from it for every epoch and fold (`CachedMapsDataset`), and `extract` reads
it with `cnn.extract_from_cache` (`plain_maps`). A view is the same image in every run
and fold (`view_seed`); view "plain" is the frame without augmentation.

One HDF5 file per fingerprint of `cache_settings`, `<run>/trunk_cache/<fingerprint>.h5`:

```
maps        (rows, h, w, C) float16, one chunk per row; h = w = input_size / 16
keys        (rows,) str     `cache_key`: "<clip_id>|<frame index>|<view>"
clip_ids    (clips,) str    clips whose decoded frame count is known
num_frames  (clips,) int64
attrs       fingerprint, settings (JSON)
```

Maps are appended before their keys: a run killed while writing leaves at most a few
maps rows without a key, which the next open drops.
"""

import contextlib
import hashlib
import json
import math
import time
import zlib
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from msl_keras.data import augment as augment_ops
from msl_keras.data.feature_store import weights_fingerprint
from msl_keras.data.preprocessing import IMAGENET_MEAN_BGR, preprocess_frames
from msl_keras.data.video import count_frames, read_frames, select_frames
from msl_keras.errors import MslKerasError, VideoDecodeError

PLAIN_VIEW = "plain"
# Bump when the way cached inputs are made changes (sampling, augmentation order).
CACHE_VERSION = 1
# float16 holds conv5_2 activations (ReLU outputs, far below 65504) at ~3 significant
# digits, half the disk and page cache of float32.
MAP_DTYPE = np.float16


def cache_key(clip_id, frame, view):
    """Row key of one (clip, frame index, view): `"<clip_id>|<frame>|<view>"`."""
    return f"{clip_id}|{int(frame)}|{view}"


class TrunkCache(contextlib.AbstractContextManager):
    """Append-only store of trunk outputs keyed by `cache_key`; a context manager.

    `path` (a `.h5`) is created with its folder if missing; a file of another
    `fingerprint` (trunk and input settings) or `map_shape` `(h, w, C)` is refused;
    `settings` is kept as the file's `settings` attribute, for people reading it.
    """

    def __init__(self, path, fingerprint, map_shape, settings=None):
        self.path = Path(path)
        self.fingerprint = str(fingerprint)
        self.map_shape = tuple(int(d) for d in map_shape)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = f = h5py.File(self.path, "a")
        except OSError as error:
            raise MslKerasError(
                f"Cannot open the trunk cache '{self.path}': {error}. Wait for another "
                "process training on this run, or delete the file (it is recomputed)."
            ) from error
        if "maps" not in f:
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["settings"] = json.dumps(settings or {}, sort_keys=True)
            text = h5py.string_dtype("utf-8")
            for name, row, dtype in (
                ("maps", self.map_shape, MAP_DTYPE),
                ("keys", (), text),
                ("clip_ids", (), text),
                ("num_frames", (), "int64"),
            ):
                chunks = (1, *row) if row else (1024,)
                f.create_dataset(
                    name, (0, *row), dtype, maxshape=(None, *row), chunks=chunks
                )
        found = (f.attrs.get("fingerprint"), tuple(f["maps"].shape[1:]))
        if found != (self.fingerprint, self.map_shape):
            f.close()
            raise MslKerasError(
                f"Trunk cache '{self.path}' holds fingerprint {found[0]!r} and maps "
                f"{found[1]}, not {self.fingerprint!r} and {self.map_shape}: delete it."
            )
        keys = f["keys"].asstr()[:]
        if f["maps"].shape[0] != len(keys):  # an interrupted append: drop the tail
            f["maps"].resize(len(keys), axis=0)
        self._rows = {key: row for row, key in enumerate(keys)}
        clip_ids = f["clip_ids"].asstr()[:]
        counts = f["num_frames"][: len(clip_ids)]
        self._num_frames = dict(zip(clip_ids, (int(n) for n in counts)))

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()  # h5py: closing a closed file does nothing

    def __contains__(self, key):
        return key in self._rows

    def rows(self, keys):
        """int64 rows `(len(keys),)` of present keys."""
        return np.array([self._rows[k] for k in keys], dtype=np.int64)

    def num_frames(self, clip_id):
        """Decoded frame count recorded for `clip_id`, or None."""
        return self._num_frames.get(clip_id)

    def set_num_frames(self, clip_id, count):
        if clip_id in self._num_frames:
            return
        # At clip_ids' length: a run killed in between left num_frames one longer.
        n = self._file["clip_ids"].shape[0]
        for name, value in (("num_frames", int(count)), ("clip_ids", clip_id)):
            self._file[name].resize(n + 1, axis=0)
            self._file[name][n] = value
        self._num_frames[clip_id] = int(count)

    def add(self, keys, maps):
        """Appends `maps` `(n, h, w, C)` under `keys` (n,); present keys are skipped."""
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
                "The trunk produced NaN or inf conv5_2 values (float16 ends at 65504): "
                "check the trunk weights and the preprocessing."
            )
        f, start = self._file, self._file["keys"].shape[0]
        for name, rows in (("maps", values), ("keys", [keys[i] for i in new])):
            f[name].resize(start + len(new), axis=0)
            f[name][start:] = rows
        f.flush()
        self._rows.update((keys[i], start + offset) for offset, i in enumerate(new))

    def read(self, rows):
        """float32 maps `(len(rows), h, w, C)` of the given rows, in the given order."""
        unique, inverse = np.unique(np.asarray(rows, np.int64), return_inverse=True)
        block = self._file["maps"][unique]  # h5py wants increasing indices
        return block[inverse].astype(np.float32)

    def nbytes(self, count):
        """Bytes that `count` rows take in memory as float32."""
        return int(count) * int(np.prod(self.map_shape)) * 4


def augmentation_config(config):
    """The paper's augmentation ranges, output size `config.cnn.input_size`."""
    size = int(config.cnn.input_size)
    return augment_ops.AugmentationConfig(output_size=(size, size))


def cache_settings(config, trunk_fp):
    """Everything besides (clip, frame, view) that decides a cached map; `trunk_fp`:
    the trunk's `weights_fingerprint`."""
    return {
        "version": CACHE_VERSION,
        "trunk": trunk_fp,
        "input_size": int(config.cnn.input_size),
        "preprocessing": list(IMAGENET_MEAN_BGR),
        "augmentation": repr(augmentation_config(config)),
        "augment": bool(config.cnn.augment),
        "seed": int(config.seed),
        "compute_dtype": config.cnn.compute_dtype,
    }


def cache_fingerprint(settings):
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def views_of(config):
    """Names of the views a training frame is seen in: `aug0..` or `plain`."""
    if not config.cnn.augment:
        return [PLAIN_VIEW]
    return [f"aug{k}" for k in range(max(1, int(config.cnn.augment_views)))]


def view_seed(seed, clip_id, frame, view):
    """Stateless seed `(2,)` of one view's augmentation: `(seed, crc32(cache_key))`."""
    key = zlib.crc32(cache_key(clip_id, frame, view).encode())
    return np.array([int(seed) & 0x7FFFFFFF, key & 0x7FFFFFFF], dtype=np.int64)


class TrunkRunner:
    """Runs the frozen trunk on batches of preprocessed frames, one traced function."""

    def __init__(self, trunk, batch_size=32):
        self.batch_size = int(batch_size)
        self.map_shape = tuple(int(d) for d in trunk.output_shape[1:])
        self._fn = tf.function(
            lambda x: trunk(x, training=False),
            input_signature=[tf.TensorSpec((None, *trunk.input_shape[1:]), tf.float32)],
        )

    def __call__(self, frames):
        """conv5_2 maps `(n, h, w, C)` (numpy float32) of frames `(n, S, S, 3)`."""
        frames = np.asarray(frames, np.float32)
        out = [np.zeros((0, *self.map_shape), np.float32)]
        for start in range(0, len(frames), self.batch_size):
            maps = self._fn(tf.constant(frames[start : start + self.batch_size]))
            out.append(np.asarray(maps, np.float32))
        return np.concatenate(out)


def open_trunk_cache(config, run, trunk):
    """`(TrunkCache, TrunkRunner)` of `trunk` and `config` in `run.trunk_cache_dir`."""
    runner = TrunkRunner(trunk, batch_size=max(config.cnn.batch_size, 32))
    settings = cache_settings(config, weights_fingerprint(trunk))
    fingerprint = cache_fingerprint(settings)
    path = run.trunk_cache_dir / f"{fingerprint}.h5"
    return TrunkCache(path, fingerprint, runner.map_shape, settings), runner


def cached_num_frames(cache, record):
    """The decodable frame count of `record`, recorded in `cache` on first use."""
    num = cache.num_frames(record.clip_id)
    if num is None:
        num = count_frames(record.path)
        cache.set_num_frames(record.clip_id, num)
    return num


def plain_maps(config, cache, runner, record, frames):
    """conv5_2 maps `(n, h, w, C)` float32 of `frames` (n,) of `record` in view "plain",
    from `cache` (missing ones are computed and added); `VideoDecodeError` if the clip
    does not decode."""
    samples = [(record, frames, [PLAIN_VIEW])]
    fill_cache(samples, config, cache, runner, progress=False, strict=True)
    keys = [cache_key(record.clip_id, f, PLAIN_VIEW) for f in frames]
    return cache.read(cache.rows(keys))


def frame_samples(records, config, cache, role_views):
    """`([(record, frames (n,), role_views)], failed [(clip_id, reason)])`."""
    samples, failed = [], []
    for record in records:
        try:
            num = cached_num_frames(cache, record)
        except VideoDecodeError as error:
            failed.append((record.clip_id, str(error)))
            continue
        frames = select_frames(num, int(config.cnn.frames_per_clip), mode="uniform")
        samples.append((record, frames, role_views))
    return samples, failed


def fill_cache(samples, config, cache, runner, progress=True, strict=False):
    """Caches the trunk output of every (clip, frame, view) of `samples` not cached
    yet, each view augmented with its own seeded parameters (`view_seed`); returns
    `(number of maps computed, failed [(clip_id, reason)])`, or with `strict` raises
    the first clip's `VideoDecodeError` instead."""
    size = int(config.cnn.input_size)
    aug_config = augmentation_config(config)
    keys, frames, failed = [], [], []  # the trunk inputs not run yet
    computed, started = 0, time.time()

    def flush():
        nonlocal computed
        if frames:
            cache.add(list(keys), runner(np.stack(frames)))
            computed += len(keys)
            keys.clear()
            frames.clear()

    todo = []  # (record, missing [(frame, view)])
    for record, indices, views in samples:
        missing = [(int(f), v) for f in indices for v in views]
        missing = [m for m in missing if cache_key(record.clip_id, *m) not in cache]
        if missing:
            todo.append((record, missing))
    for number, (record, missing) in enumerate(todo, 1):
        wanted = sorted({f for f, _ in missing})
        try:
            decoded = read_frames(record.path, wanted)
        except VideoDecodeError as error:
            if strict:
                raise
            failed.append((record.clip_id, str(error)))
            continue
        position = {f: i for i, f in enumerate(wanted)}
        for augmented in (False, True):
            group = [(f, v) for f, v in missing if (v != PLAIN_VIEW) == augmented]
            if not group:
                continue
            images = decoded[[position[f] for f, _ in group]]
            if augmented:
                seeds = [view_seed(config.seed, record.clip_id, f, v) for f, v in group]
                draws = [augment_ops.draw_augmentation(x, aug_config) for x in seeds]
                params = {key: tf.stack([d[key] for d in draws]) for key in draws[0]}
                images = augment_ops.augment_frame(images, params, aug_config)
            frames.extend(np.asarray(preprocess_frames(images, (size, size))))
            keys.extend(cache_key(record.clip_id, f, v) for f, v in group)
        if len(frames) >= runner.batch_size:
            flush()
        if progress:
            rate = (computed + len(frames)) / max(time.time() - started, 1e-6)
            print(
                f"trunk cache [{number}/{len(todo)}] {record.clip_id}: {len(missing)} "
                f"frames ({rate:.1f} frames/s)",
                flush=True,
            )
    flush()
    return computed, failed


class CachedMapsDataset(keras.utils.PyDataset):
    """Batches of cached conv5_2 maps and one-hot labels for `fit`.

    `source`: a `TrunkCache` or a float32 array of the maps; `rows`, `labels`: int
    `(n,)` rows of `source` and their classes; `outputs`: "context" -> `(maps, y)`,
    "action" -> `(maps, {"cam": y, "action": y})` (maps as `{"maps", "labels"}` when
    `oracle`); `shuffle`: reshuffle every epoch (from `seed`).
    """

    def __init__(
        self, source, rows, labels, num_classes, batch_size, outputs="context",
        shuffle=False, seed=0, oracle=False,
    ):  # fmt: skip
        super().__init__(workers=1, use_multiprocessing=False)
        self.source = source
        self.rows = np.asarray(rows, np.int64)
        self.labels = np.asarray(labels, np.int64)
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.outputs, self.shuffle, self.oracle = outputs, shuffle, oracle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.rows))
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index):
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows, labels = self.rows[picked], self.labels[picked]
        arrays = isinstance(self.source, np.ndarray)
        maps = self.source[rows] if arrays else self.source.read(rows)
        y = np.eye(self.num_classes, dtype=np.float32)[labels]
        if self.outputs == "context":
            return maps, y
        x = {"maps": maps, "labels": labels.astype(np.int32)} if self.oracle else maps
        return x, {"cam": y, "action": y}

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
