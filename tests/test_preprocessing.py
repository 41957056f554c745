"""preprocess_frames against Keras' own VGG16 preprocessing and OpenCV's resize."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from msl_keras.data.preprocessing import (
    IMAGENET_MEAN_BGR,
    preprocess_frames,
    resize_frames,
)


def _frames(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _reference(frames, size):
    """cv2 bilinear resize, then keras.applications.vgg16.preprocess_input."""
    resized = np.stack(
        [
            cv2.resize(
                f.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR
            )
            for f in frames
        ]
    )
    return keras.applications.vgg16.preprocess_input(resized)


def test_mean_is_keras_caffe_mean():
    zeros = np.zeros((1, 2, 2, 3), np.float32)
    keras_out = keras.applications.vgg16.preprocess_input(zeros.copy())
    np.testing.assert_allclose(
        keras_out[0, 0, 0], -np.array(IMAGENET_MEAN_BGR), rtol=1e-6
    )


@pytest.mark.parametrize("size", [(16, 16), (40, 36)])
def test_matches_keras_vgg16_preprocess_input_after_resize(size):
    frames = _frames((3, 24, 32, 3))
    out = preprocess_frames(frames, size).numpy()
    assert out.dtype == np.float32 and out.shape == (3, *size, 3)
    np.testing.assert_allclose(out, _reference(frames, size), atol=2e-3)


def test_same_size_is_exactly_keras_preprocess_input():
    frames = _frames((2, 16, 16, 3), seed=1)
    out = preprocess_frames(frames, (16, 16)).numpy()
    expected = keras.applications.vgg16.preprocess_input(frames.astype(np.float32))
    np.testing.assert_array_equal(out, expected)
    # Channel order by hand: output channel 0 is blue minus the blue mean.
    np.testing.assert_allclose(out[..., 0], frames[..., 2] - 103.939, atol=1e-4)


def test_float_input_equals_uint8_input():
    frames = _frames((2, 20, 24, 3), seed=2)
    np.testing.assert_array_equal(
        preprocess_frames(frames, (16, 16)).numpy(),
        preprocess_frames(frames.astype(np.float32), (16, 16)).numpy(),
    )


def test_any_leading_axes_and_single_frame():
    clips = _frames((2, 3, 20, 24, 3), seed=3)
    out = preprocess_frames(clips, (16, 16)).numpy()
    assert out.shape == (2, 3, 16, 16, 3)
    flat = preprocess_frames(clips.reshape(6, 20, 24, 3), (16, 16)).numpy()
    np.testing.assert_allclose(out.reshape(6, 16, 16, 3), flat, atol=1e-5)
    single = preprocess_frames(clips[1, 2], (16, 16)).numpy()
    np.testing.assert_allclose(single, out[1, 2], atol=1e-5)


def test_runs_in_tf_function_and_tf_data():
    frames = _frames((4, 20, 24, 3), seed=4)
    eager = preprocess_frames(frames, (16, 16)).numpy()
    graph = tf.function(lambda x: preprocess_frames(x, (16, 16)))(frames).numpy()
    np.testing.assert_allclose(graph, eager, atol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices(frames).map(
        lambda x: preprocess_frames(x, (16, 16))
    )
    np.testing.assert_allclose(np.stack(list(ds.as_numpy_iterator())), eager, atol=1e-5)


def test_resize_frames_is_cv2_linear():
    frame = _frames((30, 40, 3), seed=5).astype(np.float32)
    out = resize_frames(frame, (12, 18)).numpy()
    expected = cv2.resize(frame, (18, 12), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out, expected, atol=2e-3)


@pytest.mark.parametrize("shape", [(16, 16), (2, 16, 16, 4)])
def test_bad_shape_says_what_it_received(shape):
    with pytest.raises(ValueError, match="Received: shape"):
        preprocess_frames(np.zeros(shape, np.uint8))


def test_bad_size_raises():
    with pytest.raises(ValueError, match="size"):
        preprocess_frames(np.zeros((4, 4, 3), np.uint8), size=(0, 4))
