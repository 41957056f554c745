"""train_cnn: heads trained from a trunk cache computed once, best epoch restored, reload."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest

from msl_keras import runs
from msl_keras.config import apply_overrides, get_preset
from msl_keras.data import augment, trunk_cache
from msl_keras.data.feature_store import weights_fingerprint
from msl_keras.data.preprocessing import preprocess_frames
from msl_keras.data.video import read_frames, select_frames
from msl_keras.errors import ConfigError, WeightsError
from msl_keras.models.action_head import ActionAwareHead
from msl_keras.models.context_head import ContextAwareHead
from msl_keras.runs import RunDirectory
from msl_keras.pipeline import Fold, prepare
from msl_keras.data.trunk_cache import TrunkCache, cache_key
from tests.stage_helpers import make_tiny_dataset, tiny_config

import msl_keras.pipeline.head_training as train_cnn_module  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "generated")
    config = tiny_config(root, tmp_path_factory.mktemp("runs"))
    return config, prepare(config)


@pytest.fixture
def trunk_frames(monkeypatch):
    """Counts the frames the trunk is run on."""
    calls = []
    original = trunk_cache.TrunkRunner.__call__

    def counting(self, frames):
        calls.append(len(frames))
        return original(self, frames)

    monkeypatch.setattr(trunk_cache.TrunkRunner, "__call__", counting)
    return calls


def _validation_maps(config, run, index, result):
    """Cached conv5_2 maps and labels of the fold's validation frames."""
    settings = trunk_cache.cache_settings(config, result["trunk_fingerprint"])
    keys, labels = [], []
    with TrunkCache(
        result["trunk_cache"],
        trunk_cache.cache_fingerprint(settings),
        (2, 2, 16),
    ) as cache:
        for record in index.fold("split1").by_role("validation"):
            frames = select_frames(
                cache.num_frames(record.clip_id), config.cnn.frames_per_clip, "uniform"
            )
            keys += [cache_key(record.clip_id, f, "plain") for f in frames]
            labels += [record.label] * len(frames)
        return cache.read(cache.rows(keys)), np.array(labels)


