"""Figures of the stages: accuracy curves (Figs. 5-6), streamed probabilities, CAMs (Fig. 7).

Every function draws with matplotlib's non-interactive Agg backend, writes one image file and
returns its path, so it runs on a headless server and in tests.
"""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_accuracy_curves(
    curves, path, title="", chance=None, xlabel="frames observed (t)", styles=None
):
    """Accuracy against the number of observed steps, one line per curve (paper Figs. 5-6).

    Args:
        curves: mapping `label -> accuracy (T,)` in [0, 1]; step t is plotted at x = t
            (1-based). Curves may have different lengths.
        path: the image file to write (`.png`, `.pdf`, ...).
        title: figure title.
        chance: optional chance level (e.g. `1 / num_classes`), drawn dashed.
        xlabel: x-axis label.
        styles: optional `label -> matplotlib line kwargs` (e.g. `{"ls": "--"}`).

    Returns:
        `Path` of the written file.
    """
    if not curves:
        raise ValueError("plot_accuracy_curves needs at least one curve. Received: {}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, values in curves.items():
        values = np.asarray(values, dtype=float).reshape(-1)
        style = {"lw": 1.8, **((styles or {}).get(label, {}))}
        ax.plot(
            np.arange(1, len(values) + 1), 100.0 * values, label=str(label), **style
        )
    if chance is not None:
        ax.axhline(100.0 * chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_stream_probabilities(
    probs, class_names, path, true_label=None, top=5, title=""
):
    """Per-frame class probabilities of a streamed video, for `predict`.

    Args:
        probs: `(T, N)` probabilities (pooled or per frame) after each observed frame.
        class_names: the N class names.
        path: the image file to write.
        true_label: optional true class index; its line is drawn thick and black.
        top: the classes drawn: the `top` highest at the last frame (plus the true one).
        title: figure title.

    Returns:
        `Path` of the written file.
    """
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(
            "plot_stream_probabilities needs probs of shape (frames, len(class_names)). "
            f"Received: probs.shape={probs.shape}, {len(class_names)} class names"
        )
    shown = list(np.argsort(-probs[-1])[:top])
    if true_label is not None and int(true_label) not in shown:
        shown.append(int(true_label))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    frames = np.arange(1, len(probs) + 1)
    for k in shown:
        is_true = true_label is not None and k == int(true_label)
        ax.plot(
            frames,
            probs[:, k],
            label=f"{class_names[k]}{' (true)' if is_true else ''}",
            lw=3 if is_true else 1.5,
            color="black" if is_true else None,
        )
    ax.set_xlabel("frames observed")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _upsample(heatmap, height, width):
    import cv2

    heatmap = np.asarray(heatmap, dtype=np.float32)
    span = float(heatmap.max() - heatmap.min())
    heatmap = (heatmap - heatmap.min()) / span if span > 0 else np.zeros_like(heatmap)
    return cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)


def plot_cam(frame, context_map, action_map, path, title=""):
    """A frame and the mean conv5 activations of the two streams overlaid (paper Fig. 7).

    Args:
        frame: uint8 `(H, W, 3)` RGB frame.
        context_map: `(h, w)` map of the context-aware stream, e.g. the channel mean of
            its conv5_3 output.
        action_map: `(h, w)` map of the action-aware stream (its conv5_3 masked by the
            CAM, Eq. 3, channel mean).
        path: the image file to write.
        title: figure title.

    Each map is min-max normalised and resized to the frame (bilinear) before overlaying.

    Returns:
        `Path` of the written file.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            f"plot_cam needs an (H, W, 3) RGB frame. Received: shape={frame.shape}"
        )
    height, width = frame.shape[:2]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    axes[0].imshow(frame)
    axes[0].set_title("frame")
    for ax, heatmap, name in (
        (axes[1], context_map, "context-aware conv5"),
        (axes[2], action_map, "action-aware conv5"),
    ):
        ax.imshow(frame)
        ax.imshow(
            _upsample(heatmap, height, width), cmap="jet", alpha=0.5, vmin=0, vmax=1
        )
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
