"""Row 10: how cost grows with work: extraction vs clips, the LSTM step vs T and units.

    python benchmarks/bench_growth.py --size paper

- extraction: the real `pipeline.extraction.extract` on 1, 2, 4 and 8 generated clips (a new
  store each time); a least-squares line of seconds against frames extracted must fit
  (R^2 >= 0.98): linear, no per-clip cost that grows with the dataset;
- LSTM: one MS-LSTM training step at T/5, T/2 and T (fixed units), and at units/4,
  units/2 and units (fixed T). The growth of the time, divided by the growth of the
  FLOPs (T: proportional; units: `U (D + U) + U (D + U + U)` per step), must stay near 1
  (<= 1.25x): the step costs what its arithmetic costs at every size.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

R2 = 0.98
EFFICIENCY = 1.25


def _fit(x, y):
    """Slope, intercept and R^2 of the least-squares line y = a x + b."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    a, b = np.polyfit(x, y, 1)
    residual = np.sum((y - (a * x + b)) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    return a, b, 1.0 - residual / max(total, 1e-30)


def extraction_growth(args, workdir):
    from msl_keras.pipeline.extraction import extract
    from msl_keras.pipeline.dataset_index import Fold

    spec = args.spec
    counts = (1, 2, 4, 8)
    frames_per_clip = {"paper": 16, "cpu": 32, "tiny": 8}[spec.name]
    config, index, run = C.stage_setup(
        workdir, spec, clips_per_class=3, frames=frames_per_clip
    )
    records = index.folds[0].records
    fits, times, frames = [], {n: [] for n in counts}, {}
    with C.device_scope(args.device):
        extractor = C.build_extractor(spec)
        warmup = Fold("warmup", records[:1])
        extract(config, index, warmup, run, extractor=extractor, verbose=0)
        for repeat in range(args.repeats):
            for n in counts:
                fold = Fold(f"n{n}_r{repeat}", records[:n])
                frames[n] = sum(min(spec.steps, _count(r.path)) for r in records[:n])
                start = C.clock()
                extract(config, index, fold, run, extractor=extractor, verbose=0)
                times[n].append(C.clock() - start)
            seconds = [times[n][-1] for n in counts]
            fits.append(_fit([frames[n] for n in counts], seconds))
    del extractor
    C.cleanup()
    return counts, times, frames, fits


_COUNTS = {}


def _count(path):
    from msl_keras.data.video import count_frames

    if path not in _COUNTS:
        _COUNTS[path] = count_frames(path)
    return _COUNTS[path]


def lstm_flops(spec, units, steps):
    """Multiply-add FLOPs of both LSTMs' forward per clip (gates: 4 units wide)."""
    d = spec.fc_units
    per_step = 2 * 4 * units * ((d + units) + (units + d + units))
    return per_step * steps


def lstm_growth(args):
    from bench_lstm_step import ms_lstm_step

    spec = args.spec
    steps = sorted({max(2, spec.steps // 5), max(2, spec.steps // 2), spec.steps})
    units = sorted({max(2, spec.units // 4), max(2, spec.units // 2), spec.units})
    if spec.name == "tiny":  # the end points only: seconds for CI
        steps, units = [steps[0], steps[-1]], [units[0], units[-1]]
    functions = {}
    with C.device_scope(args.device):
        for t in steps:
            functions[("T", t)] = ms_lstm_step(spec, steps=t)[0]
        for u in units:
            if u != spec.units:
                functions[("U", u)] = ms_lstm_step(spec, units=u)[0]
        times = C.alternate(functions, args.repeats)
    C.cleanup()
    times[("U", spec.units)] = times[("T", spec.steps)]
    return steps, units, times


def run(args):
    spec = args.spec
    with tempfile.TemporaryDirectory() as workdir:
        counts, ext_times, frames, fits = extraction_growth(args, workdir)
    steps, units, times = lstm_growth(args)
    r2 = [f[2] for f in fits]
    slopes = [f[0] for f in fits]
    intercepts = [f[1] for f in fits]
    t_lo, t_hi = steps[0], steps[-1]
    u_lo, u_hi = units[0], units[-1]
    t_growth = C.ratios(times[("T", t_hi)], times[("T", t_lo)])
    u_growth = C.ratios(times[("U", u_hi)], times[("U", u_lo)])
    t_flops = lstm_flops(spec, spec.units, t_hi) / lstm_flops(spec, spec.units, t_lo)
    u_flops = lstm_flops(spec, u_hi, spec.steps) / lstm_flops(spec, u_lo, spec.steps)
    t_eff = [g / t_flops for g in t_growth]
    u_eff = [g / u_flops for g in u_growth]

    def ms(key):
        return C.fmt_spread([1e3 * t for t in times[key]], 0)

    rows = [
        C.Row(
            key="10a",
            what=f"extraction time vs clips ({', '.join(map(str, counts))} clips, "
            "pipeline.extraction)",
            against="a straight line in frames extracted",
            target=f"linear (R^2 >= {R2})",
            values=r2,
            unit="",
            met=C.at_least(r2, R2),
            detail=(
                "R^2 of seconds vs frames; "
                + ", ".join(
                    f"{n} clips ({frames[n]} frames): {C.fmt_spread(ext_times[n])} s"
                    for n in counts
                )
                + f"; slope {1e3 * C.spread(slopes)[0]:.1f} ms/frame, intercept "
                f"{C.spread(intercepts)[0]:.2f} s per extract call."
            ),
            size=spec.name,
            load=C.load(),
            digits=3,
        ),
        C.Row(
            key="10b",
            what=f"MS-LSTM training step vs T ({', '.join(map(str, steps))}; "
            f"{spec.units} units)",
            against=f"FLOP growth T={t_hi} / T={t_lo} ({t_flops:.1f}x)",
            target=f"time growth / FLOP growth <= {EFFICIENCY:g}",
            values=t_eff,
            met=C.at_most(t_eff, EFFICIENCY),
            detail="ms/step: " + ", ".join(f"T={t}: {ms(('T', t))}" for t in steps) + ".",
            size=spec.name,
            load=C.load(),
        ),
        C.Row(
            key="10c",
            what=f"MS-LSTM training step vs units ({', '.join(map(str, units))}; "
            f"T = {spec.steps})",
            against=f"FLOP growth {u_hi} / {u_lo} units ({u_flops:.1f}x)",
            target=f"time growth / FLOP growth <= {EFFICIENCY:g}",
            values=u_eff,
            met=C.at_most(u_eff, EFFICIENCY),
            detail="ms/step: "
            + ", ".join(f"{u} units: {ms(('U', u))}" for u in units)
            + ".",
            size=spec.name,
            load=C.load(),
        ),
    ]
    return rows


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