def test_trains_both_heads_saves_and_reloads(setup, trunk_frames):
    config, index = setup
    result = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    run = RunDirectory(config)
    cnn_dir = run.cnn_dir("split1")
    # 3 train clips x 3 frames x 2 views + 3 validation clips x 3 plain frames.
    assert result["train_frames"] == 18 and result["validation_frames"] == 9
    assert result["trunk_frames_computed"] == 27 == sum(trunk_frames)
    assert not result["skipped"] and result["failed_clips"] == []

    for name in ("context", "action"):
        with open(cnn_dir / f"history_{name}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == config.cnn.epochs
        assert "val_loss" in rows[0]
    with open(cnn_dir / "history_action.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    assert {
        "cam_loss",
        "action_loss",
        "val_cam_accuracy",
        "val_action_accuracy",
    } <= set(columns)
    info = json.loads((cnn_dir / "cnn_info.json").read_text())
    assert info["trunk_fingerprint"] == result["trunk_fingerprint"]

    context, action = runs.load_heads(run, "split1")
    assert isinstance(context, ContextAwareHead) and isinstance(action, ActionAwareHead)
    # The saved weights are those of the best validation epoch: evaluating the reloaded
    # heads on the cached validation frames gives the logged best validation loss.
    maps, labels = _validation_maps(config, run, index, result)
    y = np.eye(3, dtype=np.float32)[labels]
    probs = keras.ops.convert_to_numpy(context(maps, training=False))
    loss = float(np.mean(-np.log(np.sum(probs * y, axis=1))))
    assert loss == pytest.approx(result["context"]["val_loss"], rel=1e-4, abs=1e-5)
    out = action(maps, training=False)
    # The total: Keras averages its per-output loss logs over batches, not samples.
    total = sum(
        float(np.mean(-np.log(np.sum(keras.ops.convert_to_numpy(out[k]) * y, axis=1))))
        for k in ("cam", "action")
    )
    assert total == pytest.approx(result["action"]["val_loss"], rel=1e-4)

    # Skipped when already trained: nothing is computed.
    again = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    assert again["skipped"] and sum(trunk_frames) == 27


def test_second_call_and_second_fold_reuse_the_cache(setup, trunk_frames):
    config, index = setup
    first = train_cnn_module.train_cnn(
        config, index, "split1", overwrite=True, verbose=0
    )
    calls_after_first = sum(trunk_frames)
    # Retraining the fold runs the trunk on no frame at all.
    again = train_cnn_module.train_cnn(
        config, index, "split1", overwrite=True, verbose=0
    )
    assert sum(trunk_frames) == calls_after_first
    assert again["trunk_frames_computed"] == 0 and again["trunk_frames_reused"] == 27
    assert again["context"] == first["context"]  # same data, same seed: same training

    # A second fold with the same training clips and the test clips as validation:
    # only the 3 x 3 plain frames of the new validation clips are computed.
    fold = index.fold("split1")
    swapped = {"test": "validation", "validation": "test", "train": "train"}
    other = Fold(
        "other",
        [dataclasses.replace(r, role=swapped[r.role]) for r in fold.records],
    )
    index.folds.append(other)
    try:
        result = train_cnn_module.train_cnn(config, index, "other", verbose=0)
    finally:
        index.folds.remove(other)
    assert sum(trunk_frames) - calls_after_first == 9 == result["trunk_frames_computed"]
    assert result["trunk_frames_reused"] == 18


def test_views_are_seeded_augmentations(setup, tmp_path):
    """The cached map of (clip, frame, view) is the trunk output of that augmented view,
    the same in a fresh run; two views of one frame differ."""
    config, index = setup
    other = apply_overrides(config, {"output_dir": str(tmp_path)})
    fresh = train_cnn_module.train_cnn(
        apply_overrides(other, {"cnn.epochs": 1}), index, "split1", verbose=0
    )
    reference = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    record = index.fold("split1").by_role("train")[0]
    keys = [cache_key(record.clip_id, 0, view) for view in ("aug0", "aug1")]
    maps = {}
    for name, result in (("fresh", fresh), ("reference", reference)):
        settings = trunk_cache.cache_settings(config, result["trunk_fingerprint"])
        fingerprint = trunk_cache.cache_fingerprint(settings)
        with TrunkCache(result["trunk_cache"], fingerprint, (2, 2, 16)) as cache:
            maps[name] = cache.read(cache.rows(keys))
    np.testing.assert_array_equal(maps["fresh"], maps["reference"])
    assert np.abs(maps["fresh"][0] - maps["fresh"][1]).max() > 0

    # Recompute view aug0 of frame 0 by hand: draw, augment, preprocess, trunk.
    aug_config = trunk_cache.augmentation_config(config)
    params = augment.draw_augmentation(
        trunk_cache.view_seed(config.seed, record.clip_id, 0, "aug0"), aug_config
    )
    image = augment.augment_frame(read_frames(record.path, [0])[0], params, aug_config)
    run = RunDirectory(config)
    trunk = runs.build_trunk(config, run)
    expected = keras.ops.convert_to_numpy(
        trunk(preprocess_frames(image[None], (32, 32)), training=False)
    )[0]
    np.testing.assert_allclose(maps["reference"][0], expected, rtol=2e-3, atol=2e-3)


def test_load_extractor_checks_the_trunk(setup):
    config, index = setup
    train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    run = RunDirectory(config)
    extractor = runs.load_extractor(config, run, "split1")
    out = extractor.extract(np.zeros((2, 32, 32, 3), np.float32))
    assert out["context"].shape == (2, 8) and out["action"].shape == (2, 8)
    assert out["cam_scores"].shape == (2, 3)
    # Another cam_class rebuilds the action head with the trained weights.
    top_k = apply_overrides(config, {"cnn.cam_class": "top_k", "cnn.top_k": 2})
    rebuilt = runs.load_extractor(top_k, run, "split1")
    assert rebuilt.action_head.cam_class == "top_k" and rebuilt.action_head.top_k == 2
    for a, b in zip(
        rebuilt.action_head.get_weights(), extractor.action_head.get_weights()
    ):
        np.testing.assert_array_equal(a, b)
    # A trunk other than the one the heads were trained on is refused.
    (run.root / runs.TRUNK_WEIGHTS_FILENAME).rename(
        run.root / "moved.weights.h5"
    )
    try:
        with pytest.raises(WeightsError, match="trained on trunk"):
            runs.load_extractor(
                apply_overrides(config, {"seed": 5}), run, "split1"
            )
    finally:
        (run.root / "moved.weights.h5").rename(
            run.root / runs.TRUNK_WEIGHTS_FILENAME
        )
    with pytest.raises(WeightsError, match="train-cnn"):
        runs.load_heads(run, "nofold")


def test_paper_optimizer_settings():
    cnn = get_preset("paper_ucf101").cnn
    head = ContextAwareHead(3, fc_units=8, width=1 / 32)
    head.build((None, 2, 2, 16))
    optimizer = train_cnn_module._optimizer(cnn, head)
    assert optimizer.momentum == pytest.approx(0.9)
    assert float(optimizer.learning_rate) == pytest.approx(0.001)
    # Caffe's L2 reading: wd/2 * ||w||^2 on every kernel, none on biases
    assert cnn.weight_decay_mode == "l2" and optimizer.weight_decay is None
    regularized = [v for v in head.trainable_variables if v.regularizer is not None]
    assert {v.name for v in regularized} == {"kernel"} and len(regularized) == 4
    assert regularized[0].regularizer.l2 == pytest.approx(0.0005 / 2)
    assert cnn.batch_size == 32
    assert get_preset("demo").cnn.weight_decay_mode == "decoupled"


def test_without_validation_the_last_epoch_is_kept(setup, tmp_path):
    config, _ = setup
    config = apply_overrides(
        config,
        {"data.validation_fraction": 0, "cnn.epochs": 2, "output_dir": str(tmp_path)},
    )
    index = prepare(config)
    result = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    assert result["validation_frames"] == 0 and result["train_frames"] == 36
    assert result["context"]["best_epoch"] == 2 and "val_loss" not in result["context"]


def test_weights_file_initialises_trunk_and_heads(setup, tmp_path):
    from tests.vgg16_files import (
        random_top_arrays,
        random_vgg16_arrays,
        write_legacy_vgg16_h5,
    )

    config, index = setup
    arrays = random_vgg16_arrays(1 / 32, seed=3)
    path = tmp_path / "tiny_vgg16.h5"
    write_legacy_vgg16_h5(path, arrays)
    # a with-top file of the same tiny VGG-16: 32x32 input -> 1 x 1 x 16 before fc6
    top = {**random_vgg16_arrays(1 / 32, seed=4), **random_top_arrays(16, 8)}
    top_path = write_legacy_vgg16_h5(tmp_path / "tiny_vgg16_top.h5", top)
    config = apply_overrides(
        config,
        {"cnn.weights": str(path), "cnn.epochs": 1, "output_dir": str(tmp_path / "r")},
    )
    trunk = runs.build_trunk(config)
    assert not trunk.trainable
    np.testing.assert_array_equal(
        trunk.get_layer("block5_conv2").get_weights()[0], arrays["block5_conv2"][0]
    )
    context, action, initialisation = train_cnn_module._build_heads(
        config, 3, (2, 2, 16)
    )
    for head in (context, action):  # both heads start conv5_3 from the file
        np.testing.assert_array_equal(
            head.block5_conv3.get_weights()[0], arrays["block5_conv3"][0]
        )
        assert initialisation[head.name]["fc6"] == "random"  # no fc1 in the file
    with_top = apply_overrides(config, {"cnn.top_weights": str(top_path)})
    *heads, initialisation = train_cnn_module._build_heads(with_top, 3, (2, 2, 16))
    for head in heads:  # conv5_3, fc6, fc7 from the with-top file; fc8 random
        for ours, theirs in (("block5_conv3", "block5_conv3"), ("fc6", "fc1")):
            for got, want in zip(head.get_layer(ours).get_weights(), top[theirs]):
                np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(head.fc7.get_weights()[0], top["fc2"][0])
        assert initialisation[head.name]["fc7"] == f"fc2 of '{top_path}'"
        assert initialisation[head.name]["fc8"] == "random"
    result = train_cnn_module.train_cnn(with_top, index, "split1", verbose=0)
    recorded = json.loads(
        (RunDirectory(with_top).cnn_dir("split1") / "cnn_info.json").read_text()
    )["initialisation"]
    assert recorded["action_head"]["fc6"] == f"fc1 of '{top_path}'"
    assert recorded["trunk (block1_conv1 to block5_conv2)"] == f"'{path}'"
    assert not (RunDirectory(with_top).root / "trunk.weights.h5").exists()
    assert result["trunk_fingerprint"] == weights_fingerprint(trunk)


def test_refit_heads_train_on_the_validation_clips_too(setup, tmp_path, monkeypatch):
    config, index = setup
    config = apply_overrides(
        config, {"data.model_selection": "refit", "output_dir": str(tmp_path)}
    )
    fitted = []

    class Recording(train_cnn_module.CachedMapsDataset):
        def __init__(self, source, rows, *args, **kwargs):
            super().__init__(source, rows, *args, **kwargs)
            if kwargs.get("shuffle"):  # a training set, not a validation one
                fitted.append(np.asarray(source)[np.asarray(rows)])

    monkeypatch.setattr(train_cnn_module, "CachedMapsDataset", Recording)
    result = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    # 3 validation clips x 3 frames: plain for selection, 2 augmented views for the refit.
    assert result["model_selection"] == "refit"
    assert result["train_frames"] == 18 and result["validation_frames"] == 9
    assert result["fit_frames"] == 18 + 18
    assert result["trunk_frames_computed"] == 27 + 18
    # Selection (context, action) on the train frames, then the refit on both.
    assert [len(maps) for maps in fitted] == [18, 18, 36, 36]

    fold = index.fold("split1")
    settings = trunk_cache.cache_settings(config, result["trunk_fingerprint"])
    with TrunkCache(
        result["trunk_cache"], trunk_cache.cache_fingerprint(settings), (2, 2, 16)
    ) as cache:
        wanted = {
            role: [
                cache_key(record.clip_id, f, view)
                for record in fold.by_role(role)
                for f in select_frames(
                    cache.num_frames(record.clip_id), config.cnn.frames_per_clip, "uniform"
                )
                for view in ("aug0", "aug1")
            ]
            for role in ("train", "validation")
        }
        validation_maps = cache.read(cache.rows(wanted["validation"]))
        # The test clips are never even opened (nor, so, cached or fitted on).
        assert all(cache.num_frames(r.clip_id) is None for r in fold.by_role("test"))
    for maps in fitted[2:]:  # every validation view is in the refit's training set
        for one in validation_maps:
            assert np.any(np.all(maps == one, axis=(1, 2, 3)))
    for maps in fitted[:2]:
        assert not any(np.any(np.all(maps == one, axis=(1, 2, 3))) for one in validation_maps)

    cnn_dir = RunDirectory(config).cnn_dir("split1")
    for name in ("context", "action"):
        epochs = result[name]["refit"]["epochs"]
        assert epochs == result[name]["best_epoch"]
        with open(cnn_dir / f"history_{name}_refit.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))


def test_refit_heads_start_from_the_selection_heads_initialisation(setup):
    config, _ = setup
    first = train_cnn_module._build_heads(config, 3, (2, 2, 16))[:2]
    again = train_cnn_module._build_heads(config, 3, (2, 2, 16))[:2]
    for a, b in zip(first, again):
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(x, y)


def test_saved_heads_are_reused_only_with_their_settings(setup, tmp_path):
    config, index = setup
    config = apply_overrides(config, {"output_dir": str(tmp_path), "cnn.epochs": 1})
    run = RunDirectory.create(config)
    train_cnn_module.train_cnn(config, index, "split1", run=run, verbose=0)
    # Another LSTM shares the heads.
    lstm = apply_overrides(config, {"lstm.loss": "ce"})
    assert train_cnn_module.train_cnn(lstm, index, "split1", run=run, verbose=0)["skipped"]
    # Heads made with other settings are never handed out as these.
    other = apply_overrides(config, {"cnn.epochs": 3, "seed": 2})
    with pytest.raises(ConfigError) as error:
        train_cnn_module.train_cnn(other, index, "split1", run=run, verbose=0)
    assert "cnn.epochs: 1 -> 3" in str(error.value) and "seed: 0 -> 2" in str(error.value)
    assert "overwrite=True" in str(error.value)
def test_frozen_conv5_3_and_scaled_head_inputs(setup, tmp_path):
    """cnn.frozen_conv5_3: the trunk ends at the file's conv5_3, the heads have none;
    cnn.scale_head_inputs: the heads multiply their input by 1 / RMS of the training
    maps; extraction rebuilds the same trunk and heads."""
    from tests.vgg16_files import random_vgg16_arrays, write_legacy_vgg16_h5

    config, index = setup
    arrays = random_vgg16_arrays(1 / 32, seed=3)
    path = tmp_path / "tiny_vgg16.h5"
    write_legacy_vgg16_h5(path, arrays)
    config = apply_overrides(
        config,
        {
            "cnn.weights": str(path),
            "cnn.epochs": 1,
            "cnn.frozen_conv5_3": True,
            "cnn.scale_head_inputs": True,
            "output_dir": str(tmp_path / "r"),
        },
    )
    trunk = runs.build_trunk(config)
    np.testing.assert_array_equal(
        trunk.get_layer("block5_conv3").get_weights()[0], arrays["block5_conv3"][0]
    )
    frames = np.random.default_rng(0).uniform(-100, 100, (2, 32, 32, 3)).astype("float32")
    plain = runs.build_trunk(
        apply_overrides(config, {"cnn.frozen_conv5_3": False})
    )
    conv5_3 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")
    conv5_3.build((None, 2, 2, 16))
    conv5_3.set_weights(arrays["block5_conv3"])
    np.testing.assert_allclose(
        trunk(frames), conv5_3(plain(frames)), rtol=1e-5, atol=1e-5
    )

    result = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    run = RunDirectory(config)
    with TrunkCache(
        result["trunk_cache"], trunk_cache.cache_fingerprint(
            trunk_cache.cache_settings(config, result["trunk_fingerprint"])
        ), (2, 2, 16),
    ) as cache:
        rows = np.arange(result["train_frames"])  # training rows are written first
        maps = cache.read(rows)
    expected = 1 / np.sqrt(np.mean(np.square(maps, dtype=np.float64)))
    assert result["input_scale"] == pytest.approx(expected, rel=1e-5)
    context, action = runs.load_heads(run, "split1")
    for head in (context, action):
        assert head.conv5_3 is False and head.input_scale == result["input_scale"]
        assert not head.block5_conv3.weights
    np.testing.assert_allclose(
        context.endpoints(maps[:2])["conv5_3"], maps[:2] * result["input_scale"], rtol=1e-6
    )
    extractor = runs.load_extractor(config, run, "split1")
    assert extractor.extract(preprocess_frames(frames, (32, 32)))["context"].shape == (2, 8)


@pytest.mark.parametrize("selection", ["val_loss", "val_accuracy", "last"])
def test_each_head_keeps_the_epoch_its_selection_picks(setup, tmp_path, selection):
    """cnn.selection: the kept epoch is the first best one of the history CSV, by the
    lowest val_loss or by the highest accuracy of the head's own classifier; "last"
    keeps the last epoch, its validation still scored."""
    config, index = setup
    config = apply_overrides(
        config,
        {"output_dir": str(tmp_path), "cnn.epochs": 4, "cnn.selection": selection},
    )
    result = train_cnn_module.train_cnn(config, index, "split1", verbose=0)
    cnn_dir = RunDirectory(config).cnn_dir("split1")
    for name, accuracy in (("context", "val_accuracy"), ("action", "val_action_accuracy")):
        with open(cnn_dir / f"history_{name}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if selection == "val_loss":
            values = [-float(row["val_loss"]) for row in rows]
        elif selection == "val_accuracy":
            values = [float(row[accuracy]) for row in rows]
        else:
            values = list(range(len(rows)))
        best = 1 + values.index(max(values))
        assert len(rows) == 4
        assert result[name]["best_epoch"] == best
        assert result[name][accuracy] == pytest.approx(float(rows[best - 1][accuracy]))


def test_an_unknown_head_selection_is_refused():
    with pytest.raises(ConfigError, match="cnn.selection"):
        apply_overrides(get_preset("demo"), {"cnn.selection": "accuracy"})
