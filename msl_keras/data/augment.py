"""The paper's training augmentation (Sec. 4.2) as pure TensorFlow ops.

Every op takes its parameters explicitly and draws nothing, so a test can fix them and
compare with OpenCV / numpy; `draw_augmentation` is the only place randomness enters
(stateless, so one seed gives one set of parameters). Images are RGB floats in
[0, 255] shaped `(..., height, width, 3)`: one frame, a clip `(time, H, W, 3)` or a
batch. A parameter is either a scalar, shared by every frame, or has the leading
shape of the image (one value per frame).

The paper's order, which `augment_frame` follows:

1. horizontal flip, with probability 1/2;
2. rotation about the centre by an angle in [-8, 8] degrees;
3. crop (`aspect_crop_box`): the largest rectangle of aspect 320/240 (width/height)
   inside the frame, both sides scaled by one factor in [0.8, 1], placed at a random
   position, resized to 224x224;
4. RGB channel shift (`channel_shift`): an offset per channel in [-20, 20];
5. brightness, contrast, saturation jitter, in that order (the order the paper lists
   them): `alpha * img`, `img * alpha + (1 - alpha) * mean(grey(img))`,
   `img * alpha + (1 - alpha) * grey(img)`, grey = ITU-R 601 luma.

Every photometric op clips its result to [0, 255]; the geometric steps 1-3 are one
bilinear resampling (`augment_frame`), which keeps values inside [0, 255].

Decisions the paper leaves open (all are `AugmentationConfig` fields):
- Jitter factor: the paper prints "alpha = 0.3". Read literally, every training
  frame would be darkened to 30% brightness, which the test frames never are. The
  default, `jitter_mode="random"`, draws each factor uniformly in [1 - 0.3, 1 + 0.3]
  (the usual reading, as in Caffe / torchvision colour jitter); `jitter_mode="fixed"`
  applies exactly `alpha = jitter`, as printed.
- Rotation border: `fill_mode="reflect"` (default) mirrors the frame about its edge
  (OpenCV `BORDER_REFLECT`, `fedcba|abcdef|fedcba`), so no black corners appear that
  the CNN could learn as a cue of "training frame"; `"constant"` fills with 0
  (OpenCV `BORDER_CONSTANT`). Rotation is about the exact centre
  `((W - 1) / 2, (H - 1) / 2)`; positive angles turn the picture counter-clockwise
  (OpenCV's `getRotationMatrix2D` convention).
- Channel shift: each of R, G, B gets its own offset, uniform in
  [-channel_shift, channel_shift] with `channel_shift=20` (about 8% of the range).
- Contrast uses each frame's own mean grey level.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from msl_keras.errors import ConfigError

FILL_MODES = ("reflect", "constant")
JITTER_MODES = ("random", "fixed")
# ITU-R BT.601 luma weights for R, G, B.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
PAPER_ASPECT = 320.0 / 240.0
PARAM_KEYS = (
    "flip",
    "angle",
    "crop_scale",
    "offset_y",
    "offset_x",
    "channel_shift",
    "brightness",
    "contrast",
    "saturation",
)


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Ranges of the paper's augmentation (Sec. 4.2). The defaults are the paper's.

    Args:
        flip: draw a horizontal flip with probability 1/2.
        max_rotation: angles are uniform in [-max_rotation, max_rotation] degrees.
        crop_scale: `(low, high)`, 0 < low <= high <= 1: both sides of the largest
            `aspect` rectangle are scaled by one factor uniform in this range.
        aspect: width / height of the crop; 320/240 as in the paper.
        channel_shift: each channel's offset is uniform in
            [-channel_shift, channel_shift].
        jitter: the paper's alpha for brightness, contrast and saturation.
        jitter_mode: `"random"` (default): each factor uniform in
            [1 - jitter, 1 + jitter], the usual reading. `"fixed"`: each factor is
            exactly `jitter`, as printed in the paper (darkens every frame to 30%).
        output_size: `(height, width)` of the augmented frame.
        fill_mode: border handling of the rotation: `"reflect"` (default) or
            `"constant"` (zeros).

    Example:
    >>> as_printed = AugmentationConfig(jitter_mode="fixed")
    >>> tiny = AugmentationConfig(output_size=(32, 32))
    """

    flip: bool = True
    max_rotation: float = 8.0
    crop_scale: tuple = (0.8, 1.0)
    aspect: float = PAPER_ASPECT
    channel_shift: float = 20.0
    jitter: float = 0.3
    jitter_mode: str = "random"
    output_size: tuple = (224, 224)
    fill_mode: str = "reflect"

    def __post_init__(self):
        def fail(field, rule):
            value = getattr(self, field)
            raise ConfigError(
                f"AugmentationConfig.{field} must be {rule}. "
                f"Received: {field}={value!r}"
            )

        try:
            low, high = (float(v) for v in self.crop_scale)
        except (TypeError, ValueError):
            fail("crop_scale", "a pair (low, high)")
        if not 0.0 < low <= high <= 1.0:
            fail("crop_scale", "(low, high) with 0 < low <= high <= 1")
        object.__setattr__(self, "crop_scale", (low, high))
        try:
            out_h, out_w = (int(v) for v in self.output_size)
        except (TypeError, ValueError):
            fail("output_size", "a pair (height, width)")
        if out_h < 1 or out_w < 1:
            fail("output_size", "two positive ints")
        object.__setattr__(self, "output_size", (out_h, out_w))
        if not self.max_rotation >= 0:
            fail("max_rotation", ">= 0 (degrees)")
        if not self.aspect > 0:
            fail("aspect", "> 0 (width / height)")
        if not self.channel_shift >= 0:
            fail("channel_shift", ">= 0")
        if self.jitter_mode not in JITTER_MODES:
            fail("jitter_mode", f"one of {JITTER_MODES}")
        if self.jitter_mode == "random" and not 0 <= self.jitter < 1:
            fail(
                "jitter", "in [0, 1) with jitter_mode='random' (factors stay positive)"
            )
        if self.jitter_mode == "fixed" and not self.jitter > 0:
            fail("jitter", "> 0 with jitter_mode='fixed'")
        if self.fill_mode not in FILL_MODES:
            fail("fill_mode", f"one of {FILL_MODES}")


