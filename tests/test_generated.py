"""Generated clips: real videos, deterministic, grouped splits, learnable as claimed.

The learnability tests use nearest-class-mean classifiers on hand features, evaluated
leave-one-group-out (an actor is never both in training and evaluation). They check the
properties the demo depends on: the scene alone beats chance but does not decide the
class, the actor does not tell the class in the first frames but does in the last, and
accuracy rises with the frames observed until the motion decides.
"""

import hashlib
import json
import time

import cv2
import numpy as np
import pytest

from msl_keras.data.generated import (
    ACTIONS,
    class_names,
    generate_dataset,
    read_generated,
    render_clip,
)
from msl_keras.data.records import ROLES
from msl_keras.errors import DatasetError

SMALL = dict(num_classes=3, clips_per_class=3, num_frames=8, num_groups=3)


def decode(path):
    """Every frame of a video, RGB `(n, H, W, 3)` uint8, with OpenCV directly."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return np.stack(frames)


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    """The default set (4 classes x 24 clips) and how long it took to write."""
    root = tmp_path_factory.mktemp("data") / "generated"
    start = time.perf_counter()
    generate_dataset(root)
    return root, time.perf_counter() - start


@pytest.fixture(scope="module")
def clips(default_set):
    """Records of the default set (no validation carved) and their decoded frames."""
    root, _ = default_set
    records = read_generated(root, validation_fraction=0)
    return records, [decode(r.path).astype(np.float32) for r in records]


def test_default_set_is_written_in_seconds(default_set):
    root, seconds = default_set
    assert seconds < 10.0
    assert len(list(root.glob("*/*.avi"))) == 4 * 24


def test_layout_counts_and_roles(default_set):
    root, _ = default_set
    assert class_names(root) == list(ACTIONS[:4])
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["parameters"]["seed"] == 0
    assert manifest["test_groups"] == ["g05", "g06"]
    records = read_generated(root)
    assert len(records) == 96
    for name in ACTIONS[:4]:
        assert sum(r.class_name == name for r in records) == 24
    # 6 groups: 2 test, 1 of the 4 train-list groups carved into validation.
    by_role = {role: [r for r in records if r.role == role] for role in ROLES}
    assert {role: len(rs) for role, rs in by_role.items()} == {
        "train": 48,
        "validation": 16,
        "test": 32,
    }
    groups = {role: {r.group for r in rs} for role, rs in by_role.items()}
    assert groups["test"] == {"g05", "g06"}
    assert len(groups["validation"]) == 1
    assert not groups["train"] & groups["validation"]
    assert not (groups["train"] | groups["validation"]) & groups["test"]
    for rs in by_role.values():
        assert {r.label for r in rs} == {0, 1, 2, 3}
    for r in records:
        assert r.path.endswith(f"{r.class_name}/{r.clip_id}.avi")
        assert r.class_name == ACTIONS[r.label]
        assert f"_{r.group}_" in r.clip_id


def test_validation_is_carved_from_train_groups_only(default_set):
    root, _ = default_set
    plain = read_generated(root, validation_fraction=0)
    assert {r.role for r in plain} == {"train", "test"}
    carved = read_generated(root, validation_fraction=0.5, seed=3)
    assert [r.clip_id for r in carved] == [r.clip_id for r in plain]
    for before, after in zip(plain, carved):
        if before.role == "test":
            assert after.role == "test"
    assert len({r.group for r in carved if r.role == "validation"}) == 2


def test_clips_decode_to_the_stated_frames_and_size(default_set, clips):
    root, _ = default_set
    records, frames = clips
    manifest = json.loads((root / "manifest.json").read_text())
    stated = {clip["clip_id"]: clip["num_frames"] for clip in manifest["clips"]}
    lengths = []
    for record, clip in zip(records, frames):
        assert clip.shape[1:] == (48, 64, 3)
        assert clip.shape[0] == stated[record.clip_id]
        lengths.append(clip.shape[0])
    # Lengths vary (padding and masking get exercised) within [0.75 T, T].
    assert min(lengths) >= 24 and max(lengths) <= 32 and len(set(lengths)) > 4


def test_the_projects_decoder_reads_the_same_frames(clips):
    from msl_keras.data.video import read_frames

    records, frames = clips
    for record, clip in list(zip(records, frames))[:3]:
        np.testing.assert_array_equal(read_frames(record.path), clip.astype(np.uint8))


def test_videos_hold_the_rendered_rgb_frames(default_set, clips):
    # Re-rendering from the manifest gives the stored checksum, and the decoded video is
    # the rendered clip up to JPEG loss (about 5 grey levels on average, mostly the
    # pixel noise); with swapped channels the backgrounds differ by 14 levels or more.
    root, _ = default_set
    manifest = json.loads((root / "manifest.json").read_text())
    records, frames = clips
    decoded = {r.clip_id: f for r, f in zip(records, frames)}
    for clip in manifest["clips"][::23]:
        actor = manifest["actors"][int(clip["group"][1:]) - 1]
        rendered = render_clip({**clip["spec"], "actor": actor}, (64, 48))
        assert hashlib.sha1(rendered.tobytes()).hexdigest() == clip["frames_sha1"]
        error = np.abs(decoded[clip["clip_id"]] - rendered.astype(np.float32)).mean()
        assert error < 7.0
        swapped = np.abs(decoded[clip["clip_id"]] - rendered[..., ::-1]).mean()
        assert swapped > 12.0


def test_same_seed_gives_the_same_frames_another_seed_does_not(tmp_path):
    a = generate_dataset(tmp_path / "a", seed=5, **SMALL)
    b = generate_dataset(tmp_path / "b", seed=5, **SMALL)
    c = generate_dataset(tmp_path / "c", seed=6, **SMALL)
    clips_a = sorted(a.glob("*/*.avi"))
    assert len(clips_a) == 9
    for path in clips_a:
        np.testing.assert_array_equal(decode(path), decode(b / path.relative_to(a)))
    for path in clips_a:
        one, other = decode(path), decode(c / path.relative_to(a))
        assert one.shape != other.shape or not np.array_equal(one, other)
    manifest_a = json.loads((a / "manifest.json").read_text())
    manifest_b = json.loads((b / "manifest.json").read_text())
    assert manifest_a == manifest_b


def test_an_existing_set_is_reused_and_another_refused(tmp_path):
    root = generate_dataset(tmp_path / "set", seed=1, **SMALL)
    clip = next(root.glob("*/*.avi"))
    stamps = (clip.stat().st_mtime_ns, (root / "manifest.json").stat().st_mtime_ns)
    assert generate_dataset(root, seed=1, **SMALL) == root
    assert (
        clip.stat().st_mtime_ns,
        (root / "manifest.json").stat().st_mtime_ns,
    ) == stamps

    with pytest.raises(DatasetError, match="overwrite=True"):
        generate_dataset(root, seed=2, **SMALL)

    generate_dataset(root, seed=2, overwrite=True, **{**SMALL, "num_classes": 2})
    assert class_names(root) == list(ACTIONS[:2])
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [*ACTIONS[:2], "splits", "manifest.json"]
    )
    assert json.loads((root / "manifest.json").read_text())["parameters"]["seed"] == 2
    assert not list(tmp_path.glob(".set.partial-*"))


def test_a_set_with_a_missing_clip_is_regenerated_or_reported(tmp_path):
    root = generate_dataset(tmp_path / "set", **SMALL)
    clip = next(root.glob("*/*.avi"))
    clip.unlink()
    with pytest.raises(DatasetError, match=clip.name):
        read_generated(root, validation_fraction=0)
    generate_dataset(root, **SMALL)
    assert clip.is_file()


def test_a_foreign_folder_is_not_written_into(tmp_path):
    (tmp_path / "mine.txt").write_text("not a generated set")
    with pytest.raises(DatasetError, match="manifest.json"):
        generate_dataset(tmp_path, **SMALL)


def test_missing_root_says_how_to_make_it(tmp_path):
    for call in (read_generated, class_names):
        with pytest.raises(DatasetError, match="generate_dataset") as info:
            call(tmp_path / "nowhere")
        assert "msl-keras demo" in str(info.value)


@pytest.mark.parametrize(
    "arguments",
    [
        dict(num_classes=len(ACTIONS) + 1),
        dict(num_classes=1),
        dict(num_groups=1),
        dict(clips_per_class=4, num_groups=6),
        dict(frame_size=(8, 8)),
    ],
)
def test_invalid_parameters_are_refused(tmp_path, arguments):
    with pytest.raises(ValueError, match="Received"):
        generate_dataset(tmp_path / "set", **arguments)
    assert not (tmp_path / "set").exists()


# ------------------------------------------------------------------------------------
# Learnability, with hand features and nearest class means.


def nearest_class_mean_accuracy(features, labels, groups):
    """Leave-one-group-out accuracy of a nearest-class-mean classifier.

    Distances are over features scaled by their pooled within-class standard deviation.
    """
    num_classes = labels.max() + 1
    correct = 0
    for group in np.unique(groups):
        held = groups == group
        x, y = features[~held], labels[~held]
        means = np.stack([x[y == k].mean(0) for k in range(num_classes)])
        scale = (x - means[y]).std(0) + 1e-3
        distance = (((features[held][:, None] - means[None]) / scale) ** 2).sum(-1)
        correct += (distance.argmin(1) == labels[held]).sum()
    return correct / len(labels)


def scene_colour(clip, observed):
    """Mean colour of the top four rows (background) over the observed frames: (3,)."""
    return clip[:observed, :4].mean(axis=(0, 1, 2))


def motion(clip, observed):
    """Last observed frame minus the first, grey, area-downsampled to 4x3: (12,)."""

    def grey(frame):
        return cv2.resize(frame.mean(-1), (4, 3), interpolation=cv2.INTER_AREA)

    return (grey(clip[observed - 1]) - grey(clip[0])).ravel()


def accuracy(clips, feature, fraction=None, observed=None):
    """Accuracy of `feature(clip, observed)` when `observed` (or this `fraction` of
    each clip, at least 2) frames are seen."""
    records, frames = clips
    features = np.stack(
        [
            feature(clip, observed or max(2, round(fraction * len(clip))))
            for clip in frames
        ]
    )
    labels = np.array([r.label for r in records])
    groups = np.array([r.group for r in records])
    return nearest_class_mean_accuracy(features, labels, groups)


def test_the_scene_hints_at_the_class_but_does_not_decide_it(clips):
    # Bayes accuracy from the scene alone is CONTEXT_PROBABILITY = 0.6; chance is 0.25.
    scene_only = accuracy(clips, scene_colour, observed=1)
    assert 0.45 < scene_only < 0.75


def test_single_frames_the_first_is_ambiguous_the_last_decides(clips):
    # The actor stands at the same place in the same pose in every class's first frame;
    # in the last frame its place, size and pose give the class away (what a per-frame
    # CNN learns from).
    def actor(frame):
        grey = frame.mean(-1)
        grey = grey - np.median(grey)  # the scene's brightness out; the actor is dark
        return cv2.resize(grey, (16, 12), interpolation=cv2.INTER_AREA).ravel()

    assert accuracy(clips, lambda clip, observed: actor(clip[0]), observed=1) < 0.4
    assert accuracy(clips, lambda clip, observed: actor(clip[-1]), observed=1) > 0.85


def test_the_motion_is_ambiguous_early_and_decisive_late(clips):
    assert accuracy(clips, motion, observed=2) < 0.5
    assert accuracy(clips, motion, fraction=1.0) > 0.9


def test_accuracy_rises_with_the_frames_observed(clips):
    def scene_and_motion(clip, observed):
        return np.concatenate([scene_colour(clip, observed), motion(clip, observed)])

    early = accuracy(clips, scene_and_motion, observed=2)
    middle = accuracy(clips, scene_and_motion, fraction=0.5)
    late = accuracy(clips, scene_and_motion, fraction=1.0)
    assert early > 0.4  # well above chance (0.25) from the first frames
    assert middle > early + 0.2
    assert late > 0.9 and late > early + 0.25
