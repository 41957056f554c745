"""Generated clips: a small action-anticipation data set written as real videos.

The demo, the notebooks and the tests run on these clips, through the decoder the real
datasets use (`video.read_frames`). Anticipation is a real problem on them:

- One actor (a stick figure, about 5% of the frame) stands in the same idle pose in
  every clip; after a short random onset the class's motion (`ACTIONS`) starts and
  grows to the end: the first frames look alike for every class, the last decide it.
- The background is the class's own scene with probability `CONTEXT_PROBABILITY`,
  another class's otherwise: context alone beats chance but stays far from perfect.
- Actors ("groups", like UCF-101's `gXX`) differ in clothes, skin and size, never in
  motion; start, onset, speed and amplitude vary per clip; a distractor square drifts;
  every frame gets pixel noise; lengths vary in [75%, 100%] of `num_frames`.

Layout written by `generate_dataset(root)` (groups never straddle the two lists):

```
<root>/<class_name>/<class_name>_g<group>_c<clip>.avi    MJPG AVI, RGB content
<root>/splits/classes.txt      one class name per line; line i = label i
<root>/splits/trainlist.txt    "<class_name>/<clip_id>.avi <label> <group>"
<root>/splits/testlist.txt     same format; the test groups only
<root>/manifest.json           generator parameters, seed, per-clip metadata
```
"""

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from msl_keras.data.records import ClipRecord, carve_validation, list_lines
from msl_keras.errors import DatasetError

# Bump when the rendering changes: a set written by another version is not reused.
GENERATOR_VERSION = 1
DEFAULT_ROOT = "data/generated"
ACTIONS = tuple("walk_right jump approach wave walk_left sit_down retreat kick".split())
CONTEXT_PROBABILITY = 0.6
MANIFEST_NAME = "manifest.json"
SPLITS_DIR = "splits"
CLASSES_FILE = "classes.txt"
TRAIN_LIST = "trainlist.txt"
TEST_LIST = "testlist.txt"
FOURCC = "MJPG"
JPEG_QUALITY = 90
NOISE_STD = 6.0  # per-frame Gaussian pixel noise, 0-255 scale
MIN_LENGTH_FRACTION = 0.75

_SKIN_TONES = ((241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36))
_REGENERATE = (
    "Create the clips with `msl_keras.data.generated.generate_dataset('{}')` or "
    "`msl-keras demo`."
)


