"""tf.data pipelines: shapes, labels, masks, seeds, and one preprocessing everywhere."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras.data import pipelines as P
from msl_keras.data.augment import AugmentationConfig
from msl_keras.data.preprocessing import IMAGENET_MEAN_BGR, preprocess_frames
from msl_keras.errors import ConfigError, DatasetError

SIZE = (16, 16)


def _coded_frames(n, h=12, w=16):
    """Frame i is flat grey level i: a preprocessed frame tells which one it was."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames += np.arange(n, dtype=np.uint8)[:, None, None, None]
    return frames


def _index_of(x):
    """Recover the frame index from a preprocessed coded frame (B channel + mean)."""
    return np.round(x[:, 0, 0, 0] + IMAGENET_MEAN_BGR[0]).astype(int)


def _all(ds):
    xs, ys = zip(*ds.as_numpy_iterator())
    if isinstance(ys[0], dict):
        return np.concatenate(xs), {
            k: np.concatenate([y[k] for y in ys]) for k in ys[0]
        }
    return np.concatenate(xs), np.concatenate(ys)


# --- frame_dataset ----------------------------------------------------------------


def test_frame_dataset_shapes_and_dtypes():
    frames = np.random.default_rng(0).integers(0, 256, (10, 24, 32, 3), np.uint8)
    labels = np.arange(10) % 3
    ds = P.frame_dataset(
        frames, labels, batch_size=4, size=SIZE, outputs=("cam", "action")
    )
    x_spec, y_spec = ds.element_spec
    assert x_spec.shape.as_list() == [None, 16, 16, 3] and x_spec.dtype == tf.float32
    assert set(y_spec) == {"cam", "action"} and y_spec["cam"].dtype == tf.int32
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x, y = _all(ds)
    np.testing.assert_array_equal(y["cam"], y["action"])
    # Augmented frames are still within the preprocessed range of [0, 255] pixels.
    assert x.min() >= -124 and x.max() <= 256 - 103


def test_labels_follow_their_frames_through_the_shuffle():
    n = 40
    labels = (np.arange(n) * 7) % 5
    ds = P.frame_dataset(
        _coded_frames(n), labels, batch_size=8, augment=False, size=SIZE
    )
    x, y = _all(ds)
    index = _index_of(x)
    assert sorted(index) == list(range(n))  # every frame once
    assert list(index) != list(range(n))  # shuffled
    np.testing.assert_array_equal(y, labels[index])


def test_shuffle_deterministic_for_a_seed_and_new_each_epoch():
    frames, labels = _coded_frames(30), np.zeros(30, int)

    def order(ds):
        return list(_index_of(_all(ds)[0]))

    kwargs = {"batch_size": 8, "augment": False, "size": SIZE}
    ds0 = P.frame_dataset(frames, labels, seed=0, **kwargs)
    first = order(ds0)
    assert first == order(P.frame_dataset(frames, labels, seed=0, **kwargs))
    assert first != order(P.frame_dataset(frames, labels, seed=1, **kwargs))
    assert first != order(ds0)  # the second pass is reshuffled
    unshuffled = P.frame_dataset(frames, labels, shuffle=False, **kwargs)
    assert order(unshuffled) == list(range(30))


