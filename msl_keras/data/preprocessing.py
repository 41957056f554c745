"""The one preprocessing function between RGB frames and the VGG-16 trunk.

CNN training, feature extraction and predict all call `preprocess_frames`: the
authors' code trained on RGB / 255 and extracted features from BGR mean-subtracted
frames (defect #7 in the notes). The convention is Keras' VGG16 "caffe" mode, the one
the ImageNet weights were trained with: RGB -> BGR, minus the ImageNet mean pixel
`IMAGENET_MEAN_BGR`, no scaling (values in about [-124, 152]).
"""

import tensorflow as tf

# Keras' `imagenet_utils` caffe mean, in BGR order (blue, green, red).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def check_rgb(x, name):
    """`x` (a tensor), checked to be `(..., height, width, 3)`."""
    if x.shape.rank is not None and (x.shape.rank < 3 or x.shape[-1] not in (3, None)):
        raise ValueError(
            f"`{name}` expects RGB frames shaped (..., height, width, 3). "
            f"Received: shape={tuple(x.shape)}"
        )
    return x


def resize_frames(frames, size):
    """Bilinear resize of frames `(..., H, W, C)` to `size` `(height, width)`, as
    float32: half-pixel centres and no antialiasing, the sampling of OpenCV's
    `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`. Frames already of `size` are
    returned as they are (the same sampling is the identity)."""
    x = tf.cast(frames, tf.float32)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be (height, width). Received: size={size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"`size` must be two positive ints. Received: size={size!r}")
    if x.shape.rank is not None and x.shape[-3] == height and x.shape[-2] == width:
        return x
    if x.shape.rank in (3, 4):
        return tf.image.resize(x, (height, width), method="bilinear", antialias=False)
    # Fold the leading axes into one batch axis for tf.image.resize.
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], axis=0))
    out = tf.image.resize(flat, (height, width), method="bilinear", antialias=False)
    return tf.reshape(out, tf.concat([shape[:-3], [height, width, shape[-1]]], axis=0))


def preprocess_frames(frames, size=(224, 224)):
    """RGB frames `(..., H, W, 3)` (uint8 or float in [0, 255]) -> VGG-16 input:
    float32 `(..., height, width, 3)`, resized to `size` (`None`: kept), BGR, minus
    the ImageNet mean. Equal to `keras.applications.vgg16.preprocess_input` of the
    resized frames, in TensorFlow ops (for `tf.data` and `tf.function`).

    >>> preprocess_frames(np.zeros((2, 240, 320, 3), np.uint8)).shape
    TensorShape([2, 224, 224, 3])
    """
    x = check_rgb(tf.convert_to_tensor(frames), "preprocess_frames")
    x = tf.cast(x, tf.float32) if size is None else resize_frames(x, size)
    # tf.reverse is several times faster than the strided slice x[..., ::-1].
    return tf.reverse(x, axis=[-1]) - tf.constant(IMAGENET_MEAN_BGR, tf.float32)