def generate_dataset(
    root=DEFAULT_ROOT,
    num_classes=4,
    clips_per_class=24,
    num_frames=32,
    frame_size=(64, 48),
    fps=25,
    num_groups=6,
    seed=0,
    overwrite=False,
):
    """Writes the clips of the first `num_classes` `ACTIONS`, the split lists and
    the manifest under `root`; returns `Path(root)`.

    `clips_per_class` are spread over `num_groups` actors, the last
    `ceil(num_groups / 3)` of which are the test list; `frame_size` is `(width,
    height)`. A complete set of these parameters is reused, an incomplete one
    rewritten (staged beside `root`, then moved in); `overwrite` replaces any set.

    Raises:
        ValueError: a parameter is out of range.
        DatasetError: `root` holds other files and `overwrite` is False, or this
            OpenCV cannot write and read back MJPG AVI files.
    """
    root = Path(root)
    parameters = _parameters(
        num_classes, clips_per_class, num_frames, frame_size, fps, num_groups, seed
    )
    manifest = _load_manifest(root)
    if manifest is not None and not overwrite:
        if manifest.get("parameters") != parameters:
            raise DatasetError(
                f"'{root}' holds a generated set of other parameters "
                f"({manifest.get('parameters')}, not {parameters}). Pass "
                "overwrite=True to replace it, or choose another root."
            )
        if _is_complete(root, manifest):
            return root
    elif manifest is None and root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DatasetError(
            f"'{root}' is not empty and holds no generated set (no {MANIFEST_NAME}). "
            "Choose an empty or new folder, or pass overwrite=True."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _replace_set(staging, root, manifest, _write_set(staging, parameters))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def read_generated(root=DEFAULT_ROOT, validation_fraction=0.2, seed=0):
    """`ClipRecord`s of the train list (roles "train" and, for `validation_fraction`
    of its groups drawn with `seed`, "validation"), then of the test list ("test").
    Raises `DatasetError` when the set is missing or incomplete."""
    root = Path(root)
    names, hint = class_names(root), _REGENERATE.format(root)
    records = []
    for list_name, role in ((TRAIN_LIST, "train"), (TEST_LIST, "test")):
        listed = list_lines(root / SPLITS_DIR / list_name, "Split list", hint)
        for where, line in listed:
            parts = line.split()
            valid = len(parts) == 3 and parts[1].isdecimal()
            if not valid or int(parts[1]) >= len(names):
                raise DatasetError(
                    f"{where}: expected '<class_name>/<clip_id>.avi <label> <group>' "
                    f"with a label below {len(names)} (the classes of "
                    f"'{root / SPLITS_DIR / CLASSES_FILE}'). Received: {line!r}. {hint}"
                )
            path = root / parts[0]
            if not path.is_file():
                raise DatasetError(f"{where}: clip '{path}' is missing. {hint}")
            clip_id, label, group = Path(parts[0]).stem, int(parts[1]), parts[2]
            resolved, name = str(path.resolve()), names[label]
            records.append(ClipRecord(clip_id, resolved, label, name, group, role))
    if not validation_fraction:  # None or 0: no validation clips
        return records
    return carve_validation(records, validation_fraction, seed)


def class_names(root=DEFAULT_ROOT):
    """The class names of the set under `root` in label order (splits/classes.txt)."""
    path = Path(root) / SPLITS_DIR / CLASSES_FILE
    what = f"No generated data set at '{root}': class list"
    return [line for _, line in list_lines(path, what, _REGENERATE.format(root))]


def _parameters(
    num_classes, clips_per_class, num_frames, frame_size, fps, num_groups, seed
):
    """Validates the arguments; returns them as the manifest records them."""
    if not 2 <= int(num_classes) <= len(ACTIONS):
        raise ValueError(
            f"num_classes must be in [2, {len(ACTIONS)}] ({', '.join(ACTIONS)}). "
            f"Received: {num_classes=}"
        )
    if int(num_groups) < 2:
        raise ValueError(
            "num_groups must be >= 2 (train and test groups are disjoint). "
            f"Received: {num_groups=}"
        )
    if int(clips_per_class) < int(num_groups):
        raise ValueError(
            "clips_per_class must be >= num_groups (every group shows every class). "
            f"Received: {clips_per_class=}, {num_groups=}"
        )
    if int(num_frames) < 4:
        raise ValueError(f"num_frames must be at least 4. Received: {num_frames=}")
    if len(frame_size) != 2 or min(frame_size) < 16:
        raise ValueError(
            f"frame_size must be (width, height), both >= 16. Received: {frame_size=}"
        )
    if not fps > 0:
        raise ValueError(f"fps must be positive. Received: {fps=}")
    return {
        "generator_version": GENERATOR_VERSION,
        "num_classes": int(num_classes),
        "clips_per_class": int(clips_per_class),
        "num_frames": int(num_frames),
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "fps": float(fps),
        "num_groups": int(num_groups),
        "seed": int(seed),
        "context_probability": CONTEXT_PROBABILITY,
        "noise_std": NOISE_STD,
        "codec": FOURCC,
    }


def _load_manifest(root):
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"Cannot read '{path}': {error}. Pass overwrite=True to regenerate the set."
        ) from error


def _is_complete(root, manifest):
    files = [f"{SPLITS_DIR}/{name}" for name in (CLASSES_FILE, TRAIN_LIST, TEST_LIST)]
    files += [clip["path"] for clip in manifest.get("clips", [])]
    return all((root / name).is_file() for name in files)


def _replace_set(staging, root, old_manifest, new_manifest):
    """Moves the staged set into `root`, removing what an older set owned there."""
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    owned = {SPLITS_DIR, *new_manifest["classes"]}
    owned |= set((old_manifest or {}).get("classes", []))
    for name in owned:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    for name in [SPLITS_DIR, *new_manifest["classes"]]:
        os.replace(staging / name, root / name)
    # The manifest goes last: a set with a manifest is complete.
    os.replace(staging / MANIFEST_NAME, root / MANIFEST_NAME)


