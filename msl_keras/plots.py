"""Figures: accuracy curves (Figs. 5-6), streamed probabilities, CAMs (Fig. 7).

Every function draws on a matplotlib `Figure` without pyplot (no GUI backend, no global
state: headless servers, tests), writes one image file and returns its `Path`.
"""

from pathlib import Path

import numpy as np


def _figure(*grid, figsize, **kwargs):
    """A new `Figure` and its axes: `Figure.subplots(*grid, **kwargs)`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_accuracy_curves(
    curves, path, title="", chance=None, xlabel=None, styles=None, paper_points=None
):
    """Accuracy curves, one line per label (paper Figs. 5-6).

    Args:
        curves: `label -> accuracy (T,)` in [0, 1], drawn against the steps observed
            (x = t, 1-based; lengths may differ), or `label -> (ratios (n,), accuracy
            (n,))` tuples, drawn with markers against the observed part of each clip.
        chance: optional chance level (e.g. `1 / num_classes`), drawn dashed.
        styles: optional `label -> matplotlib line kwargs` (e.g. `{"ls": "--"}`).
        paper_points: optional `label -> [(ratio, accuracy %), ...]`, the paper's
            numbers, drawn as stars in the colour of the curve with the same position.
    """
    if not curves:
        raise ValueError("plot_accuracy_curves needs at least one curve. Received: {}")
    by_ratio = all(isinstance(values, tuple) for values in curves.values())
    fig, ax = _figure(figsize=(7, 4.5))
    for number, (label, values) in enumerate(curves.items()):
        if by_ratio:
            x, values = 100 * np.asarray(values[0]), np.asarray(values[1], dtype=float)
            style = {"marker": "o", "ms": 3, "color": f"C{number}"}
        else:
            values = np.asarray(values, dtype=float).reshape(-1)
            x, style = np.arange(1, len(values) + 1), {"lw": 1.8}
        style.update((styles or {}).get(label, {}))
        ax.plot(x, 100.0 * values, label=str(label), **style)
    for number, (label, points) in enumerate((paper_points or {}).items()):
        ratios, accuracies = zip(*points)
        ax.scatter(
            100 * np.asarray(ratios), accuracies, marker="*", s=90, color=f"C{number}",
            edgecolor="black", zorder=5, label=f"paper: {label}",
        )  # fmt: skip
    if chance is not None:
        ax.axhline(100.0 * chance, color="grey", ls="--", lw=1, label="chance")
    if xlabel is None:
        xlabel = "observed part of each clip (%)" if by_ratio else "frames observed (t)"
    ax.set(xlabel=xlabel, ylabel="accuracy (%)", ylim=(0, 102))
    ax.grid(alpha=0.3)
    if by_ratio:
        ax.set_xlim(0, 102)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=7)
    else:
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_stream_probabilities(
    probs, class_names, path, true_label=None, top=5, title="", frame_numbers=None,
    thumbnails=None, strip=6, trained_steps=None, committed_step=None,
):  # fmt: skip
    """Per-frame class probabilities of a streamed video, for `predict`.

    Args:
        probs: `(T, N)` probabilities (pooled or per frame) after each observed frame.
        true_label: optional true class index; its line is drawn thick and black.
        top: the classes drawn: the `top` highest at the last frame (plus the true one).
        frame_numbers: optional `(T,)` frame number of each step (x axis; default 1..T).
        thumbnails: optional T uint8 RGB images, one per step: `strip` of them, evenly
            spread (plus the committed one), are drawn under the curves.
        trained_steps: optional training T: steps past it are shaded ("past training").
        committed_step: optional 0-based step of the anticipation moment, drawn as a
            red line labelled with the class of `probs` there.
    """
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise ValueError(
            "plot_stream_probabilities needs probs of shape (frames, len(class_names))."
            f" Received: probs.shape={probs.shape}, {len(class_names)} class names"
        )
    steps = len(probs)
    x = np.arange(1, steps + 1) if frame_numbers is None else np.asarray(frame_numbers)
    if x.shape != (steps,) or (thumbnails is not None and len(thumbnails) != steps):
        raise ValueError(
            "plot_stream_probabilities needs one frame number and one thumbnail per "
            f"step. Received: {steps} steps, frame_numbers.shape={x.shape}, "
            f"{None if thumbnails is None else len(thumbnails)} thumbnails"
        )
    true_label = None if true_label is None else int(true_label)
    shown = list(np.argsort(-probs[-1])[:top])
    if true_label is not None and true_label not in shown:
        shown.append(true_label)
    if thumbnails is None:
        fig, ax = _figure(figsize=(7, 4.5))
    else:
        fig, (ax, ax_strip) = _figure(
            2, 1, figsize=(8, 5.6), sharex=True, height_ratios=(3, 1)
        )
    for k in shown:
        is_true = k == true_label
        ax.plot(
            x, probs[:, k], label=f"{class_names[k]}{' (true)' if is_true else ''}",
            lw=3 if is_true else 1.5, color="black" if is_true else None,
        )  # fmt: skip
    if trained_steps is not None and steps > trained_steps:
        ax.axvspan(
            x[trained_steps], x[-1], color="grey", alpha=0.12,
            label=f"past training T={trained_steps}",
        )  # fmt: skip
    if committed_step is not None:
        ax.axvline(
            x[committed_step], color="red", ls="--", lw=1.2,
            label=f"committed: {class_names[int(np.argmax(probs[committed_step]))]} "
            f"(frame {x[committed_step]})",
        )  # fmt: skip
    ax.set(ylabel="probability", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    if thumbnails is not None:
        _frame_strip(ax_strip, x, thumbnails, strip, committed_step)
    fig.axes[-1].set_xlabel("frame")  # the strip's when there is one
    return _save(fig, path)


def _frame_strip(ax, x, thumbnails, count, committed_step):
    """Thumbnails at their frame numbers on `ax`'s x axis (the committed one in red)."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    count = min(count, len(x))
    picked = set(np.linspace(0, len(x) - 1, count).round().astype(int))
    if committed_step is not None:
        # Keep the committed frame; drop the evenly spread ones that would overlap it
        # (closer than 3/4 of their spacing: a thumbnail is about that wide).
        spacing = (x[-1] - x[0]) / max(1, count - 1)
        far = {i for i in picked if abs(x[i] - x[committed_step]) >= 0.75 * spacing}
        picked = far | {int(committed_step)}
    height = max(np.asarray(t).shape[0] for t in thumbnails)
    for i in sorted(picked):
        committed = committed_step is not None and i == committed_step
        color, width = ("red", 2.5) if committed else ("grey", 0.8)
        box = AnnotationBbox(
            OffsetImage(np.asarray(thumbnails[i]), zoom=56 / height), (x[i], 0.5),
            frameon=True, pad=0.15, bboxprops={"edgecolor": color, "lw": width},
        )  # fmt: skip
        box.set_zorder(3 if committed else 2)
        ax.add_artist(box)
    if committed_step is not None:
        ax.axvline(x[committed_step], color="red", ls="--", lw=1.2, zorder=1)
    span = max(1, x[-1] - x[0])
    ax.set(ylim=(0, 1), yticks=[], xlim=(x[0] - 0.06 * span, x[-1] + 0.06 * span))
    ax.spines[["left", "right", "top"]].set_visible(False)


def plot_cam(frame, context_map, action_map, path, title=""):
    """A frame and the mean conv5 activations of the two streams overlaid (Fig. 7).

    `frame`: uint8 `(H, W, 3)` RGB. `context_map`, `action_map`: `(h, w)` maps of the
    context-aware stream (e.g. the channel mean of its conv5_3 output) and of the
    action-aware one (its conv5_3 masked by the CAM, Eq. 3, channel mean). Each map is
    min-max normalised and resized to the frame (bilinear), then overlaid.
    """
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            f"plot_cam needs an (H, W, 3) RGB frame. Received: shape={frame.shape}"
        )
    height, width = frame.shape[:2]
    fig, axes = _figure(1, 3, figsize=(10, 3.6))
    axes[0].imshow(frame)
    axes[0].set_title("frame")
    for ax, heatmap, name in (
        (axes[1], context_map, "context-aware conv5"),
        (axes[2], action_map, "action-aware conv5"),
    ):
        heatmap = np.asarray(heatmap, dtype=np.float32)
        low, span = heatmap.min(), float(np.ptp(heatmap))
        heatmap = (heatmap - low) / span if span > 0 else np.zeros_like(heatmap)
        heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
        ax.imshow(frame)
        ax.imshow(heatmap, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
