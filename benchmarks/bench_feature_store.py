"""Row 8: the HDF5 feature store, written and read in frames/s, float16 vs float32 size.

    python benchmarks/bench_feature_store.py --size paper

A "frame" is one stored step: a context and an action feature (`fc_units` each).
- write: `FeatureStore.append` of whole clips (gzip, float16, one flush per clip, as the
  extract stage does) vs the frames/s extraction produces (`extract`, batch 32): the
  store must never slow extraction down;
- read: `FeatureStore.read()` of every clip vs the frames/s the MS-LSTM consumes
  (its inference forward pass, faster than a training step, so the stricter consumer);
- size: the same clips stored as float16 and as float32; target: float16 halves it.
Features are ReLU-like (half zeros, as fc7 outputs), so gzip sees realistic data.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402


def _settings(spec, dtype):
    from msl_keras.data.feature_store import StoreSettings

    return StoreSettings(
        dataset="generated",
        split="1",
        T=spec.steps,
        frame_selection="first",
        observed_ratio=1.0,
        input_size=(spec.image, spec.image),
        preprocessing="vgg16_caffe",
        extractor_fingerprint="bench",
        cam_class="predicted",
        context_dim=spec.fc_units,
        action_dim=spec.fc_units,
        num_classes=spec.num_classes,
        dtype=dtype,
    )


def _write(path, spec, features, labels, lengths, dtype):
    from msl_keras.data.feature_store import FeatureStore

    names = [f"c{k}" for k in range(spec.num_classes)]
    with FeatureStore.create(path, _settings(spec, dtype), names) as store:
        for i, n in enumerate(lengths):
            store.append(
                f"clip{i:05d}",
                features["context"][i, :n],
                features["action"][i, :n],
                int(labels[i]),
                list(range(n)),
                int(n),
            )


def _read(path):
    from msl_keras.data.feature_store import FeatureStore

    with FeatureStore.open(path) as store:
        return store.read()


def _feature_bytes(path):
    """Bytes the context and action datasets take in the file (after compression)."""
    import h5py

    with h5py.File(path, "r") as f:
        return sum(f[name].id.get_storage_size() for name in ("context", "action"))


def run(args):
    from msl_keras.callbacks import causal_forward

    spec = args.spec
    clips = {"paper": 64, "cpu": 128, "tiny": 8}[spec.name]
    features, labels, lengths = C.lstm_features(spec, clips)
    frames = int(lengths.sum())
    with C.device_scope(args.device), tempfile.TemporaryDirectory() as workdir:
        extractor = C.build_extractor(spec)
        model = C.build_lstm(spec)
        images = C.network_frames(spec, spec.batch)
        batch = {k: v[: spec.batch] for k, v in features.items()}
        paths = {d: os.path.join(workdir, f"{d}.h5") for d in ("float16", "float32")}
        for dtype, path in paths.items():
            _write(path, spec, features, labels, lengths, dtype)
        sizes = {d: os.path.getsize(p) for d, p in paths.items()}
        stored = {d: _feature_bytes(p) for d, p in paths.items()}
        counter = iter(range(10**6))

        def write():
            path = os.path.join(workdir, f"w{next(counter)}.h5")
            _write(path, spec, features, labels, lengths, "float16")
            os.remove(path)

        times = C.alternate(
            {
                "write": write,
                "read": lambda: _read(paths["float16"]),
                "extract": lambda: extractor.extract(images, batch_size=spec.batch),
                "lstm": lambda: causal_forward(model, batch, batch_size=spec.batch),
            },
            args.repeats,
        )
    write_fps = [frames / t for t in times["write"]]
    read_fps = [frames / t for t in times["read"]]
    extract_fps = [len(images) / t for t in times["extract"]]
    lstm_fps = [spec.batch * spec.steps / t for t in times["lstm"]]
    write_ratio = C.ratios(write_fps, extract_fps)
    read_ratio = C.ratios(read_fps, lstm_fps)
    size_ratio = stored["float16"] / stored["float32"]
    raw16 = frames * 2 * spec.fc_units * 2
    rows = [
        C.Row(
            key="8a",
            what=f"HDF5 store write (append {clips} clips, float16, gzip)",
            against="frames/s extraction produces",
            target="never the bottleneck (> 1x; here in multiples)",
            values=write_ratio,
            met=C.at_least(write_ratio, 1.0),
            detail=(
                f"frames/s: store write {C.fmt_spread(write_fps, 0)}, extraction "
                f"{C.fmt_spread(extract_fps, 1)}."
            ),
            size=spec.name,
            load=C.load(),
            digits=1,
        ),
        C.Row(
            key="8b",
            what=f"HDF5 store read (read() of {clips} clips)",
            against="frames/s the MS-LSTM consumes (inference pass, batch "
            f"{spec.batch})",
            target="never the bottleneck (> 1x)",
            values=read_ratio,
            met=C.at_least(read_ratio, 1.0),
            detail=(
                f"frames/s: store read {C.fmt_spread(read_fps, 0)}, MS-LSTM forward "
                f"{C.fmt_spread(lstm_fps, 0)} (a training step consumes ~3x fewer; the "
                "store is read once per run, the LSTM eats the clips every epoch)."
            ),
            size=spec.name,
            load=C.load(),
            digits=1,
        ),
        C.Row(
            key="8c",
            what="HDF5 store size of the features, float16 vs float32 (same clips, "
            "gzip)",
            against="the float32 store",
            target="float16 halves it (<= 0.55x)",
            values=[size_ratio],
            met=size_ratio <= 0.55,
            detail=(
                f"feature datasets on disk: float16 {stored['float16'] / 2**20:.2f} MiB, "
                f"float32 {stored['float32'] / 2**20:.2f} MiB for {frames} frames (raw "
                f"float16 {raw16 / 2**20:.2f} MiB); whole files "
                f"{sizes['float16'] / 2**20:.2f} vs {sizes['float32'] / 2**20:.2f} MiB."
            ),
            size=spec.name,
            load=C.load(),
        ),
    ]
    del extractor, model
    C.cleanup()
    return rows


def main(argv=None):
    args = C.parse_args(__doc__.splitlines()[0], argv)
    return C.finish(run(args), args)


if __name__ == "__main__":
    main()
