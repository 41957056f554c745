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
    load_top_weights,
    load_vgg16_weights,
    resolve_top_weights,
    vgg16_trunk,
)
from tests.vgg16_files import (
    random_top_arrays,
    random_vgg16_arrays,
    write_legacy_vgg16_h5,
)

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
    whole = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, include_conv5_3=True)
    assert load_vgg16_weights(whole, path) == TRUNK_CONVS + ["block5_conv3"]
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


INITIAL = {"block5_conv3": "block5_conv3 of the trunk", "fc6": "random", "fc7": "random"}


def _built_heads(fc_units):
    heads = (
        ContextAwareHead(3, fc_units=fc_units, width=WIDTH),
        ActionAwareHead(3, fc_units=fc_units, cam_filters=4, width=WIDTH),
    )
    for head in heads:
        head.build((None, 4, 4, 32))  # conv5_2 of 64x64 frames at width 1/16
    return heads


def test_heads_start_from_a_with_top_file(tmp_path):
    # 64x64 input at width 1/16: 2 x 2 x 32 = 128 inputs to fc6
    arrays = {**random_vgg16_arrays(WIDTH), **random_top_arrays(128, 8)}
    path = write_legacy_vgg16_h5(tmp_path / "top.h5", arrays)
    top, source = resolve_top_weights("auto", str(path))  # detected by fc1 / fc2
    assert source == f"'{path}'" and top == str(path)
    for head in _built_heads(fc_units=8):
        report = load_top_weights(head, top, source, INITIAL)
        for ours, theirs in (("block5_conv3",) * 2, ("fc6", "fc1"), ("fc7", "fc2")):
            for got, want in zip(head.get_layer(ours).get_weights(), arrays[theirs]):
                np.testing.assert_array_equal(got, want)
            assert report[ours] == f"{theirs} of '{path}'"
    # fc_units != the file's: fc6 / fc7 keep their random start, conv5_3 still loads
    for head in _built_heads(fc_units=16):
        before = head.fc6.get_weights()[0].copy()
        report = load_top_weights(head, top, source, INITIAL)
        np.testing.assert_array_equal(head.fc6.get_weights()[0], before)
        assert report["fc6"].startswith("random (fc1 of") and "(128, 8)" in report["fc6"]
        assert report["fc7"].startswith("random (fc2 of")
        assert report["block5_conv3"] == f"block5_conv3 of '{path}'"


def test_top_weights_choices(tmp_path, monkeypatch):
    notop = write_legacy_vgg16_h5(tmp_path / "notop.h5", random_vgg16_arrays(WIDTH))
    assert resolve_top_weights("auto", str(notop)) == (
        None,
        "none (the trunk's weights file has no fc1 / fc2)",
    )
    assert resolve_top_weights("auto", None)[0] is None
    assert resolve_top_weights(None, "imagenet")[0] is None
    for head in _built_heads(fc_units=8):
        assert load_top_weights(head, None, "none", INITIAL) == INITIAL
    # "imagenet" (also "auto" with an ImageNet trunk): Keras' with-top file, by its md5
    from keras.src.applications import vgg16 as keras_vgg16

    top = write_legacy_vgg16_h5(
        tmp_path / "top.h5", {**random_vgg16_arrays(WIDTH), **random_top_arrays(128, 8)}
    )
    calls = []

    def fake_get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return str(top)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    arrays, source = resolve_top_weights("auto", "imagenet")
    assert arrays == str(top) and "ImageNet VGG-16 with top" in source
    assert calls == [
        (
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            keras_vgg16.WEIGHTS_PATH,
            {"cache_subdir": "models", "file_hash": "64373286793e3c8b2b4e3219cbf3544b"},
        )
    ]


def test_with_top_imagenet_offline_says_how_to_go_on(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure")  # noqa: TRY002

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsError, match="cnn.top_weights=None"):
        resolve_top_weights("imagenet", None)


def test_reads_files_written_by_keras(tmp_path):
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH)
    legacy, native = tmp_path / "trunk.h5", tmp_path / "trunk.weights.h5"
    trunk.save(legacy)  # Keras' legacy full-model HDF5: weights under model_weights
    trunk.save_weights(native)  # Keras 3 layout
    for path in (legacy, native):
        other = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH)
        assert load_vgg16_weights(other, path) == TRUNK_CONVS
        for name in TRUNK_CONVS:
            for got, want in zip(
                other.get_layer(name).get_weights(), trunk.get_layer(name).get_weights()
            ):
                np.testing.assert_array_equal(got, want)
    # A Keras 3 file loads only into the structure that saved it; the error says so.
    head = ContextAwareHead(3, fc_units=8, width=WIDTH)
    head.block5_conv3.build((None, None, None, 32))
    with pytest.raises(WeightsError, match="model.save"):
        load_vgg16_weights(head, native, ["block5_conv3"])


def test_chunked_layer_names_attribute(tmp_path):
    # Keras splits long attributes into layer_names0, layer_names1, ...
    arrays = random_vgg16_arrays(WIDTH)
    path = write_legacy_vgg16_h5(tmp_path / "w.h5", arrays)
    with h5py.File(path, "r+") as f:
        names = list(f.attrs["layer_names"])
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:5], names[5:]
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=path)
    for name in TRUNK_CONVS:
        for got, want in zip(trunk.get_layer(name).get_weights(), arrays[name]):
            np.testing.assert_array_equal(got, want)


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
        VGG16Trunk(input_shape=(32, 32, 3), width=WIDTH, weights=text)


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
