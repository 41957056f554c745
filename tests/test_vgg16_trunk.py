"""VGG16Trunk: Keras layer names and shapes, weight files, the ImageNet file offline."""

import h5py
import keras
import numpy as np
import pytest

from msl_keras.errors import WeightsError
from msl_keras.models import (
    VGG16_NOTOP_FILENAME,
    ActionAwareHead,
    ContextAwareHead,
    VGG16Trunk,
    imagenet_weights_path,
    load_vgg16_weights,
    read_keras_h5_weights,
    vgg16_trunk,
)
from tests.vgg16_files import random_vgg16_arrays, write_legacy_vgg16_h5

WIDTH = 1 / 16
TRUNK_CONVS = [
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3",
    "block4_conv1", "block4_conv2", "block4_conv3",
    "block5_conv1", "block5_conv2",
]  # fmt: skip


def test_layer_names_and_shapes():
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH)
    names = [layer.name for layer in trunk.layers[1:]]
    pools = [f"block{b}_pool" for b in range(1, 5)]
    assert [n for n in names if "conv" in n] == TRUNK_CONVS
    assert [n for n in names if "pool" in n] == pools
    assert tuple(trunk.output.shape) == (None, 2, 2, 32)
    assert trunk.output_channels == 32
    assert tuple(trunk.get_layer("block1_conv1").kernel.shape) == (3, 3, 3, 4)
    assert tuple(trunk.get_layer("block5_conv2").kernel.shape) == (3, 3, 32, 32)
    out = trunk(np.zeros((2, 32, 32, 3), "float32"))
    assert tuple(out.shape) == (2, 2, 2, 32)
    # width never drops a layer to zero filters
    tiny = VGG16Trunk(input_shape=(16, 16, 3), width=1 / 256)
    assert tuple(tiny.get_layer("block1_conv1").kernel.shape) == (3, 3, 3, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible by 16"):
        VGG16Trunk(input_shape=(30, 32, 3), width=WIDTH)
    with pytest.raises(ValueError, match="width=0"):
        VGG16Trunk(input_shape=(32, 32, 3), width=0)


@pytest.mark.parametrize("under_model_weights", [False, True])
def test_loads_legacy_notop_file(tmp_path, under_model_weights):
    arrays = random_vgg16_arrays(WIDTH)
    path = write_legacy_vgg16_h5(tmp_path / "w.h5", arrays, under_model_weights)
    read = read_keras_h5_weights(path)
    assert sorted(read) == sorted(arrays)  # weightless input/pool layers left out
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=str(path))
    for name in TRUNK_CONVS:
        for got, want in zip(trunk.get_layer(name).get_weights(), arrays[name]):
            np.testing.assert_array_equal(got, want)
    # the heads start their own conv5_3 from the same file
    for head in (
        ContextAwareHead(3, fc_units=8, width=WIDTH, weights=path),
        ActionAwareHead(3, fc_units=8, cam_filters=4, width=WIDTH, weights=path),
    ):
        for got, want in zip(
            head.get_layer("block5_conv3").get_weights(), arrays["block5_conv3"]
        ):
            np.testing.assert_array_equal(got, want)


def test_reads_files_written_by_keras(tmp_path):
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH)
    legacy, native = tmp_path / "trunk.h5", tmp_path / "trunk.weights.h5"
    trunk.save(legacy)  # Keras' legacy full-model HDF5: weights under model_weights
    trunk.save_weights(native)  # Keras 3 layout
    for path in (legacy, native):
        read = read_keras_h5_weights(path)
        assert sorted(read) == sorted(TRUNK_CONVS)
        other = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH)
        assert load_vgg16_weights(other, path) == TRUNK_CONVS
        for name in TRUNK_CONVS:
            for got, want in zip(other.get_layer(name).get_weights(), read[name]):
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(read[name][0], trunk.get_layer(name).kernel)


def test_chunked_layer_names_attribute(tmp_path):
    # Keras splits long attributes into layer_names0, layer_names1, ...
    arrays = random_vgg16_arrays(WIDTH)
    path = write_legacy_vgg16_h5(tmp_path / "w.h5", arrays)
    with h5py.File(path, "r+") as f:
        names = list(f.attrs["layer_names"])
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:5], names[5:]
    assert sorted(read_keras_h5_weights(path)) == sorted(arrays)


def test_wrong_shape_file_raises(tmp_path):
    path = write_legacy_vgg16_h5(tmp_path / "w8.h5", random_vgg16_arrays(1 / 8))
    with pytest.raises(WeightsError, match="block1_conv1") as info:
        VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=path)
    assert "w8.h5" in str(info.value) and "(3, 3, 3, 4)" in str(info.value)


def test_missing_layer_missing_file_and_not_hdf5(tmp_path):
    arrays = random_vgg16_arrays(WIDTH)
    del arrays["block4_conv2"]
    path = write_legacy_vgg16_h5(tmp_path / "w.h5", arrays)
    with pytest.raises(WeightsError, match="no weights for layer 'block4_conv2'"):
        VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=path)
    with pytest.raises(WeightsError, match="not found: .*nope.h5"):
        VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(WeightsError, match="as HDF5"):
        read_keras_h5_weights(text)


def test_imagenet_offline_names_file_and_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception(  # noqa: TRY002 (what keras.utils.get_file raises offline)
            "URL fetch failure on https://storage.googleapis.com: None -- [Errno -3]"
        )

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    with pytest.raises(WeightsError) as info:
        VGG16Trunk(input_shape=(32, 32, 3), weights="imagenet")
    message = str(info.value)
    assert VGG16_NOTOP_FILENAME in message
    assert str(tmp_path / "kh" / "models") in message
    assert "weights=None" in message and "weights=<path" in message


def test_imagenet_uses_keras_url_and_hash(tmp_path, monkeypatch):
    from keras.src.applications import vgg16 as keras_vgg16

    calls = []

    def fake_get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return str(tmp_path / fname)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    assert imagenet_weights_path() == str(tmp_path / VGG16_NOTOP_FILENAME)
    fname, origin, kwargs = calls[0]
    assert fname == VGG16_NOTOP_FILENAME
    assert origin == keras_vgg16.WEIGHTS_PATH_NO_TOP
    assert kwargs == {
        "cache_subdir": "models",
        "file_hash": "6d6bbae143d832006294945121d1f1fc",
    }
    assert vgg16_trunk.VGG16_NOTOP_MD5 == "6d6bbae143d832006294945121d1f1fc"


def test_imagenet_needs_full_width(monkeypatch):
    monkeypatch.setattr(
        keras.utils, "get_file", lambda *a, **k: pytest.fail("downloaded")
    )
    with pytest.raises(WeightsError, match="width=1.0"):
        VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights="imagenet")


def test_keras_round_trip(tmp_path):
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, name="trunk")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    trunk.save(tmp_path / "trunk.keras")
    revived = keras.models.load_model(tmp_path / "trunk.keras")
    assert isinstance(revived, VGG16Trunk)
    assert revived.get_config() == trunk.get_config()
    np.testing.assert_array_equal(revived(x), trunk(x))
