"""Fuzzing the video reader and the split-file readers, seeded and time-bounded.

Every input is either read or refused with `VideoDecodeError` / `DatasetError` whose
message names the file: no other exception type, no crash, no hang. The inputs are
random bytes, truncations and byte flips of valid files, inserted or deleted lines and
random text, for about 10 s in all (the readers run with validation_fraction=0:
carving validation groups out of a mutated list is not parsing) (`MSL_KERAS_FUZZ_SECONDS` changes the budget,
`MSL_KERAS_FUZZ_SEED` the seed; a failure prints both, and the case, to replay it).

The video fuzz runs in a child process (`python tests/test_fuzz.py video ...`): OpenCV
decodes in native code, and a crash there must fail this test, not end the test run.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SEED = int(os.environ.get("MSL_KERAS_FUZZ_SEED", "0"))
BUDGET = float(os.environ.get("MSL_KERAS_FUZZ_SECONDS", "10"))
VIDEO_SHARE = 0.5  # of the budget; the split readers get the rest


def _mutations(rng, data):
    """One mutated copy of `data` (bytes): random bytes, a truncation, byte flips, a
    duplicated or deleted chunk, or random (printable or not) text."""
    kind = rng.integers(6)
    if kind == 0 or not data:
        return "random bytes", rng.integers(
            0, 256, rng.integers(0, 4096), np.uint8
        ).tobytes()
    if kind == 1:
        return "truncated", data[: rng.integers(0, len(data))]
    if kind == 2:
        out = bytearray(data)
        for i in rng.integers(0, len(out), rng.integers(1, 16)):
            out[i] = rng.integers(256)
        return "bytes flipped", bytes(out)
    if kind == 3:
        start = rng.integers(0, len(data))
        end = min(len(data), start + rng.integers(1, 64))
        return "chunk duplicated", data[:end] + data[start:end] + data[end:]
    if kind == 4:
        start = rng.integers(0, len(data))
        return "chunk deleted", data[:start] + data[start + rng.integers(1, 64) :]
    alphabet = list(" \t\n\r/._-0123456789abcXYZ") + ["\x00", "\u00b2", "\u00e9"]
    text = "".join(rng.choice(alphabet, rng.integers(1, 200)))
    return "random text", text.encode("utf8")


# ---------------------------------------------------------------------------- video


def _video_fuzz(workdir, seed, seconds):
    """Runs in the child process; returns a report dict (failures listed)."""
    import cv2

    from msl_keras.data.video import count_frames, read_frames
    from msl_keras.errors import VideoDecodeError

    workdir = Path(workdir)
    rng = np.random.default_rng(seed)
    valid = workdir / "valid.avi"
    writer = cv2.VideoWriter(str(valid), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), (40 * i, 255 - 30 * i, 90), np.uint8))
    writer.release()
    data = valid.read_bytes()
    png = cv2.imencode(".png", np.full((12, 16, 3), 100, np.uint8))[1].tobytes()
    cases, failures, outcomes = 0, [], {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cases += 1
        if rng.random() < 0.75:
            how, content = _mutations(rng, data)
            path = workdir / f"case{cases:05d}.avi"
            path.write_bytes(content)
        else:  # a frame folder with one damaged, missing or extra image
            how, content = _mutations(rng, png)
            path = workdir / f"folder{cases:05d}"
            path.mkdir()
            numbers = [1, 2, 3]
            if rng.random() < 0.3:
                numbers.remove(int(rng.integers(1, 4)))
                how += ", a frame missing"
            for n in numbers:
                (path / f"{n:05d}.png").write_bytes(png)
            (path / f"{numbers[int(rng.integers(len(numbers)))]:05d}.png").write_bytes(
                content
            )
        try:
            n = count_frames(path)
            frames = read_frames(path)
            assert (
                frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
            )
            assert len(frames) == n, f"count_frames {n} != {len(frames)} frames read"
            read_frames(path, [n - 1])
            with pytest.raises(VideoDecodeError):
                read_frames(path, [n])  # beyond the end: refused, named
            outcomes["read"] = outcomes.get("read", 0) + 1
        except VideoDecodeError as error:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            if path.name not in str(error):
                failures.append(f"{how} {path.name}: message lacks the file: {error}")
        except Exception as error:  # noqa: BLE001 - the point: report any other type
            failures.append(f"{how} {path.name}: {type(error).__name__}: {error}")
    return {"cases": cases, "outcomes": outcomes, "failures": failures[:20]}


def test_video_reader_fuzz(tmp_path):
    seconds = BUDGET * VIDEO_SHARE
    child = subprocess.run(
        [sys.executable, __file__, "video", str(tmp_path), str(SEED), str(seconds)],
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.returncode == 0, (
        f"video fuzz crashed (seed {SEED}, exit {child.returncode}):\n{child.stderr[-3000:]}"
    )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], f"seed {SEED}: {report['failures']}"
    assert report["cases"] >= 20 and report["outcomes"].get("refused", 0) > 0


# ---------------------------------------------------------------------------- split files


def make_ucf_tree(root):
    from msl_keras.data import ucf101

    lists = root / ucf101.LISTS_FOLDER
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 Archery\r\n")
    train, test = [], []
    for c, cls in enumerate(("ApplyEyeMakeup", "Archery"), 1):
        folder = root / ucf101.VIDEOS_FOLDER / cls
        folder.mkdir(parents=True)
        for g in (1, 2, 3):
            name = f"v_{cls}_g{g:02d}_c01.avi"
            (folder / name).write_bytes(b"x")
            (test if g == 1 else train).append((f"{cls}/{name}", c))
    (lists / "trainlist01.txt").write_text("".join(f"{p} {c}\r\n" for p, c in train))
    (lists / "testlist01.txt").write_text("".join(f"{p}\r\n" for p, _ in test))
    files = [lists / n for n in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
    return files, lambda: ucf101.read_ucf101(root, 1, validation_fraction=0)


def make_jhmdb_tree(root):
    from msl_keras.data import jhmdb

    splits = root / "splits"
    splits.mkdir(parents=True)
    for cls in jhmdb.CLASSES:
        (splits / f"{cls}_test_split1.txt").write_text("")
        (root / "videos" / cls).mkdir(parents=True)
    lines = []
    for i, role in enumerate(("1", "1", "2", "0")):
        name = f"clip{i}_catch_f_cm_np1_fr_med_{i}"
        (root / "videos" / "catch" / f"{name}.avi").write_bytes(b"x")
        lines.append(f"{name}.avi {role} \n")
    path = splits / "catch_test_split1.txt"
    path.write_text("".join(lines))
    return [path], lambda: jhmdb.read_jhmdb(
        root / "videos", 1, splits_dir=splits, validation_fraction=0
    )


def make_generated_tree(root):
    from msl_keras.data import generated

    splits = root / generated.SPLITS_DIR
    splits.mkdir(parents=True)
    (splits / generated.CLASSES_FILE).write_text("walk_right\njump\n")
    train, test = [], []
    for label, cls in enumerate(("walk_right", "jump")):
        (root / cls).mkdir()
        for g in (1, 2, 3):
            name = f"{cls}_g{g}_c0.avi"
            (root / cls / name).write_bytes(b"x")
            (test if g == 3 else train).append(f"{cls}/{name} {label} g{g}\n")
    (splits / generated.TRAIN_LIST).write_text("".join(train))
    (splits / generated.TEST_LIST).write_text("".join(test))
    files = [
        splits / n
        for n in (generated.CLASSES_FILE, generated.TRAIN_LIST, generated.TEST_LIST)
    ]
    return files, lambda: generated.read_generated(root, validation_fraction=0)


@pytest.mark.parametrize("reader", ["ucf101", "jhmdb", "generated"])
def test_split_file_reader_fuzz(reader, tmp_path):
    from msl_keras.errors import DatasetError

    make = {
        "ucf101": make_ucf_tree,
        "jhmdb": make_jhmdb_tree,
        "generated": make_generated_tree,
    }[reader]
    files, read = make(tmp_path / "tree")
    originals = {path: path.read_bytes() for path in files}
    assert read(), "the unmutated tree must read"
    rng = np.random.default_rng([SEED, len(reader)])
    seconds = BUDGET * (1 - VIDEO_SHARE) / 3
    deadline = time.monotonic() + seconds
    cases, refused, failures = 0, 0, []
    while time.monotonic() < deadline and len(failures) < 10:
        cases += 1
        path = files[int(rng.integers(len(files)))]
        how, content = _mutations(rng, originals[path])
        path.write_bytes(content)
        try:
            records = read()
            assert all(r.role in ("train", "validation", "test") for r in records)
        except DatasetError as error:
            refused += 1
            if path.name not in str(error):
                failures.append(f"{how} of {path.name} {content[:80]!r}: {error}")
        except Exception as error:  # noqa: BLE001 - the point: report any other type
            failures.append(
                f"{how} of {path.name} {content[:80]!r}: {type(error).__name__}: {error}"
            )
        finally:
            path.write_bytes(originals[path])
    assert failures == [], f"{reader}, seed {SEED}:\n" + "\n".join(failures)
    assert cases >= 20 and refused > 0


if __name__ == "__main__" and sys.argv[1:2] == ["video"]:
    _, _, workdir, seed, seconds = sys.argv
    print(json.dumps(_video_fuzz(workdir, int(seed), float(seconds))))
