"""The paper's speed claim: how long the full model takes on a 50-frame clip.

    python experiments/speed_claim.py --root data/UCF-101 --scale paper   # on a GPU machine
    python experiments/speed_claim.py --root data/generated --scale cpu   # the demo's model
    python experiments/speed_claim.py --run-dir runs/experiments/runs/<run> --fold split1

Compared with the paper (Sec. 1): "On a single GPU, our model analyzes a short video (e.g.,
50 frames) 14 times faster than [28] and [8]" (methods that need optical flow). The paper
gives no absolute time. This script times the FULL model (VGG-16 trunk, context- and
action-aware heads, the multi-stage LSTM, temporal average pooling) on `--frames` decoded
frames (default 50, 320x240 like UCF-101), two ways:

- `clip`: the whole clip at once (one batched trunk pass, one causal LSTM pass), as
  `extract` + `evaluate` do: frames per second of offline analysis;
- `streaming`: frame by frame with the LSTM state kept (`models.StreamingStep`, as
  `msl-keras predict`): per-frame latency, batch 1.

Decoding is not timed; preprocessing (resize, mean subtraction) is. As a yardstick for
the flow-based methods it also times OpenCV's Farneback optical flow between consecutive
frames of the same clip (`--no-flow` to skip): the cheapest dense flow, a lower bound of
what [28] and [8] spend before their own CNNs run. Without `--run-dir` the models are
built at the scale's sizes with random weights (the weights do not change the time).

`measure_clip_speed(...)` is the reusable hook (the benchmarks import it): it returns the
timings as a dict. Writes `<output-dir>/speed_claim/results.json` and `speed_claim.png`.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

NUM_CLASSES = {"ucf101": 101, "jhmdb": 21, "ut_interaction": 6}
PAPER_CLAIM = "50 frames analysed 14x faster than optical-flow methods [28], [8] (one GPU)"


def build_full_model(config, num_classes):
    """`(extractor, lstm)` at `config`'s sizes, freshly initialised (MS-LSTM, predicted CAM).

    The trunk takes `config.cnn.weights` (None: random; that does not change the time).
    """
    from msl_keras.models.feature_extractor import build_feature_extractor
    from msl_keras.pipeline.lstm_training import build_lstm

    cnn = config.cnn
    size = int(cnn.input_size)
    extractor = build_feature_extractor(
        num_classes,
        input_shape=(size, size, 3),
        width=cnn.width,
        fc_units=cnn.fc_units,
        cam_filters=cnn.cam_filters,
        weights=cnn.weights,
        cam_class="predicted" if cnn.cam_class == "oracle" else cnn.cam_class,
        top_k=min(cnn.top_k, num_classes),
        dropout=cnn.dropout,
    )
    lstm = build_lstm(config, num_classes, extractor.context_dim, extractor.action_dim)
    return extractor, lstm


def _time(fn, repeats):
    fn()  # warm-up: traces the tf.functions
    times = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure_clip_speed(
    extractor,
    lstm,
    input_size,
    num_frames=50,
    frame_size=(320, 240),
    repeats=3,
    batch_size=None,
    flow=True,
    seed=0,
):
    """Times the full model on one clip of `num_frames` frames; the reusable hook.

    Args:
        extractor: a `TwoStreamFeatureExtractor` (trunk + both heads).
        lstm: a `MultiStageLSTM` (or `SingleStageLSTM`) taking the extractor's features.
        input_size: network input size (`config.cnn.input_size`).
        num_frames: frames in the clip (the paper: 50).
        frame_size: `(width, height)` of the decoded frames (random uint8 content).
        repeats: timed repeats after one warm-up; the median is reported.
        batch_size: frames per trunk pass in `clip` mode (default: the whole clip).
        flow: also time OpenCV Farneback optical flow over the clip.
        seed: seeds the random frames.

    Returns:
        dict: `clip_seconds`, `clip_fps` (whole clip at once), `streaming_seconds`,
        `streaming_fps`, `streaming_ms_per_frame` (frame by frame, state kept),
        `flow_seconds` / `flow_fps` (or None), `*_all` lists of every repeat, and the
        sizes used.
    """
    from msl_keras.callbacks import causal_forward
    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.models.streaming import StreamingStep

    width, height = frame_size
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    size = (int(input_size), int(input_size))
    streams = lstm.input_streams
    batch = int(batch_size or num_frames)

    def whole_clip():
        x = np.asarray(preprocess_frames(frames, size))
        features = extractor.extract(x, batch_size=batch)
        probs = causal_forward(lstm, {s: features[s][None] for s in streams}, 1)
        final = probs["stage2" if "stage2" in probs else "stage1"][0]  # (T, N)
        return np.cumsum(final, axis=0) / np.arange(1, len(final) + 1)[:, None]

    stream = StreamingStep(extractor, lstm, input_size)

    def streaming():
        stream.run(frames)

    clip_times = _time(whole_clip, repeats)
    stream_times = _time(streaming, repeats)
    flow_times = None
    if flow:
        import cv2

        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]

        def optical_flow():
            for a, b in zip(grey[:-1], grey[1:]):
                cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

        flow_times = _time(optical_flow, repeats)
    clip_s = statistics.median(clip_times)
    stream_s = statistics.median(stream_times)
    flow_s = statistics.median(flow_times) if flow_times else None
    return {
        "num_frames": int(num_frames),
        "frame_size": [int(width), int(height)],
        "input_size": int(input_size),
        "clip_seconds": clip_s,
        "clip_fps": num_frames / clip_s,
        "clip_seconds_all": clip_times,
        "streaming_seconds": stream_s,
        "streaming_fps": num_frames / stream_s,
        "streaming_ms_per_frame": 1000 * stream_s / num_frames,
        "streaming_seconds_all": stream_times,
        "flow_seconds": flow_s,
        "flow_fps": None if flow_s is None else (num_frames - 1) / flow_s,
        "flow_seconds_all": flow_times,
        "repeats": int(repeats),
    }


def _extra(parser):
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (50)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--frame-size", type=int, nargs=2, default=(320, 240), metavar=("W", "H")
    )
    parser.add_argument("--no-flow", action="store_true", help="skip the optical flow")
    parser.add_argument("--run-dir", help="time the trained models of this run directory")
    parser.add_argument("--fold", help="fold of --run-dir (default: its only fold)")


def main(argv=None):
    args = common.parse_args(__doc__, "ucf101", argv, extra=_extra)
    start = time.perf_counter()
    if args.run_dir:
        from msl_keras.runs import RunDirectory, load_extractor, load_lstm

        run = RunDirectory.open(args.run_dir)
        config = run.config
        fold = args.fold or next(
            p.name for p in sorted(run.root.iterdir()) if (p / "cnn").is_dir()
        )
        extractor = load_extractor(config, run, fold)
        lstm_dirs = sorted((run.fold_dir(fold) / "lstm").glob("ms_lstm_*"))
        if not lstm_dirs:
            raise SystemExit(f"No trained MS-LSTM in {run.fold_dir(fold) / 'lstm'}.")
        lstm = load_lstm(lstm_dirs[0])
        source = f"trained models of {run.root} fold {fold} ({lstm_dirs[0].name})"
        num_classes = extractor.num_classes
    else:
        if args.weights is None:
            args.weights = "none"  # the time does not depend on the weights' values
        config = common.scale_config(args)
        if args.dataset == "generated":
            from msl_keras.data.generated import class_names

            try:
                num_classes = len(class_names(args.root))
            except Exception:  # not generated yet: the generator's default
                num_classes = 4
        else:
            num_classes = NUM_CLASSES[args.dataset]
        extractor, lstm = build_full_model(config, num_classes)
        source = f"built at scale '{args.scale}' ({common.trunk_description(config)})"
    cnn = config.cnn
    timing = measure_clip_speed(
        extractor,
        lstm,
        cnn.input_size,
        num_frames=args.frames,
        frame_size=tuple(args.frame_size),
        repeats=args.repeats,
        flow=not args.no_flow,
        seed=args.seed,
    )
    sizes = (
        f"input {cnn.input_size}x{cnn.input_size}, VGG-16 width {cnn.width:g}, fc "
        f"{cnn.fc_units}, LSTM {config.lstm.units} units, {num_classes} classes"
    )
    modes = [
        ("whole clip at once (extract + one LSTM pass)", "clip"),
        ("frame by frame, state kept (predict)", "streaming"),
    ]
    if timing["flow_seconds"] is not None:
        modes.append(("Farneback optical flow only (yardstick)", "flow"))
        timing["flow_over_clip"] = timing["flow_seconds"] / timing["clip_seconds"]
    rows = [
        [label, f"{timing[f'{key}_seconds']:.3f}", f"{timing[f'{key}_fps']:.1f}"]
        for label, key in modes
    ]
    machine = common.machine(args.code)
    device = (
        "GPU " + ", ".join(machine["gpus"])
        if machine["gpus"]
        else f"CPU ({machine['cpu_count']} cores)"
    )
    text = common.format_table(
        f"Speed of the full model on a {args.frames}-frame clip of "
        f"{args.frame_size[0]}x{args.frame_size[1]} frames on {device}\n({sizes}; {source})",
        ["mode", f"s per {args.frames} frames", "frames/s"],
        rows,
    )
    out_dir = common.experiment_dir(args, "speed_claim")
    plot = _plot(timing, out_dir / "speed_claim.png", f"{args.frames} frames, {device}")
    payload = {
        "experiment": "speed_claim",
        "command": common.command_line("speed_claim.py", args),
        "paper": PAPER_CLAIM,
        "scale": args.scale,
        "models": source,
        "sizes": sizes,
        "device": device,
        "timing": timing,
        "config": config.to_dict(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": machine,
        "plot": str(plot),
        "text": text,
    }
    path = common.write_results(out_dir, payload)
    print("\n" + text)
    if timing["flow_seconds"] is not None:
        print(
            f"Farneback flow alone: {timing['flow_over_clip']:.2f} x the time of our whole "
            "model on this machine (the paper, on a GPU: flow-based methods, flow plus "
            "their CNNs, take 14 x ours)"
        )
    print(f"results: {path}\nplot: {plot}")
    return payload


def _plot(timing, path, title):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    labels = ["whole clip", "frame by frame"]
    values = [timing["clip_seconds"], timing["streaming_seconds"]]
    if timing["flow_seconds"] is not None:
        labels.append("Farneback flow")
        values.append(timing["flow_seconds"])
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(labels, values, color=["C0", "C1", "grey"][: len(values)])
    ax.set_xlabel("seconds per clip")
    ax.set_title(title, fontsize=10)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f} s", va="center", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


if __name__ == "__main__":
    main()
