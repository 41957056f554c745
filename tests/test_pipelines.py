"""The sequence pipeline: shapes, labels, padding, masks, seeds, errors."""

import numpy as np
import pytest
import tensorflow as tf

from msl_keras.data import pipelines as P
from msl_keras.errors import ConfigError, DatasetError


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


def test_sequence_dataset_shapes_and_padding():
    store = _store()
    ds = P.sequence_dataset(store, num_classes=4, batch_size=4)
    x_spec, y_spec = ds.element_spec
    assert (
        x_spec["context"].shape.as_list() == [None, 6, 5]
        and x_spec["context"].dtype == tf.float32
    )
    assert x_spec["action"].shape.as_list() == [None, 6, 3]
    assert set(x_spec) == {"context", "action"} and set(y_spec) == {"stage1", "stage2"}
    xs, ys = zip(*ds.as_numpy_iterator())
    context = np.concatenate([x["context"] for x in xs])
    action = np.concatenate([x["action"] for x in xs])
    y = np.concatenate([y["stage1"] for y in ys])
    np.testing.assert_array_equal(y, np.concatenate([y["stage2"] for y in ys]))
    clip = context[:, 0, 0].astype(int)  # step 0 is always valid
    assert sorted(clip) == list(range(10))
    mask = np.arange(6)[None, :] < store["lengths"][clip][:, None]  # valid steps
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