def _as_image(image, name):
    x = tf.convert_to_tensor(image)
    if x.shape.rank is not None and (x.shape.rank < 3 or x.shape[-1] not in (3, None)):
        raise ValueError(
            f"`{name}` expects RGB images shaped (..., height, width, 3). "
            f"Received: shape={tuple(x.shape)}"
        )
    return tf.cast(x, tf.float32) if x.dtype != tf.float32 else x


def _per_frame(param, trailing_rank=0, dtype=tf.float32):
    """Reshape a scalar / per-frame parameter to broadcast against `(..., H, W, 3)`.

    `param` is `lead + trailing` shaped (`trailing` is `(3,)` for channel offsets);
    a parameter without leading axes is returned as is.
    """
    p = tf.convert_to_tensor(param)
    p = tf.cast(p, dtype) if p.dtype != dtype else p
    lead_rank = p.shape.rank - trailing_rank
    if lead_rank <= 0:
        return p
    shape = tf.shape(p)
    ones = tf.ones([3 - trailing_rank], tf.int32)
    return tf.reshape(p, tf.concat([shape[:lead_rank], ones, shape[lead_rank:]], 0))


def _clip(x):
    return tf.clip_by_value(x, 0.0, 255.0)


def grey(image):
    """ITU-R 601 luma `0.299 R + 0.587 G + 0.114 B`.

    `(..., H, W, 3) -> (..., H, W, 1)`.
    """
    x = _as_image(image, "grey")
    return tf.tensordot(x, tf.constant(GREY_WEIGHTS, tf.float32), 1)[..., None]


def _flatten_frames(x):
    """`(..., H, W, C) -> (N, H, W, C)` and the leading shape to restore."""
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[-1], shape[-3:]], 0)), shape[:-3]


def _flat_param(param, lead_shape, dtype=tf.float32):
    p = tf.cast(tf.convert_to_tensor(param), dtype)
    return tf.reshape(tf.broadcast_to(p, lead_shape), [-1])


