"""ClassActivationMap (Eq. 2) against hand values and numpy einsums."""

import numpy as np
import pytest

from msl_keras.layers import ClassActivationMap
from tests.model_testing import run_model_test


def _inputs(seed=0, batch=3, units=5, classes=6):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(batch, 4, 3, units)).astype("float32")
    kernel = rng.normal(size=(units, classes)).astype("float32")
    return maps, kernel


def test_hand_values():
    maps = np.array([[[[1.0, 2.0], [3.0, -1.0]]]], "float32")  # (1, 1, 2, 2)
    kernel = np.array([[1.0, 0.5], [2.0, -1.0]], "float32")  # (units=2, classes=2)
    cam = ClassActivationMap()
    # M_0 = 1*f_0 + 2*f_1 ; M_1 = 0.5*f_0 - 1*f_1
    np.testing.assert_allclose(cam(maps, kernel, classes=np.array([0])), [[[5.0, 1.0]]])
    np.testing.assert_allclose(
        cam(maps, kernel, classes=np.array([1])), [[[-1.5, 2.5]]]
    )


def test_given_classes_match_einsum():
    maps, kernel = _inputs()
    classes = np.array([2, 0, 5])
    expected = np.einsum("bhwl,lb->bhw", maps, kernel[:, classes])
    out = ClassActivationMap()(maps, kernel, classes=classes)
    assert tuple(out.shape) == (3, 4, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_scores_top1_uses_argmax_without_relu():
    maps, kernel = _inputs(1)
    scores = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    best = scores.argmax(-1)
    expected = np.einsum("bhwl,lb->bhw", maps, kernel[:, best])
    assert (expected < 0).any()  # the raw map, negative values kept
    out = ClassActivationMap(top_k=1)(maps, kernel, scores=scores)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_scores_top_k_sums_relu_maps():
    maps, kernel = _inputs(3)
    scores = np.array(
        [[0.1, 0.9, 0.3, 0.0, 0.8, 0.2], [5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]],
        "float32",
    )
    top = [[1, 4, 2], [0, 1, 2], [5, 4, 3]]
    all_maps = np.einsum("bhwl,lk->bhwk", maps, kernel)
    expected = np.stack(
        [np.maximum(all_maps[b][..., top[b]], 0).sum(-1) for b in range(3)]
    )
    out = ClassActivationMap(top_k=3)(maps, kernel, scores=scores)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_argument_errors():
    maps, kernel = _inputs()
    cam = ClassActivationMap()
    with pytest.raises(ValueError, match="exactly one"):
        cam(maps, kernel)
    with pytest.raises(ValueError, match="exactly one"):
        cam(maps, kernel, classes=np.zeros(3, "int32"), scores=np.zeros((3, 6)))
    with pytest.raises(ValueError, match="top_k=0"):
        ClassActivationMap(top_k=0)


def test_config_round_trip_and_symbolic_shape(tmp_path):
    maps, kernel = _inputs()
    scores = np.random.default_rng(4).normal(size=(3, 6)).astype("float32")
    cam = run_model_test(
        ClassActivationMap,
        {"top_k": 2, "name": "cam"},
        maps,
        tmp_path,
        expected_output_shape=(3, 4, 3),
        call_kwargs={"class_weights": kernel, "scores": scores},
    )
    assert cam.get_config()["top_k"] == 2 and cam.name == "cam"
    assert cam.compute_output_shape((None, 7, 7, 5)) == (None, 7, 7)
