"""plots: each figure is written as an image; wrong shapes say what was received."""

import numpy as np
import pytest

from msl_keras.plots import plot_accuracy_curves, plot_cam, plot_stream_probabilities


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_curves(tmp_path):
    path = plot_accuracy_curves(
        {"ours": np.linspace(0.3, 0.8, 10), "CE": np.linspace(0.2, 0.7, 10)},
        tmp_path / "sub" / "acc.png",
        title="JHMDB",
        chance=1 / 21,
    )
    assert path == tmp_path / "sub" / "acc.png" and _is_png(path)
    with pytest.raises(ValueError, match="at least one curve"):
        plot_accuracy_curves({}, tmp_path / "x.png")


def test_stream_probabilities(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=12)
    path = plot_stream_probabilities(
        probs, list("abcd"), tmp_path / "s.png", true_label=2, top=2
    )
    assert _is_png(path)
    with pytest.raises(
        ValueError, match=r"Received: probs.shape=\(12, 4\), 3 class names"
    ):
        plot_stream_probabilities(probs, list("abc"), tmp_path / "bad.png")


def test_stream_probabilities_with_a_frame_strip(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=20)
    thumbnails = [rng.integers(0, 256, (16, 20, 3), dtype=np.uint8) for _ in range(20)]
    path = plot_stream_probabilities(
        probs, list("abc"), tmp_path / "strip.png", frame_numbers=np.arange(20) * 3 + 1,
        thumbnails=thumbnails, trained_steps=8, committed_step=11,
    )  # fmt: skip
    plain = plot_stream_probabilities(probs, list("abc"), tmp_path / "plain.png")
    assert _is_png(path) and path.stat().st_size > plain.stat().st_size  # thumbnails
    with pytest.raises(ValueError, match="19 thumbnails"):
        plot_stream_probabilities(
            probs, list("abc"), tmp_path / "bad.png", thumbnails=thumbnails[1:]
        )


def test_cam(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = plot_cam(frame, np.random.rand(3, 4), np.zeros((3, 4)), tmp_path / "cam.png")
    assert _is_png(path)
    with pytest.raises(ValueError, match=r"shape=\(48, 64\)"):
        plot_cam(
            frame[..., 0], np.zeros((3, 4)), np.zeros((3, 4)), tmp_path / "bad.png"
        )