def test_augmentation_deterministic_for_a_seed():
    frames = np.random.default_rng(1).integers(0, 256, (6, 24, 32, 3), np.uint8)
    labels = np.zeros(6, int)
    kwargs = {"batch_size": 3, "size": SIZE, "shuffle": False}
    a = _all(P.frame_dataset(frames, labels, seed=5, **kwargs))[0]
    b = _all(P.frame_dataset(frames, labels, seed=5, **kwargs))[0]
    c = _all(P.frame_dataset(frames, labels, seed=6, **kwargs))[0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0
    plain = _all(P.frame_dataset(frames, labels, augment=False, **kwargs))[0]
    assert np.abs(a - plain).mean() > 1.0


def test_training_and_extraction_preprocess_a_frame_identically():
    frames = np.random.default_rng(2).integers(0, 256, (5, 24, 32, 3), np.uint8)
    train = _all(
        P.frame_dataset(
            frames, np.arange(5), batch_size=2, augment=False, size=SIZE, shuffle=False
        )
    )[0]
    extract = np.concatenate(
        list(P.clip_frames(frames, size=SIZE, batch_size=3).as_numpy_iterator())
    )
    np.testing.assert_array_equal(train, extract)
    np.testing.assert_array_equal(extract, preprocess_frames(frames, SIZE).numpy())


def test_identity_augmentation_equals_plain_preprocessing():
    # 24x32 frames have the paper's 320/240 aspect: scale 1 crops the whole frame.
    frames = np.random.default_rng(3).integers(0, 256, (4, 24, 32, 3), np.uint8)
    config = AugmentationConfig(
        flip=False,
        max_rotation=0.0,
        crop_scale=(1.0, 1.0),
        channel_shift=0.0,
        jitter=0.0,
        output_size=SIZE,
    )
    kwargs = {"batch_size": 4, "size": SIZE, "shuffle": False}
    augmented = _all(
        P.frame_dataset(frames, np.zeros(4, int), aug_config=config, **kwargs)
    )[0]
    plain = _all(P.frame_dataset(frames, np.zeros(4, int), augment=False, **kwargs))[0]
    np.testing.assert_allclose(augmented, plain, atol=1e-3)


def test_one_hot_labels_and_fit_step():
    frames = np.random.default_rng(4).integers(0, 256, (8, 24, 32, 3), np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    ds = P.frame_dataset(
        frames, labels, batch_size=4, size=SIZE, num_classes=3, shuffle=False
    )
    y = _all(ds)[1]
    np.testing.assert_array_equal(y, np.eye(3)[labels])
    # The dict targets drive a two-output model, as the action-aware head has.
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = {
        "cam": keras.layers.Dense(3, activation="softmax", name="cam")(hidden),
        "action": keras.layers.Dense(3, activation="softmax", name="action")(hidden),
    }
    model = keras.Model(inputs, outputs)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(
        P.frame_dataset(
            frames, labels, batch_size=4, size=SIZE, outputs=("cam", "action")
        ),
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])


def test_frame_dataset_errors():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(DatasetError, match="shape"):
        P.frame_dataset(np.zeros((4, 8, 8)), np.zeros(4, int))
    with pytest.raises(DatasetError, match=r"\(4,\)"):
        P.frame_dataset(frames, np.zeros(3, int))
    with pytest.raises(DatasetError, match="num_classes"):
        P.frame_dataset(frames, np.array([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ConfigError, match="output_size"):
        P.frame_dataset(
            frames, np.zeros(4, int), size=SIZE, aug_config=AugmentationConfig()
        )
    with pytest.raises(ConfigError, match="batch_size"):
        P.frame_dataset(frames, np.zeros(4, int), batch_size=0)


# --- frame_dataset_from_records ---------------------------------------------------


def _fake_reader(path):
    """Clip `<label>_<n>` has n frames of grey level 10 * label + frame number."""
    label, n = (int(v) for v in path.split("_"))
    frames = np.zeros((n, 12, 16, 3), np.uint8)
    return frames + (10 * label + np.arange(n, dtype=np.uint8))[:, None, None, None]


def test_records_pipeline_labels_and_frame_choice():
    records = [
        SimpleNamespace(path=f"{lab}_{n}", label=lab)
        for lab, n in [(1, 9), (2, 3), (3, 7)]
    ]
    ds = P.frame_dataset_from_records(
        records, 3, read_frames_fn=_fake_reader, batch_size=4, augment=False, size=SIZE
    )
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]
    x, y = _all(ds)
    assert len(y) == 9  # 3 frames from each clip
    value = np.round(x[:, 0, 0, 0] + IMAGENET_MEAN_BGR[0]).astype(int)
    np.testing.assert_array_equal(value // 10, y)  # every frame kept its clip's label
    assert sorted(value[y == 1] % 10) == [0, 4, 8]  # evenly spaced over 9 frames
    assert sorted(value[y == 2] % 10) == [0, 1, 2]


def test_records_pipeline_uniform_frames_are_select_frames():
    """The on-the-fly pipeline trains on the frames the CNN stage's cache uses."""
    from msl_keras.data.video import select_frames

    records = [SimpleNamespace(path="1_6", label=1)]
    ds = P.frame_dataset_from_records(
        records, 5, read_frames_fn=_fake_reader, batch_size=8, augment=False, size=SIZE
    )
    x, _ = _all(ds)
    value = np.round(x[:, 0, 0, 0] + IMAGENET_MEAN_BGR[0]).astype(int)
    assert sorted(value % 10) == select_frames(6, 5, "uniform").tolist() == [0, 1, 3, 4, 5]


def test_records_pipeline_augments_deterministically():
    records = [SimpleNamespace(path=f"{lab}_{6}", label=lab) for lab in range(3)]
    kwargs = {
        "read_frames_fn": _fake_reader,
        "batch_size": 4,
        "size": SIZE,
        "sampling": "random",
    }
    a = _all(P.frame_dataset_from_records(records, 2, seed=3, **kwargs))
    b = _all(
        P.frame_dataset_from_records(
            records, 2, seed=3, outputs=("cam", "action"), **kwargs
        )
    )
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1]["action"])
    assert a[0].shape == (6, 16, 16, 3)


def test_records_pipeline_reports_a_broken_clip():
    def broken(path):
        raise OSError(f"cannot decode {path}")

    ds = P.frame_dataset_from_records(
        [SimpleNamespace(path="clip_a.avi", label=0)],
        2,
        read_frames_fn=broken,
        size=SIZE,
    )
    with pytest.raises(Exception, match="clip_a.avi"):
        list(ds.as_numpy_iterator())


def test_records_pipeline_on_a_real_clip(shared_data):
    clip = shared_data / "ucf101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi"
    records = [SimpleNamespace(path=str(clip), label=0)]
    ds = P.frame_dataset_from_records(
        records, 4, batch_size=4, size=SIZE, augment=False
    )
    x, y = _all(ds)
    assert x.shape == (4, 16, 16, 3) and (y == 0).all()
    pixels = x + np.array(IMAGENET_MEAN_BGR)
    assert pixels.min() >= -0.01 and pixels.max() <= 255.01 and pixels.std() > 5


# --- clip_frames ------------------------------------------------------------------


def test_clip_frames_keeps_order_and_batches():
    batches = list(
        P.clip_frames(_coded_frames(5), size=SIZE, batch_size=2).as_numpy_iterator()
    )
    assert [b.shape for b in batches] == [(2, 16, 16, 3)] * 2 + [(1, 16, 16, 3)]
    assert list(_index_of(np.concatenate(batches))) == list(range(5))


# --- sequence_dataset -------------------------------------------------------------


def _store(clips=10, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, clips)
    lengths[0] = steps
    context = rng.normal(size=(clips, steps, 5)).astype(np.float16)
    context[:, :, 0] = np.arange(clips)[:, None]  # feature 0 = clip id
    # Padded rows hold junk (even NaN): the pipeline must zero them.
    context[np.arange(steps)[None, :] >= lengths[:, None]] = np.nan
    action = rng.normal(size=(clips, steps, 3)).astype(np.float16)
    return {
        "context": context,
        "action": action,
        "labels": rng.integers(0, 4, clips),
        "lengths": lengths,
        "clip_ids": np.array([f"c{i}" for i in range(clips)]),
    }


def test_sequence_dataset_shapes_padding_and_mask():
    store = _store()
    ds = P.sequence_dataset(store, num_classes=4, batch_size=4, include_mask=True)
    x_spec, y_spec = ds.element_spec
    assert (
        x_spec["context"].shape.as_list() == [None, 6, 5]
        and x_spec["context"].dtype == tf.float32
    )
    assert x_spec["action"].shape.as_list() == [None, 6, 3]
    assert x_spec["mask"].dtype == tf.bool
    assert set(y_spec) == {"stage1", "stage2"}
    xs, ys = zip(*ds.as_numpy_iterator())
    context = np.concatenate([x["context"] for x in xs])
    action = np.concatenate([x["action"] for x in xs])
    mask = np.concatenate([x["mask"] for x in xs])
    y = np.concatenate([y["stage1"] for y in ys])
    np.testing.assert_array_equal(y, np.concatenate([y["stage2"] for y in ys]))
    clip = context[:, 0, 0].astype(int)  # step 0 is always valid
    assert sorted(clip) == list(range(10))
    expected_mask = np.arange(6)[None, :] < store["lengths"][clip][:, None]
    np.testing.assert_array_equal(mask, expected_mask)
    assert np.isfinite(context).all()
    assert (context[~mask] == 0).all() and (action[~mask] == 0).all()
    np.testing.assert_array_equal(
        action[mask], store["action"][clip][mask].astype(np.float32)
    )
    # One-hot of the clip's label on valid steps, all-zero rows on padded steps.
    np.testing.assert_array_equal(y.sum(-1), mask.astype(np.float32))
    np.testing.assert_array_equal(
        y.argmax(-1)[mask], np.repeat(store["labels"][clip], mask.sum(1))
    )


def test_sequence_dataset_shuffle_seeds():
    store = _store(clips=24)

    def order(**kwargs):
        ds = P.sequence_dataset(store, 4, batch_size=5, **kwargs)
        return [
            int(v) for x, _ in ds.as_numpy_iterator() for v in x["context"][:, 0, 0]
        ]

    assert order(seed=0) == order(seed=0)
    assert order(seed=0) != order(seed=1)
    assert order(shuffle=False) == list(range(24))


def test_sequence_dataset_single_stream_and_plain_targets():
    store = _store()
    ds = P.sequence_dataset(store, 4, streams=("context",), outputs=None, shuffle=False)
    x, y = next(iter(ds))
    assert set(x) == {"context"} and y.shape == (10, 6, 4)
    ds = P.sequence_dataset(store, 4, streams=("action",), outputs=("stage1",))
    assert set(ds.element_spec[1]) == {"stage1"}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda s: s.pop("lengths"), DatasetError, "lengths"),
        (lambda s: s.update(lengths=np.zeros(10, int)), DatasetError, r"\[1, T=6\]"),
        (lambda s: s.update(labels=np.full(10, 4)), DatasetError, "num_classes"),
        (lambda s: s.update(action=np.zeros((9, 6, 3))), DatasetError, "action"),
        (lambda s: s.update(context=np.zeros((10, 6))), DatasetError, "features"),
    ],
)
def test_sequence_dataset_errors(change, error, match):
    store = _store()
    change(store)
    with pytest.raises(error, match=match):
        P.sequence_dataset(store, num_classes=4)


def test_sequence_dataset_bad_config():
    with pytest.raises(ConfigError, match="num_classes"):
        P.sequence_dataset(_store(), num_classes=0)
    with pytest.raises(ConfigError, match="outputs"):
        P.sequence_dataset(_store(), num_classes=4, outputs="stage1")
