"""Context- and action-aware heads: shapes, Eq. 3 against numpy, CAM class modes,
save/load, one training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras.models import ActionAwareHead, ContextAwareHead
from tests.model_testing import run_model_test

N, FC, CAM, WIDTH = 4, 16, 8, 1 / 16  # conv5_2 has 32 channels at width 1/16
LOSSES = {"cam": "categorical_crossentropy", "action": "categorical_crossentropy"}


def _maps(batch=3, seed=0):
    # conv5_2-like maps of 64x64 frames: (batch, 4, 4, 32), non-negative (after ReLU)
    return (
        np.random.default_rng(seed).uniform(0, 1, (batch, 4, 4, 32)).astype("float32")
    )


def _action_head(**kwargs):
    return ActionAwareHead(N, fc_units=FC, cam_filters=CAM, width=WIDTH, **kwargs)


def _maxpool2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _numpy_masked_path(head, maps, classes=None, top_k=None):
    """Eqs. 2-3 and fc6/fc7/fc8 in numpy, from the head's weights and conv outputs."""
    if not head.built:
        head.build(maps.shape)
    conv5_3 = keras.ops.convert_to_numpy(head.block5_conv3(maps))
    f = keras.ops.convert_to_numpy(head.cam_conv(conv5_3))  # (b, h, w, CAM)
    w, bias = head.cam_classifier.get_weights()
    scores = f.mean(axis=(1, 2)) @ w + bias
    all_maps = np.einsum("bhwl,lk->bhwk", f, w)  # M_k for every k, (b, h, w, N)
    if top_k is not None:
        top = np.argsort(-scores, axis=-1)[:, :top_k]
        mask = np.stack(
            [np.maximum(all_maps[i][..., top[i]], 0).sum(-1) for i in range(len(f))]
        )
    else:
        k = scores.argmax(-1) if classes is None else np.asarray(classes)
        mask = np.maximum(all_maps[np.arange(len(f)), :, :, k], 0)
    if head.cam_normalization == "max":
        mask = mask / (mask.max(axis=(1, 2), keepdims=True) + 1e-7)
    masked = conv5_3 * mask[..., None]  # Eq. 3
    x = _maxpool2(masked).reshape(len(f), -1)
    fc6 = np.maximum(x @ head.fc6.kernel.numpy() + head.fc6.bias.numpy(), 0)
    fc7 = np.maximum(fc6 @ head.fc7.kernel.numpy() + head.fc7.bias.numpy(), 0)
    logits = fc7 @ head.fc8.kernel.numpy() + head.fc8.bias.numpy()
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return {
        "scores": scores, "mask": mask, "masked": masked, "fc7": fc7,
        "probs": probs / probs.sum(-1, keepdims=True), "all_maps": all_maps,
    }  # fmt: skip


def test_context_head_shapes_and_features():
    head = ContextAwareHead(N, fc_units=FC, width=WIDTH)
    maps = _maps()
    probs = head(maps)
    assert tuple(probs.shape) == (3, N)
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, rtol=1e-5)
    assert tuple(head.features(maps).shape) == (3, FC)
    assert tuple(head.activation_maps(maps)["conv5_3"].shape) == (3, 4, 4, 32)
    assert tuple(head.get_layer("block5_conv3").kernel.shape) == (3, 3, 32, 32)


def test_context_head_round_trip_and_fit_step(tmp_path):
    maps = _maps()
    head = run_model_test(
        ContextAwareHead,
        {"num_classes": N, "fc_units": FC, "width": WIDTH, "dropout": 0.3},
        maps,
        tmp_path,
        expected_output_shape=(3, N),
        targets=np.eye(N)[[0, 1, 2]],
    )
    assert head.dropout == 0.3


def test_action_head_shapes():
    head = _action_head()
    maps = _maps()
    out = head(maps)
    assert sorted(out) == ["action", "cam"]
    assert all(tuple(v.shape) == (3, N) for v in out.values())
    feats = head.features(maps)
    assert tuple(feats["fc7"].shape) == (3, FC)
    assert tuple(feats["cam_scores"].shape) == (3, N)
    assert tuple(feats["mask"].shape) == (3, 4, 4)
    vis = head.activation_maps(maps)
    assert tuple(vis["conv5_3"].shape) == (3, 4, 4, 32) == tuple(vis["masked"].shape)
    assert tuple(vis["cam"].shape) == (3, 4, 4)
    assert head.get_layer("block5_conv3").built