def _rotation_matrix(angle_degrees, height, width):
    """Output -> input pixel coordinates of a rotation about the centre: `(N, 3, 3)`.

    Pixel centres are at integer coordinates, as in OpenCV. The inverse of
    `cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle, 1)`.
    """
    theta = angle_degrees * (math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    zero, one = tf.zeros_like(cos), tf.ones_like(cos)
    rows = [
        [cos, -sin, (1.0 - cos) * cx + sin * cy],
        [sin, cos, (1.0 - cos) * cy - sin * cx],
        [zero, zero, one],
    ]
    return tf.stack([tf.stack(r, -1) for r in rows], -2)


def _flip_matrix(flip, width):
    """Output -> input coordinates of an optional horizontal mirror: `(N, 3, 3)`."""
    sign = tf.where(flip, -1.0, 1.0)
    shift = tf.where(flip, tf.cast(width, tf.float32) - 1.0, 0.0)
    zero, one = tf.zeros_like(sign), tf.ones_like(sign)
    rows = [[sign, zero, shift], [zero, one, zero], [zero, zero, one]]
    return tf.stack([tf.stack(r, -1) for r in rows], -2)


def _crop_matrix(box, output_size):
    """Output pixel -> crop coordinates of a half-pixel bilinear resize: `(N, 3, 3)`."""
    box = tf.cast(box, tf.float32)
    top, left, crop_h, crop_w = tf.unstack(box, axis=-1)
    sy = crop_h / float(output_size[0])
    sx = crop_w / float(output_size[1])
    zero, one = tf.zeros_like(sx), tf.ones_like(sx)
    rows = [
        [sx, zero, left + 0.5 * sx - 0.5],
        [zero, sy, top + 0.5 * sy - 0.5],
        [zero, zero, one],
    ]
    return tf.stack([tf.stack(r, -1) for r in rows], -2)


def _warp(images, matrices, output_size, fill_mode):
    """Bilinear resampling of `(N, H, W, C)` by output->input matrices `(N, 3, 3)`."""
    transforms = tf.reshape(matrices, [-1, 9])[:, :8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.cast(output_size, tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    )


def aspect_crop_box(height, width, scale, offset_y, offset_x, aspect=PAPER_ASPECT):
    """The paper's crop box, in whole pixels.

    1. The largest rectangle of `aspect` (width / height) inside `height x width`;
    2. both sides scaled by `scale` and rounded (at least 1 pixel);
    3. placed `offset_y`, `offset_x` of the way across the free room (0: top / left
       edge, 1: bottom / right edge), rounded to a pixel.

    Args:
        height, width: frame size (ints or scalar tensors).
        scale: in (0, 1]; scalar or `(n,)`.
        offset_y, offset_x: in [0, 1]; scalars or `(n,)`.
        aspect: width / height of the box.

    Returns:
        int32 `(..., 4)`: `[top, left, crop_height, crop_width]`, the box
        `image[top:top + crop_height, left:left + crop_width]`.
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    scale = tf.cast(scale, tf.float32)
    base_h = tf.minimum(h, w / aspect)
    base_w = tf.minimum(w, h * aspect)
    crop_h = tf.clip_by_value(tf.round(base_h * scale), 1.0, h)
    crop_w = tf.clip_by_value(tf.round(base_w * scale), 1.0, w)
    top = tf.round(tf.cast(offset_y, tf.float32) * (h - crop_h))
    left = tf.round(tf.cast(offset_x, tf.float32) * (w - crop_w))
    parts = [top, left, crop_h, crop_w]
    shape = tf.shape(parts[0])
    for p in parts[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(p))
    return tf.cast(tf.stack([tf.broadcast_to(p, shape) for p in parts], -1), tf.int32)


def channel_shift(image, shifts):
    """Add an offset to each of R, G, B and clip to [0, 255].

    Args:
        image: `(..., H, W, 3)`.
        shifts: `(3,)` shared, or `(..., 3)` one triple per frame.
    """
    x = _as_image(image, "channel_shift")
    return _clip(x + _per_frame(shifts, trailing_rank=1))


def adjust_brightness(image, alpha):
    """`alpha * img`, clipped to [0, 255]. `alpha`: scalar or one per frame."""
    x = _as_image(image, "adjust_brightness")
    return _clip(x * _per_frame(alpha))


def adjust_contrast(image, alpha):
    """`img * alpha + (1 - alpha) * mean(grey(img))`, clipped to [0, 255].

    The mean is over each frame's pixels. `alpha`: scalar or one per frame.
    """
    x = _as_image(image, "adjust_contrast")
    alpha = _per_frame(alpha)
    mean = tf.reduce_mean(grey(x), axis=[-3, -2], keepdims=True)
    return _clip(x * alpha + (1.0 - alpha) * mean)


def adjust_saturation(image, alpha):
    """`img * alpha + (1 - alpha) * grey(img)`, clipped to [0, 255].

    `alpha`: scalar or one per frame; 0 gives the grey image, 1 the image.
    """
    x = _as_image(image, "adjust_saturation")
    alpha = _per_frame(alpha)
    return _clip(x * alpha + (1.0 - alpha) * grey(x))


def draw_augmentation(seed, config=None, batch_size=None):
    """Draw the random parameters of one augmentation (or `batch_size` of them).

    Args:
        seed: a `(2,)` int tensor / array / tuple (stateless draw: the same seed
            always gives the same parameters), or a `tf.random.Generator`.
        config: `AugmentationConfig`; the paper's ranges by default.
        batch_size: `None` for one set of scalar parameters, or n for n sets
            (each value then has a leading axis `(n,)`).

    Returns:
        dict: `flip` bool, `angle` degrees in [-max_rotation, max_rotation],
        `crop_scale` in `config.crop_scale`, `offset_y` and `offset_x` in [0, 1],
        `channel_shift` `(3,)` in [-channel_shift, channel_shift], and the
        `brightness`, `contrast`, `saturation` factors (in [1 - jitter, 1 + jitter],
        or exactly `jitter` with `jitter_mode="fixed"`).
    """
    config = AugmentationConfig() if config is None else config
    shape = [11] if batch_size is None else [batch_size, 11]
    if isinstance(seed, tf.random.Generator):
        u = seed.uniform(shape, dtype=tf.float32)
    else:
        seed = tf.convert_to_tensor(seed)
        if not seed.dtype.is_integer or (
            seed.shape.rank is not None and seed.shape != [2]
        ):
            raise ValueError(
                "`seed` must be a (2,) int tensor or a tf.random.Generator. "
                f"Received: {seed!r}"
            )
        u = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
    u = tf.unstack(u, axis=-1)
    low, high = config.crop_scale

    def symmetric(v, r):
        return (2.0 * v - 1.0) * r

    if config.jitter_mode == "random":
        factors = [1.0 + symmetric(v, config.jitter) for v in u[8:11]]
    else:
        factors = [tf.fill(tf.shape(v), float(config.jitter)) for v in u[8:11]]
    return {
        "flip": tf.logical_and(u[0] < 0.5, bool(config.flip)),
        "angle": symmetric(u[1], config.max_rotation),
        "crop_scale": low + u[2] * (high - low),
        "offset_y": u[3],
        "offset_x": u[4],
        "channel_shift": symmetric(tf.stack(u[5:8], -1), config.channel_shift),
        "brightness": factors[0],
        "contrast": factors[1],
        "saturation": factors[2],
    }


def _check_params(params):
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(
            f"Augmentation params lack {missing}; make them with `draw_augmentation`. "
            f"Received keys: {sorted(params)}"
        )


def _geometric_fused(x, params, config):
    """Flip, rotate, crop and resize as ONE bilinear resampling per frame."""
    flat, lead = _flatten_frames(x)
    size = tf.shape(flat)[1:3]
    box = aspect_crop_box(
        size[0],
        size[1],
        _flat_param(params["crop_scale"], lead),
        _flat_param(params["offset_y"], lead),
        _flat_param(params["offset_x"], lead),
        config.aspect,
    )
    # Output pixel -> crop in the rotated frame -> flipped frame -> input frame.
    matrix = _flip_matrix(_flat_param(params["flip"], lead, tf.bool), size[1])
    matrix = matrix @ _rotation_matrix(
        _flat_param(params["angle"], lead), size[0], size[1]
    )
    matrix = matrix @ _crop_matrix(box, config.output_size)
    out = _warp(flat, matrix, config.output_size, config.fill_mode)
    return tf.reshape(out, tf.concat([lead, list(config.output_size) + [3]], 0))


def augment_frame(image, params, config=None):
    """Apply the paper's augmentation with the parameters `params`.

    Order: flip, rotate, crop + resize to `config.output_size`, channel shift,
    brightness, contrast, saturation.

    The flip, rotation, crop and resize are composed into one affine map and the
    frame is resampled once: the same
    transformation, sharper (one bilinear interpolation instead of two), cheaper
    (about 1.7x for the whole chain on 240x320 frames; no full-size intermediate),
    and each frame of a batch may have its own parameters. It differs
    from the step-by-step chain only by the interpolation (and, where the crop is
    upsampled, its outermost pixel row reads the neighbouring pixel outside the box
    instead of repeating the box edge); `tests/test_augment.py` checks it against
    that chain in OpenCV (`cv2.flip`, `cv2.warpAffine`, a slice and `cv2.resize`).

    Args:
        image: RGB `(..., H, W, 3)` in [0, 255], uint8 or float.
        params: dict from `draw_augmentation` (scalars, or one value per frame with
            the leading shape of `image`).
        config: `AugmentationConfig` (output size, aspect, border mode).

    Returns:
        float32 `(..., out_h, out_w, 3)` in [0, 255].

    Example:
    >>> params = draw_augmentation(tf.constant([1, 2]))
    >>> augment_frame(np.zeros((240, 320, 3), np.uint8), params).shape
    TensorShape([224, 224, 3])
    """
    config = AugmentationConfig() if config is None else config
    _check_params(params)
    x = _as_image(image, "augment_frame")
    x = _geometric_fused(x, params, config)
    x = channel_shift(x, params["channel_shift"])
    x = adjust_brightness(x, params["brightness"])
    x = adjust_contrast(x, params["contrast"])
    return adjust_saturation(x, params["saturation"])