def _write_set(folder, parameters):
    """Renders, encodes and checks every clip; writes the lists and the manifest."""
    num_classes, num_groups = parameters["num_classes"], parameters["num_groups"]
    seed, per_class = parameters["seed"], parameters["clips_per_class"]
    names = list(ACTIONS[:num_classes])
    test_groups = set(range(num_groups - math.ceil(num_groups / 3), num_groups))
    actors = [_draw_actor(seed, group, num_groups) for group in range(num_groups)]
    clips, lines = [], {"train": [], "test": []}
    for label, name in enumerate(names):
        (folder / name).mkdir()
        scenes = _draw_scenes(seed, label, num_classes, per_class)
        for index, scene in enumerate(scenes):
            group = index % num_groups
            spec = _draw_clip(seed, label, index, scene, actors[group], parameters)
            frames = render_clip(spec, parameters["frame_size"])
            group_name = f"g{group + 1:02d}"
            clip_id = f"{name}_{group_name}_c{index // num_groups + 1:02d}"
            relative = f"{name}/{clip_id}.avi"
            _write_avi(folder / relative, frames, parameters["fps"])
            split = "test" if group in test_groups else "train"
            lines[split].append(f"{relative} {label} {group_name}")
            clips.append(
                {
                    "clip_id": clip_id,
                    "path": relative,
                    "label": label,
                    "class_name": name,
                    "group": group_name,
                    "split": split,
                    "num_frames": len(frames),
                    "frames_sha1": hashlib.sha1(frames.tobytes()).hexdigest(),
                    # With manifest["actors"][group] as "actor": render_clip's input.
                    "spec": {k: v for k, v in spec.items() if k != "actor"},
                }
            )
    (folder / SPLITS_DIR).mkdir()
    listed = {CLASSES_FILE: names, TRAIN_LIST: lines["train"], TEST_LIST: lines["test"]}
    for list_name, entries in listed.items():
        (folder / SPLITS_DIR / list_name).write_text("".join(f"{e}\n" for e in entries))
    manifest = {
        "format": "msl_keras generated clips",
        "parameters": parameters,
        "classes": names,
        "actors": actors,
        "test_groups": [f"g{group + 1:02d}" for group in sorted(test_groups)],
        "clips": clips,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _write_avi(path, frames, fps):
    """Encodes RGB frames `(n, H, W, 3)` as MJPG AVI and checks they decode back."""
    height, width = frames.shape[1:3]
    fourcc, size = cv2.VideoWriter_fourcc(*FOURCC), (width, height)
    # OpenCV's own MJPEG writer needs no FFmpeg; fall back to any backend otherwise.
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, size)
    if writer.isOpened():
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
    else:
        writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise DatasetError(
            f"This OpenCV ({cv2.__version__}) cannot write {FOURCC} AVI files "
            f"('{path}'). Install opencv-python (it ships the MJPEG writer)."
        )
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    decoded = 0
    ok, frame = capture.read()
    while ok and frame.shape == (height, width, 3):
        decoded += 1
        ok, frame = capture.read()
    capture.release()
    if decoded != len(frames):
        raise DatasetError(
            f"'{path}': {len(frames)} frames of {width}x{height} written, {decoded} "
            f"decode back with this OpenCV ({cv2.__version__}). Install "
            "opencv-python with FFmpeg support."
        )


def _rng(seed, *keys):
    """The generator of one random draw, seeded by (seed, what, ...): each draw has its
    own, so a clip does not change when another one does."""
    return np.random.default_rng([int(seed), *[int(key) for key in keys]])


def _hsv_to_rgb(hue, saturation, value):
    """OpenCV HSV (hue 0-180, saturation and value 0-255) -> RGB ints."""
    pixel = np.array([[[hue, saturation, value]]], dtype=np.uint8)
    return [int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0]]


def _draw_actor(seed, group, num_groups):
    """Actor `group`'s looks (the same in every class); shirt hues spread around."""
    origin = _rng(seed, 1).uniform(0, 180)
    rng = _rng(seed, 1, group)
    u = rng.uniform
    hue = (origin + 180.0 * group / num_groups + u(-8, 8)) % 180
    return {
        "shirt": _hsv_to_rgb(hue, u(150, 240), u(70, 150)),
        "trousers": _hsv_to_rgb(u(90, 130), u(40, 120), u(30, 60)),
        "skin": list(_SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))]),
        "size": float(u(0.9, 1.1)),
    }


