"""Row 4: accuracy at every observed length, one causal pass vs T runs on prefixes.

    python benchmarks/bench_all_lengths.py --size paper

Ours (what `pipeline/evaluation.py` does): ONE forward pass of the MS-LSTM over the test
clips (`callbacks.causal_forward`), then `metrics.accuracy_vs_steps` for t = 1..T, raw
and temporally average-pooled. The original re-ran the model once per prefix length:
for t = 1..T, the clips cut after t steps and zero-padded to T, a full forward pass, and
the prediction read at step t (pooled: the mean of that run's steps 1..t). Both must give
IDENTICAL accuracies (asserted) and the same probabilities; target: >= 20x faster.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 20.0


def prefix_accuracies(model, features, labels, lengths, batch_size):
    """The original scheme: one full forward pass per prefix length t = 1..T.

    Returns:
        `(raw (T,), pooled (T,), probs_at_t (clips, T, N))`: accuracies after t steps
        and the probability each prefix run gives at its last observed step.
    """
    import numpy as np

    from msl_keras.callbacks import causal_forward

    clips, steps = features["context"].shape[:2]
    raw, pooled, last = [], [], []
    for t in range(1, steps + 1):
        seen = np.minimum(t, lengths)  # a clip shorter than t is seen whole
        keep = np.arange(steps)[None, :] < seen[:, None]  # (clips, T)
        prefix = {k: v * keep[..., None] for k, v in features.items()}
        probs = causal_forward(model, prefix, batch_size=batch_size)["stage2"]
        at_t = probs[np.arange(clips), seen - 1]  # (clips, N)
        running = np.cumsum(probs * keep[..., None], axis=1)[np.arange(clips), seen - 1]
        mean = running / seen[:, None]
        raw.append(np.mean(at_t.argmax(-1) == labels))
        pooled.append(np.mean(mean.argmax(-1) == labels))
        last.append(at_t)
    return np.asarray(raw), np.asarray(pooled), np.stack(last, axis=1)


def run(args):
    import numpy as np

    from msl_keras import metrics
    from msl_keras.callbacks import causal_forward

    spec = args.spec
    clips = spec.eval_clips
    features, labels, lengths = C.lstm_features(spec, clips)
    with C.device_scope(args.device):
        model = C.build_lstm(spec)
        results = {}

        def one_pass():
            probs = causal_forward(model, features, batch_size=clips)["stage2"]
            results["one"] = (
                metrics.accuracy_vs_steps(probs, labels, lengths, pooled=False),
                metrics.accuracy_vs_steps(probs, labels, lengths, pooled=True),
                probs,
            )

        def prefixes():
            results["prefix"] = prefix_accuracies(
                model, features, labels, lengths, clips
            )

        times = C.alternate({"one": one_pass, "prefix": prefixes}, args.repeats)
    raw, pooled, probs = results["one"]
    raw_p, pooled_p, last_p = results["prefix"]
    # The one pass's probability at each clip's step min(t, length), for every t.
    seen = np.minimum(np.arange(1, spec.steps + 1)[None, :], lengths[:, None])
    at_t = probs[np.arange(clips)[:, None], seen - 1]  # (clips, T, N)
    difference = float(np.max(np.abs(at_t - last_p)))
    assert np.array_equal(raw, raw_p) and np.array_equal(pooled, pooled_p), (
        "one causal pass and the per-prefix runs disagree: "
        f"raw {raw} vs {raw_p}, pooled {pooled} vs {pooled_p}"
    )
    values = C.ratios(times["prefix"], times["one"])
    row = C.Row(
        key="4",
        what=f"accuracy at every observed length (T = {spec.steps}, {clips} clips, "
        f"{spec.units} units), raw and pooled",
        against=f"{spec.steps} separate runs on zero-padded prefixes",
        target=f">= {TARGET:g}x, identical numbers",
        values=values,
        met=C.at_least(values, TARGET) and difference <= 1e-6,
        detail=(
            f"s: one pass {C.fmt_spread(times['one'], 3)}, prefixes "
            f"{C.fmt_spread(times['prefix'], 2)}. Accuracies identical (asserted) at "
            f"all {spec.steps} lengths, raw and pooled; max |probability difference| "
            f"{difference:.1e}."
        ),
        size=spec.name + (" (8 clips)" if spec.name == "paper" else ""),
        load=C.load(),
    )
    del model
    C.cleanup()
    return [row]


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
