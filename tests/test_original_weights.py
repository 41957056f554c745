"""Loading the original code's Keras 1/2 weight files: tiny files written with h5py in
that layout (default layer names, layers in the order its models.py builds them), checked
against numpy or a Keras model wired like the original's."""

import json

import h5py
import keras
import numpy as np
import pytest

from msl_keras.errors import WeightsError
from msl_keras.models import ContextAwareHead, MultiStageLSTM, VGG16Trunk
from msl_keras.original.weights import (
    detect_original_kind,
    import_original_weights,
    inspect_original_weights,
    load_original_weights,
    read_original_weights,
)
from tests.vgg16_files import LAYERS as VGG_LAYERS
from tests.vgg16_files import random_vgg16_arrays

WIDTH, SIZE, N = 1 / 16, 64, 3  # conv5_3 has 32 channels, 4x4 maps at 64x64
FC, CAM = 16, 8
POOLED = {
    "block1_conv2",
    "block2_conv2",
    "block3_conv3",
    "block4_conv3",
    "block5_conv3",
}


def write_keras2_weights(path, layers, backend="tensorflow", keras_version="2.1.6"):
    """A file as Keras 2's `model.save_weights` writes it: root attributes
    `layer_names`, `backend`, `keras_version`; one group per layer (weightless layers
    too) with attribute `weight_names` and the datasets at those nested paths."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        f.attrs["backend"] = backend.encode()
        f.attrs["keras_version"] = keras_version.encode()
        for name, weights in layers:
            group = f.create_group(name)
            names = [f"{name}/{w}:0" for w, _ in weights]
            for weight_name, (_, value) in zip(names, weights):
                group.create_dataset(weight_name, data=value)
            group.attrs["weight_names"] = [n.encode() for n in names]
    return path


def _vgg_layers(arrays, upto="block5_pool"):
    """input_1, the VGG-16 convolutions and pools in keras.applications order."""
    layers = [("input_1", [])]
    for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for c in range(1, convs + 1):
            name = f"block{block}_conv{c}"
            layers.append(
                (name, [("kernel", arrays[name][0]), ("bias", arrays[name][1])])
            )
            if name == upto:
                return layers
        layers.append((f"block{block}_pool", []))
    return layers


def _dense(rng, name, n_in, n_out):
    return (
        name,
        [
            ("kernel", rng.normal(0, 0.3, (n_in, n_out)).astype("float32")),
            ("bias", rng.normal(0, 0.1, (n_out,)).astype("float32")),
        ],
    )


def context_file(path, backend="tensorflow", dense_offset=0):
    """The original's vgg_context: VGG-16 no-top, flatten, dense 4096 relu, dropout,
    dense 4096 relu, dropout, dense N softmax (at tiny width and FC units)."""
    rng = np.random.default_rng(1)
    arrays = random_vgg16_arrays(WIDTH, seed=1)
    flat = (SIZE // 32) ** 2 * 32
    d = dense_offset
    layers = _vgg_layers(arrays) + [
        ("flatten_1", []),
        _dense(rng, f"dense_{d + 1}", flat, FC),
        ("dropout_1", []),
        _dense(rng, f"dense_{d + 2}", FC, FC),
        ("dropout_2", []),
        _dense(rng, f"dense_{d + 3}", FC, N),
    ]
    write_keras2_weights(path, layers, backend=backend)
    return arrays, {name: w for name, w in layers}


def action_file(path):
    """The original's vgg_action: VGG-16 up to block5_conv3, zero padding, conv2d 3x3
    1024 relu, zero padding, 14x14 average pool, flatten, dense N softmax."""
    rng = np.random.default_rng(2)
    arrays = random_vgg16_arrays(WIDTH, seed=2)
    layers = _vgg_layers(arrays, upto="block5_conv3") + [
        ("zero_padding2d_1", []),
        (
            "conv2d_1",
            [
                ("kernel", rng.normal(0, 0.1, (3, 3, 32, CAM)).astype("float32")),
                ("bias", rng.normal(0, 0.1, (CAM,)).astype("float32")),
            ],
        ),
        ("zero_padding2d_2", []),
        ("average_pooling2d_1", []),
        ("flatten_1", []),
        _dense(rng, "dense_1", CAM, N),
    ]
    write_keras2_weights(path, layers)
    return arrays, {name: w for name, w in layers}


def _lstm_arrays(rng, n_in, units):
    return [
        ("kernel", rng.normal(0, 0.4, (n_in, 4 * units)).astype("float32")),
        ("recurrent_kernel", rng.normal(0, 0.4, (units, 4 * units)).astype("float32")),
        ("bias", rng.normal(0, 0.2, (4 * units,)).astype("float32")),
    ]


def ms_lstm_file(path, stage1_inputs, action_inputs, units=4, keras1=False):
    """The original's MS_LSTM, layers in Keras 2's depth order: input_1, lstm_1,
    dropout_1, input_2, concatenate_1, lstm_2, dropout_2, time_distributed_1 and _2,
    stage1, stage2. Keras 1 stores each LSTM as 12 arrays, gates i, c, f, o."""
    rng = np.random.default_rng(3)
    lstm1 = _lstm_arrays(rng, stage1_inputs, units)
    lstm2 = _lstm_arrays(rng, action_inputs + units, units)
    td1 = _dense(rng, "time_distributed_1", units, N)[1]
    td2 = _dense(rng, "time_distributed_2", units, N)[1]

    def stored(name, weights):
        if not keras1:
            return (name, weights)
        (_, w), (_, u), (_, b) = weights
        split = lambda a: np.split(a, 4, axis=-1)  # i, f, c, o
        out = []
        for gate, index in (("i", 0), ("c", 2), ("f", 1), ("o", 3)):
            out += [
                (f"W_{gate}", split(w)[index]),
                (f"U_{gate}", split(u)[index]),
                (f"b_{gate}", split(b)[index]),
            ]
        return (name, out)

    layers = [
        ("input_1", []),
        stored("lstm_1", lstm1),
        ("dropout_1", []),
        ("input_2", []),
        ("concatenate_1", []),
        stored("lstm_2", lstm2),
        ("dropout_2", []),
        ("time_distributed_2", td2),  # same depth as _1: the number decides the stage
        ("time_distributed_1", td1),
        ("stage1", []),
        ("stage2", []),
    ]
    write_keras2_weights(path, layers, keras_version="1.2.2" if keras1 else "2.1.6")
    return {
        "lstm_1": [a for _, a in lstm1],
        "lstm_2": [a for _, a in lstm2],
        "td1": [a for _, a in td1],
        "td2": [a for _, a in td2],
    }


# ---------------------------------------------------------------- numpy references


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _numpy_lstm(x, kernel, recurrent, bias):
    """Keras 2's LSTM (gates i, f, c, o in the column blocks) with a sigmoid gate."""
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _original_ms_lstm(context, action, w):
    """The original's MS-LSTM forward pass (non-transposed): stage 2 reads
    concatenate([action, stage-1 hidden])."""
    h1 = _numpy_lstm(context, *w["lstm_1"])
    h2 = _numpy_lstm(np.concatenate([action, h1], -1), *w["lstm_2"])
    return _softmax(h1 @ w["td1"][0] + w["td1"][1]), _softmax(
        h2 @ w["td2"][0] + w["td2"][1]
    )


