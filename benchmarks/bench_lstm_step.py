"""Row 5: one MS-LSTM training step vs two bare `keras.layers.LSTM` layers.

    python benchmarks/bench_lstm_step.py --size paper

Ours: `MultiStageLSTM` built and compiled by `pipeline/lstm_training.py` (`build_lstm`,
`compile_lstm`: SGD with momentum, the anticipation loss on both stages), one
`train_on_batch` on a batch of `data.pipelines.sequence_dataset`. Bare: the same two
recurrences with nothing else, `LSTM(units)` over the context features and
`LSTM(units)` over [its output, action features], a mean-squared loss on the second's
output, the same optimizer. Target: ours <= 1.3x the bare step's time.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

TARGET = 1.3


def lstm_config(spec, **overrides):
    """The demo preset with the LSTM at `spec` (units, batch)."""
    from msl_keras.config import apply_overrides, get_preset

    settings = {
        "lstm.units": spec.units,
        "lstm.batch_size": spec.batch,
        "lstm.learning_rate": 0.001,
        "lstm.momentum": 0.9,
        "lstm.loss": "anticipation",
    }
    settings.update(overrides)
    return apply_overrides(get_preset("demo"), settings)


def ms_lstm_step(spec, units=None, steps=None):
    """`(step(), model)`: one compiled training step of our MS-LSTM on a fixed batch."""
    import dataclasses

    import tensorflow as tf

    from msl_keras.data.pipelines import sequence_dataset
    from msl_keras.pipeline.lstm_training import build_lstm, compile_lstm

    spec = dataclasses.replace(
        spec, units=units or spec.units, steps=steps or spec.steps
    )
    config = lstm_config(spec)
    features, labels, lengths = C.lstm_features(spec, spec.batch)
    arrays = {**features, "labels": labels, "lengths": lengths}
    dataset = sequence_dataset(arrays, spec.num_classes, batch_size=spec.batch)
    x, y = next(iter(dataset))
    model = build_lstm(config, spec.num_classes, spec.fc_units, spec.fc_units)
    compile_lstm(model, config)

    def step():
        loss = model.train_on_batch(x, y)
        float(loss if not isinstance(loss, (list, tuple)) else loss[0])

    del tf
    return step, model


def bare_step(spec):
    """One training step of two plain keras LSTM layers of the same sizes."""
    import keras
    import numpy as np

    units, steps, dim = spec.units, spec.steps, spec.fc_units
    context = keras.Input((steps, dim), name="context")
    action = keras.Input((steps, dim), name="action")
    hidden = keras.layers.LSTM(units, return_sequences=True)(context)
    hidden = keras.layers.LSTM(units, return_sequences=True)(
        keras.layers.Concatenate()([hidden, action])
    )
    model = keras.Model([context, action], hidden)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.001, momentum=0.9), loss="mse"
    )
    features, _, _ = C.lstm_features(spec, spec.batch)
    x = [features["context"], features["action"]]
    y = np.zeros((spec.batch, steps, units), np.float32)

    def step():
        float(model.train_on_batch(x, y))

    return step, model


def run(args):
    spec = args.spec
    with C.device_scope(args.device):
        ours, model = ms_lstm_step(spec)
        bare, bare_model = bare_step(spec)
        times = C.alternate({"ours": ours, "bare": bare}, args.repeats)
    values = C.ratios(times["ours"], times["bare"])
    row = C.Row(
        key="5",
        what=f"MS-LSTM training step ({spec.units} units, T = {spec.steps}, batch "
        f"{spec.batch}, D = {spec.fc_units})",
        against="two bare keras.layers.LSTM layers of the same sizes",
        target=f"<= {TARGET:g}x the time",
        values=values,
        met=C.at_most(values, TARGET),
        detail=(
            f"ms/step: ours {C.fmt_spread([1e3 * t for t in times['ours']], 1)}, bare "
            f"{C.fmt_spread([1e3 * t for t in times['bare']], 1)}."
        ),
        size=spec.name,
        load=C.load(),
    )
    del model, bare_model
    C.cleanup()
    return [row]


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