def _draw_scenes(seed, label, num_classes, per_class):
    """Scene index of each clip of class `label`, shuffled: `round(CONTEXT_PROBABILITY
    * per_class)` show the class's own scene, the others cycle through the others'."""
    own = int(round(CONTEXT_PROBABILITY * per_class))
    others = [scene for scene in range(num_classes) if scene != label]
    scenes = [label] * own + [others[i % len(others)] for i in range(per_class - own)]
    return [int(scene) for scene in _rng(seed, 2, label).permutation(scenes)]


def _draw_clip(seed, label, index, scene, actor, parameters):
    """Every random quantity of one clip, as plain JSON values."""
    rng = _rng(seed, 3, label, index)

    def u(low, high):
        return float(rng.uniform(low, high))

    shortest = math.ceil(MIN_LENGTH_FRACTION * parameters["num_frames"])
    length = int(rng.integers(shortest, parameters["num_frames"] + 1))
    hue = 180.0 * scene / parameters["num_classes"]
    return {
        "action": ACTIONS[label],
        "scene": scene,
        "length": length,
        "seed": [int(seed), 3, label, index],
        "onset": int(rng.integers(0, max(1, length // 8) + 1)),
        # The motion completes after this share of the frames after onset, then holds.
        "duration": u(0.75, 1.0),
        "amplitude": u(0.8, 1.2),
        "start": [u(-0.05, 0.05), u(-0.04, 0.04)],
        "background": {
            "color": _hsv_to_rgb((hue + u(-6, 6)) % 180, u(80, 130), u(165, 205)),
            "texture_seed": int(rng.integers(2**31)),
            "floor": u(0.78, 0.86),
        },
        "distractor": {
            "color": _hsv_to_rgb(u(0, 180), u(0, 255), u(40, 255)),
            "start": [u(0.05, 0.95), u(0.05, 0.6)],
            "velocity": [u(-0.012, 0.012), u(-0.008, 0.008)],
            "size": u(0.06, 0.1),
        },
        "noise_seed": int(rng.integers(2**31)),
        "actor": actor,
    }


_SHIFT = 4  # sub-pixel precision of the cv2 drawing calls: 1/16 pixel
_SCALE = 1 << _SHIFT
_SQUARE = ((-1, -1), (1, -1), (1, 1), (-1, 1))


def _fixed(x, y):
    return (int(round(x * _SCALE)), int(round(y * _SCALE)))


def _polygon(frame, points, color):
    corners = np.array([_fixed(x, y) for x, y in points], np.int32)
    cv2.fillConvexPoly(frame, corners, color, cv2.LINE_AA, _SHIFT)


def render_clip(spec, frame_size):
    """uint8 RGB frames `(spec["length"], height, width, 3)` of one clip, drawn from
    its `spec` (`_draw_clip`'s dict). From the manifest, exactly (same `frames_sha1`):

    ```python
    clip = manifest["clips"][0]
    actor = manifest["actors"][int(clip["group"][1:]) - 1]
    frames = render_clip({**clip["spec"], "actor": actor}, (width, height))
    ```
    """
    width, height = frame_size
    background = _render_background(spec["background"], width, height)
    noise_rng = np.random.default_rng(spec["noise_seed"])
    frames = np.empty((spec["length"], height, width, 3), np.uint8)
    for t in range(spec["length"]):
        frame = background.copy()
        _draw_distractor(frame, spec["distractor"], t)
        _draw_figure(frame, spec["actor"], _pose(spec, t, width, height), height)
        noisy = frame.astype(np.float32) + noise_rng.normal(0.0, NOISE_STD, frame.shape)
        frames[t] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return frames


def _render_background(background, width, height):
    """A scene: a hue, a smooth texture and a darker floor band. uint8 (H, W, 3)."""
    rng = np.random.default_rng(background["texture_seed"])
    coarse = rng.normal(0.0, 14.0, (4, 5, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.asarray(background["color"], np.float32) + texture
    image[int(round(background["floor"] * height)) :] *= 0.78
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _draw_distractor(frame, distractor, t):
    height, width = frame.shape[:2]
    x = (distractor["start"][0] + distractor["velocity"][0] * t) % 1.0 * width
    y = (distractor["start"][1] + distractor["velocity"][1] * t) % 1.0 * height
    half = distractor["size"] * height / 2
    corners = [(x + dx * half, y + dy * half) for dx, dy in _SQUARE]
    _polygon(frame, corners, distractor["color"])


def _pose(spec, t, width, height):
    """The actor at frame `t`: `x`, `feet` (pixels), `scale` (1 = idle size), `squash`
    (of torso and legs), limb angles `arms`, `legs` (left, right; degrees from straight
    down, positive towards +x). `p`: 0 before onset, 1 when the action is complete."""
    span = max(1.0, spec["duration"] * (spec["length"] - 1 - spec["onset"]))
    p = float(np.clip((t - spec["onset"]) / span, 0.0, 1.0))
    a = spec["amplitude"]
    x = (0.47 + spec["start"][0]) * width
    feet = (0.8 + spec["start"][1]) * height
    scale, squash = 1.0, 1.0
    arms, legs = [-12.0, 12.0], [-8.0, 8.0]
    action = spec["action"]
    if action in ("walk_right", "walk_left"):
        direction = 1.0 if action == "walk_right" else -1.0
        distance = a * 0.28 * width * p
        x += direction * distance
        swing = 28.0 * math.sin(distance / (0.09 * height) * math.pi) * min(1.0, 4 * p)
        legs = [legs[0] + swing, legs[1] - swing]
        arms = [arms[0] - swing * 0.8, arms[1] + swing * 0.8]
    elif action == "jump":
        feet -= a * 0.3 * height * p
        legs = [-8.0 - 30.0 * p, 8.0 + 30.0 * p]
        arms = [-12.0 - 45.0 * p, 12.0 + 45.0 * p]
    elif action == "approach":
        scale = 1.0 + 0.8 * a * p
        feet += 0.12 * height * p
    elif action == "retreat":
        scale = 1.0 - 0.4 * a * p
        feet -= 0.08 * height * p
    elif action == "wave":
        raised = min(1.0, 1.6 * p)
        waving = max(0.0, 1.6 * p - 0.6)
        arms = [arms[0], 12.0 + 140.0 * a * raised + 28.0 * waving * math.sin(t * 1.1)]
    elif action == "sit_down":
        squash = 1.0 - 0.38 * a * p
        legs = [-8.0 - 50.0 * p, 8.0 + 50.0 * p]
    elif action == "kick":
        raised = min(1.0, 1.5 * p)
        legs = [legs[0], 8.0 + 75.0 * a * raised]
        arms = [arms[0] - 25.0 * raised, arms[1]]
    return dict(x=x, feet=feet, scale=scale, squash=squash, arms=arms, legs=legs)


def _limb(frame, start, angle, length, color, thickness):
    radians = math.radians(angle)
    end = (start[0] + length * math.sin(radians), start[1] + length * math.cos(radians))
    cv2.line(frame, _fixed(*start), _fixed(*end), color, thickness, cv2.LINE_AA, _SHIFT)


def _draw_figure(frame, actor, pose, height):
    """A stick figure standing on `pose["feet"]`; about 40% of the frame height tall."""
    unit = height / 48.0 * actor["size"] * pose["scale"]
    x, feet, squash = pose["x"], pose["feet"], pose["squash"]
    leg, torso, head = 6.5 * unit * squash, 7.5 * unit * squash, 2.8 * unit
    hip = feet - leg
    shoulder = hip - torso
    thickness = max(1, int(round(2.0 * unit)))
    for angle in pose["legs"]:
        _limb(frame, (x, hip), angle, leg, actor["trousers"], thickness)
    half = 2.6 * unit
    body = [(x - half, shoulder), (x + half, shoulder)]
    body += [(x + half * 0.8, hip), (x - half * 0.8, hip)]
    _polygon(frame, body, actor["shirt"])
    for side, angle in zip((-1, 1), pose["arms"]):
        root = (x + side * half, shoulder + 0.8 * unit)
        _limb(frame, root, angle, 6.0 * unit, actor["shirt"], thickness)
    centre = _fixed(x, shoulder - head - 0.3 * unit)
    radius = int(round(head * _SCALE))
    cv2.circle(frame, centre, radius, actor["skin"], -1, cv2.LINE_AA, _SHIFT)