# ---------------------------------------------------------------- tests


def test_keras3_lstm_gate_layout_is_keras2s():
    """Keras 2 stores [i | f | c | o] column blocks; Keras 3's LSTM reads the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    weights = [
        rng.normal(0, 0.5, (3, 16)).astype("float32"),
        rng.normal(0, 0.5, (4, 16)).astype("float32"),
        rng.normal(0, 0.5, (16,)).astype("float32"),
    ]
    layer = keras.layers.LSTM(4, return_sequences=True)
    layer.build((None, 5, 3))
    layer.set_weights(weights)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), _numpy_lstm(x, *weights), atol=1e-5
    )


def test_context_file_loads_completely_and_computes_the_same(tmp_path):
    path = tmp_path / "context_aware_vgg16_final.h5"
    context_file(path)
    assert detect_original_kind(path) == "context"
    result = import_original_weights(path)
    trunk, head = result.models["trunk"], result.models["context_head"]
    report = result.report
    assert report.complete and report.kind == "context" and report.unused == []
    assert [i["ours"] for i in report.loaded][-4:] == [
        "context_head/block5_conv3",
        "context_head/fc6",
        "context_head/fc7",
        "context_head/fc8",
    ]
    assert trunk.image_shape == (SIZE, SIZE, 3) and head.num_classes == N
    # A Keras model wired like the original's vgg_context, given the file's arrays.
    file = read_original_weights(path)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in [layer for layer in file.layers if layer.kind == "conv"]:
        x = keras.layers.Conv2D(
            layer.arrays[0].shape[-1], 3, padding="same", activation="relu"
        )(x)
        if layer.name in POOLED:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(FC, activation="relu")(x)
    x = keras.layers.Dense(FC, activation="relu")(x)
    outputs = keras.layers.Dense(N, activation="softmax")(x)
    original = keras.Model(inputs, outputs)
    original.set_weights([a for layer in file.layers for a in layer.arrays])
    frames = (
        np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    )
    ours = head(trunk(frames), training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours), original.predict(frames, verbose=0), atol=1e-5
    )
    text = str(report)
    assert "dense_1" in text and "context_head/fc6" in text and "defect 7" in text


def test_dense_layers_map_by_creation_order_not_by_number(tmp_path):
    """A context model built after other models in the session has dense_4..dense_6."""
    _, layers = context_file(tmp_path / "c.h5", dense_offset=3)
    result = import_original_weights(tmp_path / "c.h5")
    head = result.models["context_head"]
    np.testing.assert_array_equal(head.fc8.kernel.numpy(), layers["dense_6"][0][1])
    assert [i["file"] for i in result.report.loaded][-3:] == [
        "dense_4",
        "dense_5",
        "dense_6",
    ]


def test_theano_file_kernels_are_flipped(tmp_path):
    arrays, _ = context_file(tmp_path / "th.h5", backend="theano")
    result = import_original_weights(tmp_path / "th.h5")
    kernel = result.models["trunk"].get_layer("block2_conv1").kernel.numpy()
    np.testing.assert_array_equal(kernel, arrays["block2_conv1"][0][::-1, ::-1])
    assert "Theano kernel flipped" in result.report.loaded[0]["note"]


def test_action_file_loads_the_cam_branch_and_says_what_it_lacks(tmp_path):
    path = tmp_path / "action_aware_vgg16_final.h5"
    _arrays, layers = action_file(path)
    with pytest.raises(WeightsError, match="holds the original's action model"):
        import_original_weights(path, kind="context")
    result = import_original_weights(path, fc_units=FC, input_size=SIZE)
    head, trunk = result.models["action_head"], result.models["trunk"]
    report = result.report
    assert not report.complete
    assert [i["ours"] for i in report.not_loaded] == [
        "action_head/fc6",
        "action_head/fc7",
        "action_head/fc8",
    ]
    assert all("defect 3" in i["why"] for i in report.not_loaded)
    assert any("defect 4" in note for note in report.notes)
    np.testing.assert_array_equal(
        head.cam_conv.kernel.numpy(), layers["conv2d_1"][0][1]
    )
    # CAM scores: a true global average of cam_conv(conv5_3), then the loaded dense.
    maps = trunk(
        np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    )
    out = head.endpoints(maps, training=False)
    features = keras.ops.convert_to_numpy(out["cam_features"])
    (w, b) = (layers["dense_1"][0][1], layers["dense_1"][1][1])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["cam_scores"]),
        features.mean(axis=(1, 2)) @ w + b,
        atol=1e-5,
    )
    # At 224x224 the note spells out what the padded 14x14 pool averaged.
    note = next(n for n in inspect_original_weights(path).notes if "CAM pooling" in n)
    assert "16x16" in note and "first 13x13" in note and "196" in note


@pytest.mark.parametrize("keras1", [False, True])
def test_ms_lstm_over_frames_loads_and_matches_the_original_forward(tmp_path, keras1):
    """A MS-LSTM whose LSTMs ran over frames (input (T, D)) loads completely; stage 2's
    input rows are reordered ([action, hidden] -> [hidden, action])."""
    D_c, D_a, units = 6, 5, 4
    w = ms_lstm_file(tmp_path / "ms.h5", D_c, D_a, units=units, keras1=keras1)
    result = import_original_weights(tmp_path / "ms.h5")
    model = result.models["ms_lstm"]
    assert result.report.complete and result.kind == "ms_lstm"
    rng = np.random.default_rng(5)
    context = rng.normal(size=(2, 7, D_c)).astype("float32")
    action = rng.normal(size=(2, 7, D_a)).astype("float32")
    out = model({"context": context, "action": action}, training=False)
    stage1, stage2 = _original_ms_lstm(context, action, w)
    np.testing.assert_allclose(out["stage1"].numpy(), stage1, atol=1e-5)
    np.testing.assert_allclose(out["stage2"].numpy(), stage2, atol=1e-5)
    notes = " ".join(result.report.notes)
    assert "hard_sigmoid" in notes and "sigmoid" in notes
    if keras1:
        assert "gates i,c,f,o -> i,f,c,o" in result.report.loaded[0]["note"]


def test_transposed_ms_lstm_cannot_map_and_says_so(tmp_path):
    """The published MS_LSTM read (4096, 50) inputs: LSTM input size 50, not 4096."""
    T, units = 50, 4
    w = ms_lstm_file(tmp_path / "ms_lstm_final.h5", T, T, units=units)
    with pytest.raises(WeightsError) as info:
        import_original_weights(
            tmp_path / "ms_lstm_final.h5", context_dim=8, action_dim=8
        )
    message = str(info.value)
    assert "ms_lstm_final.h5" in message and "defect 5" in message
    assert f"({T}, {4 * units})" in message and "(8, 16)" in message
    assert "allow_partial" in message
    result = import_original_weights(
        tmp_path / "ms_lstm_final.h5", context_dim=8, action_dim=8, allow_partial=True
    )
    model, report = result.models["ms_lstm"], result.report
    assert not report.complete
    assert {i["ours"] for i in report.not_loaded} == {
        "ms_lstm/stage1_lstm/kernel",
        "ms_lstm/stage2_lstm/kernel[units:] (action rows)",
    }
    cell2 = model.stage2_lstm.cell
    np.testing.assert_array_equal(cell2.recurrent_kernel.numpy(), w["lstm_2"][1])
    np.testing.assert_array_equal(cell2.kernel.numpy()[:units], w["lstm_2"][0][T:])
    np.testing.assert_array_equal(model.stage1_classifier.kernel.numpy(), w["td1"][0])
    assert model.stage1_lstm.cell.kernel.shape == (8, 4 * units)
    # inspect never raises on it: the report says the same.
    assert not inspect_original_weights(
        tmp_path / "ms_lstm_final.h5", context_dim=8
    ).complete


def test_outputs_are_written_and_reload(tmp_path):
    context_file(tmp_path / "c.h5")
    out = tmp_path / "imported" / "context_head.keras"
    result = import_original_weights(tmp_path / "c.h5", out=out)
    assert set(result.files) == {"model", "report", "vgg16"}
    head = keras.saving.load_model(out, compile=False)
    assert isinstance(head, ContextAwareHead)
    np.testing.assert_array_equal(
        head.fc7.kernel.numpy(), result.models["context_head"].fc7.kernel.numpy()
    )
    # The VGG-16 file is what `cnn.weights` takes: trunk and both heads' conv5_3.
    trunk = VGG16Trunk(
        input_shape=(SIZE, SIZE, 3), width=WIDTH, weights=result.files["vgg16"]
    )
    np.testing.assert_array_equal(
        trunk.get_layer("block4_conv2").kernel.numpy(),
        result.models["trunk"].get_layer("block4_conv2").kernel.numpy(),
    )
    ContextAwareHead(N, fc_units=FC, width=WIDTH, weights=result.files["vgg16"])
    report = json.loads(
        (tmp_path / "imported" / "context_head.import.json").read_text()
    )
    assert report["complete"] and report["kind"] == "context"
    with pytest.raises(WeightsError, match="exist"):
        import_original_weights(tmp_path / "c.h5", out=out)
    import_original_weights(tmp_path / "c.h5", out=out, overwrite=True)
    ms_lstm_file(tmp_path / "ms.h5", 6, 5)
    weights_out = tmp_path / "ms.weights.h5"
    imported = import_original_weights(tmp_path / "ms.h5", out=weights_out)
    model = MultiStageLSTM(N, units=4)
    model.build({"context": (None, None, 6), "action": (None, None, 5)})
    model.load_weights(weights_out)
    np.testing.assert_array_equal(
        model.stage2_lstm.cell.kernel.numpy(),
        imported.models["ms_lstm"].stage2_lstm.cell.kernel.numpy(),
    )
    with pytest.raises(WeightsError, match=r"\.keras .* \.weights\.h5"):
        import_original_weights(tmp_path / "ms.h5", out=tmp_path / "ms.h5.out")


def test_loading_into_our_models_checks_kind_and_shapes(tmp_path):
    context_file(tmp_path / "c.h5")
    trunk = VGG16Trunk(input_shape=(SIZE, SIZE, 3), width=WIDTH)
    report = load_original_weights(trunk, tmp_path / "c.h5")
    assert len(report.loaded) == len(VGG_LAYERS) - 1 and report.complete
    wide = VGG16Trunk(input_shape=(SIZE, SIZE, 3), width=1 / 8)
    with pytest.raises(
        WeightsError, match=r"block1_conv1.*c\.h5.*another architecture"
    ):
        load_original_weights(wide, tmp_path / "c.h5")
    lstm = MultiStageLSTM(N, units=4)
    lstm.build({"context": (None, None, 6), "action": (None, None, 5)})
    with pytest.raises(WeightsError, match="loads from its ms_lstm model"):
        load_original_weights(lstm, tmp_path / "c.h5")
    ms_lstm_file(tmp_path / "ms.h5", 6, 5, units=4)
    other = MultiStageLSTM(N, units=4)
    other.build({"context": (None, None, 7), "action": (None, None, 5)})
    with pytest.raises(WeightsError, match="reads 6-d .* 7-d context"):
        load_original_weights(other, tmp_path / "ms.h5")


def test_files_of_another_architecture_raise_naming_the_file(tmp_path):
    noise = tmp_path / "noise.h5"
    noise.write_bytes(
        np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes()
    )
    with pytest.raises(WeightsError, match="noise.h5"):
        import_original_weights(noise)
    with pytest.raises(WeightsError, match="not found.*missing.h5"):
        import_original_weights(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsError, match="plain.h5.*layer_names"):
        import_original_weights(tmp_path / "plain.h5")
    rng = np.random.default_rng(0)
    resnet = [
        ("conv1", [("kernel", rng.normal(size=(7, 7, 3, 8))), ("bias", np.zeros(8))]),
        (
            "bn_conv1",
            [
                (k, np.ones(8))
                for k in ("gamma", "beta", "moving_mean", "moving_variance")
            ],
        ),
        ("fc1000", [("kernel", rng.normal(size=(8, 10))), ("bias", np.zeros(10))]),
    ]
    write_keras2_weights(tmp_path / "resnet50.h5", resnet)
    with pytest.raises(WeightsError) as info:
        import_original_weights(tmp_path / "resnet50.h5")
    message = str(info.value)
    assert (
        "resnet50.h5" in message
        and "bn_conv1" in message
        and "context-aware" in message
    )
    # msl_keras' own files are not the original's format, and say where they load.
    model = MultiStageLSTM(N, units=4)
    model.build({"context": (None, None, 6), "action": (None, None, 5)})
    model.save(tmp_path / "ours.keras")
    with pytest.raises(WeightsError, match="ours.keras"):
        import_original_weights(tmp_path / "ours.keras")
    model.save_weights(tmp_path / "ours.weights.h5")
    with pytest.raises(WeightsError, match="ours.weights.h5.*load_weights"):
        import_original_weights(tmp_path / "ours.weights.h5")
