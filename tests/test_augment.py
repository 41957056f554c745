"""Each augmentation op with fixed parameters against OpenCV / numpy, then the chain."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from msl_keras.data import augment as A
from msl_keras.errors import ConfigError

H, W = 24, 32  # the paper's 240x320 frames, scaled down
GREY = np.array([0.299, 0.587, 0.114], np.float32)


def _noise(shape=(H, W, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _smooth(h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    channels = [127 + 100 * np.sin(xx / 6 + c) * np.cos(yy / 8 - c) for c in range(3)]
    return np.stack(channels, -1).astype(np.float32)


def _params(**overrides):
    """Identity parameters, with overrides."""
    params = {
        "flip": False,
        "angle": 0.0,
        "crop_scale": 1.0,
        "offset_y": 0.0,
        "offset_x": 0.0,
        "channel_shift": np.zeros(3, np.float32),
        "brightness": 1.0,
        "contrast": 1.0,
        "saturation": 1.0,
    }
    params.update(overrides)
    return {k: tf.constant(v) for k, v in params.items()}


# --- geometric steps (augment_frame with the other steps at identity) -------------


def _geometric(image, fill_mode="reflect", aspect=A.PAPER_ASPECT, size=None, **params):
    """`augment_frame` with `params` (identity otherwise) at the frames' own size: a
    crop of scale 1 of a frame of aspect `aspect` is the whole frame."""
    size = image.shape[-3:-1] if size is None else size
    config = A.AugmentationConfig(output_size=size, fill_mode=fill_mode, aspect=aspect)
    return A.augment_frame(image, _params(**params), config).numpy()


def test_flip_matches_cv2_flip():
    img = _noise()
    np.testing.assert_allclose(_geometric(img, flip=True), cv2.flip(img, 1), atol=1e-3)
    np.testing.assert_allclose(_geometric(img, flip=False), img, atol=1e-3)


def test_flip_per_frame():
    batch = np.stack([_noise(seed=1), _noise(seed=2)])
    out = _geometric(batch, flip=[True, False])
    np.testing.assert_allclose(out[0], cv2.flip(batch[0], 1), atol=1e-3)
    np.testing.assert_allclose(out[1], batch[1], atol=1e-3)


@pytest.mark.parametrize(
    "fill_mode, border",
    [("reflect", cv2.BORDER_REFLECT), ("constant", cv2.BORDER_CONSTANT)],
)
@pytest.mark.parametrize("angle", [7.3, -8.0, 30.0])
def test_rotate_matches_cv2_warp_affine(fill_mode, border, angle):
    img = _noise(seed=3)
    matrix = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle, 1.0)
    expected = cv2.warpAffine(
        img, matrix, (W, H), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0
    )
    out = _geometric(img, fill_mode, angle=angle)
    assert out.shape == img.shape
    np.testing.assert_allclose(out, expected, atol=0.02)


def test_rotate_zero_is_identity_and_per_frame_angles():
    batch = np.stack([_noise(seed=4), _noise(seed=5)])
    np.testing.assert_allclose(_geometric(batch, angle=0.0), batch, atol=1e-3)
    out = _geometric(batch, angle=[5.0, -3.0])
    np.testing.assert_allclose(out[0], _geometric(batch[0], angle=5.0), atol=1e-4)
    np.testing.assert_allclose(out[1], _geometric(batch[1], angle=-3.0), atol=1e-4)


def test_rotate_positive_angle_is_counter_clockwise():
    img = np.zeros((33, 33, 3), np.float32)
    img[16, 26:31] = 255.0  # a bar to the right of the centre
    out = _geometric(img, "constant", aspect=1.0, angle=90.0)
    assert out[2:7, 16].min() > 250  # it now points up
    assert out[16, 26:31].max() < 1


def test_aspect_crop_box_by_hand():
    def box(*args, **kwargs):
        return A.aspect_crop_box(*args, **kwargs).numpy().tolist()

    # A 320x240 frame is already 320/240: the whole frame.
    assert box(240, 320, 1.0, 0.5, 0.5) == [0, 0, 240, 320]
    # UT-Interaction 720x480: largest 4:3 box is 640x480, scaled 0.8 -> 512x384.
    assert box(480, 720, 0.8, 0.0, 0.0) == [0, 0, 384, 512]
    assert box(480, 720, 0.8, 1.0, 1.0) == [96, 208, 384, 512]
    assert box(480, 720, 0.8, 0.5, 0.25) == [48, 52, 384, 512]
    # Portrait 100x50: width-bound, 50 x 37.5 -> 38 rows.
    assert box(100, 50, 1.0, 0.0, 0.0) == [0, 0, 38, 50]
    # Another aspect.
    assert box(100, 100, 1.0, 0.0, 0.0, aspect=2.0) == [0, 0, 50, 100]


def test_aspect_crop_box_aspect_scale_and_bounds():
    rng = np.random.default_rng(0)
    n = 500
    scale = rng.uniform(0.8, 1.0, n)
    oy, ox = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    for height, width in [(240, 320), (480, 720), (360, 240)]:
        top, left, ch, cw = A.aspect_crop_box(height, width, scale, oy, ox).numpy().T
        base_h, base_w = min(height, width * 0.75), min(width, height / 0.75)
        np.testing.assert_allclose(cw / ch, 320 / 240, atol=0.02)
        np.testing.assert_array_equal(ch, np.round(base_h * scale))
        np.testing.assert_array_equal(cw, np.round(base_w * scale))
        assert (ch >= 0.8 * base_h - 1).all() and (ch <= base_h).all()
        assert (top >= 0).all() and (top + ch <= height).all()
        assert (left >= 0).all() and (left + cw <= width).all()
        np.testing.assert_array_equal(top, np.round(oy * (height - ch)))


@pytest.mark.parametrize("size", [(16, 16), (30, 40)])
def test_crop_matches_slice_and_cv2_resize(size):
    img = _noise(seed=6)
    crop = {"crop_scale": 0.8, "offset_y": 0.4, "offset_x": 0.7}
    top, left, ch, cw = A.aspect_crop_box(H, W, *crop.values()).numpy()
    expected = cv2.resize(
        img[top : top + ch, left : left + cw],
        (size[1], size[0]),
        interpolation=cv2.INTER_LINEAR,
    )
    out = _geometric(img, size=size, **crop)
    # Upsampled, the outermost pixels read the frame beyond the box, not its edge.
    inner = slice(1, -1) if size[0] > ch else slice(None)
    np.testing.assert_allclose(out[inner, inner], expected[inner, inner], atol=2e-3)


# --- photometric ops --------------------------------------------------------------


def _np_grey(img):
    return (img * GREY).sum(-1, keepdims=True)


def test_channel_shift_matches_numpy():
    img = _noise(seed=7)
    shifts = np.array([20.0, -13.5, 4.0], np.float32)
    out = A.channel_shift(img, shifts).numpy()
    np.testing.assert_allclose(out, np.clip(img + shifts, 0, 255), atol=1e-4)
    assert out.max() == 255.0 and out.min() == 0.0  # the clip is exercised


@pytest.mark.parametrize("alpha", [0.3, 0.7, 1.3])
def test_jitters_match_numpy_formulas(alpha):
    img = _noise(seed=8)
    np.testing.assert_allclose(
        A.adjust_brightness(img, alpha).numpy(), np.clip(alpha * img, 0, 255), atol=1e-3
    )
    mean = _np_grey(img).mean()
    np.testing.assert_allclose(
        A.adjust_contrast(img, alpha).numpy(),
        np.clip(img * alpha + (1 - alpha) * mean, 0, 255),
        atol=1e-3,
    )
    np.testing.assert_allclose(
        A.adjust_saturation(img, alpha).numpy(),
        np.clip(img * alpha + (1 - alpha) * _np_grey(img), 0, 255),
        atol=1e-3,
    )


def test_jitter_limits_by_hand():
    img = np.zeros((2, 2, 3), np.float32)
    img[0, 0] = [255, 0, 0]
    grey = A.adjust_saturation(img, 0.0).numpy()
    np.testing.assert_allclose(grey[0, 0], [0.299 * 255] * 3, atol=1e-3)
    flat = A.adjust_contrast(img, 0.0).numpy()
    np.testing.assert_allclose(flat, np.full_like(img, 0.299 * 255 / 4), atol=1e-3)


def test_photometric_ops_take_one_value_per_frame():
    batch = np.stack([_noise(seed=9), _noise(seed=10)])
    alphas = tf.constant([0.8, 1.2])
    shifts = tf.constant([[5.0, 0.0, -5.0], [-10.0, 10.0, 0.0]])
    for op, params in [
        (A.adjust_brightness, alphas),
        (A.adjust_contrast, alphas),
        (A.adjust_saturation, alphas),
        (A.channel_shift, shifts),
    ]:
        out = op(batch, params).numpy()
        for i in range(2):
            np.testing.assert_allclose(
                out[i], op(batch[i], params[i]).numpy(), atol=1e-3
            )


# --- config and drawing -----------------------------------------------------------


def test_config_defaults_are_the_paper_random_reading():
    config = A.AugmentationConfig()
    assert config.jitter_mode == "random" and config.jitter == 0.3
    assert config.max_rotation == 8.0 and config.crop_scale == (0.8, 1.0)
    assert config.aspect == pytest.approx(320 / 240)
    assert config.output_size == (224, 224) and config.fill_mode == "reflect"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_scale": (0.9, 0.8)},
        {"crop_scale": (0.0, 1.0)},
        {"jitter_mode": "sometimes"},
        {"jitter": 1.2},
        {"fill_mode": "wrap"},
        {"output_size": (0, 4)},
        {"max_rotation": -1.0},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError, match="Received"):
        A.AugmentationConfig(**kwargs)


def test_draw_is_deterministic_for_a_seed():
    a = A.draw_augmentation(tf.constant([3, 7]))
    b = A.draw_augmentation(np.array([3, 7]))
    c = A.draw_augmentation((3, 8))
    for key in A.PARAM_KEYS:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert a["angle"].numpy() != c["angle"].numpy()


def test_draw_ranges_over_many_frames():
    p = {k: v.numpy() for k, v in A.draw_augmentation((1, 2), batch_size=4000).items()}
    assert p["angle"].shape == (4000,) and p["channel_shift"].shape == (4000, 3)
    assert -8 <= p["angle"].min() < -7.5 and 7.5 < p["angle"].max() <= 8
    assert 0.8 <= p["crop_scale"].min() and p["crop_scale"].max() <= 1.0
    for key in ("offset_y", "offset_x"):
        assert 0 <= p[key].min() and p[key].max() <= 1
    assert (
        np.abs(p["channel_shift"]).max() <= 20 and np.abs(p["channel_shift"]).max() > 19
    )
    for key in ("brightness", "contrast", "saturation"):
        assert 0.7 <= p[key].min() < 0.72 and 1.28 < p[key].max() <= 1.3
    assert 0.45 < p["flip"].mean() < 0.55
    # Independent parameters: no two are the same stream.
    assert abs(np.corrcoef(p["angle"], p["crop_scale"])[0, 1]) < 0.1


def test_draw_fixed_mode_and_switched_off_ops():
    config = A.AugmentationConfig(jitter_mode="fixed", flip=False, max_rotation=0.0)
    p = A.draw_augmentation((0, 1), config, batch_size=50)
    for key in ("brightness", "contrast", "saturation"):
        np.testing.assert_allclose(p[key].numpy(), 0.3)
    assert not p["flip"].numpy().any()
    np.testing.assert_array_equal(p["angle"].numpy(), 0.0)


def test_draw_from_a_generator_is_reproducible():
    a = A.draw_augmentation(tf.random.Generator.from_seed(5))
    b = A.draw_augmentation(tf.random.Generator.from_seed(5))
    np.testing.assert_array_equal(
        a["channel_shift"].numpy(), b["channel_shift"].numpy()
    )


def test_draw_rejects_a_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        A.draw_augmentation(tf.constant([0.5, 1.0]))


# --- the whole chain --------------------------------------------------------------


def _reference_chain(img, p, size, border=cv2.BORDER_REFLECT):
    """The paper's order, with OpenCV and numpy only."""
    h, w = img.shape[:2]
    x = cv2.flip(img, 1) if p["flip"] else img.copy()
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), p["angle"], 1.0)
    x = cv2.warpAffine(x, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
    base_h, base_w = min(h, w * 0.75), min(w, h / 0.75)
    ch, cw = round(base_h * p["crop_scale"]), round(base_w * p["crop_scale"])
    top, left = round(p["offset_y"] * (h - ch)), round(p["offset_x"] * (w - cw))
    x = cv2.resize(
        x[top : top + ch, left : left + cw], size[::-1], interpolation=cv2.INTER_LINEAR
    )
    x = np.clip(x + p["channel_shift"], 0, 255)
    x = np.clip(p["brightness"] * x, 0, 255)
    b = p["contrast"]
    x = np.clip(x * b + (1 - b) * _np_grey(x).mean(), 0, 255)
    s = p["saturation"]
    return np.clip(x * s + (1 - s) * _np_grey(x), 0, 255)


FIXED = {
    "flip": True,
    "angle": -6.5,
    "crop_scale": 0.85,
    "offset_y": 0.3,
    "offset_x": 0.8,
    "channel_shift": np.array([12.0, -7.0, 3.0], np.float32),
    "brightness": 1.2,
    "contrast": 0.8,
    "saturation": 1.25,
}


def test_fused_chain_matches_the_opencv_chain():
    img = _smooth()
    config = A.AugmentationConfig(output_size=(32, 32))
    for seed in range(4):
        params = A.draw_augmentation((seed, 9), config)
        fused = A.augment_frame(img, params, config).numpy()
        steps = _reference_chain(img, {k: v.numpy() for k, v in params.items()}, (32, 32))
        # One interpolation instead of two: close, not equal.
        assert np.abs(fused - steps).mean() < 0.5
        assert np.abs(fused - steps).max() < 8.0
    fused = A.augment_frame(img, _params(**FIXED), config).numpy()
    expected = _reference_chain(img, FIXED, (32, 32))
    assert np.abs(fused - expected).mean() < 0.5


def test_identity_params_give_back_the_frame():
    img = _noise((H, W, 3), seed=12)
    config = A.AugmentationConfig(output_size=(H, W))
    out = A.augment_frame(img, _params(), config).numpy()
    np.testing.assert_allclose(out, img, atol=1e-3)


def test_flip_only_is_cv2_flip_in_the_fused_chain():
    img = _noise((H, W, 3), seed=13)
    config = A.AugmentationConfig(output_size=(H, W))
    out = A.augment_frame(img, _params(flip=True), config).numpy()
    np.testing.assert_allclose(out, cv2.flip(img, 1), atol=1e-3)


def test_fixed_mode_as_printed_darkens():
    img = _smooth()
    config = A.AugmentationConfig(output_size=(32, 32), jitter_mode="fixed")
    out = A.augment_frame(img, A.draw_augmentation((0, 0), config), config).numpy()
    assert out.mean() < 0.5 * img.mean()


def test_batch_with_per_frame_params_equals_frame_by_frame():
    batch = np.stack([_smooth(), _smooth()[::-1], _noise((48, 64, 3), seed=14)])
    config = A.AugmentationConfig(output_size=(16, 16))
    params = A.draw_augmentation((4, 4), config, batch_size=3)
    out = A.augment_frame(batch.astype(np.uint8), params, config).numpy()
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.float32
    for i in range(3):
        one = {k: v[i] for k, v in params.items()}
        expected = A.augment_frame(batch[i].astype(np.uint8), one, config).numpy()
        np.testing.assert_allclose(out[i], expected, atol=1e-3)


def test_shared_params_on_a_clip():
    clip = np.stack([_smooth()] * 3)
    config = A.AugmentationConfig(output_size=(16, 16))
    params = A.draw_augmentation((2, 2), config)
    out = A.augment_frame(clip, params, config).numpy()
    assert out.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(out[0], out[2], atol=1e-5)


def test_whole_chain_runs_in_tf_data_map():
    frames = np.stack([_noise((H, W, 3), seed=s) for s in range(6)]).astype(np.uint8)
    config = A.AugmentationConfig(output_size=(16, 16))

    def augment(frame, index):
        seed = tf.stack([tf.constant(7, tf.int64), index])
        return A.augment_frame(frame, A.draw_augmentation(seed, config), config)

    ds = tf.data.Dataset.from_tensor_slices((frames, tf.range(6, dtype=tf.int64)))
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(3)
    out = np.concatenate(list(ds.as_numpy_iterator()))
    assert out.shape == (6, 16, 16, 3)
    assert 0 <= out.min() and out.max() <= 255
    eager = augment(frames[4], tf.constant(4, tf.int64)).numpy()
    np.testing.assert_allclose(out[4], eager, atol=1e-3)


def test_missing_params_are_named():
    params = _params()
    del params["angle"]
    with pytest.raises(ValueError, match="angle"):
        A.augment_frame(_noise(), params)