def test_predicted_masked_path_matches_numpy():
    head = _action_head()
    maps = _maps(seed=1)
    ref = _numpy_masked_path(head, maps)
    feats = head.features(maps)  # no label needed
    np.testing.assert_allclose(feats["cam_scores"], ref["scores"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["mask"], ref["mask"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        head.activation_maps(maps)["masked"], ref["masked"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(feats["fc7"], ref["fc7"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(head(maps)["action"], ref["probs"], rtol=1e-4, atol=1e-6)
    assert np.abs(ref["mask"]).sum() > 0  # the check is not vacuous
    # labels are ignored unless cam_class="oracle"
    other = head.features(maps, labels=np.array([3, 3, 3]))
    np.testing.assert_array_equal(other["fc7"], feats["fc7"])


@pytest.mark.parametrize("cam_class", ["predicted", "top_k"])
def test_cam_normalization_max_and_none(cam_class):
    maps = _maps(seed=4) * 50.0  # large maps, as a pretrained trunk gives
    normalized = _action_head(cam_class=cam_class)
    assert normalized.cam_normalization == "max"  # the default
    raw = _action_head(cam_class=cam_class, cam_normalization=None)
    raw.build(maps.shape)
    normalized.build(maps.shape)
    normalized.set_weights(raw.get_weights())
    top_k = 3 if cam_class == "top_k" else None
    for head in (normalized, raw):
        ref = _numpy_masked_path(head, maps, top_k=top_k)
        feats = head.features(maps)
        np.testing.assert_allclose(feats["mask"], ref["mask"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(feats["fc7"], ref["fc7"], rtol=1e-4, atol=1e-4)
    mask = keras.ops.convert_to_numpy(normalized.features(maps)["mask"])
    raw_mask = keras.ops.convert_to_numpy(raw.features(maps)["mask"])
    # the same map, scaled to a peak of 1 in every frame
    np.testing.assert_allclose(mask.max(axis=(1, 2)), 1.0, rtol=1e-5)
    assert raw_mask.max() > 2.0
    np.testing.assert_allclose(
        mask, raw_mask / raw_mask.max(axis=(1, 2), keepdims=True), rtol=1e-5
    )
    with pytest.raises(ValueError, match="cam_normalization"):
        _action_head(cam_normalization="l1")


def test_top_k_mask_matches_numpy():
    head = _action_head(cam_class="top_k", top_k=3)
    maps = _maps(seed=2)
    ref = _numpy_masked_path(head, maps, top_k=3)
    feats = head.features(maps)
    np.testing.assert_allclose(feats["mask"], ref["mask"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["fc7"], ref["fc7"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="top_k=5"):
        _action_head(cam_class="top_k", top_k=5)


def test_oracle_warns_and_uses_the_label():
    with pytest.warns(UserWarning, match="leaks the answer"):
        head = _action_head(cam_class="oracle")
    maps = _maps(seed=3)
    predicted = _numpy_masked_path(head, maps)["scores"].argmax(-1)
    labels = (predicted + 1) % N  # never the predicted class
    ref = _numpy_masked_path(head, maps, classes=labels)
    feats = head.features(maps, labels=labels)
    np.testing.assert_allclose(feats["mask"], ref["mask"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["fc7"], ref["fc7"], rtol=1e-4, atol=1e-5)
    as_dict = head({"maps": maps, "labels": np.eye(N)[labels]})  # one-hot works too
    np.testing.assert_allclose(as_dict["action"], ref["probs"], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="oracle"):
        head.features(maps)
    with pytest.raises(ValueError, match="cam_class"):
        _action_head(cam_class="label")


def test_mask_gradient_is_stopped():
    """The "action" loss trains conv5_3 and fc6-fc8, never the CAM branch."""
    head = _action_head()
    maps = _maps(seed=4)
    y = np.eye(N)[[0, 1, 2]]
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(
            y, head(maps, training=True)["action"]
        )
    grads = tape.gradient(
        loss,
        [
            head.cam_conv.kernel,
            head.cam_classifier.kernel,
            head.block5_conv3.kernel,
            head.fc6.kernel,
        ],
    )
    assert grads[0] is None and grads[1] is None
    assert np.abs(grads[2]).sum() > 0 and np.abs(grads[3]).sum() > 0


def test_action_head_round_trip_and_fit_step(tmp_path):
    y = np.eye(N)[[0, 1, 2]]
    head = run_model_test(
        ActionAwareHead,
        {"num_classes": N, "fc_units": FC, "cam_filters": CAM, "width": WIDTH,
         "cam_class": "top_k", "top_k": 2, "dropout": 0.2},
        _maps(seed=5),
        tmp_path,
        expected_output_shape={"cam": (3, N), "action": (3, N)},
        targets={"cam": y, "action": y},
    )  # fmt: skip
    assert (head.cam_class, head.top_k, head.dropout) == ("top_k", 2, 0.2)


def test_oracle_head_fit_step(tmp_path):
    labels = np.array([0, 1, 2])
    y = np.eye(N)[labels]
    with pytest.warns(UserWarning):
        run_model_test(
            ActionAwareHead,
            {"num_classes": N, "fc_units": FC, "cam_filters": CAM, "width": WIDTH,
             "cam_class": "oracle"},
            {"maps": _maps(), "labels": labels},
            tmp_path,
            targets={"cam": y, "action": y},
        )  # fmt: skip


def test_action_head_revived_features(tmp_path):
    head = _action_head(
        cam_class="top_k", top_k=2, dropout=0.2, cam_normalization=None
    )
    maps = _maps(seed=5)
    head(maps)
    head.save(tmp_path / "action.keras")
    revived = keras.models.load_model(tmp_path / "action.keras")
    assert revived.cam_normalization is None
    np.testing.assert_array_equal(
        revived.features(maps)["mask"], head.features(maps)["mask"]
    )
    assert revived.get_layer("block5_conv3").kernel.shape == (3, 3, 32, 32)