"""Generated clips: a small action-anticipation data set written as real videos.

The demo, the notebooks and the tests run on these clips, through the same decoder
(`msl_keras.data.video.read_frames`) as UCF-101, JHMDB-21 and UT-Interaction. They are
drawn so that anticipation is a real problem at tiny scale:

- **The action unfolds over time.** Every clip shows one actor (a stick figure: head,
  torso, arms, legs) standing at the same place in the same idle pose. After a short
  random onset the class-specific motion starts and grows until the end of the clip:
  `walk_right` translates right, `jump` rises, `approach` grows (comes closer), `wave`
  raises one arm and waves it, and so on (`ACTIONS`). The first frames look alike for
  every class; the last frames decide it.
- **The scene hints at the class without deciding it.** The background (a hue, a
  smooth texture and a floor band) comes from the class's own scene with probability
  `CONTEXT_PROBABILITY` (0.6) and from another class's scene otherwise, so a
  context-only model beats chance from the first frame but stays far from perfect.
- **The action is local.** The actor covers about 5% of the frame (up to 20% when it
  approaches): the action-aware stream has something to localise.
- **Nuisances.** Actors ("groups", like UCF-101's `gXX`) differ in clothes, skin and
  size, never in motion; start position, onset, speed and amplitude vary per clip; a
  distractor square drifts across the frame; every frame gets pixel noise; clip length
  varies between 75% and 100% of `num_frames`, so padding and masking are exercised.

Layout written by `generate_dataset(root)`:

```
<root>/<class_name>/<clip_id>.avi     MJPG AVI, RGB content, `fps` frames per second
<root>/splits/classes.txt             one class name per line; line i = label i
<root>/splits/trainlist.txt           "<class_name>/<clip_id>.avi <label> <group>"
<root>/splits/testlist.txt            same format; the test groups only
<root>/manifest.json                  generator parameters, seed, per-clip metadata
```

Clip ids follow UCF-101: `<class_name>_g<group>_c<clip>`. Groups never straddle the
train and test lists; `read_generated` carves the validation groups out of the train
list.

Example:

```python
root = generate_dataset("data/generated")  # a few seconds; reused if already there
records = read_generated(root)  # [ClipRecord(clip_id, path, label, ...), ...]
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

from msl_keras.data.records import ClipRecord, carve_validation
from msl_keras.errors import DatasetError

# Bump when the rendering changes: a set written by another version is not reused.
GENERATOR_VERSION = 1
DEFAULT_ROOT = "data/generated"
ACTIONS = (
    "walk_right",
    "jump",
    "approach",
    "wave",
    "walk_left",
    "sit_down",
    "retreat",
    "kick",
)
CONTEXT_PROBABILITY = 0.6
MANIFEST_NAME = "manifest.json"
SPLITS_DIR = "splits"
CLASSES_FILE = "classes.txt"
TRAIN_LIST = "trainlist.txt"
TEST_LIST = "testlist.txt"
FOURCC = "MJPG"
JPEG_QUALITY = 90
# Per-frame Gaussian pixel noise (standard deviation, 0-255 scale).
NOISE_STD = 6.0
MIN_LENGTH_FRACTION = 0.75

_SKIN_TONES = ((241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36))


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
    """Writes the generated clips, split lists and manifest under `root`.

    Args:
        root: folder to write to (created; its parent must be writable).
        num_classes: how many of `ACTIONS` to use (the first `num_classes`).
        clips_per_class: clips per class, spread evenly over the groups.
        num_frames: frames of the longest clip; each clip has between
            `ceil(0.75 * num_frames)` and `num_frames` frames.
        frame_size: `(width, height)` of the frames in pixels.
        fps: frame rate written into the AVI files.
        num_groups: actors; the last `ceil(num_groups / 3)` form the test list.
        seed: the same seed gives the same frames (compare decoded arrays).
        overwrite: replace a set made with other parameters (otherwise an error), and
            regenerate even when the parameters match.

    Returns:
        `Path(root)`. When `root` already holds a complete set made with the same
        parameters it is returned as it is, without writing anything; an incomplete
        one (a clip deleted) is written again. The set is staged in a sibling folder
        and moved into `root` when complete.

    Raises:
        ValueError: a parameter is out of range.
        DatasetError: `root` holds another set (or other files) and `overwrite` is
            False, or this OpenCV cannot write and read back MJPG AVI files.
    """
    root = Path(root)
    parameters = _parameters(
        num_classes, clips_per_class, num_frames, frame_size, fps, num_groups, seed
    )
    manifest = _load_manifest(root)
    if manifest is not None and not overwrite:
        if manifest.get("parameters") != parameters:
            raise DatasetError(
                f"'{root}' holds a generated set made with other parameters: "
                f"{manifest.get('parameters')}. Received: {parameters}. Pass "
                "overwrite=True to replace it, or choose another root."
            )
        if _is_complete(root, manifest):
            return root
    elif manifest is None and root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DatasetError(
            f"'{root}' is not empty and holds no generated set ({MANIFEST_NAME} is "
            "missing). Choose an empty or new folder, or pass overwrite=True to write "
            "the generated set into it."
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        new_manifest = _write_set(staging, parameters)
        _replace_set(staging, root, manifest, new_manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def read_generated(root=DEFAULT_ROOT, validation_fraction=0.2, seed=0):
    """Reads the generated set's split lists into clip records.

    Args:
        root: the folder `generate_dataset` wrote.
        validation_fraction: share of the train-list groups moved, whole, to the
            "validation" role (0 keeps them all in "train").
        seed: chooses which groups become validation.

    Returns:
        list of `ClipRecord(clip_id, path, label, class_name, group, role)` with role
        "train", "validation" (groups carved from the train list) or "test" (the test
        list's own groups), train list first.

    Raises:
        DatasetError: the set is missing or incomplete.
    """
    root = Path(root)
    names = class_names(root)
    records = []
    for list_name, role in ((TRAIN_LIST, "train"), (TEST_LIST, "test")):
        for line_number, line in enumerate(_read_lines(root, list_name), start=1):
            parts = line.split()
            if (
                len(parts) != 3
                or not parts[1].isdecimal()
                or int(parts[1]) >= len(names)
            ):
                raise DatasetError(
                    f"{root / SPLITS_DIR / list_name}, line {line_number}: expected "
                    f"'<class_name>/<clip_id>.avi <label> <group>' with a label below "
                    f"{len(names)} (the classes of '{root / SPLITS_DIR / CLASSES_FILE}'). "
                    f"Received: {line!r}. {_regenerate_hint(root)}"
                )
            relative, label, group = parts[0], int(parts[1]), parts[2]
            path = root / relative
            if not path.is_file():
                raise DatasetError(
                    f"Clip '{path}' listed in {list_name} is missing. "
                    f"{_regenerate_hint(root)}"
                )
            records.append(
                ClipRecord(
                    clip_id=Path(relative).stem,
                    path=str(path.resolve()),
                    label=label,
                    class_name=names[label],
                    group=group,
                    role=role,
                )
            )
    if validation_fraction:
        records = list(
            carve_validation(records, fraction=validation_fraction, seed=seed)
        )
    return records


def class_names(root=DEFAULT_ROOT):
    """The class names of the set under `root` in label order (splits/classes.txt)."""
    return _read_lines(Path(root), CLASSES_FILE)


def _regenerate_hint(root):
    return (
        f"Create the clips with `msl_keras.data.generated.generate_dataset('{root}')` "
        f"or `msl-keras demo`."
    )


def _read_lines(root, name):
    path = root / SPLITS_DIR / name
    if not path.is_file():
        what = "folder" if not root.is_dir() else "split list"
        raise DatasetError(
            f"No generated data set at '{root}' ({what} '{path}' not found). "
            f"{_regenerate_hint(root)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"Split list '{path}' is not a text file ({error}). {_regenerate_hint(root)}"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _parameters(
    num_classes, clips_per_class, num_frames, frame_size, fps, num_groups, seed
):
    """Validates the arguments; returns them as the manifest records them."""
    if not 2 <= int(num_classes) <= len(ACTIONS):
        raise ValueError(
            f"num_classes must be between 2 and {len(ACTIONS)} ({', '.join(ACTIONS)}). "
            f"Received: num_classes={num_classes}"
        )
    if int(num_groups) < 2:
        raise ValueError(
            "num_groups must be at least 2 (train and test groups are disjoint). "
            f"Received: num_groups={num_groups}"
        )
    if int(clips_per_class) < int(num_groups):
        raise ValueError(
            "clips_per_class must be at least num_groups, so every group shows every "
            f"class. Received: clips_per_class={clips_per_class}, "
            f"num_groups={num_groups}"
        )
    if int(num_frames) < 4:
        raise ValueError(
            f"num_frames must be at least 4. Received: num_frames={num_frames}"
        )
    if len(frame_size) != 2 or min(frame_size) < 16:
        raise ValueError(
            "frame_size must be (width, height), both at least 16 pixels. "
            f"Received: frame_size={frame_size}"
        )
    if not fps > 0:
        raise ValueError(f"fps must be positive. Received: fps={fps}")
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
    splits = root / SPLITS_DIR
    if not all(
        (splits / name).is_file() for name in (CLASSES_FILE, TRAIN_LIST, TEST_LIST)
    ):
        return False
    return all((root / clip["path"]).is_file() for clip in manifest.get("clips", []))


def _replace_set(staging, root, old_manifest, new_manifest):
    """Moves the staged set into `root`, removing what an older set owned there."""
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    owned = {SPLITS_DIR} | set(new_manifest["classes"])
    if old_manifest is not None:
        owned |= set(old_manifest.get("classes", []))
    for name in owned:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    for name in [SPLITS_DIR, *new_manifest["classes"]]:
        os.replace(staging / name, root / name)
    # The manifest goes last: a set with a manifest is complete.
    os.replace(staging / MANIFEST_NAME, root / MANIFEST_NAME)


def _write_set(folder, parameters):
    """Renders, encodes and checks every clip; writes the lists and the manifest."""
    num_classes = parameters["num_classes"]
    per_class = parameters["clips_per_class"]
    num_groups = parameters["num_groups"]
    seed = parameters["seed"]
    width, height = parameters["frame_size"]
    names = list(ACTIONS[:num_classes])
    test_groups = set(range(num_groups - math.ceil(num_groups / 3), num_groups))
    actors = [_draw_actor(seed, group, num_groups) for group in range(num_groups)]

    clips, lines = [], {TRAIN_LIST: [], TEST_LIST: []}
    for label, name in enumerate(names):
        (folder / name).mkdir()
        scenes = _draw_scenes(seed, label, num_classes, per_class)
        for index in range(per_class):
            group = index % num_groups
            spec = _draw_clip(
                seed, label, index, scenes[index], actors[group], parameters
            )
            frames = render_clip(spec, (width, height))
            clip_id = f"{name}_g{group + 1:02d}_c{index // num_groups + 1:02d}"
            relative = f"{name}/{clip_id}.avi"
            _write_avi(folder / relative, frames, parameters["fps"])
            split = TEST_LIST if group in test_groups else TRAIN_LIST
            lines[split].append(f"{relative} {label} g{group + 1:02d}")
            clips.append(
                {
                    "clip_id": clip_id,
                    "path": relative,
                    "label": label,
                    "class_name": name,
                    "group": f"g{group + 1:02d}",
                    "split": "test" if split == TEST_LIST else "train",
                    "num_frames": len(frames),
                    "frames_sha1": hashlib.sha1(frames.tobytes()).hexdigest(),
                    # With manifest["actors"][group] as "actor": render_clip's input.
                    "spec": {
                        key: value for key, value in spec.items() if key != "actor"
                    },
                }
            )

    splits = folder / SPLITS_DIR
    splits.mkdir()
    (splits / CLASSES_FILE).write_text("".join(f"{name}\n" for name in names))
    for list_name, list_lines in lines.items():
        (splits / list_name).write_text("".join(f"{line}\n" for line in list_lines))
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
    fourcc = cv2.VideoWriter_fourcc(*FOURCC)
    # OpenCV's own MJPEG writer needs no FFmpeg; fall back to any backend otherwise.
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, (width, height)
    )
    if writer.isOpened():
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
    else:
        writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
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
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if frame.shape != (height, width, 3):
            break
        decoded += 1
    capture.release()
    if decoded != len(frames):
        raise DatasetError(
            f"'{path}' was written with {len(frames)} frames of {width}x{height} but "
            f"{decoded} decode back with this OpenCV ({cv2.__version__}): its {FOURCC} "
            "codec does not round-trip. Install opencv-python with FFmpeg support."
        )


# ------------------------------------------------------------------------------------
# Random draws. Each uses its own generator seeded by (seed, what, ...), so a clip does
# not change when another one does.


def _rng(seed, *keys):
    return np.random.default_rng([int(seed), *[int(key) for key in keys]])


def _hsv_to_rgb(hue, saturation, value):
    """OpenCV HSV (hue 0-180, saturation and value 0-255) -> RGB ints."""
    pixel = np.array([[[hue, saturation, value]]], dtype=np.uint8)
    return [int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0]]


def _draw_actor(seed, group, num_groups):
    """The appearance of actor `group`: the same distribution for every class.

    Shirt hues are spread around the colour wheel from a random origin, so the actors
    differ from each other.
    """
    origin = _rng(seed, 1).uniform(0, 180)
    rng = _rng(seed, 1, group)
    hue = (origin + 180.0 * group / num_groups + rng.uniform(-8, 8)) % 180
    return {
        "shirt": _hsv_to_rgb(hue, rng.uniform(150, 240), rng.uniform(70, 150)),
        "trousers": _hsv_to_rgb(
            rng.uniform(90, 130), rng.uniform(40, 120), rng.uniform(30, 60)
        ),
        "skin": list(_SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))]),
        "size": float(rng.uniform(0.9, 1.1)),
    }


def _draw_scenes(seed, label, num_classes, per_class):
    """Scene index of each clip of class `label`.

    Exactly `round(CONTEXT_PROBABILITY * per_class)` clips show the class's own scene;
    the others cycle through the other classes' scenes, in a shuffled order.
    """
    rng = _rng(seed, 2, label)
    own = int(round(CONTEXT_PROBABILITY * per_class))
    others = [scene for scene in range(num_classes) if scene != label]
    scenes = [label] * own + [others[i % len(others)] for i in range(per_class - own)]
    return [int(scene) for scene in rng.permutation(scenes)]


def _draw_clip(seed, label, index, scene, actor, parameters):
    """Every random quantity of one clip, as plain JSON values."""
    rng = _rng(seed, 3, label, index)
    num_frames = parameters["num_frames"]
    num_classes = parameters["num_classes"]
    length = int(
        rng.integers(math.ceil(MIN_LENGTH_FRACTION * num_frames), num_frames + 1)
    )
    onset = int(rng.integers(0, max(1, length // 8) + 1))
    return {
        "action": ACTIONS[label],
        "scene": scene,
        "length": length,
        "seed": [int(seed), 3, label, index],
        "onset": onset,
        # The motion completes after this share of the frames after onset, then holds.
        "duration": float(rng.uniform(0.75, 1.0)),
        "amplitude": float(rng.uniform(0.8, 1.2)),
        "start": [float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.04, 0.04))],
        "background": {
            "color": _hsv_to_rgb(
                (180.0 * scene / num_classes + rng.uniform(-6, 6)) % 180,
                rng.uniform(80, 130),
                rng.uniform(165, 205),
            ),
            "texture_seed": int(rng.integers(2**31)),
            "floor": float(rng.uniform(0.78, 0.86)),
        },
        "distractor": {
            "color": _hsv_to_rgb(
                rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 255)
            ),
            "start": [float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.6))],
            "velocity": [
                float(rng.uniform(-0.012, 0.012)),
                float(rng.uniform(-0.008, 0.008)),
            ],
            "size": float(rng.uniform(0.06, 0.1)),
        },
        "noise_seed": int(rng.integers(2**31)),
        "actor": actor,
    }


# ------------------------------------------------------------------------------------
# Rendering.

_SHIFT = 4  # sub-pixel precision of the cv2 drawing calls: 1/16 pixel
_SCALE = 1 << _SHIFT


def _fixed(x, y):
    return (int(round(x * _SCALE)), int(round(y * _SCALE)))


def render_clip(spec, frame_size):
    """Draws one clip from its `spec`: every random quantity of the clip.

    The manifest stores each clip's spec without its actor; this re-renders a clip
    exactly (its sha1 is the manifest's `frames_sha1`):

    ```python
    clip = manifest["clips"][0]
    actor = manifest["actors"][int(clip["group"][1:]) - 1]
    size = manifest["parameters"]["frame_size"]
    frames = render_clip({**clip["spec"], "actor": actor}, size)
    ```

    Args:
        spec: dict of the clip's draws (see `_draw_clip`) with its "actor".
        frame_size: `(width, height)`.

    Returns:
        uint8 RGB frames `(spec["length"], height, width, 3)`.
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
    floor = int(round(background["floor"] * height))
    image[floor:] *= 0.78
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _draw_distractor(frame, distractor, t):
    height, width = frame.shape[:2]
    x = (distractor["start"][0] + distractor["velocity"][0] * t) % 1.0 * width
    y = (distractor["start"][1] + distractor["velocity"][1] * t) % 1.0 * height
    half = distractor["size"] * height / 2
    corners = np.array(
        [
            _fixed(x + dx * half, y + dy * half)
            for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ],
        np.int32,
    )
    cv2.fillConvexPoly(frame, corners, distractor["color"], cv2.LINE_AA, _SHIFT)


def _progress(spec, t):
    """How far the action has unfolded at frame `t`: 0 before onset, 1 when complete."""
    span = max(1.0, spec["duration"] * (spec["length"] - 1 - spec["onset"]))
    return float(np.clip((t - spec["onset"]) / span, 0.0, 1.0))


def _pose(spec, t, width, height):
    """Where the actor is and how its limbs point at frame `t`.

    Returns a dict: `x`, `feet` (pixels), `scale` (1 = the idle size), `squash`
    (vertical factor of the torso and legs) and limb angles in degrees from straight
    down, positive towards +x: `arms` (left, right), `legs` (left, right).
    """
    p = _progress(spec, t)
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
    else:  # pragma: no cover - ACTIONS and this function are edited together
        raise ValueError(f"No motion defined for action {action!r}")
    return {
        "x": x,
        "feet": feet,
        "scale": scale,
        "squash": squash,
        "arms": arms,
        "legs": legs,
    }


def _limb(frame, start, angle, length, color, thickness):
    radians = math.radians(angle)
    end = (start[0] + length * math.sin(radians), start[1] + length * math.cos(radians))
    cv2.line(frame, _fixed(*start), _fixed(*end), color, thickness, cv2.LINE_AA, _SHIFT)


def _draw_figure(frame, actor, pose, height):
    """A stick figure standing on `pose["feet"]`; about 40% of the frame height tall."""
    unit = height / 48.0 * actor["size"] * pose["scale"]
    squash = pose["squash"]
    x, feet = pose["x"], pose["feet"]
    leg, torso, head = 6.5 * unit * squash, 7.5 * unit * squash, 2.8 * unit
    hip = (x, feet - leg)
    shoulder = (x, hip[1] - torso)
    thickness = max(1, int(round(2.0 * unit)))
    for angle in pose["legs"]:
        _limb(frame, hip, angle, leg, actor["trousers"], thickness)
    half = 2.6 * unit
    body = np.array(
        [
            _fixed(x - half, shoulder[1]),
            _fixed(x + half, shoulder[1]),
            _fixed(x + half * 0.8, hip[1]),
            _fixed(x - half * 0.8, hip[1]),
        ],
        np.int32,
    )
    cv2.fillConvexPoly(frame, body, actor["shirt"], cv2.LINE_AA, _SHIFT)
    arm_root = (x, shoulder[1] + 0.8 * unit)
    for side, angle in zip((-1, 1), pose["arms"]):
        _limb(
            frame,
            (arm_root[0] + side * half, arm_root[1]),
            angle,
            6.0 * unit,
            actor["shirt"],
            thickness,
        )
    cv2.circle(
        frame,
        _fixed(x, shoulder[1] - head - 0.3 * unit),
        int(round(head * _SCALE)),
        actor["skin"],
        -1,
        cv2.LINE_AA,
        _SHIFT,
    )
