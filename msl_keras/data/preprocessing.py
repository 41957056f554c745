"""The one preprocessing function between RGB frames and the VGG-16 trunk.

CNN training, feature extraction and predict all call `preprocess_frames`, so the
network never sees two conventions. The authors' code trained on RGB frames scaled
by 1/255 and extracted features from BGR mean-subtracted frames (defect #7 in the
notes): the features it stored came from inputs the heads had never been trained on.

The convention is Keras' VGG16 "caffe" mode, the one the ImageNet weights were
trained with: RGB -> BGR, subtract the ImageNet mean pixel `IMAGENET_MEAN_BGR`,
no scaling (values stay in about [-124, 152]).
"""

from __future__ import annotations

import tensorflow as tf

# Keras' `imagenet_utils` caffe mean, in BGR order (blue, green, red).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def _check_frames(x, name):
    if x.shape.rank is not None and (x.shape.rank < 3 or x.shape[-1] not in (3, None)):
        raise ValueError(
            f"`{name}` expects RGB frames shaped (..., height, width, 3). "
            f"Received: shape={tuple(x.shape)}"
        )


def _check_size(size):
    if size is None:
        return None
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be (height, width). Received: size={size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"`size` must be two positive ints. Received: size={size!r}")
    return height, width


def resize_frames(frames, size):
    """Bilinear resize of frames `(..., H, W, C)` to `size`, as float32.

    Half-pixel centres and no antialiasing: the same sampling as OpenCV's
    `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`. Any number of leading axes
    (a frame, a clip `(T, H, W, C)`, a batch of clips) is accepted. A frame already
    of `size` is returned unchanged (bilinear resampling at the same size is the
    identity).

    Args:
        frames: `(..., H, W, C)` numpy array or tensor, any real dtype.
        size: `(height, width)` of the output.

    Returns:
        float32 tensor `(..., height, width, C)`.
    """
    x = tf.convert_to_tensor(frames)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    height, width = _check_size(size)
    if x.shape.rank is not None and x.shape[-3] == height and x.shape[-2] == width:
        return x
    if x.shape.rank == 3 or x.shape.rank == 4:
        return tf.image.resize(x, (height, width), method="bilinear", antialias=False)
    # Fold the leading axes into one batch axis for tf.image.resize.
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], axis=0))
    out = tf.image.resize(flat, (height, width), method="bilinear", antialias=False)
    return tf.reshape(out, tf.concat([shape[:-3], [height, width, shape[-1]]], axis=0))


def preprocess_frames(frames, size=(224, 224)):
    """RGB frames -> VGG-16 input: resize, RGB->BGR, subtract the ImageNet mean.

    Equal to `keras.applications.vgg16.preprocess_input` (caffe mode) applied to
    the bilinearly resized frames. Written with TensorFlow ops: it runs inside
    `tf.data.Dataset.map` and `tf.function`, and accepts numpy arrays eagerly.

    Args:
        frames: RGB frames `(..., H, W, 3)`: uint8 in [0, 255] or float in [0, 255]
            (e.g. the output of `msl_keras.data.augment.augment_frame`). Any number
            of leading axes: one frame, a clip `(T, H, W, 3)`, a batch.
        size: `(height, width)` of the network input; `None` keeps the frame size.

    Returns:
        float32 tensor `(..., height, width, 3)` in BGR order, mean-subtracted.

    Example:
    >>> frames = np.zeros((2, 240, 320, 3), np.uint8)
    >>> preprocess_frames(frames).shape
    TensorShape([2, 224, 224, 3])
    """
    x = tf.convert_to_tensor(frames)
    _check_frames(x, "preprocess_frames")
    if size is None:
        x = tf.cast(x, tf.float32) if x.dtype != tf.float32 else x
    else:
        x = resize_frames(x, size)
    # tf.reverse is several times faster than the strided slice x[..., ::-1].
    return tf.reverse(x, axis=[-1]) - tf.constant(IMAGENET_MEAN_BGR, tf.float32)


def deprocess_frames(frames, dtype="uint8"):
    """Inverse of `preprocess_frames` (up to the resize), for looking at inputs.

    Args:
        frames: float `(..., H, W, 3)`, BGR mean-subtracted network input.
        dtype: `"uint8"` (rounded and clipped to [0, 255], ready for an image
            viewer) or `"float32"` (exact inverse, not clipped).

    Returns:
        RGB tensor `(..., H, W, 3)` of `dtype`.
    """
    x = tf.convert_to_tensor(frames)
    _check_frames(x, "deprocess_frames")
    x = tf.cast(x, tf.float32) + tf.constant(IMAGENET_MEAN_BGR, tf.float32)
    x = tf.reverse(x, axis=[-1])
    if dtype == "float32":
        return x
    if dtype == "uint8":
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)
    raise ValueError(f"`dtype` must be 'uint8' or 'float32'. Received: dtype={dtype!r}")
